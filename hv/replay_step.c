/* SPDX-License-Identifier: MIT */
/*
 * replay_step.c - nmi@K on real CPUs: a real NMI lands before the K-th core
 * instruction a step executes, counted exactly as the simulator counts
 * (sim/stepper.c).
 *
 * The step's calls into the core run with the trap flag set (replay_core_call);
 * every instruction then ends in a single-step #DB (Intel SDM vol. 3A, 17.3.1.4
 * "Single-Step Exception Condition": a trap, taken after the instruction, with
 * DR6.BS set and RIP at the next instruction).  The #DB handler counts the traps whose
 * RIP lies in the core's code: the instruction at RIP is the next to execute, so the
 * K-th such trap is the boundary before core instruction K.  There it sends this CPU
 * a self-NMI through its LAPIC (ICR: delivery mode NMI, physical destination = its
 * own APIC ID) and waits until the NMI has been taken: the NMI's handler runs
 * nested in the #DB handler, with the core frozen before instruction K.  The core's
 * state is exactly what the simulator's signal sees; only the NMI's interrupted RIP
 * differs (the #DB handler's, not the core instruction: docs/replay.md).
 *
 * Calls out of the core run unstepped, as in the simulator: the first trap outside
 * the core right after a core instruction is a callee's first instruction, with the
 * return address into the core on top of the stack.  The handler clears the trap
 * flag and points that return address at replay_tf_trampoline, which sets the flag
 * again and returns into the core: its `ret` is the instruction after the POPF that
 * set TF, so the next trap is at the return address (SDM vol. 3A, 17.3.1.4: a
 * single-step trap follows the instruction after the one that set TF).  An
 * interrupt or exception delivery clears TF and its IRET restores it, so NMI
 * handlers are never stepped (vol. 3A, 6.12.1.2 "Flag Usage By Exception- or
 * Interrupt-Handler Procedure").
 */
#include "hv.h"
#include "nmi_platform.h"
#include "replay.h"
#include "tf_trampoline.h"
#include "x86.h"

#define RFLAGS_TF     0x100ull
#define DR6_BS        (1ull << 14)
#define ICR_NMI       0x00004400u /* delivery mode NMI, physical destination */
#define NMI_TAKEN_US  1000000u /* a self-NMI to an unblocked CPU lands within this */
#define MAX_SELF_NMIS 2u /* one taken, one latched behind it: the rest are dropped */

extern const char __start_nmi_core_text[], __stop_nmi_core_text[];

static int in_core(uintptr_t a)
{
	return a >= (uintptr_t)__start_nmi_core_text && a < (uintptr_t)__stop_nmi_core_text;
}

static void tf_on(void)
{
	__asm__ __volatile__("pushfq; orq $0x100, (%%rsp); popfq" ::: "memory", "cc");
}
static void tf_off(void)
{
	__asm__ __volatile__("pushfq; andq $~0x100, (%%rsp); popfq" ::: "memory", "cc");
}

static struct replay_cpu *me_cpu(void)
{
	unsigned me;
	return replay_this_cpu(&me);
}

void replay_core_call(void (*fn)(void))
{
	struct replay_cpu *r = me_cpu();
	if (r && r->st.on)
		tf_on();
	fn();
	tf_off();
}

void replay_core_call_int(void (*fn)(int), int arg)
{
	struct replay_cpu *r = me_cpu();
	if (r && r->st.on)
		tf_on();
	fn(arg);
	tf_off();
}

/* The step's arrivals, index form sorted so the handler only looks at the next. */
void replay_step_begin(unsigned me, const struct replay_step *s)
{
	struct replay_cpu *r = &rcpu[me];
	r->st.nat = r->st.next = 0;
	r->st.count = r->st.hits = 0;
	r->st.last_rip = 0;
	for (unsigned i = 0; i < s->nat && i < REPLAY_MAX_AT; i++)
		r->st.at[r->st.nat++] = s->at[i];
	for (unsigned i = 1; i < r->st.nat; i++)
		for (unsigned j = i;
		     j > 0 && r->st.at[j - 1].kind == AT_INDEX && r->st.at[j].kind == AT_INDEX &&
		     r->st.at[j - 1].index > r->st.at[j].index;
		     j--) {
			struct replay_at t = r->st.at[j];
			r->st.at[j] = r->st.at[j - 1];
			r->st.at[j - 1] = t;
		}
	r->st.on = r->st.nat != 0 || r->st.count_only;
	r->st.seq = r->seq;
}

/* make replay TRACE=1: the trace ends with the step that placed the NMI (or with
 * the CPU's halt), before the other CPUs' wait loops fill it. */
void replay_trace_end(void)
{
	if (replay_trace_now == 2) {
		replay_trace_now = 0;
		magic_break();
	}
}

void replay_step_end(unsigned me)
{
	struct replay_cpu *r = &rcpu[me];
	r->st.on = 0;
	replay_trace_end();
	if (r->st.count_only)
		r->st.counted = r->st.count;
	r->st.count_only = 0;
}

/* n NMIs arrive at this CPU now, from its own LAPIC.  The first is taken before
 * this returns (unless the CPU is NMI-blocked: then it latches, as it would in the
 * simulator); a second is sent at once, and latches behind the first's handler.
 * A third would be dropped by the latch on either platform, so none is sent. */
void replay_send_self(unsigned me, unsigned n)
{
	struct replay_cpu *r = &rcpu[me];
	uint32_t apic = this_percpu()->apic_id;
	if (replay_trace_now == 1) {
		replay_trace_now = 2; /* make replay TRACE=1: the trace starts here */
		magic_break();
	}
	for (unsigned i = 0; i < n && i < MAX_SELF_NMIS; i++) {
		uint64_t before = r->arrived;
		r->sent++;
		lapic_send_ipi(apic, ICR_NMI);
		if (r->in_nmi || r->exit_blocked)
			continue; /* blocked: the NMI latches until the IRET */
		uint64_t deadline = time_us() + NMI_TAKEN_US;
		while (r->arrived == before && time_us() < deadline)
			cpu_pause();
		if (r->arrived == before)
			replay_fail("cpu%u: a self-NMI was not taken within %u us", me,
				    NMI_TAKEN_US);
	}
}

/* A core instruction boundary: place the NMIs scheduled here. */
static void arrivals(unsigned me, uintptr_t rip)
{
	struct replay_cpu *r = &rcpu[me];
	unsigned n = 0;
	r->st.count++;
	if (r->st.count_only)
		r->st.counted = r->st.count; /* a guest step may end in guest mode */
	while (r->st.next < r->st.nat) {
		struct replay_at *a = &r->st.at[r->st.next];
		int hit = (a->kind == AT_INDEX && a->index == r->st.count) ||
			  (a->kind == AT_ADDR && a->addr == rip &&
			   ++r->st.hits >= (a->index ? a->index : 1u));
		if (!hit)
			break;
		n++;
		r->st.next++;
		r->st.hits = 0;
	}
	if (n)
		replay_send_self(me, n);
}

/* Where a call out of the core returns to (replay_tf_trampoline's one lookup). */
uintptr_t replay_tf_return(void);
uintptr_t replay_tf_return(void)
{
	return rcpu[this_percpu()->index].st.tf_return;
}
extern char replay_tf_trampoline[];
TF_TRAMPOLINE(replay_tf_trampoline, replay_tf_return);

static uint64_t read_dr6(void)
{
	uint64_t v;
	__asm__ __volatile__("mov %%dr6, %0" : "=r"(v));
	return v;
}

static void write_dr6(uint64_t v)
{
	__asm__ __volatile__("mov %0, %%dr6" ::"r"(v));
}

/* The #DB handler's body (entry.S db_entry).  Returns 0 when the trap is not the
 * replay's: the caller reports it as the fatal exception it then is. */
int replay_debug_trap(uint64_t *rip, uint64_t *rflags, uint64_t *rsp)
{
	struct replay_cpu *r = me_cpu();
	uint64_t dr6 = read_dr6();
	if (!r || !(dr6 & DR6_BS))
		return 0;
	write_dr6(dr6 & ~DR6_BS); /* DR6 bits are sticky (SDM vol. 3A, 17.2.3) */
	if (!r->st.on) {
		*rflags &= ~RFLAGS_TF;
		return 1;
	}
	if (!in_core(*rip)) {
		if (!r->st.last_rip)
			return 1; /* not in the core yet: the call into it is a few steps on */
		/* Left the core.  Right after a call from it, [rsp] is the return address
		 * just past the last core instruction: step again from there.  Anything
		 * else is the core returning to its caller. */
		uint64_t *sp = (uint64_t *)*rsp;
		if (sp[0] > r->st.last_rip && sp[0] <= r->st.last_rip + 15 && in_core(sp[0])) {
			r->st.tf_return = sp[0];
			sp[0] = (uint64_t)replay_tf_trampoline;
		}
		r->st.last_rip = 0;
		*rflags &= ~RFLAGS_TF;
		return 1;
	}
	r->st.last_rip = *rip;
	arrivals(this_percpu()->index, *rip);
	/* Step lazily: once the last arrival is placed, stop unless counting. */
	if (r->st.next >= r->st.nat && !r->st.count_only) {
		r->st.on = 0;
		*rflags &= ~RFLAGS_TF;
	}
	return 1;
}
