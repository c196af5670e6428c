#!/bin/bash -eu
# ClusterFuzzLite / OSS-Fuzz build of the fuzz target fuzz_nmi (run by the service in
# the image of Dockerfile, or locally by `make test`, suite `service`).
#
# The harness (simulator, decoder, target) is built with the service's $CC, $CFLAGS,
# $CXX, $CXXFLAGS and $LIB_FUZZING_ENGINE.  The core, hv/nmi_core.c, is not: the
# project's Makefile compiles it with gcc and the hypervisor's flags, exactly as it
# ships, and links that object unchanged (libFuzzer sees the core through the
# harness's extra counters, not through instrumentation).
#
# Writes to $OUT: fuzz_nmi, fuzz_nmi_seed_corpus.zip (corpus/fuzz/), fuzz_nmi.dict
# (python3 -m scripts.mkdict) and fuzz_nmi.options (the libFuzzer flags the target
# needs: SIGUSR1 is the simulated NMI, so libFuzzer must not take it).
# Intermediate files go to $WORK/build/.  VARIANT (default final) picks the core.
cd "$SRC/nmi-workbench"
variant=${VARIANT:-final}
build="$WORK/build"

# The service's flags come after the project's, so they win; -Wno-error keeps a newer
# compiler's new warnings from failing the service build (the project's own builds
# keep -Werror).
make -s VARIANT="$variant" BUILD="$build" \
	FUZZ_CC="$CC" FUZZ_EXTRA_CFLAGS="$CFLAGS -Wno-error" \
	FUZZ_LD="$CXX $CXXFLAGS" FUZZ_ENGINE="$LIB_FUZZING_ENGINE" \
	"$build/$variant/fuzz_nmi"
cp "$build/$variant/fuzz_nmi" "$OUT/fuzz_nmi"

rm -f "$OUT/fuzz_nmi_seed_corpus.zip"
(cd corpus/fuzz && python3 -m zipfile -c "$OUT/fuzz_nmi_seed_corpus.zip" *)
python3 -m scripts.mkdict "$OUT/fuzz_nmi.dict"
cat >"$OUT/fuzz_nmi.options" <<OPTIONS
[libfuzzer]
handle_usr1 = 0
handle_usr2 = 0
dict = fuzz_nmi.dict
OPTIONS
