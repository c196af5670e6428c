/* SPDX-License-Identifier: MIT */
/*
 * explore.c - every placement of the nmi@* wildcards of a schedule, one run each,
 * at instruction precision.  A scenario stops being expanded at its first failing
 * schedule (unless every failure is wanted): a runaway core fails each of them only
 * after its turn's bound, and the first one already says what is wrong.
 *
 * With a number of NMIs (make explore's NMIS, sched_explore's k_max > 0) the
 * placements form a tree and subtrees that start in a state already explored are
 * pruned: see "Pruning" below.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>

#include "machine.h"
#include "state_hash.h"

struct explore {
	struct sim_schedule work; /* the schedule that runs                          */
	struct sim_schedule show; /* the same with every NMI by instruction index: what a
				   * failing schedule is reported and replayed as    */
	uint8_t base_nat[SIM_MAX_STEPS]; /* the scenario's own concrete arrivals */
	unsigned slot_step[SIM_MAX_STEPS * SIM_MAX_AT];
	unsigned nslots;
	int all; /* go on after a failure */
	unsigned long runs, failures;
	unsigned last_marked; /* the last step that carries nmi@* */
	unsigned long pruned; /* schedules not run: a twin's subtree counted for them */
	struct sim_schedule *fail_out;
	struct sim_result *fail_res;
};

static int done(const struct explore *e)
{
	return e->failures && !e->all;
}

static void failed(struct explore *e, const struct sim_result *r)
{
	if (e->failures++ == 0) {
		if (e->fail_out)
			*e->fail_out = e->show;
		if (e->fail_res)
			*e->fail_res = *r;
	}
}

static void explore_slot(struct explore *e, unsigned k, uint32_t from)
{
	struct sim_result r;
	if (k == e->nslots) {
		sim_run(&e->work, 0, &r);
		e->runs++;
		if (r.failed)
			failed(e, &r);
		return;
	}
	/* How many core instructions does this slot's step execute with the arrivals
	 * placed so far?  Every boundary up to there is a placement.  A schedule that
	 * fails already, with fewer NMIs, is a failing schedule too (and may never
	 * reach this step). */
	unsigned si = e->slot_step[k];
	struct sim_step *st = &e->work.step[si];
	sim_run(&e->work, SIM_STEP_ALL, &r);
	e->runs++;
	if (r.failed)
		failed(e, &r);
	if (done(e))
		return;
	uint32_t n = r.step_insns[si];
	for (uint32_t pos = from; pos <= n && !done(e); pos++) {
		st->at[st->nat++] = (struct sim_at){.kind = AT_INDEX, .index = pos};
		e->show = e->work;
		int same = k + 1 < e->nslots && e->slot_step[k + 1] == si;
		explore_slot(e, k + 1, same ? pos : 1);
		st->nat--;
	}
}

/* Every placement of the AT_EVERY wildcards of s: they become slots, concrete
 * arrivals stay where they are. */
static void explore_wildcards(struct explore *e, const struct sim_schedule *s)
{
	e->work = *s;
	e->nslots = 0;
	for (unsigned i = 0; i < s->nsteps; i++) {
		struct sim_step *st = &e->work.step[i];
		unsigned keep = 0;
		for (unsigned k = 0; k < st->nat; k++) {
			if (st->at[k].kind == AT_EVERY)
				e->slot_step[e->nslots++] = i;
			else
				st->at[keep++] = st->at[k];
		}
		st->nat = (uint8_t)keep;
	}
	e->show = e->work;
	explore_slot(e, 0, 1);
}

/* ---- Pruning ---------------------------------------------------------------------
 *
 * With k_max NMIs to place (k_max > 0) the schedules form a tree.  A node is one
 * schedule: its NMIs at (step, boundary) positions in nondecreasing order, among the
 * steps that carry nmi@*.  Its children add one NMI at or after its last one, while
 * fewer than k_max are placed.  Every schedule of up to k_max NMIs is one node, run
 * once.  A node with children runs stepped throughout (SIM_STEP_ALL), and at each
 * core instruction boundary B of a marked step after its last NMI, the SIGTRAP
 * handler (wrapped here: stepper.c is untouched) hashes the machine's state on entry
 * to the trap, before anything is placed at B.  A child with its new NMI at B is the
 * same schedule up to B, so it is in that very state at that moment too.
 *
 * The key of the subtree "an NMI at B, then up to r-1 more at or after B" is that
 * hash (128 bits: two independent 64-bit hashes) and r.  What the hash covers:
 *  - the running CPU's thread: every general register and RIP, RFLAGS, the NMI bit
 *    of its signal mask, and its whole stack from RSP up to cpu_main's frame (the
 *    core's frames, ops_run's, step_on_cpu's, cpu_main's locals).  The core is built
 *    -mno-red-zone, so nothing live lies below RSP; it is -mgeneral-regs-only and
 *    every vector register is caller-saved across the simulator's call into the
 *    core, so no vector register is live at a core boundary;
 *  - the core's only global, nmi_quiesce_state;
 *  - M: ncpus, failed (and what, once failed), cur_step (the schedule position),
 *    fast; for every CPU: its struct nmi_cpu, id, busy, halted, spins, the NMI line
 *    (in_handler, exit_blocked, latched, burst, sent, delivered, dropped), all of
 *    the VMX part (the five VMCS fields, in_guest, exit_pending, fault_armed,
 *    vectoring, detached, the books at detach, the guest's books), the stepper's
 *    count (the instruction position) and its arrivals not placed yet, the turn's
 *    budget (instructions, platform calls: the runaway bounds), and its thread's
 *    command and step.
 * The schedule after B (its steps, their concrete arrivals) is the same for every
 * node of one scenario.  So when two nodes record the same key at B, their children
 * there run the same instructions on the same data from B on, and every placement
 * after B meets the same state at the same index in both: the two subtrees hold the
 * same futures, verdict for verdict, and the second is not run.
 *
 * Not covered, and why it cannot make two futures differ:
 *  - CPUs other than the running one, idle in cpu_main's loop: a stack holding
 *    nothing but that loop, the NMI signal blocked, what is pending for it is
 *    nmi.latched/burst (hashed).  One suspended at a spin inside the core (busy)
 *    is covered: the callee-saved registers and RSP/RIP controller_relax() saved
 *    with getcontext() just before it handed the token back, and its stack from that
 *    RSP up to its cpu_main's frame.  Caller-saved registers are dead across that
 *    call, and what it does from there until its return into the core reads only
 *    those registers, that stack and memory;
 *  - the controller thread (sim_run's loop index is M.cur_step, hashed; the rounds
 *    of service_all and finish_all are not): a boundary outside the first turn of its
 *    own step (M.cur_step != that step) gets no key;
 *  - M.flags, how much is stepped: it changes no verdict, only which bound reports a
 *    turn of more than SIM_MAX_TURN_INSNS instructions (as without pruning, where
 *    counting runs are stepped and the others are not);
 *  - arrivals already placed, tf_return (stale inside the core), the timeline (off).
 * Fast mode (no traps) and AddressSanitizer builds (locals may live on a fake stack)
 * record no keys and prune nothing.
 *
 * A pruned subtree adds the schedules and the failing schedules of its twin: counts,
 * with --all the failures too, are those of the search without pruning.
 * NMISIM_PRUNE=0 turns pruning off.  NMISIM_PRUNE_CHECK=N explores every N-th pruned
 * subtree all the same, without pruning, and compares its schedules, its failures
 * and its first schedule's verdict with its twin's; explore_check_report() says how
 * many were checked and how many differed (any is a bug in the hash's coverage). */

#if defined(__SANITIZE_ADDRESS__)
#define EXPLORE_CAN_PRUNE 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define EXPLORE_CAN_PRUNE 0
#endif
#endif
#ifndef EXPLORE_CAN_PRUNE
#define EXPLORE_CAN_PRUNE 1
#endif

#ifndef TRAP_PERF
#define TRAP_PERF 6 /* si_code of a hardware breakpoint's SIGTRAP (stepper.c) */
#endif

/* One boundary of a node's run. */
struct rec {
	unsigned step;
	uint32_t idx;
	int ok; /* keyed: see above for when a boundary is not */
	uintptr_t rip; /* the instruction there: where a child's NMI is placed by address */
	struct h128 h;
};

#define REC_MAX (1u << 16)

static struct {
	int on;
	int hash; /* key the boundaries (pruning), not only their addresses */
	unsigned from; /* record steps from this one on */
	uintptr_t steps; /* the schedule being run: its step array */
	unsigned nsteps;
	struct rec v[REC_MAX];
	unsigned n;
} R;

static void (*stepper_trap)(int, siginfo_t *, void *);

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
	uintptr_t sp = (uintptr_t)c->th.step;
	if (sp < R.steps || sp >= R.steps + R.nsteps * sizeof(struct sim_step))
		return;
	unsigned i = (unsigned)((sp - R.steps) / sizeof(struct sim_step));
	if (i < R.from || R.n >= REC_MAX)
		return;
	struct rec *r = &R.v[R.n++];
	r->step = i;
	r->idx = c->step.count + 1; /* what stepper.c is about to count */
	r->rip = rip;
	r->ok = 0;
	if (i != M.cur_step || !R.hash)
		return;
	r->ok = state_hash(uc, c, &r->h) == 0;
}

static void explore_trap(int sig, siginfo_t *si, void *ucv)
{
	if (R.on)
		record(si, ucv);
	stepper_trap(sig, si, ucv);
}

/* Wrap stepper.c's SIGTRAP handler, once, after sim_init() installed it. */
static int trap_wrapped(void)
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

static struct {
	int prune;
	unsigned long check_every, seen, checked, mismatches;
} P;

static unsigned long last_pruned;

/* ---- Placing by address ----------------------------------------------------------
 *
 * An NMI placed by index, nmi@K, is single-stepped to: K traps (about 14 us each
 * here), and most runs are leaves that only need to get there.  Their parent ran
 * stepped and recorded the instruction at every boundary, so the child's new NMI is
 * placed by address instead (AT_ADDR: that address, its n-th execution since the
 * step's previous arrival, which counts): the child runs the same instructions as its
 * parent up to that boundary, so that n-th execution is that boundary.  stepper.c
 * places a step whose arrivals are all by address on a hardware breakpoint, one trap
 * per execution of the address, and steps nothing; its arrivals() serves both forms,
 * so the NMI lands the same.  A node (NMIs left to place) still runs stepped from its
 * last NMI's step on: its boundaries are its children's places and keys; steps before
 * it are not stepped.  The schedule reported and replayed for a failure is the same
 * one in the index form (e->show).
 *
 * The index form stays where hardware breakpoints are unavailable (stepper.c says why,
 * once; NMI_NO_HWBP=1 forces it), in fast mode, in a step with arrivals of its own,
 * and at a boundary whose address went unrecorded.  NMISIM_ADDR_CHECK=N runs every
 * N-th schedule placed by address in the index form as well, both with their
 * timelines, and compares them (explore_check_report()). */

static struct {
	int on;
	unsigned long check_every, seen, checked, differ;
} A;

/* The address of each boundary 1..n of step sj in the parent's run (0: unknown).  The
 * step's first turn is recorded first; a later one (a resumed spin) counts on past n. */
static uintptr_t *step_rips(const struct rec *recs, unsigned nrec, unsigned sj, uint32_t n)
{
	uintptr_t *rips = calloc((size_t)n + 1, sizeof *rips);
	for (unsigned q = 0; rips && q < nrec; q++)
		if (recs[q].step == sj && recs[q].idx >= 1 && recs[q].idx <= n &&
		    !rips[recs[q].idx])
			rips[recs[q].idx] = recs[q].rip;
	return rips;
}

/* An NMI before boundary c of a step whose previous arrival landed at boundary
 * `from` (1 when none): by address when every boundary from there is known. */
static struct sim_at place(const uintptr_t *rips, uint32_t from, uint32_t c)
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

/* The last run's timeline as text, less what names the placement (the schedule's
 * rows, "nmi@...", and "NMI arrives (core instruction N)" or "(core address)"): the
 * line after an arrival, where it landed, stays. */
static char *timeline_text(void)
{
	char *buf = NULL, *w;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (!f)
		return NULL;
	sim_timeline_print(f);
	fclose(f);
	w = buf;
	for (char *l = buf; *l;) {
		char *nl = strchr(l, '\n');
		size_t n = nl ? (size_t)(nl - l + 1) : strlen(l);
		if (!memmem(l, n, "nmi@", 4) && !memmem(l, n, "NMI arrives", 11)) {
			memmove(w, l, n);
			w += n;
		}
		l += n;
	}
	*w = 0;
	return buf;
}

/* NMISIM_ADDR_CHECK: e->work, placed by address, against e->show, by index. */
static void addr_check(struct explore *e, unsigned flags)
{
	struct sim_result ri, ra;
	sim_run(&e->show, flags | SIM_TIMELINE, &ri);
	char *ti = timeline_text();
	sim_run(&e->work, flags | SIM_TIMELINE, &ra);
	char *ta = timeline_text();
	/* Where a turn stopped by its CPU time was is the host's timing (verdict_hash). */
	int timed = ri.failed && strstr(ri.what, "of CPU time");
	A.checked++;
	if (ri.failed != ra.failed || verdict_hash(ri.what) != verdict_hash(ra.what) || !ti ||
	    !ta || (!timed && strcmp(ti, ta))) {
		A.differ++;
		fprintf(stderr, "nmisim: address check: '%s' by index, '%s' by address:\n", ri.what,
			ra.what);
		sched_print(stderr, &e->work);
	}
	free(ti);
	free(ta);
}

/* The node e->work: run it; with `left` NMIs still to place, explore its children,
 * each an NMI at (step, boundary) at or after (si0, c0).  Its own verdict goes to
 * *root_failed / *root_what. */
static void node(struct explore *e, const unsigned char *marked, unsigned left, unsigned si0,
		 uint32_t c0, struct memo *v)
{
	struct sim_result r;
	int keys = left > 0 && P.prune;
	unsigned flags = left > 0 ? SIM_STEP_ALL : 0;
	/* Stepped throughout: the steps where its children's NMIs may land. */
	sim_step_all_from = si0;
	sim_step_all_to = e->last_marked;
	if (A.check_every && memcmp(&e->work, &e->show, sizeof e->work) &&
	    ++A.seen % A.check_every == 0)
		addr_check(e, flags);
	if (left > 0 && (keys || A.on)) {
		R.on = 1;
		R.hash = keys;
		R.from = si0;
		R.steps = (uintptr_t)e->work.step;
		R.nsteps = e->work.nsteps;
		R.n = 0;
	}
	sim_run(&e->work, flags, &r);
	sim_step_all_from = 0;
	sim_step_all_to = SIM_MAX_STEPS;
	R.on = 0;
	e->runs++;
	if (r.failed)
		failed(e, &r);
	v->root_failed = r.failed;
	v->root_what = r.failed ? verdict_hash(r.what) : 0;
	snprintf(v->what, sizeof v->what, "%.*s", (int)sizeof v->what - 1, r.what);
	if (done(e) || left == 0)
		return;
	struct rec *recs = NULL;
	unsigned nrec = 0;
	if (R.n && (keys || A.on)) {
		recs = malloc(R.n * sizeof *recs);
		if (recs) {
			memcpy(recs, R.v, R.n * sizeof *recs);
			nrec = R.n;
		}
	}
	unsigned ri = 0;
	for (unsigned sj = si0; sj < e->work.nsteps && !done(e); sj++) {
		if (!marked[sj])
			continue;
		struct sim_step *st = &e->work.step[sj], *sh = &e->show.step[sj];
		uint32_t n = r.step_insns[sj], from = sj == si0 && c0 ? c0 : 1;
		uintptr_t *rips = A.on && !e->base_nat[sj] ? step_rips(recs, nrec, sj, n) : NULL;
		for (uint32_t c = from; c <= n && !done(e); c++) {
			if (st->nat >= SIM_MAX_AT)
				break;
			/* This boundary's record: records come in the order they ran. */
			const struct rec *rc = NULL;
			while (ri < nrec &&
			       (recs[ri].step < sj || (recs[ri].step == sj && recs[ri].idx < c)))
				ri++;
			if (ri < nrec && recs[ri].step == sj && recs[ri].idx == c && recs[ri].ok &&
			    !(sj == si0 && c == c0))
				rc = &recs[ri];
			uint64_t ka = 0, kb = 0;
			if (rc) {
				ka = fmix(rc->h.a ^ fmix(left)) |
				     1; /* never 0: 0 is an empty slot */
				kb = fmix(rc->h.b + left);
			}
			struct memo *twin = rc ? memo_find(ka, kb) : NULL;
			int check = 0;
			if (twin) {
				P.seen++;
				if (!P.check_every || P.seen % P.check_every) {
					e->pruned += twin->schedules;
					e->failures += twin->failures;
					continue;
				}
				check = 1;
			}
			unsigned long s0 = e->runs + e->pruned, f0 = e->failures;
			struct memo v = {.a = ka, .b = kb};
			st->at[st->nat++] = place(rips, from, c);
			sh->at[sh->nat++] = (struct sim_at){.kind = AT_INDEX, .index = c};
			int saved = P.prune;
			if (check)
				P.prune = 0; /* the whole subtree, as if never pruned */
			node(e, marked, left - 1, sj, c, &v);
			P.prune = saved;
			st->nat--;
			sh->nat--;
			v.schedules = e->runs + e->pruned - s0;
			v.failures = e->failures - f0;
			if (check) {
				P.checked++;
				if (v.schedules != twin->schedules ||
				    v.failures != twin->failures ||
				    v.root_failed != twin->root_failed ||
				    v.root_what != twin->root_what) {
					P.mismatches++;
					fprintf(stderr,
						"nmisim: prune check: step %u boundary %u: %lu "
						"schedules, %lu failing, '%s'; its twin: %lu, %lu, "
						"'%s'\n",
						sj, c, v.schedules, v.failures, v.what,
						twin->schedules, twin->failures, twin->what);
				}
			} else if (rc && !done(e)) {
				memo_put(&v);
			}
		}
		free(rips);
	}
	free(recs);
}

/* Every schedule of up to k_max NMIs among the steps that carry nmi@*, as a tree. */
static void explore_tree(struct explore *e, const struct sim_schedule *s, unsigned k_max)
{
	static unsigned char marked[SIM_MAX_STEPS];
	memset(marked, 0, sizeof marked);
	e->work = *s;
	for (unsigned i = 0; i < s->nsteps; i++) {
		struct sim_step *st = &e->work.step[i];
		unsigned keep = 0;
		for (unsigned k = 0; k < st->nat; k++) {
			if (st->at[k].kind == AT_EVERY) {
				marked[i] = 1;
				e->last_marked = i;
			} else
				st->at[keep++] = st->at[k];
		}
		st->nat = (uint8_t)keep;
		e->base_nat[i] = (uint8_t)keep;
	}
	e->show = e->work;
	A.on = !s->fast && trap_wrapped() && sim_hwbp_available();
	static int said;
	if (!s->fast && !A.on && !said++)
		fprintf(stderr, "nmisim: explore places each NMI by its instruction index, "
				"single-stepping up to it (slower)\n");
	const char *env = getenv("NMISIM_ADDR_CHECK");
	A.check_every = env ? strtoul(env, NULL, 10) : 0;
	env = getenv("NMISIM_PRUNE");
	P.prune = EXPLORE_CAN_PRUNE && !(env && !strcmp(env, "0")) && trap_wrapped();
	env = getenv("NMISIM_PRUNE_CHECK");
	P.check_every = env ? strtoul(env, NULL, 10) : 0;
	memo_clear();
	struct memo root;
	node(e, marked, k_max, 0, 0, &root);
}

unsigned long sched_explore_pruned(void)
{
	return last_pruned;
}

int explore_check_report(FILE *f)
{
	if (A.check_every)
		fprintf(f,
			"address check: %lu of %lu schedules placed by address also run by "
			"index, %lu differ%s\n",
			A.checked, A.seen, A.differ, A.differ ? ": THE PLACEMENTS DISAGREE" : "");
	if (!P.check_every)
		return A.differ != 0;
	fprintf(f, "prune check: %lu of %lu pruned subtrees explored anyway, %lu differ%s\n",
		P.checked, P.seen, P.mismatches, P.mismatches ? ": THE HASH MISSES STATE" : "");
	return P.mismatches != 0 || A.differ != 0;
}

int sched_has_wildcard(const struct sim_schedule *s)
{
	for (unsigned i = 0; i < s->nsteps; i++)
		for (unsigned k = 0; k < s->step[i].nat; k++)
			if (s->step[i].at[k].kind == AT_EVERY)
				return 1;
	return 0;
}

unsigned long sched_explore(const struct sim_schedule *s, unsigned k_max, int all,
			    unsigned long *failures, struct sim_schedule *fail_out,
			    struct sim_result *fail_res)
{
	static struct explore e;

	memset(&e, 0, sizeof e);
	e.all = all;
	e.fail_out = fail_out;
	e.fail_res = fail_res;
	if (k_max == 0)
		explore_wildcards(&e, s);
	else
		explore_tree(&e, s, k_max);
	*failures = e.failures;
	last_pruned = e.pruned;
	return e.runs;
}
