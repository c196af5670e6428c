/* SPDX-License-Identifier: MIT */
/*
 * vmx_exp.c - workload=vmx-exp: the catalogue of VMX NMI experiments
 * (docs/nmi-semantics.md, "The VMX experiments"; the numbers below are that
 * catalogue's), each in the configuration it names, measured on the CPU (or
 * emulator) under us:
 *
 *   E0V0  neither NMI exiting nor virtual NMIs: NMIs go straight to the guest's IDT;
 *   E1V0  NMI exiting without virtual NMIs: interruptibility bit 3 is real NMI
 *         blocking, kept as long as the CPU stays in VMX non-root operation;
 *   E1V1  NMI exiting and virtual NMIs (the configuration vmx_guest.c runs guests
 *         in): bit 3 is virtual-NMI blocking, NMI-window exiting available.
 *
 * The rules, SDM vol. 3C (2016 numbering, as hv/vmx.h): 24.6.1 "Pin-Based
 * VM-Execution Controls" (table 24-5: NMI exiting, virtual NMIs), 24.4.2 "Guest
 * Non-Register State" (table 24-3: bit 3, "delivery of an NMI blocks subsequent
 * NMIs until the next execution of IRET"), 25.3 "Changes to Instruction Behavior
 * in VMX Non-Root Operation" (IRET: with NMI exiting it leaves NMI blocking alone;
 * with virtual NMIs it ends virtual-NMI blocking), 26.6.1 "Interruptibility State"
 * (after VM entry: V=0, NMIs are blocked as bit 3 says, until IRET when E=0 and
 * for the whole stay in non-root operation when E=1; V=1, NMIs are not blocked and
 * bit 3 is virtual-NMI blocking, set also by an injected NMI), 26.5.1.1 "Details of
 * Vectored-Event Injection", 26.6.2 "Activity State" (an NMI wakes HLT), 26.6.6
 * "NMI-Window Exiting" (after injection; before NMIs), 27.1 "Architectural State
 * Before a VM Exit" (an NMI that causes a VM exit blocks NMIs), and vol. 3A 6.7.1
 * "Handling Multiple NMIs" (blocked: one is latched, more are lost).
 *
 * Every experiment starts from the same state (reset_state(): a fresh VMCS, the
 * host not NMI-blocked, no NMI latched, the guest's IDT and counter reset), sets up
 * its guest (vmx_exp_guest.S), enters, and looks at the exits: reason, guest RIP,
 * bit 3 of the interruptibility state, the return address a handler was entered
 * with, the guest's NMI counter, and the host NMIs that reached the vector-2
 * handler (no NMI-core guest is attached: the core counts them as host_consumed).
 * "Host blocked+pend" is made by an NMI exit in E1V1 (the guest sends itself an
 * NMI) followed by self-NMIs from the host, which must be held.  An HLT that
 * nothing wakes is ended by the VMX-preemption timer where the CPU has one.
 *
 * One line per experiment:
 *   EXP <n> <config> <setup>: expected <SDM>; observed <...>: as expected | DEVIATES
 * (`not run (<why>)` where the CPU lacks what it needs).  `only=N` runs experiment N
 * alone; with `trace_exp=1` it is bracketed by magic breakpoints for `make trace
 * TRACE=vmx-exp EXP=N`; `exp_debug=1` prints every exit's fields.  The verdict line only says how
 * many ran; which may deviate is docs/emulator-deviations.md's table, which
 * tests/system/tests.cfg's [deviations] holds the test suite to.
 */
#include "hv.h"
#include "nmi_platform.h"
#include "vmx.h"
#include "vmx_insn.h"
#include "x86.h"

#define CODE_PA         0x7000u /* the guest code, copied out of the hypervisor's image */
#define IDT_PA          0x6000u /* the guest IDT: every vector -> g_handler, 0x21 -> g_h21 */
#define IDT_VECTORS     64u
#define GDT_PA          0x6800u /* the guest GDT: flat code 0x08, data 0x10 (IRET reloads CS) */
#define COUNT_PA        0x6F00u /* g_count's counter (vmx_exp_guest.S) */
#define STACK_PA        0x7FF0u /* the guest stack, top */
#define ICR_NMI         0x00004400u
#define INSN_VMCALL_LEN 3u
#define DELIVERY_US     1000u /* ample for a self-NMI to arrive */
#define INJECT_NMI      INTR_INFO_NMI /* 0x80000202 */
#define INJECT_EXT_21   0x80000021u /* valid, type 0 (external interrupt), vector 0x21 */
#define WATCHDOG_TICKS  0x2000000u /* VMX-preemption timer: ends an HLT nothing wakes */
#define EXIT_NONE       0xFFFFu /* run(): the VM entry itself failed */

extern const char exp_guest_start[], exp_guest_end[], g_vmcall[], g_loop[], g_iret[],
    g_iret_after[], g_selfnmi[], g_selfnmi2[], g_nmi_iret[], g_hlt[], g_after_hlt[], g_handler[],
    g_h21[], g_count[];
extern char exp_exit_entry[];
uint64_t exp_run(int resume, struct guest_regs *r);

enum cfg { E0V0, E1V0, E1V1 };
static const char *const cfg_name[] = {"E0V0", "E1V0", "E1V1"};

struct obs {
	uint32_t reason; /* basic exit reason; EXIT_NONE: the entry failed */
	uint32_t rip;
	int blocked; /* interruptibility bit 3 after the exit */
	unsigned frames; /* 32-bit interrupt frames on the guest stack (RSP below its top) */
	uint32_t ret; /* then the EIP the innermost one returns to */
	uint64_t error; /* EXIT_NONE: the VM-instruction error */
};

static struct guest_regs regs;
static int launched, ran, deviations, not_run;
static uint32_t pin_base, proc_base, pin_must;
static int have_watchdog, debug;
static struct guest_image image = GUEST_IMAGE_FLAT;
static uint64_t eptp;

/* ---- The observation, one line's worth --------------------------------------------- */
static char obuf[480];
static unsigned olen;

static void oput(const char *s)
{
	while (*s && olen < sizeof obuf - 1)
		obuf[olen++] = *s++;
	obuf[olen] = 0;
}

static void onum(uint64_t v, unsigned base)
{
	char b[24];
	unsigned n = 0;
	do {
		b[n++] = "0123456789abcdef"[v % base];
		v /= base;
	} while (v);
	char s[26];
	unsigned i = 0;
	if (base == 16) {
		s[i++] = '0';
		s[i++] = 'x';
	}
	while (n)
		s[i++] = b[--n];
	s[i] = 0;
	oput(s);
}

static uint32_t gaddr(const char *sym)
{
	return CODE_PA + (uint32_t)(sym - exp_guest_start);
}

/* "g_loop+0x5": the snippet a guest address lies in. */
static void owhere(uint32_t a)
{
	static const struct {
		const char *name;
		const char *sym;
	} syms[] = {
	    {"g_vmcall", g_vmcall},         {"g_loop", g_loop},       {"g_iret", g_iret},
	    {"g_iret_after", g_iret_after}, {"g_selfnmi", g_selfnmi}, {"g_selfnmi2", g_selfnmi2},
	    {"g_nmi_iret", g_nmi_iret},     {"g_hlt", g_hlt},         {"g_after_hlt", g_after_hlt},
	    {"g_handler", g_handler},       {"g_h21", g_h21},         {"g_count", g_count}};
	const char *name = 0;
	uint32_t off = 0;
	for (unsigned i = 0; i < sizeof syms / sizeof syms[0]; i++)
		if (a >= gaddr(syms[i].sym) && (!name || a - gaddr(syms[i].sym) <= off)) {
			name = syms[i].name;
			off = a - gaddr(syms[i].sym);
		}
	if (!name || a >= gaddr(exp_guest_end)) {
		onum(a, 16);
		return;
	}
	oput(name);
	oput("+");
	onum(off, 16);
}

/* "exit 18 at g_handler+0x0 B=1 ret g_loop+0x0" */
static void ostep(const char *label, struct obs o)
{
	if (olen)
		oput("; ");
	if (label) {
		oput(label);
		oput(": ");
	}
	if (o.reason == EXIT_NONE) {
		oput("VM entry failed, VM-instruction error ");
		onum(o.error, 10);
		return;
	}
	oput("exit ");
	onum(o.reason, 10);
	oput(" at ");
	owhere(o.rip);
	oput(" B=");
	onum((uint64_t)o.blocked, 10);
	if (o.frames) {
		oput(" (");
		onum(o.frames, 10);
		oput(o.frames == 1 ? " frame, ret " : " frames, ret ");
		owhere(o.ret);
		oput(")");
	}
}

static void onote(const char *label, uint64_t v)
{
	if (olen)
		oput(", ");
	oput(label);
	oput(" ");
	onum(v, 10);
}

/* ---- Host NMIs --------------------------------------------------------------------- */
static uint64_t host_nmis(void)
{
	return __atomic_load_n(&plat_this_cpu()->nmi_entries, __ATOMIC_ACQUIRE);
}

/* `n` self-NMIs from the host; returns how many reached the vector-2 handler. */
static uint64_t host_self_nmi(unsigned n)
{
	uint64_t before = host_nmis();
	for (unsigned i = 0; i < n; i++)
		lapic_send_ipi(this_percpu()->apic_id, ICR_NMI);
	udelay(DELIVERY_US);
	return host_nmis() - before;
}

/* An IRET ends any NMI blocking an exit left behind; returns the NMIs that then
 * reached the host's handler (a latched one lands at once). */
static uint64_t host_iret(void)
{
	uint64_t before = host_nmis();
	plat_nmi_iret();
	udelay(DELIVERY_US);
	return host_nmis() - before;
}

/* ---- The guest ------------------------------------------------------------------- */
static void set_gate(unsigned vector, const char *sym)
{
	uint64_t *idt = phys_ptr(IDT_PA);
	uint32_t h = gaddr(sym);
	idt[vector] =
	    (h & 0xFFFF) | (0x08ull << 16) | (0x8E00ull << 32) | ((uint64_t)(h >> 16) << 48);
}

static volatile uint32_t *guest_count(void)
{
	return phys_ptr(COUNT_PA);
}

/* The guest's memory as every experiment starts: code, GDT, IDT, counter 0. */
static void reset_guest_memory(void)
{
	uint8_t *code = phys_ptr(CODE_PA);
	for (const char *s = exp_guest_start; s < exp_guest_end; s++)
		*code++ = (uint8_t)*s;
	for (unsigned v = 0; v < IDT_VECTORS; v++)
		set_gate(v, g_handler);
	set_gate(0x21, g_h21);
	uint64_t *gdt = phys_ptr(GDT_PA);
	gdt[0] = 0;
	gdt[1] = 0x00CF9A000000FFFFull;
	gdt[2] = 0x00CF92000000FFFFull;
	*guest_count() = 0;
}

/* A fresh VMCS (VMCLEAR, VMPTRLD, every field written): whatever the experiment
 * before left, launched or not, goes. */
static void reset_vmcs(void)
{
	uint64_t pa = this_percpu()->vmx.vmcs_pa;
	if (vmclear(pa) || vmptrld(pa))
		hv_fail("vmx-exp", "VMCLEAR/VMPTRLD failed");
	launched = 0;
	vmx_setup_vmcs(&image, eptp);
	vmx_write(VMCS_HOST_RIP, (uint64_t)exp_exit_entry);
	vmx_write(VMCS_GUEST_IDTR_BASE, IDT_PA);
	vmx_write(VMCS_GUEST_IDTR_LIMIT, IDT_VECTORS * 8 - 1);
	vmx_write(VMCS_GUEST_GDTR_BASE, GDT_PA);
	vmx_write(VMCS_GUEST_GDTR_LIMIT, 3 * 8 - 1);
	ept_flush();
}

static int cfg_available(enum cfg c, const char **why)
{
	if (c != E1V1 && (pin_must & PIN_VIRTUAL_NMIS)) {
		*why = "virtual NMIs are must-be-1 here";
		return 0;
	}
	if (c == E0V0 && (pin_must & PIN_NMI_EXITING)) {
		*why = "NMI exiting is must-be-1 here";
		return 0;
	}
	return 1;
}

/* Guest at `entry` in configuration `c` with bit 3 of its interruptibility state
 * `b`, NMI-window exiting `w` (E1V1 only: it needs virtual NMIs, 24.6.2) and
 * `inject` in the VM-entry interruption-information field. */
static void prepare(enum cfg c, const char *entry, int b, int w, uint32_t inject)
{
	uint32_t pin = pin_base | (c != E0V0 ? PIN_NMI_EXITING : 0) |
		       (c == E1V1 ? PIN_VIRTUAL_NMIS : 0) | (have_watchdog ? PIN_PREEMPT_TIMER : 0);
	vmx_write(VMCS_PIN_BASED_CTLS, pin);
	vmx_write(VMCS_PROC_BASED_CTLS, proc_base | (w && c == E1V1 ? PROC_NMI_WINDOW_EXITING : 0));
	if (have_watchdog)
		vmx_write(VMCS_PREEMPT_TIMER, WATCHDOG_TICKS);
	vmx_write(VMCS_GUEST_RIP, gaddr(entry));
	vmx_write(VMCS_GUEST_RSP, STACK_PA);
	/* An external interrupt is injected only with RFLAGS.IF = 1 (26.3.1.4); its
	 * interrupt gate clears IF before the guest's first instruction. */
	vmx_write(VMCS_GUEST_RFLAGS,
		  INTR_INFO_TYPE(inject) == INTR_TYPE_EXT_INT && (inject & INTR_INFO_VALID) ? 0x202
											    : 0x2);
	vmx_write(VMCS_GUEST_INTERRUPTIBILITY, b ? GUEST_INTR_BLOCK_NMI : 0);
	vmx_write(VMCS_GUEST_ACTIVITY, ACTIVITY_ACTIVE);
	vmx_write(VMCS_ENTRY_INTR_INFO, inject);
}

/* Enter the guest until its next VM exit. */
static struct obs run(void)
{
	struct obs o = {0};
	uint64_t rflags = exp_run(launched, &regs);
	if (rflags) {
		o.reason = EXIT_NONE;
		o.error = (rflags & 0x40) ? vmx_read(VMCS_INSTR_ERROR) : 0;
		return o;
	}
	launched = 1;
	o.reason = (uint32_t)vmx_read(VMCS_EXIT_REASON) & 0xFFFF;
	o.rip = (uint32_t)vmx_read(VMCS_GUEST_RIP);
	o.blocked = (vmx_read(VMCS_GUEST_INTERRUPTIBILITY) & GUEST_INTR_BLOCK_NMI) != 0;
	if (debug)
		kprintf("  debug: reason 0x%lx rip 0x%x rsp 0x%lx intr 0x%lx act %lu idtv 0x%lx "
			"exit-intr 0x%lx len %lu\n",
			vmx_read(VMCS_EXIT_REASON), o.rip, vmx_read(VMCS_GUEST_RSP),
			vmx_read(VMCS_GUEST_INTERRUPTIBILITY), vmx_read(VMCS_GUEST_ACTIVITY),
			vmx_read(VMCS_IDT_VECTORING_INFO), vmx_read(VMCS_EXIT_INTR_INFO),
			vmx_read(VMCS_EXIT_INSTR_LEN));
	uint32_t rsp = (uint32_t)vmx_read(VMCS_GUEST_RSP);
	if (rsp < STACK_PA && (STACK_PA - rsp) % 12 == 0 && STACK_PA - rsp <= 48) {
		o.frames = (STACK_PA - rsp) / 12;
		o.ret = *(const uint32_t *)phys_ptr(rsp);
	}
	/* Exits that end the guest's spin early leave the VM-entry field as the CPU
	 * left it (cleared: 24.8.3); an exit that interrupted an injection would say
	 * so in IDT-vectoring (not expected here). */
	return o;
}

/* Past the VMCALL the guest just exited on. */
static void skip_vmcall(void)
{
	vmx_write(VMCS_GUEST_RIP, vmx_read(VMCS_GUEST_RIP) + INSN_VMCALL_LEN);
}

/* Experiments after which the reset found virtual-NMI blocking left over. */
static unsigned stale[32], nstale;

/*
 * Between experiments: the host not NMI-blocked with nothing latched (two IRETs:
 * the first may let a latched NMI in, whose handler's IRET unblocks again), no
 * virtual-NMI blocking left in the CPU, the guest's memory and VMCS as new.
 *
 * Workaround `end_stale_virtual_nmi_blocking` (docs/emulator-deviations.md):
 * Bochs 2.7 keeps virtual-NMI blocking from one VM entry to the next even when
 * the entry writes bit 3 = 0 (26.6.1: blocking after the entry is what the field
 * says); only a guest IRET ends it.  A probe entry with NMI-window exiting and B=0
 * must exit at once (26.6.6); where it does not, a guest IRET with B=1 ends the
 * left-over blocking, so every experiment starts alike (and `only=N` sees what
 * the whole run sees).
 */
static void reset_state(unsigned after)
{
	host_iret();
	host_iret();
	reset_guest_memory();
	reset_vmcs();
	prepare(E1V1, g_loop, 0, 1, 0);
	struct obs o = run();
	if (o.reason != EXIT_NMI_WINDOW) {
		prepare(E1V1, g_iret, 1, 0, 0);
		run();
		if (nstale < sizeof stale / sizeof stale[0])
			stale[nstale++] = after;
		host_iret();
	}
	reset_vmcs();
	olen = 0;
	obuf[0] = 0;
}

static int in(uint32_t rip, const char *from, const char *to)
{
	return rip >= gaddr(from) && rip < gaddr(to);
}

/* The catalogue's "host blocked" (+ `pend` NMIs sent while blocked): an NMI exit in
 * E1V1 (27.1: the exit's NMI leaves the host NMI-blocked), then `pend` self-NMIs,
 * which must all be held.  0, or -1 with what went wrong in the observation. */
static int host_blocked(unsigned pend)
{
	prepare(E1V1, g_selfnmi, 0, 0, 0);
	struct obs o = run();
	if (o.reason != EXIT_EXCEPTION_NMI) {
		ostep("setup, no NMI exit", o);
		return -1;
	}
	uint64_t n = host_self_nmi(pend);
	if (n) {
		onote("setup: the host took NMIs after its NMI exit:", n);
		return -1;
	}
	return 0;
}

/* ---- The catalogue ----------------------------------------------------------------- */

/* 1: an NMI wakes the guest from HLT (26.6.2) and, without NMI exiting, goes
 * through its IDT vector 2 (24.6.1); entered with B=0, V=0: nothing blocks it
 * (26.6.1).  The NMI is the one latched while the host was blocked. */
static int exp1(void)
{
	if (host_blocked(1))
		return 0;
	prepare(E0V0, g_after_hlt, 0, 0, 0);
	vmx_write(VMCS_GUEST_ACTIVITY, ACTIVITY_HLT);
	struct obs o = run();
	ostep(0, o);
	return o.reason == EXIT_VMCALL && o.rip == gaddr(g_handler) && o.ret == gaddr(g_after_hlt);
}

/* 2: E0V0 entered with B=1: NMIs are blocked until the guest's IRET (26.6.1), two
 * sent leave one latched (vol. 3A 6.7.1); a VM exit does not end the blocking (the
 * host is blocked: the latched NMI stays latched); the guest's IRET takes it. */
static int exp2(void)
{
	prepare(E0V0, g_selfnmi2, 1, 0, 0);
	uint64_t before = host_nmis();
	struct obs a = run();
	udelay(DELIVERY_US);
	uint64_t host = host_nmis() - before;
	ostep("2 self-NMIs", a);
	onote("host NMIs after the exit", host);
	prepare(E0V0, g_iret, 1, 0, 0);
	struct obs b = run();
	ostep("guest IRET", b);
	int ok = a.reason == EXIT_VMCALL && in(a.rip, g_selfnmi2, g_nmi_iret) && a.blocked &&
		 host == 0 && b.reason == EXIT_VMCALL && b.rip == gaddr(g_handler) &&
		 b.ret == gaddr(g_iret_after);
	if (b.reason == EXIT_VMCALL && b.rip == gaddr(g_handler)) {
		skip_vmcall();
		struct obs c = run();
		ostep("handler's IRET", c);
		ok = ok && c.reason == EXIT_VMCALL && in(c.rip, g_iret_after, g_selfnmi);
	}
	return ok;
}

/* 3: host blocked+pend, E0V0 entry with B=0: nothing blocks NMIs after the entry
 * (26.6.1), the latched NMI goes through the guest's IDT before its first
 * instruction. */
static int exp3(void)
{
	if (host_blocked(1))
		return 0;
	prepare(E0V0, g_loop, 0, 0, 0);
	struct obs o = run();
	ostep(0, o);
	return o.reason == EXIT_VMCALL && o.rip == gaddr(g_handler) && o.ret == gaddr(g_loop);
}

/* 4: E0V0 entered with B=1, a VMCALL exit: the NMI blocking the guest had is the
 * host's now; an NMI is held until the host's IRET. */
static int exp4(void)
{
	prepare(E0V0, g_vmcall, 1, 0, 0);
	struct obs o = run();
	uint64_t held = host_self_nmi(1), after = host_iret();
	ostep(0, o);
	onote("host NMIs before its IRET", held);
	onote("at its IRET", after);
	return o.reason == EXIT_VMCALL && held == 0 && after == 1;
}

/* 5: E1V0: an NMI in the guest causes a VM exit (24.6.1). */
static int exp5(void)
{
	prepare(E1V0, g_selfnmi, 0, 0, 0);
	struct obs o = run();
	ostep(0, o);
	return o.reason == EXIT_EXCEPTION_NMI && in(o.rip, g_selfnmi, g_selfnmi2);
}

/* 6: E1V0 with B=1: NMIs stay blocked for the whole stay in non-root operation
 * (26.6.1) and the guest's IRET does not end that (25.3): no exit; the blocking is
 * the host's after the VMCALL exit, its IRET takes the NMI. */
static int exp6(void)
{
	prepare(E1V0, g_nmi_iret, 1, 0, 0);
	struct obs o = run();
	uint64_t held = host_self_nmi(0), after = host_iret();
	ostep(0, o);
	onote("host NMIs before its IRET", held);
	onote("at its IRET", after);
	return o.reason == EXIT_VMCALL && in(o.rip, g_iret_after, g_selfnmi) && o.blocked &&
	       held == 0 && after == 1;
}

/* 7: host blocked+pend, E1V0 entry with B=0: the latched NMI exits at once. */
static int exp7(void)
{
	if (host_blocked(1))
		return 0;
	prepare(E1V0, g_loop, 0, 0, 0);
	struct obs o = run();
	ostep(0, o);
	return o.reason == EXIT_EXCEPTION_NMI && o.rip == gaddr(g_loop);
}

/* 8: E1V1: an NMI in the guest causes a VM exit (24.6.1). */
static int exp8(void)
{
	prepare(E1V1, g_selfnmi, 0, 0, 0);
	struct obs o = run();
	ostep(0, o);
	return o.reason == EXIT_EXCEPTION_NMI && in(o.rip, g_selfnmi, g_selfnmi2);
}

/* 9: E1V1 with B=1: virtual-NMI blocking does not block NMIs (26.6.1): an exit,
 * B still 1. */
static int exp9(void)
{
	prepare(E1V1, g_selfnmi, 1, 0, 0);
	struct obs o = run();
	ostep(0, o);
	return o.reason == EXIT_EXCEPTION_NMI && in(o.rip, g_selfnmi, g_selfnmi2) && o.blocked;
}

/* 10, 11: host blocked+pend, E1V1 entry: NMIs are not blocked after the entry
 * (26.6.1), the latched one exits before the first instruction, B as entered. */
static int exp10_11(int b)
{
	if (host_blocked(1))
		return 0;
	prepare(E1V1, g_loop, b, 0, 0);
	struct obs o = run();
	uint64_t after = host_iret();
	ostep(0, o);
	onote("host NMIs at its IRET after", after);
	return o.reason == EXIT_EXCEPTION_NMI && o.rip == gaddr(g_loop) && o.blocked == b;
}
static int exp10(void)
{
	return exp10_11(0);
}
static int exp11(void)
{
	return exp10_11(1);
}

/* 12: E1V1, B=1: the guest's IRET ends virtual-NMI blocking (25.3). */
static int exp12(void)
{
	prepare(E1V1, g_iret, 1, 0, 0);
	struct obs o = run();
	ostep(0, o);
	return o.reason == EXIT_VMCALL && in(o.rip, g_iret_after, g_selfnmi) && !o.blocked;
}

/* 13, 14: host blocked, E1V1 entry and a VMCALL exit, no IRET: the entry ended the
 * host's NMI blocking (26.6.1: with virtual NMIs, NMIs are not blocked after VM
 * entry), so a self-NMI then is taken at once. */
static int exp13_14(int b)
{
	if (host_blocked(0))
		return 0;
	prepare(E1V1, g_vmcall, b, 0, 0);
	struct obs o = run();
	uint64_t n = host_self_nmi(1), after = host_iret();
	ostep(0, o);
	onote("host NMIs at once", n);
	onote("at its IRET", after);
	return o.reason == EXIT_VMCALL && n == 1;
}
static int exp13(void)
{
	return exp13_14(0);
}
static int exp14(void)
{
	return exp13_14(1);
}

/* 15: host blocked+pend, E0V0, vector 0x21 injected: the injection is delivered
 * first (26.5.1.1), its handler's first instruction runs, then the NMI goes through
 * the guest's vector 2, returning into the 0x21 handler. */
static int exp15(void)
{
	if (host_blocked(1))
		return 0;
	prepare(E0V0, g_loop, 0, 0, INJECT_EXT_21);
	struct obs a = run();
	ostep(0, a);
	int ok = a.reason == EXIT_VMCALL && a.rip == gaddr(g_h21);
	if (a.reason == EXIT_VMCALL) {
		skip_vmcall();
		struct obs b = run();
		ostep("then", b);
		ok = ok && b.reason == EXIT_VMCALL && b.rip == gaddr(g_handler) &&
		     b.ret == gaddr(g_h21) + INSN_VMCALL_LEN;
	}
	return ok;
}

/* 16, 17: host blocked+pend, vector 0x21 injected with NMI exiting: the injection
 * first (26.5.1.1), then the NMI exit at the 0x21 handler's entry (17: B=1 stays). */
static int exp16_17(enum cfg c, int b)
{
	if (host_blocked(1))
		return 0;
	prepare(c, g_loop, b, 0, INJECT_EXT_21);
	struct obs o = run();
	ostep(0, o);
	return o.reason == EXIT_EXCEPTION_NMI && o.rip == gaddr(g_h21) && o.blocked == b;
}
static int exp16(void)
{
	return exp16_17(E1V0, 0);
}
static int exp17(void)
{
	return exp16_17(E1V1, 1);
}

/* 18: E0V0, an NMI injected: delivered through the guest's vector 2 like any NMI,
 * and, as any NMI's delivery, it blocks NMIs until the IRET (table 24-3, bit 3). */
static int exp18(void)
{
	prepare(E0V0, g_loop, 0, 0, INJECT_NMI);
	struct obs o = run();
	ostep(0, o);
	return o.reason == EXIT_VMCALL && o.rip == gaddr(g_handler) && o.ret == gaddr(g_loop) &&
	       o.blocked;
}

/* 19: E1V0, an NMI injected: its handler runs; with NMI exiting the guest's NMI
 * blocking is not the host's (B stays 0, the host takes a self-NMI at once). */
static int exp19(void)
{
	prepare(E1V0, g_loop, 0, 0, INJECT_NMI);
	struct obs o = run();
	uint64_t n = host_self_nmi(1);
	ostep(0, o);
	onote("host NMIs at once", n);
	return o.reason == EXIT_VMCALL && o.rip == gaddr(g_handler) && !o.blocked && n == 1;
}

/* 20: E1V1, an NMI injected: virtual-NMI blocking after the entry (26.6.1). */
static int exp20(void)
{
	prepare(E1V1, g_loop, 0, 0, INJECT_NMI);
	struct obs o = run();
	ostep(0, o);
	return o.reason == EXIT_VMCALL && o.rip == gaddr(g_handler) && o.blocked;
}

/* 21: W=1, B=0: the NMI window is open at once (26.6.6). */
static int exp21(void)
{
	prepare(E1V1, g_loop, 0, 1, 0);
	struct obs o = run();
	ostep(0, o);
	return o.reason == EXIT_NMI_WINDOW && o.rip == gaddr(g_loop);
}

/* 22: W=1, B=1: no window exit while virtual-NMI blocking lasts. */
static int exp22(void)
{
	prepare(E1V1, g_loop, 1, 1, 0);
	struct obs o = run();
	ostep(0, o);
	return o.reason == EXIT_VMCALL && in(o.rip, g_loop, g_iret) && o.blocked;
}

/* 23: W=1, B=1, the guest IRETs: the window exit right after that IRET, B=0. */
static int exp23(void)
{
	prepare(E1V1, g_iret, 1, 1, 0);
	struct obs o = run();
	ostep(0, o);
	return o.reason == EXIT_NMI_WINDOW && o.rip == gaddr(g_iret_after) && !o.blocked;
}

/* 24: W=1, host blocked+pend: the window exit comes first (26.6.6: it takes
 * priority over NMIs), and the NMI, no longer blocked after the entry (26.6.1),
 * reaches the host right after that exit. */
static int exp24(void)
{
	if (host_blocked(1))
		return 0;
	uint64_t before = host_nmis();
	prepare(E1V1, g_loop, 0, 1, 0);
	struct obs o = run();
	udelay(DELIVERY_US);
	uint64_t n = host_nmis() - before, after = host_iret();
	ostep(0, o);
	onote("host NMIs right after the exit", n);
	onote("at its IRET", after);
	return o.reason == EXIT_NMI_WINDOW && o.rip == gaddr(g_loop) && n == 1;
}

/* 25: W=1 plus an injected NMI: the injection first (26.6.6), the window only
 * after the handler's IRET, at the interrupted instruction. */
static int exp25(void)
{
	prepare(E1V1, g_loop, 0, 1, INJECT_NMI);
	struct obs a = run();
	ostep(0, a);
	int ok = a.reason == EXIT_VMCALL && a.rip == gaddr(g_handler);
	if (ok) {
		skip_vmcall();
		struct obs b = run();
		ostep("after the handler's IRET", b);
		ok = b.reason == EXIT_NMI_WINDOW && b.rip == gaddr(g_loop);
	}
	return ok;
}

/* 26: host blocked+pend, E1V1, an NMI injected: the injection first, then the NMI
 * exit at the guest handler's entry, B=1 (the injection's). */
static int exp26(void)
{
	if (host_blocked(1))
		return 0;
	prepare(E1V1, g_loop, 0, 0, INJECT_NMI);
	struct obs o = run();
	ostep(0, o);
	return o.reason == EXIT_EXCEPTION_NMI && o.rip == gaddr(g_handler) && o.blocked;
}

/* 27: host blocked, 2 NMIs sent, E0V0 entry: one was latched, one lost (vol. 3A
 * 6.7.1); the guest's counting handler runs once. */
static int exp27(void)
{
	if (host_blocked(2))
		return 0;
	set_gate(2, g_count);
	prepare(E0V0, g_loop, 0, 0, 0);
	struct obs o = run();
	uint32_t count = *guest_count();
	uint64_t after = host_iret();
	ostep(0, o);
	onote("guest NMIs", count);
	onote("host NMIs at its IRET", after);
	return o.reason == EXIT_VMCALL && in(o.rip, g_loop, g_iret) && count == 1 && after == 0;
}

/* 28, 30: host blocked, 2 NMIs sent, entry with NMI exiting: one NMI exit; the
 * host's IRET after it finds nothing latched; the next entry runs to its VMCALL. */
static int exp28_30(enum cfg c)
{
	if (host_blocked(2))
		return 0;
	prepare(c, g_loop, 0, 0, 0);
	struct obs a = run();
	uint64_t after = host_iret();
	ostep(0, a);
	onote("host NMIs at its IRET", after);
	prepare(c, g_loop, 0, 0, 0);
	struct obs b = run();
	ostep("entered again", b);
	return a.reason == EXIT_EXCEPTION_NMI && a.rip == gaddr(g_loop) && after == 0 &&
	       b.reason == EXIT_VMCALL;
}
static int exp28(void)
{
	return exp28_30(E1V0);
}
static int exp30(void)
{
	return exp28_30(E1V1);
}

/* 29 (the host alone): NMI-blocked after an NMI exit, three NMIs sent: none
 * before the IRET, exactly one at it (vol. 3A 6.7.1). */
static int exp29(void)
{
	if (host_blocked(3))
		return 0;
	uint64_t n = host_iret();
	onote("host NMIs before its IRET 0, at its IRET", n);
	return n == 1;
}

static const struct experiment {
	unsigned n;
	enum cfg cfg;
	int (*fn)(void);
	int needs_watchdog;
	const char *setup;
	const char *expected;
} catalogue[] = {
    {1, E0V0, exp1, 1, "host blocked+pend, enter in HLT",
     "the NMI wakes HLT: vector 2 handler (18 at g_handler) returning to g_after_hlt"},
    {2, E0V0, exp2, 0, "B=1, guest sends 2 self-NMIs, exit, then guest IRET",
     "no NMI before the IRET (18 in g_selfnmi2, B=1), host NMIs 0 after the exit, one NMI at "
     "the IRET (18 at g_handler ret g_iret_after), none after the handler's IRET"},
    {3, E0V0, exp3, 0, "host blocked+pend, enter B=0",
     "the guest takes the NMI at the entry RIP (18 at g_handler ret g_loop)"},
    {4, E0V0, exp4, 0, "enter B=1, VMCALL exit, host self-NMI",
     "host NMI-blocked: 0 before its IRET, 1 at it"},
    {5, E1V0, exp5, 0, "guest self-NMI", "NMI exit (0)"},
    {6, E1V0, exp6, 0, "B=1, guest self-NMI, guest IRET",
     "no exit, the IRET does not unblock (18 in g_iret_after, B=1); host takes the NMI at its "
     "IRET (0 before, 1 at it)"},
    {7, E1V0, exp7, 0, "host blocked+pend, enter B=0", "NMI exit (0) at the entry RIP"},
    {8, E1V1, exp8, 0, "guest self-NMI", "NMI exit (0)"},
    {9, E1V1, exp9, 0, "B=1, guest self-NMI", "NMI exit (0), B stays 1"},
    {10, E1V1, exp10, 0, "host blocked+pend, enter B=0", "NMI exit (0) at the entry RIP, B=0"},
    {11, E1V1, exp11, 0, "host blocked+pend, enter B=1", "NMI exit (0) at the entry RIP, B=1"},
    {12, E1V1, exp12, 0, "B=1, guest IRET", "the IRET clears virtual-NMI blocking (18, B=0)"},
    {13, E1V1, exp13, 0, "host blocked, enter B=0, VMCALL exit, host self-NMI",
     "host no longer blocked: 1 NMI at once"},
    {14, E1V1, exp14, 0, "host blocked, enter B=1, VMCALL exit, host self-NMI",
     "host no longer blocked: 1 NMI at once"},
    {15, E0V0, exp15, 0, "host blocked+pend, inject vector 0x21",
     "0x21 handler's first instruction (18 at g_h21), then the guest NMI (18 at g_handler ret "
     "g_h21+0x3)"},
    {16, E1V0, exp16, 0, "host blocked+pend, inject vector 0x21",
     "NMI exit (0) at the 0x21 handler entry"},
    {17, E1V1, exp17, 0, "host blocked+pend, B=1, inject vector 0x21",
     "NMI exit (0) at the 0x21 handler entry, B=1"},
    {18, E0V0, exp18, 0, "inject NMI",
     "guest handler runs (18 at g_handler ret g_loop), NMI-blocked (B=1) until its IRET"},
    {19, E1V0, exp19, 0, "inject NMI",
     "guest handler runs (18 at g_handler), B stays 0, host not blocked (1 NMI at once)"},
    {20, E1V1, exp20, 0, "inject NMI",
     "handler's first instruction (18 at g_handler), virtual-NMI-blocked (B=1)"},
    {21, E1V1, exp21, 0, "W=1 B=0", "NMI-window exit (8) at the entry RIP"},
    {22, E1V1, exp22, 0, "W=1 B=1, guest spins", "no exit before the VMCALL (18 in g_loop), B=1"},
    {23, E1V1, exp23, 0, "W=1 B=1, guest IRET", "window exit (8) right after the IRET, B=0"},
    {24, E1V1, exp24, 0, "W=1, host blocked+pend",
     "window exit (8) at the entry RIP first, then the host NMI right after the exit (1)"},
    {25, E1V1, exp25, 0, "W=1 + inject NMI",
     "handler's first instruction (18 at g_handler), window exit (8) at the entry RIP only "
     "after the handler's IRET"},
    {26, E1V1, exp26, 0, "host blocked+pend, inject NMI",
     "NMI exit (0) at the guest handler's entry, B=1"},
    {27, E0V0, exp27, 0, "host blocked, 2 NMIs, enter B=0",
     "the guest gets one NMI, one is lost (guest NMIs 1, host 0)"},
    {28, E1V0, exp28, 0, "host blocked, 2 NMIs, enter B=0",
     "one NMI exit (0) at the entry RIP, nothing left at the host's IRET, then the VMCALL (18)"},
    {29, E1V1, exp29, 0, "host only: NMI exit, 3 host self-NMIs, host IRET",
     "none before the IRET, exactly 1 at it"},
    {30, E1V1, exp30, 0, "host blocked, 2 NMIs, enter B=0",
     "one NMI exit (0) at the entry RIP, nothing left at the host's IRET, then the VMCALL (18)"},
};

static void run_one(const struct experiment *e, int trace)
{
	const char *why = 0;
	if (!cfg_available(e->cfg, &why) ||
	    (e->needs_watchdog && !have_watchdog &&
	     (why = "no VMX-preemption timer to end an HLT nothing wakes"))) {
		not_run++;
		kprintf("EXP %u %s %s: expected %s: not run (%s)\n", e->n, cfg_name[e->cfg],
			e->setup, e->expected, why);
		return;
	}
	if (trace)
		magic_break(); /* `make trace TRACE=vmx-exp`: trace on */
	int ok = e->fn();
	if (trace)
		magic_break(); /* trace off */
	ran++;
	deviations += !ok;
	kprintf("EXP %u %s %s: expected %s; observed %s: %s\n", e->n, cfg_name[e->cfg], e->setup,
		e->expected, obuf, ok ? "as expected" : "DEVIATES");
}

_Noreturn void vmx_experiments(void)
{
	const char *why = NULL;
	eptp = vmx_build_ept(&why);
	if (!eptp)
		hv_fail("vmx-exp", why);
	uint64_t basic = rdmsr(MSR_VMX_BASIC);
	uint64_t pincap =
	    rdmsr((basic & VMX_BASIC_TRUE_CTLS) ? MSR_VMX_TRUE_PINBASED : MSR_VMX_PINBASED);
	pin_must = (uint32_t)pincap;
	have_watchdog = ((pincap >> 32) & PIN_PREEMPT_TIMER) != 0;
	pin_base = vmx_caps.pin & ~(PIN_NMI_EXITING | PIN_VIRTUAL_NMIS);
	image.entry = gaddr(g_loop);
	reset_vmcs();
	proc_base = (uint32_t)vmx_read(VMCS_PROC_BASED_CTLS) & ~PROC_NMI_WINDOW_EXITING;
	unsigned only = (unsigned)cmdline_u64("only", 0);
	int trace = cmdline_u64("trace_exp", 0) != 0;
	debug = cmdline_u64("exp_debug", 0) != 0; /* every exit's fields, for a human */
	kprintf("vmx-exp: %u experiments, %s; VMX-preemption timer %s\n",
		(unsigned)(sizeof catalogue / sizeof catalogue[0]), only ? "one (only=)" : "all",
		have_watchdog ? "available (ends an HLT nothing wakes)" : "absent");
	unsigned last = 0;
	for (unsigned i = 0; i < sizeof catalogue / sizeof catalogue[0]; i++)
		if (!only || catalogue[i].n == only) {
			reset_state(last);
			run_one(&catalogue[i], trace && only);
			last = catalogue[i].n;
		}
	reset_state(last);
	kprintf("vmx-exp: reset: virtual-NMI blocking left over after experiment(s)");
	for (unsigned i = 0; i < nstale; i++)
		kprintf(" %u", stale[i]);
	kprintf("%s\n",
		nstale ? " (B=0 written, no NMI-window exit): ended by a guest IRET" : " none");
	if (!ran && !not_run)
		hv_fail("vmx-exp", "no experiment has that number (only=1..30)");
	kprintf("RESULT: PASS vmx-exp %d experiments ran, %d as expected, %d deviate, %d not run\n",
		ran, ran - deviations, deviations, not_run);
	hv_exit(0);
}
