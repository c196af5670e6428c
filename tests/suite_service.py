"""Suite `service`: .clusterfuzzlite/build.sh with the environment a fuzzing service
gives it, and the target it builds run on its seed corpus with its options."""
import glob
import os
import re
import shutil
import sys
import tempfile
import zipfile

from harness import ROOT, build, run, verdict


def libfuzzer_options(path):
    """The [libfuzzer] section of a service's .options file, as command-line flags."""
    flags, section = [], None
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("["):
                section = line.strip("[]")
            elif "=" in line and section == "libfuzzer":
                k, v = (x.strip() for x in line.split("=", 1))
                if k == "dict":
                    v = os.path.join(os.path.dirname(path), v)
                flags.append(f"-{k}={v}")
    return flags


def suite_service():
    """.clusterfuzzlite/build.sh with the environment a fuzzing service gives it (no
    Docker here): clang, ASan, libFuzzer, SRC/OUT/WORK in a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="nmi-service-") as tmp:
        src, out, work = (os.path.join(tmp, d) for d in ("src", "out", "work"))
        for d in (src, out, work):
            os.makedirs(d)
        os.symlink(ROOT, os.path.join(src, "nmi-workbench"))
        shutil.copy(".clusterfuzzlite/build.sh", os.path.join(src, "build.sh"))
        flags = ("-O1 -fno-omit-frame-pointer -gline-tables-only -fsanitize=address "
                 "-fsanitize-address-use-after-scope -fsanitize=fuzzer-no-link")
        env = dict(os.environ, CC="clang-14", CXX="clang++-14", CFLAGS=flags, CXXFLAGS=flags,
                   LIB_FUZZING_ENGINE="-fsanitize=fuzzer", SRC=src, OUT=out, WORK=work,
                   SANITIZER="address", FUZZING_ENGINE="libfuzzer", ARCHITECTURE="x86_64",
                   FUZZING_LANGUAGE="c")
        rc, log = run(["bash", "-eu", os.path.join(src, "build.sh")], env=env, timeout=300)
        want = ["fuzz_nmi", "fuzz_nmi_seed_corpus.zip", "fuzz_nmi.dict", "fuzz_nmi.options"]
        missing = [w for w in want if not os.path.exists(os.path.join(out, w))]
        verdict("PASS" if rc == 0 and not missing else "FAIL",
                "service: build.sh builds fuzz_nmi, its seed corpus zip, dictionary and options",
                f"exit {rc}, missing {missing}: {log.strip()[-300:]}" if rc or missing
                else ", ".join(sorted(os.listdir(out))))
        if rc or missing:
            return
        target = os.path.join(out, "fuzz_nmi")
        rc, idout = run([sys.executable, "-m", "scripts.check_identity", "build/final/nmi_core.o",
                         target])
        _, syms = run(["nm", target])
        asan = "__asan_init" in syms
        verdict("PASS" if rc == 0 and asan else "FAIL",
                "service: the harness is built with the service's flags (ASan), the core is "
                "the shipped gcc object", idout.strip().splitlines()[-1][:160]
                + ("" if asan else "; no __asan_init in the target"))
        seeds = sorted(glob.glob("corpus/fuzz/*"))
        corpus = os.path.join(work, "seed_corpus")
        with zipfile.ZipFile(os.path.join(out, "fuzz_nmi_seed_corpus.zip")) as z:
            z.extractall(corpus)
        got = sorted(os.listdir(corpus))
        same = got == [os.path.basename(s) for s in seeds] and all(
            open(s, "rb").read() == open(os.path.join(corpus, os.path.basename(s)), "rb").read()
            for s in seeds)
        verdict("PASS" if same else "FAIL", f"service: the seed corpus zip holds corpus/fuzz/ "
                f"({len(got)} inputs)", "" if same else f"zip has {got}")
        opts = libfuzzer_options(os.path.join(out, "fuzz_nmi.options"))
        rc, runlog = run([target, "-runs=0"] + opts + [corpus], timeout=120)
        dic = re.search(r"Dictionary: (\d+) entries", runlog)
        ran = re.search(r"INITED cov: \d+ ft: \d+ corp: (\d+)", runlog)
        ok = rc == 0 and dic and int(dic.group(1)) > 0 and ran
        verdict("PASS" if ok else "FAIL",
                "service: the target runs the seed corpus with its options and dictionary",
                (f"{' '.join(opts)}: exit 0, dictionary of {dic.group(1)} entries, "
                 f"corpus of {ran.group(1)} inputs kept") if ok else f"exit {rc}: {runlog.strip()[-400:]}")
