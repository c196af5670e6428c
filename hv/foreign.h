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

/* guest_run.c: the guest ended through the debug-exit port with `code`. */
void guest_run_exit_code(uint32_t code);

#endif /* HV_FOREIGN_H */
