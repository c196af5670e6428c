/* SPDX-License-Identifier: MIT */
/*
 * io.c - the guest's port I/O.
 *
 * "Use I/O bitmaps" is on (SDM vol. 3C, 24.6.4 "I/O-Bitmap Addresses": bitmap A
 * for ports 0-0x7FFF, B for 0x8000-0xFFFF, one bit per port).  An IN/OUT/INS/OUTS
 * exits (reason 30) when the bit of any port it touches is 1 (25.1.3); every
 * other access goes to the real port, as before (COM1, QEMU's debug exit...).
 * Ports are intercepted with io_intercept(), and handled by the function that
 * io_register() put in the table for them.  The exit qualification (27.2.1,
 * table 27-5) gives the size, the direction, string/REP and the port; string
 * instructions (INS/OUTS) and ports intercepted without a handler are reported
 * and stop the guest: never a silently wrong answer.
 */
#include "foreign.h"
#include "hv.h"
#include "x86.h"

#define QUAL_SIZE(q) ((unsigned)((q)&7u) + 1u) /* 0: 1 byte, 1: 2, 3: 4 */
#define QUAL_IN      (1u << 3)
#define QUAL_STRING  (1u << 4)
#define QUAL_REP     (1u << 5)
#define QUAL_PORT(q) ((uint16_t)((q) >> 16))
#define MAX_HANDLERS 32

static uint8_t bitmap_a[4096] __attribute__((aligned(4096)));
static uint8_t bitmap_b[4096] __attribute__((aligned(4096)));

static struct io_range {
	uint16_t first;
	unsigned count;
	io_handler *fn;
} handlers[MAX_HANDLERS];
static unsigned nhandlers;

void io_intercept(uint16_t port, unsigned len)
{
	for (uint32_t p = port; p < (uint32_t)port + len && p <= 0xFFFF; p++) {
		uint8_t *map = p < 0x8000 ? bitmap_a : bitmap_b;
		map[(p & 0x7FFF) / 8] |= (uint8_t)(1u << (p % 8));
	}
}

void io_register(uint16_t port, unsigned count, io_handler *fn)
{
	if (nhandlers == MAX_HANDLERS) {
		panic_begin();
		panic_printf("vmx: more than %u I/O handlers\nRESULT: FAIL vmx setup\n",
			     MAX_HANDLERS);
		hv_exit(1);
	}
	handlers[nhandlers++] = (struct io_range){port, count, fn};
	io_intercept(port, count);
}

void io_setup_vmcs(void)
{
	debug_exit_setup(); /* the guest's isa-debug-exit, once (debug_exit.c) */
	vmx_write(VMCS_IO_BITMAP_A, (uint64_t)bitmap_a);
	vmx_write(VMCS_IO_BITMAP_B, (uint64_t)bitmap_b);
}

static io_handler *find(uint16_t port)
{
	for (unsigned i = 0; i < nhandlers; i++)
		if (port >= handlers[i].first &&
		    (unsigned)(port - handlers[i].first) < handlers[i].count)
			return handlers[i].fn;
	return 0;
}

/* I/O instruction (reason 30). */
void exit_io(struct vmexit *x)
{
	uint64_t q = vmx_read(VMCS_EXIT_QUAL);
	unsigned size = QUAL_SIZE(q);
	int in = (q & QUAL_IN) != 0;
	uint16_t port = QUAL_PORT(q);
	io_handler *fn = find(port);
	if ((q & (QUAL_STRING | QUAL_REP)) || !fn) {
		kprintf("vmx: %s%s port 0x%x, %u byte(s): %s\n", (q & QUAL_REP) ? "REP " : "",
			(q & QUAL_STRING) ? (in ? "INS" : "OUTS") : (in ? "IN" : "OUT"), port, size,
			fn ? "string I/O is not emulated" : "intercepted without a handler");
		guest_fail("unhandled I/O exit", x->r);
	}
	uint64_t mask = size == 4 ? 0xFFFFFFFFull : (1ull << (8 * size)) - 1;
	uint32_t val = in ? 0 : (uint32_t)(x->r->rax & mask);
	if (fn(port, size, in, &val) != 0) {
		kprintf("vmx: %s port 0x%x, %u byte(s): the handler refused it\n",
			in ? "IN" : "OUT", port, size);
		guest_fail("unhandled I/O exit", x->r);
	}
	if (in) {
		/* IN AL/AX merges into RAX; IN EAX zero-extends (vol. 1, 3.4.1.1). */
		if (size == 4)
			x->r->rax = val;
		else
			x->r->rax = (x->r->rax & ~mask) | (val & mask);
	}
	vmx_skip_instruction();
}
