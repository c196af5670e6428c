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
B := $(BUILD)/$(VARIANT)$(filter-out -O2,$(OPT))

# The hypervisor's compiler and code-generation flags.  nmi_core.c is compiled with
# exactly these, once per variant, and the one object goes into every build.
HV_CC := gcc
HV_CFLAGS := -std=c11 $(OPT) -g -ffreestanding -fno-pic -fno-pie -mno-red-zone \
	-mgeneral-regs-only -mcmodel=small -fno-stack-protector \
	-fno-asynchronous-unwind-tables -fno-reorder-blocks-and-partition \
	-fcf-protection=none -Wall -Wextra -Werror

# Host (simulator) code: C11, same warnings.  The simulator's own files may use any
# flags; only nmi_core.o must match the hypervisor.
SIM_CC ?= gcc
SIM_CFLAGS := -std=c11 -O2 -g -Wall -Wextra -Werror -Ihv -Isim -pthread
SIM_LDFLAGS := -no-pie -pthread
SIM_SRCS := sim/machine.c sim/mode.c sim/controller.c sim/ops.c sim/nmi_hw.c sim/vmx_hw.c \
	sim/stepper.c sim/runaway.c sim/failure.c sim/oracle.c sim/platform_sim.c sim/timeline.c \
	sim/sched.c sim/explore.c sim/symbols.c sim/stress.c hv/nmi_books.c
SIM_OBJS := $(addprefix $(B)/sim/,$(notdir $(SIM_SRCS:.c=.o)))

.PHONY: all deps sim test test-sim fuzz explore replay bench clean help format \
	check-format
all: sim $(B)/fuzz_nmi

help:
	@echo "make fuzz      libFuzzer on VARIANT ($(VARIANTS)) for FUZZ_SECONDS (60), MODE=precise|fast"
	@echo "make test      every test suite (unit, identity, scenarios, corpus, stress, QEMU, Bochs)"
	@echo "make test-sim  the simulator, fuzz-regression and tooling suites only (fast)"
	@echo "make explore   every placement of up to NMIS (2) NMIs in corpus/scenarios/*.nmi"
	@echo "make replay INPUT=file   replay a fuzz input (.bin) or scenario (.nmi) with its timeline"
	@echo "make stress    free-running stress: CPUS (2) threads, SOURCES (2), NMIS (1000000)"
	@echo "make bench     figures: stress throughput, time to find the seed race, execs/s"
	@echo "make qemu | bochs | trace | test-qemu | test-bochs | iso   the hypervisor (docs/booting.md)"
	@echo "make format    clang-format every C file"

deps:
	@scripts/deps.sh $(DEPS)

# ---- The core: compiled once per variant, with the hypervisor's flags ----------------
# Its .text becomes the section nmi_core_text so the linker brackets it with
# __start_nmi_core_text/__stop_nmi_core_text: the simulator single-steps inside it
# and the byte-identity test finds it in both binaries.
$(B)/nmi_core.o: hv/nmi_core.c hv/nmi_core.h hv/nmi_platform.h Makefile
	@mkdir -p $(@D)
	$(HV_CC) $(HV_CFLAGS) -DNMI_VARIANT=$(call variant_macro,$(VARIANT)) -c $< -o $@.tmp
	objcopy --rename-section .text=nmi_core_text,alloc,load,readonly,code,contents $@.tmp $@
	@rm -f $@.tmp

$(B)/sim/%.o: sim/%.c sim/sim.h sim/machine.h hv/nmi_core.h hv/nmi_platform.h hv/nmi_books.h Makefile
	@mkdir -p $(@D)
	$(SIM_CC) $(SIM_CFLAGS) -c $< -o $@

$(B)/sim/%.o: hv/%.c hv/nmi_books.h hv/nmi_core.h Makefile
	@mkdir -p $(@D)
	$(SIM_CC) $(SIM_CFLAGS) -c $< -o $@

$(B)/libnmisim.a: $(SIM_OBJS) $(B)/nmi_core.o
	@rm -f $@
	ar rcs $@ $^

$(B)/nmisim: $(B)/sim/nmisim.o $(B)/libnmisim.a
	$(SIM_CC) $(SIM_LDFLAGS) $^ -o $@

sim: $(B)/nmisim

# ---- libFuzzer: the simulator instrumented by clang, the core as shipped ------------
FUZZ_CC ?= clang-14
FUZZ_CFLAGS := -std=c11 -O2 -g -Wall -Wextra -Werror -Ihv -Isim -Ifuzz -pthread \
	-fsanitize=fuzzer-no-link
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

$(B)/fuzz_nmi: $(B)/fuzz/fuzz_nmi.o $(FUZZ_OBJS) $(B)/nmi_core.o
	$(FUZZ_CC) -fsanitize=fuzzer -no-pie -pthread $^ -o $@

# The fuzz decoder's operation table, read back from the decoder for scripts/mkseeds.py.
$(B)/fuzz_ops: scripts/fuzz_ops.c fuzz/decode.c fuzz/decode.h $(B)/libnmisim.a
	$(SIM_CC) $(SIM_CFLAGS) -Ifuzz $(SIM_LDFLAGS) scripts/fuzz_ops.c fuzz/decode.c \
		$(B)/libnmisim.a -o $@

$(B)/test_core: tests/unit/test_core.c tests/unit/test_books.c $(B)/libnmisim.a sim/machine.h
	$(SIM_CC) $(SIM_CFLAGS) $(SIM_LDFLAGS) $(filter %.c,$^) $(B)/libnmisim.a -o $@

# ---- The main job and the other user-facing targets ------------------------------
FUZZ_SECONDS ?= 60
MODE ?= precise
NMIS ?= 2
CPUS ?= 2
SOURCES ?= 2
STRESS_NMIS ?= 1000000

fuzz:
	@scripts/deps.sh sim fuzz
	@$(MAKE) -s $(B)/fuzz_nmi
	@python3 -m scripts.fuzz --binary $(B)/fuzz_nmi --variant $(VARIANT) --mode $(MODE) \
		--seconds $(FUZZ_SECONDS) --tag $(notdir $(B))

explore: deps
	@$(MAKE) -s $(B)/nmisim
	@$(B)/nmisim run --quiet --nmis $(NMIS) corpus/scenarios/*.nmi

replay:
	@test -n "$(INPUT)" || { echo "usage: make replay INPUT=file.bin|file.nmi [VARIANT=...] [MODE=...]"; exit 2; }
	@scripts/deps.sh sim fuzz
	@$(MAKE) -s $(B)/nmisim $(B)/fuzz_nmi
	@python3 -m scripts.fuzz --binary $(B)/fuzz_nmi --variant $(VARIANT) --mode $(MODE) \
		--replay "$(INPUT)" --nmisim $(B)/nmisim

stress: deps
	@$(MAKE) -s $(B)/nmisim
	$(B)/nmisim stress --cpus $(CPUS) --sources $(SOURCES) --nmis $(STRESS_NMIS)

test:
	@scripts/deps.sh all
	@python3 tests/run_tests.py

test-sim:
	@scripts/deps.sh sim fuzz
	@python3 tests/run_tests.py unit identity scenarios corpus input scripts style

bench:
	@scripts/deps.sh all
	@python3 -m scripts.bench

C_FILES = $(shell git ls-files '*.c' '*.h')
format:
	clang-format -i $(C_FILES)

check-format:
	clang-format --dry-run --Werror $(C_FILES)

clean:
	rm -rf $(BUILD)

include hv/hv.mk
