/* SPDX-License-Identifier: MIT */
/*
 * explore.c - every placement of the nmi@* wildcards of a schedule, one run each,
 * at instruction precision.  A scenario stops being expanded at its first failing
 * schedule (unless every failure is wanted): a runaway core fails each of them only
 * after its turn's bound, and the first one already says what is wrong.
 */
#include <string.h>

#include "sim.h"

struct explore {
	struct sim_schedule work;
	unsigned slot_step[SIM_MAX_STEPS * SIM_MAX_AT];
	unsigned nslots;
	int all; /* go on after a failure */
	unsigned long runs, failures;
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
			*e->fail_out = e->work;
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
	explore_slot(e, 0, 1);
}

/* Every way of sharing `left` arrivals among the marked steps from `at` on, each
 * one explored as wildcards. */
static void compose(struct explore *e, const struct sim_schedule *s, const unsigned *marked,
		    unsigned m, unsigned at, unsigned left, unsigned *share)
{
	if (at == m - 1) {
		share[at] = left;
		struct sim_schedule t = *s;
		for (unsigned i = 0; i < m; i++) {
			struct sim_step *st = &t.step[marked[i]];
			unsigned keep = 0;
			for (unsigned a = 0; a < st->nat; a++)
				if (st->at[a].kind != AT_EVERY)
					st->at[keep++] = st->at[a];
			for (unsigned n = 0; n < share[i] && keep < SIM_MAX_AT; n++)
				st->at[keep++] = (struct sim_at){.kind = AT_EVERY};
			st->nat = (uint8_t)keep;
		}
		explore_wildcards(e, &t);
		return;
	}
	for (unsigned n = 0; n <= left && !done(e); n++) {
		share[at] = n;
		compose(e, s, marked, m, at + 1, left - n, share);
	}
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
	static unsigned marked[SIM_MAX_STEPS], share[SIM_MAX_STEPS];
	unsigned m = 0;

	memset(&e, 0, sizeof e);
	e.all = all;
	e.fail_out = fail_out;
	e.fail_res = fail_res;
	for (unsigned i = 0; i < s->nsteps; i++)
		for (unsigned a = 0; a < s->step[i].nat; a++)
			if (s->step[i].at[a].kind == AT_EVERY) {
				marked[m++] = i;
				break;
			}
	if (k_max == 0 || m == 0)
		explore_wildcards(&e, s);
	for (unsigned k = 1; k <= k_max && m && !done(&e); k++)
		compose(&e, s, marked, m, 0, k, share);
	*failures = e.failures;
	return e.runs;
}
