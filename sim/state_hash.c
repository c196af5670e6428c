/* SPDX-License-Identifier: MIT */
/*
 * state_hash.c - what the explorer (explore.c) keeps of a node's run:
 *  - the whole simulated machine as one 128-bit hash, taken on entry to a
 *    single-step trap: what the pruning keys a subtree by ("Pruning" says what is
 *    covered and why what is left out cannot change the future).  The running CPU's
 *    registers, signal mask and stack; every other CPU's state and, when it waits at
 *    a spin, its saved registers and stack; the core's one global; the machine's own
 *    fields;
 *  - the run's log, boundary by boundary (its hash, its instruction), kept by a
 *    wrapper around stepper.c's trap handler, which also turns a node's step from
 *    its breakpoint to stepping ("Placing by address");
 *  - the memo: the keys already explored, and what their subtrees held.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>

#include "machine.h"
#include "state_hash.h"

#define STACK_MAX (256u << 10)

__attribute__((no_sanitize_address)) void hbytes(struct h128 *h, const void *p, size_t n)
{
	const unsigned char *q = p;
	hw(h, n);
	for (; n >= 8; n -= 8, q += 8) {
		uint64_t w;
		memcpy(&w, q, 8);
		hw(h, w);
	}
	if (n) {
		uint64_t w = 0;
		memcpy(&w, q, n);
		hw(h, w);
	}
}

uint64_t fmix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	return x ^ (x >> 33);
}

static void cpu_hash(struct h128 *h, const struct sim_cpu *o)
{
	hbytes(h, &o->core, sizeof o->core);
	hw(h, o->id);
	hw(h, (uint64_t)o->busy);
	hw(h, (uint64_t)o->halted);
	hw(h, o->spins);
	hw(h, (uint64_t)o->nmi.in_handler);
	hw(h, (uint64_t)o->nmi.exit_blocked);
	hw(h, (uint64_t)o->nmi.latched);
	hw(h, o->nmi.burst);
	hw(h, o->nmi.sent);
	hw(h, o->nmi.delivered);
	hw(h, o->nmi.dropped);
	hbytes(h, &o->vmx.vmcs, sizeof o->vmx.vmcs);
	hw(h, (uint64_t)o->vmx.in_guest);
	hw(h, (uint64_t)o->vmx.exit_pending);
	hw(h, (uint64_t)o->vmx.fault_armed);
	hw(h, o->vmx.vectoring);
	hw(h, (uint64_t)o->vmx.detached);
	hbytes(h, &o->vmx.at_detach, sizeof o->vmx.at_detach);
	hbytes(h, &o->vmx.guest, sizeof o->vmx.guest);
	hw(h, o->step.count);
	for (unsigned j = o->step.next; j < o->step.nat && j < SIM_MAX_AT; j++) {
		hw(h, o->step.at[j].kind);
		hw(h, o->step.at[j].index);
		hw(h, o->step.at[j].addr);
	}
	hw(h, o->budget.insns);
	hw(h, o->budget.calls);
	/* What the laws read of the platform's counts and of the schedule's model (the
	 * VMCS writes per field are counted for the record only: no law reads them). */
	hw(h, o->asked.tlb_flushes);
	hw(h, o->asked.irets);
	hw(h, o->asked.injections);
	hbytes(h, o->asked.sent_to, sizeof o->asked.sent_to);
	hw(h, (uintptr_t)o->expect.after);
	hw(h, o->expect.masked);
	hw(h, o->expect.attached);
	hw(h, (uint64_t)o->th.cmd);
	hw(h, (uintptr_t)o->th.step);
}

/* A register of the running CPU.  A stepped call out of the core returns through
 * stepper.c's trampoline, so the callee saw the trampoline as its return address and
 * may leave it in a caller-saved register (platform_sim.c passes its return address
 * on): dead by the ABI, and never a value the core computes with.  The same call made
 * on a breakpoint, unstepped, leaves the real return address there, the one the
 * trampoline went back to; hashing that instead keeps a state the same however the
 * run got there (explore.c, "Placing by address"). */
extern char sim_tf_trampoline[];
uintptr_t sim_tf_return(void);
static uint64_t reg_word(greg_t v)
{
	return (uintptr_t)v == (uintptr_t)sim_tf_trampoline ? sim_tf_return() : (uint64_t)v;
}

__attribute__((no_sanitize_address)) int state_hash(const ucontext_t *uc, const struct sim_cpu *c,
						    struct h128 *out)
{
	const greg_t *g = uc->uc_mcontext.gregs;
	uintptr_t rsp = (uintptr_t)g[REG_RSP];
	if (rsp > c->th.stack_hi || c->th.stack_hi - rsp > STACK_MAX)
		return -1;
	struct h128 h = {0x243f6a8885a308d3ull, 0x13198a2e03707344ull};
	for (int i = REG_R8; i <= REG_RIP; i++)
		hw(&h, reg_word(g[i]));
	hw(&h, (uint64_t)g[REG_EFL]);
	hw(&h, (uint64_t)sigismember(&uc->uc_sigmask, SIGNMI));
	hbytes(&h, (const void *)rsp, c->th.stack_hi - rsp);
	hbytes(&h, &nmi_quiesce_state, sizeof nmi_quiesce_state);
	hw(&h, M.ncpus);
	hw(&h, (uint64_t)M.failed);
	if (M.failed)
		hbytes(&h, M.what, strnlen(M.what, sizeof M.what));
	hw(&h, M.cur_step);
	hw(&h, (uint64_t)M.fast);
	for (unsigned i = 0; i < M.ncpus; i++) {
		const struct sim_cpu *o = &M.cpu[i];
		cpu_hash(&h, o);
		if (o == c || !o->busy)
			continue;
		/* Suspended at a spin: its callee-saved registers as controller_relax()
		 * saved them, and its stack from there up. */
		static const int saved[] = {REG_RBX, REG_RBP, REG_R12, REG_R13,
					    REG_R14, REG_R15, REG_RSP, REG_RIP};
		const greg_t *pg = o->th.parked.uc_mcontext.gregs;
		for (unsigned k = 0; k < sizeof saved / sizeof saved[0]; k++)
			hw(&h, (uint64_t)pg[saved[k]]);
		uintptr_t psp = (uintptr_t)pg[REG_RSP];
		if (psp > o->th.stack_hi || o->th.stack_hi - psp > STACK_MAX)
			return -1;
		hbytes(&h, (const void *)psp, o->th.stack_hi - psp);
	}
	*out = h;
	return 0;
}

/* ---- A node's run, boundary by boundary -------------------------------------------- */

#ifndef TRAP_PERF
#define TRAP_PERF 6 /* si_code of a hardware breakpoint's SIGTRAP (stepper.c) */
#endif

struct run_log run_log;

static void (*stepper_trap)(int, siginfo_t *, void *);

/* The 128 bytes under the stack pointer at a core boundary: dead (the core is built
 * -mno-red-zone), and where the core's next frames go.  A frame's slots it never
 * writes (alignment padding) would keep what lay there before, which depends on how
 * the run got there (stepped, or on a breakpoint; which run came before); zeros make
 * equal states hash equal.  Not memset: AddressSanitizer would check the range. */
__attribute__((no_sanitize_address)) static void clear_below(uintptr_t *sp)
{
	for (volatile uintptr_t *p = sp - 16; p < sp; p++)
		*p = 0;
}

/* On entry to a single-step trap: the state the child with an NMI here would be in,
 * and where it is.  A breakpoint's trap is no boundary of a stepped step. */
__attribute__((no_sanitize_address)) static void record(const siginfo_t *si, const ucontext_t *uc)
{
	struct sim_cpu *c = self;
	if (!c || !c->step.on || M.fast || (si && si->si_code == TRAP_PERF))
		return;
	const greg_t *g = uc->uc_mcontext.gregs;
	uintptr_t rip = (uintptr_t)g[REG_RIP];
	if (!sim_in_core(rip))
		return; /* stepper.c counts only the core's boundaries */
	if (run_log.hash)
		clear_below((uintptr_t *)g[REG_RSP]);
	uintptr_t sp = (uintptr_t)c->th.step;
	if (sp < run_log.steps || sp >= run_log.steps + run_log.nsteps * sizeof(struct sim_step))
		return;
	unsigned i = (unsigned)((sp - run_log.steps) / sizeof(struct sim_step));
	if (i < run_log.from || run_log.n >= REC_MAX)
		return;
	struct rec *r = &run_log.v[run_log.n++];
	r->step = i;
	r->idx = c->step.count + 1; /* what stepper.c is about to count */
	r->rip = rip;
	r->ok = 0;
	if (i != M.cur_step || !run_log.hash)
		return;
	r->ok = state_hash(uc, c, &r->h) == 0;
}

/* The node's last NMI is placed (a breakpoint's trap, or a step's where breakpoints
 * failed): from here on its step is stepped, in the very state stepping it from its
 * start would have reached.  In a step's first turn every core instruction stepped
 * counts once in the step's count and once in the turn's budget, so both are the
 * boundary's index; last_rip is this instruction, as stepper.c leaves it; the trap
 * flag comes back with the trap's return, and the NMI is taken before this
 * instruction as when stepping.  The boundary is recorded for its address. */
static void switch_to_stepping(ucontext_t *uc)
{
	struct sim_cpu *c = self;
	uintptr_t rip = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
	if (!c || c->nmi.in_handler || c->step.next < c->step.nat ||
	    M.cur_step != run_log.sw_step ||
	    (uintptr_t)c->th.step != run_log.steps + run_log.sw_step * sizeof(struct sim_step))
		return;
	run_log.sw_pending = 0;
	M.flags |= SIM_STEP_ALL; /* as sim_run sets it for a step it steps throughout */
	c->step.count = c->budget.insns = run_log.sw_idx;
	c->step.last_rip = rip;
	c->step.on = 1;
	uc->uc_mcontext.gregs[REG_EFL] |= 0x100;
	struct rec *last = run_log.n ? &run_log.v[run_log.n - 1] : NULL;
	if (run_log.n < REC_MAX &&
	    !(last && last->step == run_log.sw_step && last->idx == run_log.sw_idx))
		run_log.v[run_log.n++] =
		    (struct rec){.step = run_log.sw_step, .idx = run_log.sw_idx, .rip = rip};
}

static void explore_trap(int sig, siginfo_t *si, void *ucv)
{
	if (run_log.on)
		record(si, ucv);
	stepper_trap(sig, si, ucv);
	if (run_log.sw_pending)
		switch_to_stepping(ucv);
}

/* Wrap stepper.c's SIGTRAP handler, once, after sim_init() installed it. */
int run_log_install(void)
{
	static int done_once, ok;
	if (done_once)
		return ok;
	done_once = 1;
	struct sigaction sa;
	if (sim_init() != 0 || sigaction(SIGTRAP, NULL, &sa) != 0 || !(sa.sa_flags & SA_SIGINFO) ||
	    !sa.sa_sigaction)
		return 0;
	stepper_trap = sa.sa_sigaction;
	sa.sa_sigaction = explore_trap;
	ok = sigaction(SIGTRAP, &sa, NULL) == 0;
	return ok;
}

/* The step's first turn is recorded first; a later one (a resumed spin) counts on
 * past n. */
uintptr_t *rec_step_rips(const struct rec *recs, unsigned nrec, unsigned sj, uint32_t n)
{
	uintptr_t *rips = calloc((size_t)n + 1, sizeof *rips);
	for (unsigned q = 0; rips && q < nrec; q++)
		if (recs[q].step == sj && recs[q].idx >= 1 && recs[q].idx <= n &&
		    !rips[recs[q].idx])
			rips[recs[q].idx] = recs[q].rip;
	return rips;
}

/* The occurrence counts as stepper.c's arrivals() does: from the previous arrival's
 * boundary, which counts, on. */
struct sim_at rec_place(const uintptr_t *rips, uint32_t from, uint32_t c)
{
	struct sim_at by_index = {.kind = AT_INDEX, .index = c};
	uint32_t nth = 0;
	for (uint32_t i = from; rips && i <= c; i++) {
		if (!rips[i])
			return by_index;
		nth += rips[i] == rips[c];
	}
	return rips ? (struct sim_at){.kind = AT_ADDR, .index = nth, .addr = rips[c]} : by_index;
}

/* ---- The memo: open addressing, linear probing, a == 0 marks an empty slot ---- */

static struct {
	struct memo *t;
	size_t cap, n;
} T;

void memo_clear(void)
{
	if (T.t)
		memset(T.t, 0, T.cap * sizeof *T.t);
	T.n = 0;
}

static struct memo *memo_slot(uint64_t a, uint64_t b)
{
	size_t i = (size_t)fmix(a ^ b) & (T.cap - 1);
	while (T.t[i].a && (T.t[i].a != a || T.t[i].b != b))
		i = (i + 1) & (T.cap - 1);
	return &T.t[i];
}

struct memo *memo_find(uint64_t a, uint64_t b)
{
	if (!T.cap)
		return NULL;
	struct memo *m = memo_slot(a, b);
	return m->a ? m : NULL;
}

void memo_put(const struct memo *v)
{
	if (2 * (T.n + 1) > T.cap) {
		struct memo *old = T.t;
		size_t oldcap = T.cap;
		T.cap = T.cap ? 2 * T.cap : 4096;
		T.t = calloc(T.cap, sizeof *T.t);
		if (!T.t) {
			T.t = old;
			T.cap = oldcap;
			return; /* not remembered: never pruned */
		}
		T.n = 0;
		for (size_t i = 0; i < oldcap; i++)
			if (old[i].a) {
				*memo_slot(old[i].a, old[i].b) = old[i];
				T.n++;
			}
		free(old);
	}
	struct memo *m = memo_slot(v->a, v->b);
	if (!m->a)
		T.n++;
	*m = *v;
}

/* A verdict, for comparing twins.  A turn stopped by its CPU time (runaway.c) is
 * reported where the loop happened to be after 0.1 s, and how far it got: the
 * host's timing, not the schedule's, so only "runaway: still running" counts. */
uint64_t verdict_hash(const char *s)
{
	struct h128 h = {1, 2};
	size_t n = strlen(s);
	const char *tail = strstr(s, "still running in ");
	if (tail && strstr(s, "of CPU time"))
		n = (size_t)(tail - s);
	hbytes(&h, s, n);
	return fmix(h.a);
}
