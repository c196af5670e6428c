/* SPDX-License-Identifier: MIT */
/*
 * foreign.h - what guests written for other hypervisors (QEMU test kernels) expect
 * of the machine, virtualized here (docs/vmx.md, "Guests from elsewhere").
 */
#ifndef HV_FOREIGN_H
#define HV_FOREIGN_H

#include <stdint.h>

/* debug_exit.c: QEMU's isa-debug-exit where the machine has none (debug_exit=).
 * Once, before the guest starts (io_setup_vmcs()). */
void debug_exit_setup(void);

/* apic_base.c: IA32_APIC_BASE (MSR 0x1B) as the guest sees it: a global disable
 * and re-enable of its xAPIC virtualized (msr.c registers these). */
int apic_base_read(uint32_t msr, uint64_t *val);
int apic_base_write(uint32_t msr, uint64_t val);
/* This CPU's guest has its APIC globally disabled (CPUID.1:EDX.APIC reads 0). */
int apic_base_guest_disabled(void);
/* One line for the run's report, when the guest disabled or re-enabled its APIC. */
void apic_base_report(void);

/* guest_init.c: the guest's INIT to guest CPUs that run, emulated (Bochs 2.7
 * never consumes a real one), or absorbed when every target waits for its SIPI.
 * guest_init_emulate(): from the exit that saw the guest's ICR write (`icr_lo`,
 * destination APIC ID); 1 when it took the INIT (the caller does not send it), 0
 * when the INIT is to be sent as written.
 * guest_init_take(): every exit, last, on the target. */
int guest_init_emulate(uint32_t icr_lo, uint32_t dest_apic_id);
void guest_init_take(void);
/* The sender, after its exit's nmi_unmask(): the rounds that make the targets exit. */
void guest_init_finish(void);
void guest_init_report(void);

/* guest_run.c: the guest ended through the debug-exit port with `code`. */
void guest_run_exit_code(uint32_t code);

#endif /* HV_FOREIGN_H */
