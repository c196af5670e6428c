/* SPDX-License-Identifier: MIT */
/*
 * vmx_exp.c - workload=vmx-exp: measure how the CPU (or emulator) under us treats
 * the VMX NMI corner cases the hypervisor's design depends on
 * (docs/nmi-semantics.md, "The VMX experiments"; the numbers below are that
 * catalogue's).  All with NMI exiting and
 * virtual NMIs on (E1V1), the configuration vmx_guest.c runs guests in.
 *
 * Each experiment sets up the guest state, enters a tiny guest (vmx_exp_guest.S) and
 * looks at the next VM exit: reason, guest RIP, virtual-NMI blocking, and whether
 * host NMIs sent meanwhile reached the host's vector-2 handler.  No NMI-core guest
 * is attached: host NMIs are counted by the core as host_consumed.  One line per
 * experiment, `EXP <n> ...: as expected` or `... DEVIATES`; the verdict only says
 * every experiment ran (docs/emulator-deviations.md records what they showed).
 */
#include "hv.h"
#include "nmi_platform.h"
#include "vmx.h"
#include "x86.h"

#define CODE_PA         0x7000u /* the guest code, copied out of the hypervisor's image */
#define IDT_PA          0x6000u /* the guest IDT: vector 2 -> g_handler */
#define GDT_PA          0x6800u /* the guest GDT: flat code 0x08, data 0x10 (IRET reloads CS) */
#define STACK_PA        0x7FF0u /* the guest stack, top */
#define ICR_NMI         0x00004400u
#define INSN_VMCALL_LEN 3u
#define DELIVERY_US     1000u /* ample for a self-NMI to arrive */

extern const char exp_guest_start[], exp_guest_end[], g_vmcall[], g_loop[], g_iret[],
    g_iret_after[], g_selfnmi[], g_handler[];
extern char exp_exit_entry[];
uint64_t exp_run(int resume, struct guest_regs *r);

struct obs {
	uint32_t reason; /* basic exit reason */
	uint32_t rip;
	int blocked; /* guest virtual-NMI blocking after the exit */
};

static struct guest_regs regs;
static int launched, ran, deviations;
static uint32_t proc_base;

static uint32_t gaddr(const char *sym)
{
	return CODE_PA + (uint32_t)(sym - exp_guest_start);
}

/* "g_loop+0x5": the snippet a guest RIP lies in. */
static void where(uint32_t rip, const char **name, uint32_t *off)
{
	static const struct {
		const char *name;
		const char *sym;
	} syms[] = {{"g_vmcall", g_vmcall},   {"g_loop", g_loop},
		    {"g_iret", g_iret},       {"g_iret_after", g_iret_after},
		    {"g_selfnmi", g_selfnmi}, {"g_handler", g_handler}};
	*name = "?";
	*off = rip;
	for (unsigned i = 0; i < sizeof syms / sizeof syms[0]; i++)
		if (rip >= gaddr(syms[i].sym) && rip - gaddr(syms[i].sym) <= *off) {
			*name = syms[i].name;
			*off = rip - gaddr(syms[i].sym);
		}
}

/* Guest at `entry` with virtual-NMI blocking `b`, NMI-window exiting `w`, and
 * `inject` in the VM-entry interruption-information field. */
static void prepare(const char *entry, int b, int w, uint32_t inject)
{
	vmx_write(VMCS_GUEST_RIP, gaddr(entry));
	vmx_write(VMCS_GUEST_RSP, STACK_PA);
	vmx_write(VMCS_GUEST_RFLAGS, 0x2);
	vmx_write(VMCS_GUEST_INTERRUPTIBILITY, b ? GUEST_INTR_BLOCK_NMI : 0);
	vmx_write(VMCS_GUEST_ACTIVITY, ACTIVITY_ACTIVE);
	vmx_write(VMCS_PROC_BASED_CTLS, proc_base | (w ? PROC_NMI_WINDOW_EXITING : 0));
	vmx_write(VMCS_ENTRY_INTR_INFO, inject);
}

static struct obs run(void)
{
	uint64_t rflags = exp_run(launched, &regs);
	if (rflags) {
		kprintf("vmx-exp: VM entry failed (rflags 0x%lx, VM-instruction error %lu)\n",
			rflags, (rflags & 0x40) ? vmx_read(VMCS_INSTR_ERROR) : 0);
		hv_fail("vmx-exp", "VM entry failed");
	}
	launched = 1;
	struct obs o = {
	    .reason = (uint32_t)vmx_read(VMCS_EXIT_REASON) & 0xFFFF,
	    .rip = (uint32_t)vmx_read(VMCS_GUEST_RIP),
	    .blocked = (vmx_read(VMCS_GUEST_INTERRUPTIBILITY) & GUEST_INTR_BLOCK_NMI) != 0,
	};
	return o;
}

/* Past the VMCALL the guest just exited on. */
static void skip_vmcall(void)
{
	vmx_write(VMCS_GUEST_RIP, vmx_read(VMCS_GUEST_RIP) + INSN_VMCALL_LEN);
}

static uint64_t host_nmis(void)
{
	return __atomic_load_n(&plat_this_cpu()->nmi_entries, __ATOMIC_ACQUIRE);
}

/* A self-NMI from the host; returns how many reached the vector-2 handler. */
static uint64_t host_self_nmi(unsigned n)
{
	uint64_t before = host_nmis();
	for (unsigned i = 0; i < n; i++)
		lapic_send_ipi(this_percpu()->apic_id, ICR_NMI);
	udelay(DELIVERY_US);
	return host_nmis() - before;
}

/* Leave any NMI blocking an exit left behind, and let a latched NMI land. */
static void unblock_host(void)
{
	plat_nmi_iret();
	udelay(DELIVERY_US);
}

static void verdict(const char *id, const char *what, const char *expected, int ok, struct obs o,
		    uint64_t nmis)
{
	const char *name;
	uint32_t off;
	where(o.rip, &name, &off);
	ran++;
	deviations += !ok;
	kprintf(
	    "EXP %s %s: exit %u at %s+0x%x, guest NMI-blocked %d, host NMIs %lu; expected %s: %s\n",
	    id, what, o.reason, name, off, o.blocked, nmis, expected,
	    ok ? "as expected" : "DEVIATES");
}

static void experiments(void)
{
	struct obs o;
	uint64_t n;

	/* 21: W=1, B=0: the window is open at once. */
	prepare(g_loop, 0, 1, 0);
	o = run();
	verdict("21", "W=1 B=0", "NMI-window exit (8) at the entry RIP",
		o.reason == EXIT_NMI_WINDOW && o.rip == gaddr(g_loop), o, 0);

	/* 22, 23 (and 12): W=1, B=1: no exit until the guest's IRET clears virtual-NMI
	 * blocking, then a window exit right after that IRET. */
	prepare(g_iret, 1, 1, 0);
	o = run();
	verdict("22+23", "W=1 B=1, guest IRET", "window exit (8) right after the IRET, B=0",
		o.reason == EXIT_NMI_WINDOW && o.rip == gaddr(g_iret_after) && !o.blocked, o, 0);

	/* 20: inject an NMI: its handler runs and the guest is virtual-NMI-blocked. */
	prepare(g_loop, 0, 0, INTR_INFO_NMI);
	o = run();
	verdict("20", "inject NMI", "first handler instruction (VMCALL, 18) with B=1",
		o.reason == EXIT_VMCALL && o.rip == gaddr(g_handler) && o.blocked, o, 0);

	/* 25: W=1 plus an injection: the injection first, the window only after the
	 * handler's IRET (at the interrupted instruction, the entry RIP). */
	prepare(g_loop, 0, 1, INTR_INFO_NMI);
	o = run();
	int first_ok = o.reason == EXIT_VMCALL && o.rip == gaddr(g_handler);
	verdict("25a", "W=1 + inject NMI",
		"handler's first instruction (18) before any window exit", first_ok, o, 0);
	if (first_ok) {
		skip_vmcall();
		o = run();
		verdict("25b", "... then the handler's IRET", "window exit (8) at the entry RIP",
			o.reason == EXIT_NMI_WINDOW && o.rip == gaddr(g_loop), o, 0);
	}

	/* 9: B=1 and an NMI arrives (the guest sends itself one): still an NMI exit. */
	prepare(g_selfnmi, 1, 0, 0);
	o = run();
	verdict("9", "B=1, NMI arrives", "NMI exit (0), B stays 1",
		o.reason == EXIT_EXCEPTION_NMI && o.blocked, o, 0);

	/* 2 (host side): after an NMI exit the host is NMI-blocked; 10: an NMI latched
	 * then makes the next VM entry exit at once, before any guest instruction. */
	if (o.reason == EXIT_EXCEPTION_NMI) {
		n = host_self_nmi(1);
		verdict("exit-blocks", "host after an NMI exit, self-NMI",
			"held (host NMI-blocked until IRET)", n == 0, o, n);
		prepare(g_loop, 0, 0, 0);
		o = run();
		verdict("10", "host blocked+pending, VM entry", "NMI exit (0) at the entry RIP",
			o.reason == EXIT_EXCEPTION_NMI && o.rip == gaddr(g_loop), o, n);
		n = host_nmis();
		unblock_host();
		kprintf("EXP 10 note: the host IRET after that exit delivered %lu NMI(s)\n",
			host_nmis() - n);
	}
	unblock_host();

	/* 13: after an NMI exit (host blocked), enter and exit again without IRET: with
	 * virtual NMIs the entry cleared the host's blocking. */
	prepare(g_selfnmi, 0, 0, 0);
	o = run();
	if (o.reason == EXIT_EXCEPTION_NMI) {
		prepare(g_vmcall, 0, 0, 0);
		o = run();
		n = host_self_nmi(1);
		verdict("13", "NMI exit, entry, exit (no IRET), self-NMI",
			"delivered at once (host no longer blocked)",
			o.reason == EXIT_VMCALL && n == 1, o, n);
		n = host_nmis();
		unblock_host();
		kprintf("EXP 13 note: the host IRET after that exit delivered %lu NMI(s)\n",
			host_nmis() - n);
	} else {
		verdict("13", "NMI exit (setup)", "NMI exit (0)", 0, o, 0);
	}
	unblock_host();

	/* 29 (host only): blocked, three NMIs, IRET: exactly one is delivered. */
	prepare(g_selfnmi, 0, 0, 0);
	o = run();
	if (o.reason == EXIT_EXCEPTION_NMI) {
		uint64_t held = host_self_nmi(3), before = host_nmis();
		unblock_host();
		n = host_nmis() - before;
		verdict("29", "host blocked, 3 NMIs, IRET", "1 delivered after the IRET, 0 before",
			held == 0 && n == 1, o, n);
	} else {
		verdict("29", "NMI exit (setup)", "NMI exit (0)", 0, o, 0);
	}
	unblock_host();
}

_Noreturn void vmx_experiments(void)
{
	const char *why = NULL;
	uint64_t eptp = vmx_build_ept(&why);
	if (!eptp)
		hv_fail("vmx-exp", why);
	/* The guest code, a GDT, and an IDT whose vector 2 is g_handler (32-bit gates). */
	uint8_t *code = phys_ptr(CODE_PA);
	for (const char *s = exp_guest_start; s < exp_guest_end; s++)
		*code++ = (uint8_t)*s;
	uint64_t *idt = phys_ptr(IDT_PA);
	uint32_t h = gaddr(g_handler);
	for (unsigned v = 0; v < 32; v++)
		idt[v] = (h & 0xFFFF) | (0x08ull << 16) | (0x8E00ull << 32) |
			 ((uint64_t)(h >> 16) << 48);

	uint64_t *gdt = phys_ptr(GDT_PA);
	gdt[0] = 0;
	gdt[1] = 0x00CF9A000000FFFFull;
	gdt[2] = 0x00CF92000000FFFFull;

	struct guest_image g = {.entry = gaddr(g_loop)};
	vmx_setup_vmcs(&g, eptp);
	vmx_write(VMCS_HOST_RIP, (uint64_t)exp_exit_entry);
	vmx_write(VMCS_GUEST_IDTR_BASE, IDT_PA);
	vmx_write(VMCS_GUEST_IDTR_LIMIT, 32 * 8 - 1);
	vmx_write(VMCS_GUEST_GDTR_BASE, GDT_PA);
	vmx_write(VMCS_GUEST_GDTR_LIMIT, 3 * 8 - 1);
	proc_base = (uint32_t)vmx_read(VMCS_PROC_BASED_CTLS) & ~PROC_NMI_WINDOW_EXITING;
	ept_flush();

	experiments();
	kprintf("RESULT: PASS vmx-exp %d experiments ran, %d as expected, %d deviate\n", ran,
		ran - deviations, deviations);
	hv_exit(0);
}
