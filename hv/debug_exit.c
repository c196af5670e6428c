/* SPDX-License-Identifier: MIT */
/*
 * debug_exit.c - QEMU's `isa-debug-exit` device for guests written for QEMU, where
 * the machine has none (Bochs).
 *
 * Test kernels written for QEMU end with a write of their exit code N to the
 * device's port (0xf4 by convention: `-device isa-debug-exit,iobase=0xf4,iosize=4`;
 * QEMU then exits with status (N << 1) | 1).  Bochs has no such device: the write
 * goes nowhere and the guest spins or halts.  Here the hypervisor intercepts the
 * port (io.c, I/O bitmap: SDM vol. 3C, 24.6.4 and 25.1.3) and a write of 1, 2 or 4
 * bytes to any of its 4 ports ends the guest: the run's RESULT line says `guest
 * exit code N` and guest_run.c judges it (exit code 0 passes unless
 * `guest_exit_code=` says another).  A read returns 0 (QEMU's device reads 0).
 *
 * Command line `debug_exit=`:
 *   auto (default)  emulate the device unless the machine is QEMU (found by its
 *                   fw_cfg signature), whose own device keeps working: the guest's
 *                   write then leaves QEMU with the guest's own status;
 *   PORT            emulate it at PORT (0x... or decimal) on any machine;
 *   off             never.
 */
#include "foreign.h"
#include "hv.h"
#include "x86.h"

#define DEFAULT_PORT    0xf4u
#define PORTS           4u
#define FW_CFG_SELECTOR 0x510u /* QEMU fw_cfg: 16-bit selector, 8-bit data */
#define FW_CFG_DATA     0x511u
#define FW_CFG_SIG      0x0000u /* the signature item: "QEMU" */

/* QEMU's fw_cfg answers "QEMU" to the signature item; elsewhere the ports float
 * (Bochs: 0xFF). */
static int machine_is_qemu(void)
{
	static const char sig[] = "QEMU";
	outw(FW_CFG_SELECTOR, FW_CFG_SIG);
	for (unsigned i = 0; i < 4; i++)
		if (inb(FW_CFG_DATA) != (uint8_t)sig[i])
			return 0;
	return 1;
}

static int debug_exit_io(uint16_t port, unsigned size, int in, uint32_t *val)
{
	(void)port;
	(void)size;
	if (in) {
		*val = 0;
		return 0;
	}
	guest_run_exit_code(*val);
	kprintf("vmx: guest wrote %u to the debug-exit port 0x%x (%u byte(s))\n", *val, port, size);
	guest_stop("guest exit code");
}

void debug_exit_setup(void)
{
	static int done;
	if (done)
		return;
	done = 1;
	const char *how = cmdline_str("debug_exit", "auto");
	uint64_t port = DEFAULT_PORT;
	if (how[0] == 'o' && how[1] == 'f' && how[2] == 'f')
		return;
	if (how[0] == 'a') { /* auto */
		if (machine_is_qemu()) {
			kprintf(
			    "vmx: QEMU's own isa-debug-exit serves the guest (debug_exit=auto)\n");
			return;
		}
	} else {
		port = cmdline_u64("debug_exit", DEFAULT_PORT);
	}
	if (port > 0xFFFF - PORTS + 1) {
		kprintf("vmx: debug_exit=0x%lx is no I/O port: not emulated\n", port);
		return;
	}
	io_register((uint16_t)port, PORTS, debug_exit_io);
	kprintf("vmx: isa-debug-exit emulated at ports 0x%lx-0x%lx: a write ends the guest with "
		"its exit code\n",
		port, port + PORTS - 1);
}
