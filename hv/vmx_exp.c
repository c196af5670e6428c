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
#include "vmx_exp.h"
#include "vmx_insn.h"
#include "x86.h"

#define CODE_PA        0x7000u /* the guest code, copied out of the hypervisor's image */
#define IDT_PA         0x6000u /* the guest IDT: every vector -> g_handler, 0x21 -> g_h21 */
#define IDT_VECTORS    64u
#define GDT_PA         0x6800u /* the guest GDT: flat code 0x08, data 0x10 (IRET reloads CS) */
#define COUNT_PA       0x6F00u /* g_count's counter (vmx_exp_guest.S) */
#define STACK_PA       0x7FF0u /* the guest stack, top */
#define ICR_NMI        0x00004400u
#define WATCHDOG_TICKS 0x2000000u /* VMX-preemption timer: ends an HLT nothing wakes */
#define EXIT_NONE      0xFFFFu /* exp_observe(): the VM entry itself failed */

static const char *const cfg_name[] = {"E0V0", "E1V0", "E1V1"};

static struct guest_call call; /* the guest's registers between exits */
static uint8_t exit_stack[4096] __attribute__((aligned(16)));
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

uint32_t exp_gaddr(const char *sym)
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
		if (a >= exp_gaddr(syms[i].sym) && (!name || a - exp_gaddr(syms[i].sym) <= off)) {
			name = syms[i].name;
			off = a - exp_gaddr(syms[i].sym);
		}
	if (!name || a >= exp_gaddr(exp_guest_end)) {
		onum(a, 16);
		return;
	}
	oput(name);
	oput("+");
	onum(off, 16);
}

/* "exit 18 at g_handler+0x0 B=1 ret g_loop+0x0" */
void exp_ostep(const char *label, struct obs o)
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

void exp_onote(const char *label, uint64_t v)
{
	if (olen)
		oput(", ");
	oput(label);
	oput(" ");
	onum(v, 10);
}

/* ---- Host NMIs --------------------------------------------------------------------- */
uint64_t exp_host_nmis(void)
{
	return __atomic_load_n(&plat_this_cpu()->nmi_entries, __ATOMIC_ACQUIRE);
}

/* `n` self-NMIs from the host; returns how many reached the vector-2 handler. */
uint64_t exp_host_self_nmi(unsigned n)
{
	uint64_t before = exp_host_nmis();
	for (unsigned i = 0; i < n; i++)
		lapic_send_ipi(this_percpu()->apic_id, ICR_NMI);
	udelay(DELIVERY_US);
	return exp_host_nmis() - before;
}

/* An IRET ends any NMI blocking an exit left behind; returns the NMIs that then
 * reached the host's handler (a latched one lands at once). */
uint64_t exp_host_iret(void)
{
	uint64_t before = exp_host_nmis();
	hv_nmi_iret();
	udelay(DELIVERY_US);
	return exp_host_nmis() - before;
}

/* ---- The guest ------------------------------------------------------------------- */
void exp_set_gate(unsigned vector, const char *sym)
{
	uint64_t *idt = phys_ptr(IDT_PA);
	uint32_t h = exp_gaddr(sym);
	idt[vector] =
	    (h & 0xFFFF) | (0x08ull << 16) | (0x8E00ull << 32) | ((uint64_t)(h >> 16) << 48);
}

volatile uint32_t *exp_guest_count(void)
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
		exp_set_gate(v, g_handler);
	exp_set_gate(0x21, g_h21);
	uint64_t *gdt = phys_ptr(GDT_PA);
	gdt[0] = 0;
	gdt[1] = 0x00CF9A000000FFFFull;
	gdt[2] = 0x00CF92000000FFFFull;
	*exp_guest_count() = 0;
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
	guest_call_host(&call, exit_stack + sizeof exit_stack);
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
void exp_prepare(enum cfg c, const char *entry, int b, int w, uint32_t inject)
{
	uint32_t pin = pin_base | (c != E0V0 ? PIN_NMI_EXITING : 0) |
		       (c == E1V1 ? PIN_VIRTUAL_NMIS : 0) | (have_watchdog ? PIN_PREEMPT_TIMER : 0);
	vmx_write(VMCS_PIN_BASED_CTLS, pin);
	vmx_write(VMCS_PROC_BASED_CTLS, proc_base | (w && c == E1V1 ? PROC_NMI_WINDOW_EXITING : 0));
	if (have_watchdog)
		vmx_write(VMCS_PREEMPT_TIMER, WATCHDOG_TICKS);
	vmx_write(VMCS_GUEST_RIP, exp_gaddr(entry));
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
struct obs exp_observe(void)
{
	struct obs o = {0};
	uint64_t rflags = guest_call(launched, &call);
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
void exp_skip_vmcall(void)
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
	exp_host_iret();
	exp_host_iret();
	reset_guest_memory();
	reset_vmcs();
	exp_prepare(E1V1, g_loop, 0, 1, 0);
	struct obs o = exp_observe();
	if (o.reason != EXIT_NMI_WINDOW) {
		exp_prepare(E1V1, g_iret, 1, 0, 0);
		exp_observe();
		if (nstale < sizeof stale / sizeof stale[0])
			stale[nstale++] = after;
		exp_host_iret();
	}
	reset_vmcs();
	olen = 0;
	obuf[0] = 0;
}

int exp_rip_in(uint32_t rip, const char *from, const char *to)
{
	return rip >= exp_gaddr(from) && rip < exp_gaddr(to);
}

/* The catalogue's "host blocked" (+ `pend` NMIs sent while blocked): an NMI exit in
 * E1V1 (27.1: the exit's NMI leaves the host NMI-blocked), then `pend` self-NMIs,
 * which must all be held.  0, or -1 with what went wrong in the observation. */
int exp_host_blocked(unsigned pend)
{
	exp_prepare(E1V1, g_selfnmi, 0, 0, 0);
	struct obs o = exp_observe();
	if (o.reason != EXIT_EXCEPTION_NMI) {
		exp_ostep("setup, no NMI exit", o);
		return -1;
	}
	uint64_t n = exp_host_self_nmi(pend);
	if (n) {
		exp_onote("setup: the host took NMIs after its NMI exit:", n);
		return -1;
	}
	return 0;
}

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
	image.entry = exp_gaddr(g_loop);
	reset_vmcs();
	proc_base = (uint32_t)vmx_read(VMCS_PROC_BASED_CTLS) & ~PROC_NMI_WINDOW_EXITING;
	unsigned only = (unsigned)cmdline_u64("only", 0);
	int trace = cmdline_u64("trace_exp", 0) != 0;
	debug = cmdline_u64("exp_debug", 0) != 0; /* every exit's fields, for a human */
	kprintf("vmx-exp: %u experiments, %s; VMX-preemption timer %s\n", exp_catalogue_n,
		only ? "one (only=)" : "all",
		have_watchdog ? "available (ends an HLT nothing wakes)" : "absent");
	unsigned last = 0;
	for (unsigned i = 0; i < exp_catalogue_n; i++)
		if (!only || exp_catalogue[i].n == only) {
			reset_state(last);
			run_one(&exp_catalogue[i], trace && only);
			last = exp_catalogue[i].n;
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
