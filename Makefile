# NMI workbench: one nmi_core.c, linked into the bare-metal hypervisor (hv/) and the
# userspace simulator (sim/), fuzzed by libFuzzer (fuzz/).  `make help` lists targets.

VARIANT ?= final
VARIANTS := coalescing racy-counter reentrant-loop final
ifeq ($(filter $(VARIANT),$(VARIANTS)),)
$(error VARIANT must be one of: $(VARIANTS) (got '$(VARIANT)'))
endif
variant_macro = NMI_VARIANT_$(shell echo $(1) | tr a-z- A-Z_)

BUILD := build
B := $(BUILD)/$(VARIANT)

# The hypervisor's compiler and code-generation flags.  nmi_core.c is compiled with
# exactly these, once per variant, and the one object goes into every build.
HV_CC := gcc
HV_CFLAGS := -std=c11 -O2 -g -ffreestanding -fno-pic -fno-pie -mno-red-zone \
	-mgeneral-regs-only -mcmodel=small -fno-stack-protector \
	-fno-asynchronous-unwind-tables -fno-reorder-blocks-and-partition \
	-fcf-protection=none -Wall -Wextra -Werror

# Host (simulator) code: C11, same warnings.  The simulator's own files may use any
# flags; only nmi_core.o must match the hypervisor.
SIM_CC ?= gcc
SIM_CFLAGS := -std=c11 -O2 -g -Wall -Wextra -Werror -Ihv -Isim -pthread
SIM_LDFLAGS := -no-pie -pthread
SIM_SRCS := sim/machine.c sim/platform_sim.c sim/timeline.c sim/sched.c sim/symbols.c sim/stress.c
SIM_OBJS := $(patsubst sim/%.c,$(B)/sim/%.o,$(SIM_SRCS))

.PHONY: all deps sim test test-sim fuzz bench clean help format check-format
all: sim

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

$(B)/sim/%.o: sim/%.c sim/sim.h sim/machine.h hv/nmi_core.h hv/nmi_platform.h Makefile
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
FUZZ_OBJS := $(patsubst sim/%.c,$(B)/fuzz/%.o,$(SIM_SRCS)) $(B)/fuzz/decode.o

$(B)/fuzz/%.o: sim/%.c sim/sim.h sim/machine.h hv/nmi_core.h hv/nmi_platform.h Makefile
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c $< -o $@

$(B)/fuzz/%.o: fuzz/%.c fuzz/decode.h sim/sim.h hv/nmi_core.h Makefile
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c $< -o $@

$(B)/fuzz_nmi: $(B)/fuzz/fuzz_nmi.o $(FUZZ_OBJS) $(B)/nmi_core.o
	$(FUZZ_CC) -fsanitize=fuzzer -no-pie -pthread $^ -o $@
