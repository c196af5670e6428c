# NMI workbench: one nmi_core.c, linked into the bare-metal hypervisor (hv/) and the
# userspace simulator (sim/), fuzzed by libFuzzer (fuzz/).  `make help` lists targets.

VARIANT ?= final
VARIANTS := coalescing racy-counter reentrant-loop final
ifeq ($(filter $(VARIANT),$(VARIANTS)),)
$(error VARIANT must be one of: $(VARIANTS) (got '$(VARIANT)'))
endif
variant_macro = NMI_VARIANT_$(shell echo $(1) | tr a-z- A-Z_)

# OPT changes the optimisation level of everything built for the hypervisor, the
# core included (docs/variants.md compares -O0 and -O2); other levels build apart.
OPT ?= -O2
BUILD := build

# The hypervisor's compiler and code-generation flags.  nmi_core.c is compiled with
# exactly these, once per build, and the one object goes into every binary of it.
# HV_CC=gcc (the default, the shipped build) or HV_CC=clang (clang-14, the project's
# clang), or the path of either; HV_EXTRA_CFLAGS adds flags (after the others).
HV_CC ?= gcc
ifeq ($(HV_CC),clang)
override HV_CC := clang-14
endif
HV_KIND := $(if $(findstring clang,$(notdir $(HV_CC))),clang,gcc)
HV_CFLAGS := -std=c11 $(OPT) -g -ffreestanding -fno-pic -fno-pie -mno-red-zone \
	-mgeneral-regs-only -mcmodel=small -fno-stack-protector \
	-fno-asynchronous-unwind-tables -fcf-protection=none -Wall -Wextra -Werror
# gcc splits a function into hot and cold parts (foo.cold, in .text.unlikely) unless
# told not to, and the whole core must stay in one section.  clang splits functions
# only with profile data (-fsplit-machine-functions, off by default) and rejects the
# gcc flag, so it needs none; the core's rule checks the result either way.
HV_CFLAGS_gcc := -fno-reorder-blocks-and-partition
HV_CFLAGS_clang :=
HV_CFLAGS += $(HV_CFLAGS_$(HV_KIND)) $(HV_EXTRA_CFLAGS)

# SANITIZE=address,undefined builds the harness (simulator, decoder, fuzz target,
# nmisim, unit tests) with clang and those sanitizers; the core stays the shipped
# object, compiled by HV_CC with HV_CFLAGS as always (docs/fuzzing.md).
SANITIZE ?=
SAN_FLAGS := $(if $(SANITIZE),-fsanitize=$(SANITIZE) -fno-sanitize-recover=all \
	-fno-omit-frame-pointer)

# Each build other than the shipped one (gcc, -O2, no extra flags, no sanitizer) has a
# directory of its own: build/<variant>[<OPT>][-clang][-x<hash of HV_EXTRA_CFLAGS>]
# [-<sanitizers>]/, e.g. build/reentrant-loop-O0-clang/, build/final-address-undefined/.
comma := ,
HV_TAG := $(if $(filter-out gcc,$(HV_CC)),-$(if $(filter clang-14,$(HV_CC)),clang,$(notdir $(HV_CC))))$(if \
	$(strip $(HV_EXTRA_CFLAGS)),-x$(shell printf '%s' '$(strip $(HV_EXTRA_CFLAGS))' | md5sum | cut -c1-8))
B := $(BUILD)/$(VARIANT)$(filter-out -O2,$(OPT))$(HV_TAG)$(if $(SANITIZE),-$(subst $(comma),-,$(SANITIZE)))
# The same selection as make variables, for the commands the tools print.
BUILD_VARS := $(strip $(if $(filter-out -O2,$(OPT)),OPT=$(OPT)) $(if $(filter-out gcc,$(HV_CC)),HV_CC=$(HV_CC)) \
	$(if $(strip $(HV_EXTRA_CFLAGS)),HV_EXTRA_CFLAGS='$(strip $(HV_EXTRA_CFLAGS))') \
	$(if $(SANITIZE),SANITIZE=$(SANITIZE)))

# Host (simulator) code: C11, same warnings.  The simulator's own files may use any
# flags; only nmi_core.o must match the hypervisor.
FUZZ_CC ?= clang-14
SIM_CC ?= gcc
ifneq ($(SANITIZE),)
override SIM_CC := $(FUZZ_CC)
endif
SIM_CFLAGS := -std=c11 -O2 -g -Wall -Wextra -Werror -Ihv -Isim -pthread $(SAN_FLAGS)
SIM_LDFLAGS := -no-pie -pthread $(SAN_FLAGS)
# hv/nmi_books.c is the simulator's oracle as well as the hypervisor's books: it is
# harness code here, built with the simulator's compiler and flags (sanitizers too).
SIM_SRCS := sim/machine.c sim/mode.c sim/controller.c sim/ops.c sim/nmi_hw.c sim/vmx_hw.c \
	sim/stepper.c sim/runaway.c sim/failure.c sim/oracle.c sim/platform_sim.c sim/timeline.c \
	sim/sched.c sim/explore.c sim/state_hash.c sim/symbols.c sim/stress.c sim/coverage.c hv/nmi_books.c
SIM_OBJS := $(addprefix $(B)/sim/,$(notdir $(SIM_SRCS:.c=.o)))

.PHONY: all deps builddir sim test test-sim fuzz explore replay bench bench-bugs clean help format \
	check-format coverage
all: sim $(B)/fuzz_nmi

help:
	@echo "The two commands:"
	@echo "make fuzz      every kept input, then libFuzzer on VARIANT ($(VARIANTS)), FUZZ_SECONDS (60)"
	@echo "               in all; MODE=precise|fast, JOBS workers (one per core: -fork=JOBS), FUZZ_SEED=N"
	@echo "make test      every test suite; ends with 'N passed, N failed, N skipped'"
	@echo "The simulator and the fuzzer:"
	@echo "make test-sim  the simulator, fuzz-regression and tooling suites only (fast)"
	@echo "make explore   every placement of up to NMIS (2) NMIs in corpus/scenarios/*.nmi, then of"
	@echo "               EXPLORE_CORPUS_NMIS (1) in the kept corpus, within EXPLORE_SECONDS (60)"
	@echo "make replay INPUT=file   replay a fuzz input (.bin) or scenario (.nmi) with its timeline;"
	@echo "               ON=qemu|bochs|auto on the hypervisor, each case against the simulator,"
	@echo "               TRACE=1 (Bochs) one case traced instruction by instruction"
	@echo "make coverage  the NMI coverage map of CORPUS (kept corpus): build/coverage/<variant>.html"
	@echo "make stress    free-running stress: CPUS (2) threads, SOURCES (2), STRESS_NMIS (1000000)"
	@echo "make sim       build/<variant>/nmisim, the simulator's command line"
	@echo "Figures:"
	@echo "make bench     stress throughput, time to find the seed race, execs/s, explore, the catalogue"
	@echo "make bench-bugs [BUGS=a,b]   how fast make fuzz, make explore and make test-sim find"
	@echo "               each bug of tests/bugs/ (BUGS_ARGS: --seeds N --budget S --configs ...)"
	@echo "make bench-hv  the seed experiment: how long racy-counter survives NMI floods (QEMU, Bochs)"
	@echo "make bench-linux [SMP=2]   Linux's boot to /init in Bochs, native against the hypervisor"
	@echo "The hypervisor (docs/booting.md):"
	@echo "make hv | iso  build/<variant>/hv.elf, or a GRUB rescue ISO of it"
	@echo "make qemu | bochs | trace   boot it in QEMU or Bochs; an instruction trace (docs/tracing.md)"
	@echo "make test-qemu | test-bochs   the system tests (tests/system/tests.cfg) on one emulator"
	@echo "make linux [SMP=2] [EMU=bochs|qemu] [NATIVE=1]   Debian's Linux as its guest, a shell here"
	@echo "make test-linux [SMP=2]   Linux's own NMI users as checks under the hypervisor"
	@echo "make test-linux-self      the Linux checks' own tests (QEMU, natively)"
	@echo "make linux-ready          the packages, kernel and initramfs the Linux targets need"
	@echo "Any target:    OPT=-O0, HV_CC=gcc|clang, HV_EXTRA_CFLAGS=..., SANITIZE=address,undefined"
	@echo "               build apart, in build/<variant>[-O0][-clang][-x<hash>][-<sanitizers>]/"
	@echo "Housekeeping:"
	@echo "make deps [DEPS=sim fuzz system linux browser all]   install the Debian packages"
	@echo "make format | check-format   clang-format every C file, or only check"
	@echo "make builddir  print the build directory the variables select"
	@echo "make clean     remove build/"

deps:
	@scripts/deps.sh $(DEPS)

# The build directory these variables select: make -s builddir HV_EXTRA_CFLAGS=...
builddir:
	@echo $(B)

# ---- The core: compiled once per variant, with the hypervisor's flags ----------------
# Its .text becomes the section nmi_core_text so the linker brackets it with
# __start_nmi_core_text/__stop_nmi_core_text: the simulator single-steps inside it
# and the byte-identity test finds it in both binaries.
# Any other code section (a .text.unlikely part, say) would leave core code outside
# the bracket, so the rule refuses it.  nmi_core.cmd records how the core was built.
$(B)/nmi_core.o: hv/nmi_core.c hv/nmi_core.h hv/nmi_platform.h Makefile
	@mkdir -p $(@D)
	$(HV_CC) $(HV_CFLAGS) -DNMI_VARIANT=$(call variant_macro,$(VARIANT)) -c $< -o $@.tmp
	@other=$$(objdump -h $@.tmp | awk '/^ *[0-9]+ /{n=$$2} /CODE/{print n}' | grep -vx '.text'); \
	if [ -n "$$other" ]; then echo "$@: core code outside .text: $$other" >&2; rm -f $@.tmp; exit 1; fi
	objcopy --rename-section .text=nmi_core_text,alloc,load,readonly,code,contents $@.tmp $@
	@rm -f $@.tmp
	@echo '$(HV_CC) $(HV_CFLAGS) -DNMI_VARIANT=$(call variant_macro,$(VARIANT))' > $(B)/nmi_core.cmd

$(B)/sim/%.o: sim/%.c sim/sim.h sim/machine.h hv/nmi_core.h hv/nmi_platform.h hv/nmi_books.h Makefile
	@mkdir -p $(@D)
	$(SIM_CC) $(SIM_CFLAGS) -c $< -o $@

$(B)/sim/%.o: hv/%.c hv/nmi_books.h hv/nmi_core.h Makefile
	@mkdir -p $(@D)
	$(SIM_CC) $(SIM_CFLAGS) -c $< -o $@

$(B)/libnmisim.a: $(SIM_OBJS) $(B)/nmi_core.o
	@rm -f $@
	ar rcs $@ $^

# nmisim explores the kept corpus too (make explore): it decodes fuzz inputs with the
# fuzzer's own decoder and boundary list (sim/explore_corpus.c).
NMISIM_OBJS := $(B)/sim/nmisim.o $(B)/sim/explore_corpus.o $(B)/sim/decode.o $(B)/sim/core_bounds.o

$(B)/sim/explore_corpus.o: sim/explore_corpus.c sim/explore_corpus.h fuzz/decode.h sim/sim.h Makefile
	@mkdir -p $(@D)
	$(SIM_CC) $(SIM_CFLAGS) -Ifuzz -c $< -o $@

$(B)/sim/nmisim.o: sim/explore_corpus.h

$(B)/sim/decode.o: fuzz/decode.c fuzz/decode.h sim/sim.h Makefile
	@mkdir -p $(@D)
	$(SIM_CC) $(SIM_CFLAGS) -Ifuzz -c $< -o $@

$(B)/sim/core_bounds.o: $(B)/fuzz/core_bounds.c
	$(SIM_CC) $(SIM_CFLAGS) -c $< -o $@

$(B)/nmisim: $(NMISIM_OBJS) $(B)/libnmisim.a
	$(SIM_CC) $(SIM_LDFLAGS) $^ -o $@

sim: $(B)/nmisim

# ---- libFuzzer: the simulator instrumented by clang, the core as shipped ------------
# A fuzzing service sets the compiler (FUZZ_CC), adds its flags (FUZZ_EXTRA_CFLAGS),
# links with its own driver (FUZZ_LD) and engine (FUZZ_ENGINE): .clusterfuzzlite/build.sh.
FUZZ_EXTRA_CFLAGS ?=
FUZZ_LD ?= $(FUZZ_CC)
FUZZ_ENGINE ?= -fsanitize=fuzzer
FUZZ_CFLAGS := -std=c11 -O2 -g -Wall -Wextra -Werror -Ihv -Isim -Ifuzz -pthread \
	-fsanitize=fuzzer-no-link $(SAN_FLAGS) $(FUZZ_EXTRA_CFLAGS)
FUZZ_OBJS := $(addprefix $(B)/fuzz/,$(notdir $(SIM_SRCS:.c=.o))) $(B)/fuzz/decode.o

$(B)/fuzz/%.o: sim/%.c sim/sim.h sim/machine.h hv/nmi_core.h hv/nmi_platform.h hv/nmi_books.h Makefile
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c $< -o $@

$(B)/fuzz/%.o: hv/%.c hv/nmi_books.h hv/nmi_core.h Makefile
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c $< -o $@

$(B)/fuzz/%.o: fuzz/%.c fuzz/decode.h sim/sim.h hv/nmi_core.h Makefile
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c $< -o $@

# The core's instruction boundaries, listed once from its disassembly: the fuzz
# input's breakpoint form picks one of them (fuzz/decode.c).  Offsets from the start
# of nmi_core_text, which holds nmi_core.o's code alone.
$(B)/fuzz/core_bounds.c: $(B)/nmi_core.o
	@mkdir -p $(@D)
	@{ echo '/* generated from objdump -d of $< */'; echo '#include <stdint.h>'; \
	  echo 'const uint32_t fuzz_core_bounds[] = {'; \
	  objdump -d --insn-width=16 --section=nmi_core_text $< | \
	    awk -F'\t' '/^ *[0-9a-f]+:\t/ && NF >= 3 { a = $$1; sub(/^ */, "", a); sub(/:$$/, "", a); print "0x" a "," }'; \
	  echo '};'; echo 'const unsigned fuzz_core_nbounds = sizeof fuzz_core_bounds / sizeof fuzz_core_bounds[0];'; \
	  echo 'extern const char __start_nmi_core_text[];'; \
	  echo 'const char *const fuzz_core_text = __start_nmi_core_text;'; \
	} > $@.tmp && mv $@.tmp $@

$(B)/fuzz/core_bounds.o: $(B)/fuzz/core_bounds.c
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c $< -o $@

$(B)/fuzz_nmi: $(B)/fuzz/fuzz_nmi.o $(FUZZ_OBJS) $(B)/fuzz/core_bounds.o $(B)/nmi_core.o
	$(FUZZ_LD) $(SAN_FLAGS) -no-pie -pthread $^ $(FUZZ_ENGINE) -o $@

# The fuzz decoder's operation table, read back from the decoder for scripts/mkseeds.py.
$(B)/fuzz_ops: scripts/fuzz_ops.c fuzz/decode.c fuzz/decode.h $(B)/libnmisim.a
	$(SIM_CC) $(SIM_CFLAGS) -Ifuzz $(SIM_LDFLAGS) scripts/fuzz_ops.c fuzz/decode.c \
		$(B)/libnmisim.a -o $@

$(B)/test_core: tests/unit/test_core.c tests/unit/test_books.c $(B)/libnmisim.a sim/machine.h
	$(SIM_CC) $(SIM_CFLAGS) $(SIM_LDFLAGS) $(filter %.c,$^) $(B)/libnmisim.a -o $@

# The hypervisor's instruction decoder (hv/insn_decode.c: pure C) on the host.
$(B)/test_decode: tests/unit/test_decode.c hv/insn_decode.c hv/insn_decode.h
	$(SIM_CC) $(SIM_CFLAGS) $(filter %.c,$^) -o $@

# ---- The main job and the other user-facing targets ------------------------------
FUZZ_SECONDS ?= 60
# FUZZ_SEED=N: libFuzzer's -seed (default: libFuzzer picks one and prints it).
FUZZ_SEED ?=
MODE ?= precise
NMIS ?= 2
CPUS ?= 2
SOURCES ?= 2
STRESS_NMIS ?= 1000000
# Fuzzing workers: JOBS=N > 1 is libFuzzer's fork mode (-fork=N), one corpus.
JOBS ?= $(shell nproc 2>/dev/null || echo 1)

fuzz:
	@scripts/deps.sh sim fuzz
	@$(MAKE) -s $(B)/fuzz_nmi
	@python3 -m scripts.fuzz --binary $(B)/fuzz_nmi --variant $(VARIANT) --mode $(MODE) \
		--seconds $(FUZZ_SECONDS) --tag $(notdir $(B)) --jobs $(JOBS) --make-vars "$(BUILD_VARS)" \
		$(if $(FUZZ_SEED),--seed $(FUZZ_SEED))

# make explore: the canonical scenarios in full, then the kept corpus (the seeds, this
# variant's regressions, the grown corpus of this build, INPUT) within what is left of
# EXPLORE_SECONDS (docs/fuzzing.md, "make explore").
EXPLORE_SECONDS ?= 60
EXPLORE_CORPUS_NMIS ?= 1
EXPLORE_CORPUS = corpus/fuzz corpus/distilled corpus/regressions/$(VARIANT) corpus/grown/$(notdir $(B))-precise $(INPUT)
explore: deps
	@$(MAKE) -s $(B)/nmisim
	@$(B)/nmisim run --quiet --nmis $(NMIS) --seconds $(EXPLORE_SECONDS) --corpus-nmis $(EXPLORE_CORPUS_NMIS) \
		$(foreach p,$(EXPLORE_CORPUS),--corpus $(p)) corpus/scenarios/*.nmi

# ON=sim (the default) replays in the simulator; ON=qemu|bochs|auto on the hypervisor
# (workload=replay), every case compared with the simulator's verdict
# (scripts/replay_hv.py); TRACE=1 (Bochs) traces one case instruction by instruction.
# (TRACE also names make trace's region: only TRACE=1 turns the replay's trace on.)
ON ?= sim
replay:
	@test -n "$(INPUT)" || { echo "usage: make replay INPUT=file.bin|file.nmi [VARIANT=...] [MODE=...] [ON=sim|qemu|bochs|auto] [TRACE=1]"; exit 2; }
ifeq ($(ON),sim)
	@scripts/deps.sh sim fuzz
	@$(MAKE) -s $(B)/nmisim $(B)/fuzz_nmi
	@python3 -m scripts.fuzz --binary $(B)/fuzz_nmi --variant $(VARIANT) --mode $(MODE) \
		--replay "$(INPUT)" --nmisim $(B)/nmisim
else
	@scripts/deps.sh sim fuzz system
	@$(MAKE) -s $(B)/nmisim $(B)/hv.elf $(if $(filter %.bin,$(INPUT)),$(B)/fuzz_nmi)
	@python3 -m scripts.replay_hv --input "$(INPUT)" --variant $(VARIANT) --build $(B) \
		--on $(ON) --mode $(MODE) $(if $(filter 1 yes,$(TRACE)),--trace)
endif

# The NMI coverage map: replay CORPUS (default corpus/fuzz and the grown corpus of this
# build and MODE) and write $(BUILD)/coverage/<build>.html (docs/fuzzing.md).
CORPUS ?=
coverage:
	@scripts/deps.sh sim fuzz
	@$(MAKE) -s $(B)/fuzz_nmi $(B)/nmisim
	@python3 -m scripts.coverage --binary $(B)/fuzz_nmi --object $(B)/nmi_core.o \
		--variant $(VARIANT) --mode $(MODE) --tag $(notdir $(B)) $(if $(filter precise,$(MODE)),--nmisim $(B)/nmisim \
		--nmis $(NMIS) --corpus-nmis $(EXPLORE_CORPUS_NMIS) --explore-seconds $(EXPLORE_SECONDS)) \
		--out $(BUILD)/coverage/$(notdir $(B)).html $(CORPUS)

stress: deps
	@$(MAKE) -s $(B)/nmisim
	$(B)/nmisim stress --cpus $(CPUS) --sources $(SOURCES) --nmis $(STRESS_NMIS)

test:
	@scripts/deps.sh all
	@python3 tests/run_tests.py

test-sim:
	@scripts/deps.sh sim fuzz
	@python3 tests/run_tests.py unit identity scenarios corpus input clang sanitizers service \
		scripts style

bench:
	@scripts/deps.sh all
	@python3 -m scripts.bench

# The bug catalogue, tests/bugs/*.patch: per bug, the time make fuzz (empty and grown
# corpus, JOBS=1 and 2), make explore and make test-sim take to find it, as one table
# (scripts/bugs.py, docs/fuzzing.md).  BUGS=a,b measures those only; BUGS_ARGS passes
# more options (--seeds 3, --budget 10, --configs ..., --json FILE, --regrow).
BUGS ?=
BUGS_ARGS ?=
bench-bugs:
	@scripts/deps.sh sim fuzz
	@python3 -m scripts.bugs $(if $(BUGS),--bugs $(BUGS)) $(BUGS_ARGS)

C_FILES = $(shell git ls-files '*.c' '*.h')
format:
	clang-format -i $(C_FILES)

check-format:
	clang-format --dry-run --Werror $(C_FILES)

clean:
	rm -rf $(BUILD)

include hv/hv.mk

# clang lowers the hypervisor's structure copies and zeroing to calls to memcpy and
# memset, which gcc with the same flags inlines and the hypervisor does not define:
# a clang build links toolchain/string.c (weak definitions) into hv.elf.
ifeq ($(HV_KIND),clang)
HV_OBJS += $(B)/toolchain/string.o
$(B)/hv.elf: $(B)/toolchain/string.o
$(B)/toolchain/string.o: toolchain/string.c Makefile
	@mkdir -p $(@D)
	$(HV_CC) $(HV_CFLAGS) -c $< -o $@
endif

# ==== The Linux guest: tests/linux/, docs/linux-guest.md =============================
# Kept in one block at the end of the file, apart from the rest.
#   make linux [SMP=2] [EMU=bochs|qemu] [NATIVE=1]   boot to a shell on this terminal
#   make test-linux [SMP=2] [EMU=bochs|qemu] [NATIVE=1] [LINUX_ARGS="linuxtest.nmis=50"]
#   make test-linux-self                             the checks' own tests (QEMU TCG)
#   make bench-linux [SMP=2]                         Bochs boot-to-/init, native vs hypervisor
# Without NATIVE=1 Linux runs under the hypervisor ($(B)/hv.elf); EMU=qemu then
# needs /dev/kvm with nested VMX.  LINUX_ARGS: more words for Linux' command line.
# LINUX_KERNEL=path: another bzImage (docs/linux-guest.md says what it needs).
EMU ?= bochs
NATIVE ?=
LINUX_ARGS ?=
LINUX_KERNEL ?=
LINUX_NATIVE := $(filter-out 0 no,$(NATIVE))
LINUX_BUILD := $(BUILD)/linux
LINUX_INITRD_SRCS := tests/linux/init.sh tests/linux/hvcmd tests/linux/fakehv \
	tests/linux/ioport.c tests/linux/mkinitrd.sh
LINUX_RUN = python3 -m tests.linux.run --emu $(EMU) --smp $(SMP) \
	$(if $(LINUX_NATIVE),--native,--hv $(B)/hv.elf) --cmdline "$(LINUX_ARGS)" \
	$(if $(LINUX_KERNEL),--kernel $(LINUX_KERNEL))

.PHONY: linux linux-ready test-linux test-linux-self bench-linux

$(LINUX_BUILD)/initrd.gz: $(LINUX_INITRD_SRCS)
	@tests/linux/mkinitrd.sh $@

# Packages, the kernel (build/linux/vmlinuz), the initramfs, and the hypervisor
# unless NATIVE=1.
linux-ready:
	@scripts/deps.sh sim system linux
	@$(MAKE) -s $(LINUX_BUILD)/initrd.gz $(if $(LINUX_NATIVE),,$(B)/hv.elf)

linux: linux-ready
	@$(LINUX_RUN) --interactive

test-linux: linux-ready
	@$(LINUX_RUN)

test-linux-self:
	@scripts/deps.sh sim system linux
	@$(MAKE) -s $(LINUX_BUILD)/initrd.gz
	@python3 -m tests.linux.selftest

bench-linux:
	@scripts/deps.sh sim system linux
	@$(MAKE) -s $(LINUX_BUILD)/initrd.gz $(B)/hv.elf
	@python3 -m tests.linux.bench --smp $(SMP) --hv $(B)/hv.elf
