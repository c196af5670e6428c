/* SPDX-License-Identifier: MIT */
/*
 * vmx_exp_catalogue.c - the 30 VMX NMI experiments of docs/nmi-semantics.md ("The
 * VMX experiments"), each a function that sets its guest up through the harness
 * (vmx_exp.h), enters, observes and says whether the CPU did what the SDM says;
 * and the table that names them, their configuration and the expected result.
 * The rules each one relies on are cited in vmx_exp.c's header and at each one.
 */
#include "hv.h"
#include "vmx.h"
#include "vmx_exp.h"
#include "x86.h"

/* 1: an NMI wakes the guest from HLT (26.6.2) and, without NMI exiting, goes
 * through its IDT vector 2 (24.6.1); entered with B=0, V=0: nothing blocks it
 * (26.6.1).  The NMI is the one latched while the host was blocked. */
static int exp1(void)
{
	if (exp_host_blocked(1))
		return 0;
	exp_prepare(E0V0, g_after_hlt, 0, 0, 0);
	vmx_write(VMCS_GUEST_ACTIVITY, ACTIVITY_HLT);
	struct obs o = exp_observe();
	exp_ostep(0, o);
	return o.reason == EXIT_VMCALL && o.rip == exp_gaddr(g_handler) &&
	       o.ret == exp_gaddr(g_after_hlt);
}

/* 2: E0V0 entered with B=1: NMIs are blocked until the guest's IRET (26.6.1), two
 * sent leave one latched (vol. 3A 6.7.1); a VM exit does not end the blocking (the
 * host is blocked: the latched NMI stays latched); the guest's IRET takes it. */
static int exp2(void)
{
	exp_prepare(E0V0, g_selfnmi2, 1, 0, 0);
	uint64_t before = exp_host_nmis();
	struct obs a = exp_observe();
	udelay(DELIVERY_US);
	uint64_t host = exp_host_nmis() - before;
	exp_ostep("2 self-NMIs", a);
	exp_onote("host NMIs after the exit", host);
	exp_prepare(E0V0, g_iret, 1, 0, 0);
	struct obs b = exp_observe();
	exp_ostep("guest IRET", b);
	int ok = a.reason == EXIT_VMCALL && exp_rip_in(a.rip, g_selfnmi2, g_nmi_iret) &&
		 a.blocked && host == 0 && b.reason == EXIT_VMCALL &&
		 b.rip == exp_gaddr(g_handler) && b.ret == exp_gaddr(g_iret_after);
	if (b.reason == EXIT_VMCALL && b.rip == exp_gaddr(g_handler)) {
		exp_skip_vmcall();
		struct obs c = exp_observe();
		exp_ostep("handler's IRET", c);
		ok = ok && c.reason == EXIT_VMCALL && exp_rip_in(c.rip, g_iret_after, g_selfnmi);
	}
	return ok;
}

/* 3: host blocked+pend, E0V0 entry with B=0: nothing blocks NMIs after the entry
 * (26.6.1), the latched NMI goes through the guest's IDT before its first
 * instruction. */
static int exp3(void)
{
	if (exp_host_blocked(1))
		return 0;
	exp_prepare(E0V0, g_loop, 0, 0, 0);
	struct obs o = exp_observe();
	exp_ostep(0, o);
	return o.reason == EXIT_VMCALL && o.rip == exp_gaddr(g_handler) &&
	       o.ret == exp_gaddr(g_loop);
}

/* 4: E0V0 entered with B=1, a VMCALL exit: the NMI blocking the guest had is the
 * host's now; an NMI is held until the host's IRET. */
static int exp4(void)
{
	exp_prepare(E0V0, g_vmcall, 1, 0, 0);
	struct obs o = exp_observe();
	uint64_t held = exp_host_self_nmi(1), after = exp_host_iret();
	exp_ostep(0, o);
	exp_onote("host NMIs before its IRET", held);
	exp_onote("at its IRET", after);
	return o.reason == EXIT_VMCALL && held == 0 && after == 1;
}

/* 5: E1V0: an NMI in the guest causes a VM exit (24.6.1). */
static int exp5(void)
{
	exp_prepare(E1V0, g_selfnmi, 0, 0, 0);
	struct obs o = exp_observe();
	exp_ostep(0, o);
	return o.reason == EXIT_EXCEPTION_NMI && exp_rip_in(o.rip, g_selfnmi, g_selfnmi2);
}

/* 6: E1V0 with B=1: NMIs stay blocked for the whole stay in non-root operation
 * (26.6.1) and the guest's IRET does not end that (25.3): no exit; the blocking is
 * the host's after the VMCALL exit, its IRET takes the NMI. */
static int exp6(void)
{
	exp_prepare(E1V0, g_nmi_iret, 1, 0, 0);
	struct obs o = exp_observe();
	uint64_t held = exp_host_self_nmi(0), after = exp_host_iret();
	exp_ostep(0, o);
	exp_onote("host NMIs before its IRET", held);
	exp_onote("at its IRET", after);
	return o.reason == EXIT_VMCALL && exp_rip_in(o.rip, g_iret_after, g_selfnmi) && o.blocked &&
	       held == 0 && after == 1;
}

/* 7: host blocked+pend, E1V0 entry with B=0: the latched NMI exits at once. */
static int exp7(void)
{
	if (exp_host_blocked(1))
		return 0;
	exp_prepare(E1V0, g_loop, 0, 0, 0);
	struct obs o = exp_observe();
	exp_ostep(0, o);
	return o.reason == EXIT_EXCEPTION_NMI && o.rip == exp_gaddr(g_loop);
}

/* 8: E1V1: an NMI in the guest causes a VM exit (24.6.1). */
static int exp8(void)
{
	exp_prepare(E1V1, g_selfnmi, 0, 0, 0);
	struct obs o = exp_observe();
	exp_ostep(0, o);
	return o.reason == EXIT_EXCEPTION_NMI && exp_rip_in(o.rip, g_selfnmi, g_selfnmi2);
}

/* 9: E1V1 with B=1: virtual-NMI blocking does not block NMIs (26.6.1): an exit,
 * B still 1. */
static int exp9(void)
{
	exp_prepare(E1V1, g_selfnmi, 1, 0, 0);
	struct obs o = exp_observe();
	exp_ostep(0, o);
	return o.reason == EXIT_EXCEPTION_NMI && exp_rip_in(o.rip, g_selfnmi, g_selfnmi2) &&
	       o.blocked;
}

/* 10, 11: host blocked+pend, E1V1 entry: NMIs are not blocked after the entry
 * (26.6.1), the latched one exits before the first instruction, B as entered. */
static int exp10_11(int b)
{
	if (exp_host_blocked(1))
		return 0;
	exp_prepare(E1V1, g_loop, b, 0, 0);
	struct obs o = exp_observe();
	uint64_t after = exp_host_iret();
	exp_ostep(0, o);
	exp_onote("host NMIs at its IRET after", after);
	return o.reason == EXIT_EXCEPTION_NMI && o.rip == exp_gaddr(g_loop) && o.blocked == b;
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
	exp_prepare(E1V1, g_iret, 1, 0, 0);
	struct obs o = exp_observe();
	exp_ostep(0, o);
	return o.reason == EXIT_VMCALL && exp_rip_in(o.rip, g_iret_after, g_selfnmi) && !o.blocked;
}

/* 13, 14: host blocked, E1V1 entry and a VMCALL exit, no IRET: the entry ended the
 * host's NMI blocking (26.6.1: with virtual NMIs, NMIs are not blocked after VM
 * entry), so a self-NMI then is taken at once. */
static int exp13_14(int b)
{
	if (exp_host_blocked(0))
		return 0;
	exp_prepare(E1V1, g_vmcall, b, 0, 0);
	struct obs o = exp_observe();
	uint64_t n = exp_host_self_nmi(1), after = exp_host_iret();
	exp_ostep(0, o);
	exp_onote("host NMIs at once", n);
	exp_onote("at its IRET", after);
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
	if (exp_host_blocked(1))
		return 0;
	exp_prepare(E0V0, g_loop, 0, 0, INJECT_EXT_21);
	struct obs a = exp_observe();
	exp_ostep(0, a);
	int ok = a.reason == EXIT_VMCALL && a.rip == exp_gaddr(g_h21);
	if (a.reason == EXIT_VMCALL) {
		exp_skip_vmcall();
		struct obs b = exp_observe();
		exp_ostep("then", b);
		ok = ok && b.reason == EXIT_VMCALL && b.rip == exp_gaddr(g_handler) &&
		     b.ret == exp_gaddr(g_h21) + INSN_VMCALL_LEN;
	}
	return ok;
}

/* 16, 17: host blocked+pend, vector 0x21 injected with NMI exiting: the injection
 * first (26.5.1.1), then the NMI exit at the 0x21 handler's entry (17: B=1 stays). */
static int exp16_17(enum cfg c, int b)
{
	if (exp_host_blocked(1))
		return 0;
	exp_prepare(c, g_loop, b, 0, INJECT_EXT_21);
	struct obs o = exp_observe();
	exp_ostep(0, o);
	return o.reason == EXIT_EXCEPTION_NMI && o.rip == exp_gaddr(g_h21) && o.blocked == b;
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
	exp_prepare(E0V0, g_loop, 0, 0, INJECT_NMI);
	struct obs o = exp_observe();
	exp_ostep(0, o);
	return o.reason == EXIT_VMCALL && o.rip == exp_gaddr(g_handler) &&
	       o.ret == exp_gaddr(g_loop) && o.blocked;
}

/* 19: E1V0, an NMI injected: its handler runs; with NMI exiting the guest's NMI
 * blocking is not the host's (B stays 0, the host takes a self-NMI at once). */
static int exp19(void)
{
	exp_prepare(E1V0, g_loop, 0, 0, INJECT_NMI);
	struct obs o = exp_observe();
	uint64_t n = exp_host_self_nmi(1);
	exp_ostep(0, o);
	exp_onote("host NMIs at once", n);
	return o.reason == EXIT_VMCALL && o.rip == exp_gaddr(g_handler) && !o.blocked && n == 1;
}

/* 20: E1V1, an NMI injected: virtual-NMI blocking after the entry (26.6.1). */
static int exp20(void)
{
	exp_prepare(E1V1, g_loop, 0, 0, INJECT_NMI);
	struct obs o = exp_observe();
	exp_ostep(0, o);
	return o.reason == EXIT_VMCALL && o.rip == exp_gaddr(g_handler) && o.blocked;
}

/* 21: W=1, B=0: the NMI window is open at once (26.6.6). */
static int exp21(void)
{
	exp_prepare(E1V1, g_loop, 0, 1, 0);
	struct obs o = exp_observe();
	exp_ostep(0, o);
	return o.reason == EXIT_NMI_WINDOW && o.rip == exp_gaddr(g_loop);
}

/* 22: W=1, B=1: no window exit while virtual-NMI blocking lasts. */
static int exp22(void)
{
	exp_prepare(E1V1, g_loop, 1, 1, 0);
	struct obs o = exp_observe();
	exp_ostep(0, o);
	return o.reason == EXIT_VMCALL && exp_rip_in(o.rip, g_loop, g_iret) && o.blocked;
}

/* 23: W=1, B=1, the guest IRETs: the window exit right after that IRET, B=0. */
static int exp23(void)
{
	exp_prepare(E1V1, g_iret, 1, 1, 0);
	struct obs o = exp_observe();
	exp_ostep(0, o);
	return o.reason == EXIT_NMI_WINDOW && o.rip == exp_gaddr(g_iret_after) && !o.blocked;
}

/* 24: W=1, host blocked+pend: the window exit comes first (26.6.6: it takes
 * priority over NMIs), and the NMI, no longer blocked after the entry (26.6.1),
 * reaches the host right after that exit. */
static int exp24(void)
{
	if (exp_host_blocked(1))
		return 0;
	uint64_t before = exp_host_nmis();
	exp_prepare(E1V1, g_loop, 0, 1, 0);
	struct obs o = exp_observe();
	udelay(DELIVERY_US);
	uint64_t n = exp_host_nmis() - before, after = exp_host_iret();
	exp_ostep(0, o);
	exp_onote("host NMIs right after the exit", n);
	exp_onote("at its IRET", after);
	return o.reason == EXIT_NMI_WINDOW && o.rip == exp_gaddr(g_loop) && n == 1;
}

/* 25: W=1 plus an injected NMI: the injection first (26.6.6), the window only
 * after the handler's IRET, at the interrupted instruction. */
static int exp25(void)
{
	exp_prepare(E1V1, g_loop, 0, 1, INJECT_NMI);
	struct obs a = exp_observe();
	exp_ostep(0, a);
	int ok = a.reason == EXIT_VMCALL && a.rip == exp_gaddr(g_handler);
	if (ok) {
		exp_skip_vmcall();
		struct obs b = exp_observe();
		exp_ostep("after the handler's IRET", b);
		ok = b.reason == EXIT_NMI_WINDOW && b.rip == exp_gaddr(g_loop);
	}
	return ok;
}

/* 26: host blocked+pend, E1V1, an NMI injected: the injection first, then the NMI
 * exit at the guest handler's entry, B=1 (the injection's). */
static int exp26(void)
{
	if (exp_host_blocked(1))
		return 0;
	exp_prepare(E1V1, g_loop, 0, 0, INJECT_NMI);
	struct obs o = exp_observe();
	exp_ostep(0, o);
	return o.reason == EXIT_EXCEPTION_NMI && o.rip == exp_gaddr(g_handler) && o.blocked;
}

/* 27: host blocked, 2 NMIs sent, E0V0 entry: one was latched, one lost (vol. 3A
 * 6.7.1); the guest's counting handler runs once. */
static int exp27(void)
{
	if (exp_host_blocked(2))
		return 0;
	exp_set_gate(2, g_count);
	exp_prepare(E0V0, g_loop, 0, 0, 0);
	struct obs o = exp_observe();
	uint32_t count = *exp_guest_count();
	uint64_t after = exp_host_iret();
	exp_ostep(0, o);
	exp_onote("guest NMIs", count);
	exp_onote("host NMIs at its IRET", after);
	return o.reason == EXIT_VMCALL && exp_rip_in(o.rip, g_loop, g_iret) && count == 1 &&
	       after == 0;
}

/* 28, 30: host blocked, 2 NMIs sent, entry with NMI exiting: one NMI exit; the
 * host's IRET after it finds nothing latched; the next entry runs to its VMCALL. */
static int exp28_30(enum cfg c)
{
	if (exp_host_blocked(2))
		return 0;
	exp_prepare(c, g_loop, 0, 0, 0);
	struct obs a = exp_observe();
	uint64_t after = exp_host_iret();
	exp_ostep(0, a);
	exp_onote("host NMIs at its IRET", after);
	exp_prepare(c, g_loop, 0, 0, 0);
	struct obs b = exp_observe();
	exp_ostep("entered again", b);
	return a.reason == EXIT_EXCEPTION_NMI && a.rip == exp_gaddr(g_loop) && after == 0 &&
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
	if (exp_host_blocked(3))
		return 0;
	uint64_t n = exp_host_iret();
	exp_onote("host NMIs before its IRET 0, at its IRET", n);
	return n == 1;
}

const struct experiment exp_catalogue[] = {
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

const unsigned exp_catalogue_n = sizeof exp_catalogue / sizeof exp_catalogue[0];
