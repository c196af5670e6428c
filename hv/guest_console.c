/* SPDX-License-Identifier: MIT */
/*
 * guest_console.c - the guest's serial console, told apart from the hypervisor's.
 *
 * Guest and hypervisor share COM1.  The guest drives the UART itself (divisor,
 * FIFO, interrupt enables, line status: all pass through) except its transmit
 * register: the I/O bitmap intercepts port 0x3F8, and each byte the guest sends
 * goes out through the hypervisor's console lock, with "guest: " at the start of
 * every line.  A guest line and a hypervisor line therefore never mix within a
 * line, and a reader (or a test) knows whose each line is.
 *
 * 0x3F8 is also the receive buffer (reads) and, with LCR.DLAB set, the divisor
 * latch's low byte: those pass through unchanged.  The byte goes to the UART
 * after the hypervisor waited for the transmit holding register to empty, so the
 * guest's own flow control (polling LSR.THRE, or its THRE interrupt) sees the
 * UART as it would without the hypervisor.
 */
#include "hv.h"
#include "vmx.h"
#include "x86.h"

#define COM1     0x3F8u
#define LCR      3u
#define LCR_DLAB 0x80u

static int com1_data(uint16_t port, unsigned size, int in, uint32_t *val)
{
	(void)size;
	if (in) {
		*val = inb(port);
		return 0;
	}
	if (inb(COM1 + LCR) & LCR_DLAB) {
		outb(port, (uint8_t)*val);
		return 0;
	}
	console_guest_putc((char)*val);
	return 0;
}

void guest_console_setup(void)
{
	io_register(COM1, 1, com1_data);
}
