# hv/hv.mk - the bare-metal hypervisor: kernel image, ISO, QEMU/Bochs runs, traces.
# Included by the top-level Makefile, which provides VARIANT, BUILD, B, HV_CC,
# HV_CFLAGS and the rule for $(B)/nmi_core.o (the core, .text renamed nmi_core_text).
# Recipes stay one-liners: the logic lives in qemu/, scripts/ and tests/system/.

HV_C_SRCS := main.c books.c nmi_books.c console.c cpu.c time.c lapic.c acpi.c smp.c cmdline.c \
	platform_hv.c workload.c vmx_root.c vmcs.c vmexit.c inject.c cpuid.c msr.c cr.c io.c \
	insn_exits.c guest_mem.c hypercall.c guest_stop.c \
	vmx_guest.c guest_run.c guest_jobs.c ept.c guest_load.c linux_boot.c lapic_guard.c \
	insn_decode.c guest_console.c testport.c watchdog.c vmx_exp.c vmx_exp_catalogue.c \
	debug_exit.c apic_base.c guest_init.c replay.c replay_sched.c replay_cpu.c replay_step.c replay_guest.c
HV_S_SRCS := boot.S trampoline.S entry.S vmx_entry.S vmx_exp_guest.S replay_vm.S guest_call.S
HV_OBJS := $(addprefix $(B)/hv/,$(HV_C_SRCS:.c=.o) $(HV_S_SRCS:.S=.o))
HV_LDFLAGS := -nostdlib -static -no-pie -z max-page-size=0x1000 \
	-Wl,--no-warn-rwx-segments -Wl,--build-id=none -T hv/linker.ld

# Boot command line for `make qemu` / `make bochs` / `make iso` (docs/booting.md).
CMDLINE ?= workload=selftest
# CPUs for `make qemu` / `make bochs`.
SMP ?= 2
# `make bochs CMDLINE=workload=guest GUEST=build/final/guest.elf [GUEST_ARGS=...]`:
# the guest kernel passed as the boot module and its command line (docs/vmx.md).
GUEST ?=
GUEST_ARGS ?=
# More boot modules after the guest (its environment: MODULES=tests/guest2/guest2.env).
MODULES ?=
# Region for `make trace`: nmi (one NMI's journey), mask-nmi-unmask, guest-nmi
# (one guest NMI under VMX: exit, core, window exit, injection, guest handler), or
# vmx-exp (experiment EXP of the VMX NMI catalogue, docs/emulator-deviations.md).
TRACE ?= nmi
EXP ?=

$(B)/hv/%.o: hv/%.c
	@mkdir -p $(@D)
	$(HV_CC) $(HV_CFLAGS) -Ihv -MMD -MP -c $< -o $@

$(B)/hv/%.o: hv/%.S
	@mkdir -p $(@D)
	$(HV_CC) $(HV_CFLAGS) -Ihv -MMD -MP -c $< -o $@

-include $(HV_OBJS:.o=.d)

$(B)/hv.elf: $(HV_OBJS) $(B)/nmi_core.o hv/linker.ld
	$(HV_CC) $(HV_LDFLAGS) -o $@ $(HV_OBJS) $(B)/nmi_core.o

# Symbols for the Bochs debugger: "address name" lines of code symbols (the
# runners write the same file next to their logs).
$(B)/hv.sym: $(B)/hv.elf
	python3 -m scripts.elfsym -o $@ $<

# The ISO bakes in CMDLINE: rebuild it when CMDLINE changes.
$(B)/cmdline.txt: FORCE
	@mkdir -p $(@D)
	@echo '$(CMDLINE)' | cmp -s - $@ || echo '$(CMDLINE)' > $@

$(B)/hv.iso: $(B)/hv.elf $(B)/cmdline.txt scripts/iso.py
	python3 -m scripts.iso --kernel $< --cmdline "$(CMDLINE)" -o $@

FORCE:

.PHONY: hv iso qemu test-qemu bochs test-bochs trace bench-hv FORCE
hv: $(B)/hv.elf
iso: $(B)/hv.iso

qemu: $(B)/hv.elf
	python3 -m qemu.run --kernel $< --cmdline "$(CMDLINE)" --smp $(SMP) --interactive \
		$(if $(GDB),--gdb)

test-qemu: $(B)/hv.elf $(B)/guest.elf $(B)/guest2.elf
	python3 -m tests.system.run --emulator qemu --kernel $< --guest $(B)/guest.elf --guest2 $(B)/guest2.elf --workdir $(B)/qemu-test

bochs: $(B)/hv.elf $(B)/guest.elf $(B)/guest2.elf
	python3 -m scripts.bochs --kernel $< --cmdline "$(CMDLINE)" --cpus $(SMP) \
		--workdir $(B)/bochs $(if $(GUEST),--module $(GUEST) --module-args "$(GUEST_ARGS)") \
		$(if $(MODULES),--more-modules $(MODULES))

test-bochs: $(B)/hv.elf $(B)/guest.elf $(B)/guest2.elf
	python3 -m tests.system.run --emulator bochs --kernel $< --guest $(B)/guest.elf --guest2 $(B)/guest2.elf --workdir $(B)/bochs-test

trace: $(B)/hv.elf $(B)/hv.sym $(B)/guest.elf
	python3 -m scripts.bochs_trace --kernel $< --symbols $(B)/hv.sym --region $(TRACE) \
		--guest $(B)/guest.elf --workdir $(B)/trace $(if $(EXP),--exp $(EXP))

# The seed's experiment: how long the racy-counter core survives an NMI flood
# (QEMU: QMP inject-nmi on 1 CPU; Bochs: an IPI storm on 2).
# Same OPT as this build, variant racy-counter.
HV_RACY := $(patsubst $(BUILD)/$(VARIANT)%,$(BUILD)/racy-counter%,$(B))/hv.elf
bench-hv:
	$(MAKE) -f $(firstword $(MAKEFILE_LIST)) VARIANT=racy-counter $(HV_RACY)
	python3 -m scripts.seed_experiment --kernel $(HV_RACY) --emulator qemu
	python3 -m scripts.seed_experiment --kernel $(HV_RACY) --emulator bochs --runs 5
include tests/guest/guest.mk
include tests/guest2/guest2.mk
