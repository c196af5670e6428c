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

int (*sched_explore_stop)(void);

static int done(const struct explore *e)
{
	return (e->failures && !e->all) || (sched_explore_stop && sched_explore_stop());
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
 * once.  A node with children runs stepped (SIM_STEP_ALL) from its last NMI on, and
 * at each core instruction boundary B of a marked step after that NMI, the SIGTRAP
 * handler (wrapped by state_hash.c: stepper.c's is unchanged) hashes the machine's
 * state on entry to the trap, before anything is placed at B.  A child with its new
 * NMI at B is the same schedule up to B, so it is in that very state at that moment
 * too, but for dead bytes (below).
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
 * same futures, verdict for verdict, and the second is not run.  (Placed by address:
 * the same address and occurrence in both.)
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
 *  - arrivals already placed, tf_return (stale inside the core), the timeline (off);
 *    the count of a step placed on a breakpoint (its hits, not its instructions),
 *    never read once its arrivals are placed, as they are within its first turn;
 *  - dead bytes, which depend on how the run got there (stepped or on a breakpoint,
 *    and after which run): the 128 bytes under RSP are zeroed at every stepped
 *    boundary, so a frame's never-written padding holds zeros; a caller-saved
 *    register still holding stepper.c's trampoline, the return address a stepped
 *    call out of the core was given, is hashed as the address it stands for.  Only
 *    pruning depends on these: a dead byte hashed is a twin missed, never one made.
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

static struct {
	int prune;
	unsigned long check_every, seen, checked, mismatches;
} P;

static unsigned long last_pruned;

/* ---- Placing by address ----------------------------------------------------------
 *
 * An NMI placed by index, nmi@K, is single-stepped to: K traps of about 14 us here.
 * A child's parent ran stepped and recorded the instruction at every boundary, so the
 * child's new NMI is placed by address instead (AT_ADDR: that address, its n-th
 * execution since the step's previous arrival, which counts): the child runs its
 * parent's instructions up to there, so that n-th execution is that boundary.
 * stepper.c places a step whose arrivals are all by address on a hardware breakpoint,
 * a trap per execution of the address and no stepping; its arrivals() serves both
 * forms, so the NMI lands before the same instruction.  A leaf is not stepped at all.
 * A node runs its last NMI's step on the breakpoint up to that NMI, then stepped
 * (state_hash.c's switch_to_stepping() leaves the stepper as stepping from the start
 * would have), and its later marked steps stepped.  A failure is reported and
 * replayed in the index form (e->show), the schedule the search meant.
 *
 * The index form stays where hardware breakpoints are unavailable (stepper.c says why,
 * once; NMI_NO_HWBP=1 forces it), in fast mode, in a step with arrivals of its own,
 * and at a boundary whose address went unrecorded.  NMISIM_ADDR_CHECK=N runs every
 * N-th schedule placed by address in the index form too, both with their timelines,
 * and compares them and a node's instruction counts (explore_check_report()). */

static struct {
	int on;
	unsigned long check_every, seen, checked, differ;
	unsigned long unswitched; /* nodes that never reached their last NMI: a bug */
} A;

/* The last run's timeline as text, less what names the placement (the schedule's
 * rows, "nmi@...", and "NMI arrives (core instruction N)" or "(core address)"): the
 * line after an arrival, where it landed, stays. */
static char *timeline_text(void)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (!f)
		return NULL;
	sim_timeline_print(f);
	fclose(f);
	char *w = buf;
	for (char *l = buf, *nl; *l; l = nl ? nl + 1 : l + strlen(l)) {
		nl = strchr(l, '\n');
		size_t n = nl ? (size_t)(nl - l + 1) : strlen(l);
		if (!memmem(l, n, "nmi@", 4) && !memmem(l, n, "NMI arrives", 11))
			w = (char *)memmove(w, l, n) + n;
	}
	*w = 0;
	return buf;
}

/* Are the node's NMIs in its own step all by address? */
static int by_addr(const struct explore *e, unsigned si)
{
	const struct sim_step *st = &e->work.step[si];
	for (unsigned k = 0; k < st->nat; k++)
		if (st->at[k].kind != AT_ADDR)
			return 0;
	return st->nat && !e->base_nat[si];
}

/* NMISIM_ADDR_CHECK: the run of e->work that just ended (ra, with its timeline),
 * placed by address, against e->show, by index and stepped from step si0 on. */
static void addr_check(struct explore *e, unsigned flags, unsigned si0, const struct sim_result *ra,
		       unsigned long n)
{
	struct sim_result ri;
	char *ta = timeline_text();
	sim_step_all_from = si0;
	sim_run(&e->show, flags | SIM_TIMELINE, &ri);
	char *ti = timeline_text();
	/* Where a turn stopped by its CPU time was is the host's timing (verdict_hash). */
	int timed = ri.failed && strstr(ri.what, "of CPU time");
	int same = ri.failed == ra->failed && verdict_hash(ri.what) == verdict_hash(ra->what) &&
		   ti && ta && (timed || !strcmp(ti, ta));
	/* A node's children are placed by its counts: they must be the stepped ones. */
	for (unsigned i = si0; same && (flags & SIM_STEP_ALL) && i < e->work.nsteps; i++)
		same = ri.step_insns[i] == ra->step_insns[i];
	A.checked++;
	if (!same) {
		A.differ++;
		fprintf(stderr, "nmisim: address check (schedule %lu): '%s' by index, '%s':\n", n,
			ri.what, ra->what);
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
	int compare = A.check_every && memcmp(&e->work, &e->show, sizeof e->work) &&
		      ++A.seen % A.check_every == 0;
	/* Stepped throughout: the steps where its children's NMIs may land; its own
	 * step only from its last NMI on when that is placed by address. */
	int sw = left > 0 && c0 && A.on && by_addr(e, si0);
	sim_step_all_from = si0 + (sw ? 1 : 0);
	sim_step_all_to = e->last_marked;
	if (left > 0 && (keys || A.on)) {
		run_log.on = 1;
		run_log.hash = keys;
		run_log.from = si0;
		run_log.steps = (uintptr_t)e->work.step;
		run_log.nsteps = e->work.nsteps;
		run_log.n = 0;
		run_log.sw_pending = sw;
		run_log.sw_step = si0;
		run_log.sw_idx = c0;
	}
	sim_run(&e->work, flags | (compare ? SIM_TIMELINE : 0), &r);
	if (run_log.sw_pending) {
		/* It never got there, as it should have (its parent did): run it again,
		 * stepped from its step's start, and say so. */
		run_log.sw_pending = 0;
		run_log.n = 0;
		sim_step_all_from = si0;
		sim_run(&e->work, flags | (compare ? SIM_TIMELINE : 0), &r);
		if (A.unswitched++ == 0)
			fprintf(stderr, "nmisim: explore: a schedule never reached its last NMI "
					"placed by address; run again stepped (a bug)\n");
	}
	run_log.on = 0;
	if (compare)
		addr_check(e, flags, si0, &r, e->runs + e->pruned + 1);
	sim_step_all_from = 0;
	sim_step_all_to = SIM_MAX_STEPS;
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
	if (run_log.n && (keys || A.on)) {
		recs = malloc(run_log.n * sizeof *recs);
		if (recs) {
			memcpy(recs, run_log.v, run_log.n * sizeof *recs);
			nrec = run_log.n;
		}
	}
	unsigned ri = 0;
	for (unsigned sj = si0; sj < e->work.nsteps && !done(e); sj++) {
		if (!marked[sj])
			continue;
		struct sim_step *st = &e->work.step[sj], *sh = &e->show.step[sj];
		uint32_t n = r.step_insns[sj], from = sj == si0 && c0 ? c0 : 1;
		uintptr_t *rips =
		    A.on && !e->base_nat[sj] ? rec_step_rips(recs, nrec, sj, n) : NULL;
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
			st->at[st->nat++] = rec_place(rips, from, c);
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
	A.on = !s->fast && run_log_install() && sim_hwbp_available();
	static int said;
	if (!s->fast && !A.on && !said++)
		fprintf(stderr, "nmisim: explore places each NMI by its instruction index, "
				"single-stepping up to it (slower)\n");
	const char *env = getenv("NMISIM_ADDR_CHECK");
	A.check_every = env ? strtoul(env, NULL, 10) : 0;
	env = getenv("NMISIM_PRUNE");
	P.prune = EXPLORE_CAN_PRUNE && !(env && !strcmp(env, "0")) && run_log_install();
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
	unsigned long ad = A.differ + A.unswitched;
	if (A.check_every)
		fprintf(f,
			"address check: %lu of %lu schedules placed by address also run by "
			"index, %lu differ%s\n",
			A.checked, A.seen, ad, ad ? ": THE PLACEMENTS DISAGREE" : "");
	if (P.check_every)
		fprintf(
		    f, "prune check: %lu of %lu pruned subtrees explored anyway, %lu differ%s\n",
		    P.checked, P.seen, P.mismatches, P.mismatches ? ": THE HASH MISSES STATE" : "");
	return (P.check_every && P.mismatches) || (A.check_every && ad);
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
