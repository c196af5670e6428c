/* SPDX-License-Identifier: MIT */
/*
 * runaway.c - every turn of a CPU in a deterministic run ends, one way or another.
 *
 * A turn is what a CPU thread runs between receiving the token and handing it back
 * (at the end of its step or at a spin).  A core that loops for ever inside one turn
 * (the seed's wrapped counter drains ~4 billion times; a broken drain condition
 * never leaves) is stopped and reported as a violation, with where it loops, by the
 * first bound it crosses:
 *   - SIM_MAX_TURN_CALLS calls into the platform (counted in every turn);
 *   - SIM_MAX_TURN_INSNS core instructions (counted while the trap flag steps it);
 *   - SIM_RUNAWAY_SECONDS of the thread's CPU time (a loop that makes no call and is
 *     not stepped: nothing else can count it; ten times that while stepping, whose
 *     instruction bound comes first).  CPU time, not wall time, so a loaded host
 *     cannot cause a false report.
 * The first two are exact, so the report is the same run after run.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <time.h>
#include <ucontext.h>

#include "machine.h"

void runaway_turn_begins(struct sim_cpu *c)
{
	c->budget = (struct sim_budget){0};
}

/* The turn has used more than `max` of something: stop the CPU where it is. */
static void within(struct sim_cpu *c, uintptr_t rip, uint32_t used, unsigned max, const char *what)
{
	if (used > max)
		failure_stop_cpu(
		    c, rip,
		    "cpu%u: runaway: more than %u %s in one turn, at %s (visited = %#x, "
		    "drained %llu)",
		    c->id, max, what, sym_describe(rip), c->core.visited,
		    (unsigned long long)c->core.drained);
}

/* A call from the core into the platform (rip: its return address). */
void runaway_count_call(struct sim_cpu *c, uintptr_t rip)
{
	if (M.mode->max_turn_calls)
		within(c, rip, ++c->budget.calls, M.mode->max_turn_calls,
		       "calls into the platform");
}

/* From the trap handler: one more core instruction stepped. */
void runaway_count_insn(struct sim_cpu *c, uintptr_t rip)
{
	within(c, rip, ++c->budget.insns, SIM_MAX_TURN_INSNS, "core instructions");
}

double runaway_cpu_seconds(const struct sim_cpu *c)
{
	clockid_t clk;
	struct timespec ts;
	if (pthread_getcpuclockid(c->th.thread, &clk) != 0 || clock_gettime(clk, &ts) != 0)
		return 0;
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The controller waits for CPU c to hand the token back (`back` is posted), looking
 * every 10 ms at the CPU time c burns meanwhile. */
void runaway_watch(struct sim_cpu *c, sem_t *back)
{
	double start = runaway_cpu_seconds(c);
	int kicked = 0;
	for (;;) {
		struct timespec dl;
		clock_gettime(CLOCK_REALTIME, &dl);
		dl.tv_nsec += 10 * 1000 * 1000;
		if (dl.tv_nsec >= 1000000000) {
			dl.tv_sec++;
			dl.tv_nsec -= 1000000000;
		}
		if (sem_timedwait(back, &dl) == 0)
			return;
		/* A stepped turn is bounded by its instructions, exactly: give it time. */
		double limit = SIM_RUNAWAY_SECONDS * (c->step.on ? 10 : 1);
		if (errno == ETIMEDOUT && !kicked && runaway_cpu_seconds(c) - start > limit) {
			kicked = 1;
			pthread_kill(c->th.thread, SIGRUNAWAY);
		}
	}
}

/* The controller saw this CPU burn its turn's CPU time (or, free-running, stress.c
 * saw it finish no operation in STRESS_RUNAWAY_SECONDS of it): report where it loops. */
static void on_runaway(int sig, siginfo_t *si, void *ucv)
{
	(void)sig;
	(void)si;
	ucontext_t *uc = ucv;
	struct sim_cpu *c = self;
	uintptr_t rip = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
	char where[128];
	/* The function, not the offset: where in its loop the signal caught it is
	 * chance, the loop is not. */
	snprintf(where, sizeof where, "%s", sym_describe(rip));
	where[strcspn(where, "+")] = 0;
	if (M.mode == &sim_free_running) {
		char what[512];
		snprintf(what, sizeof what,
			 "cpu%u: runaway: no operation finished in %g s of CPU time, still "
			 "running in %s (visited = %#x, drained %llu)",
			 c->id, SIM_STRESS_RUNAWAY_SECONDS, where, c->core.visited,
			 (unsigned long long)c->core.drained);
		M.mode->halt(c, what);
	}
	failure_stop_cpu(c, rip,
			 "cpu%u: runaway: still running in %s after %g s of CPU time in one turn "
			 "(visited = %#x, drained %llu)",
			 c->id, where, SIM_RUNAWAY_SECONDS, c->core.visited,
			 (unsigned long long)c->core.drained);
}

void runaway_install(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = on_runaway;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	sigaddset(&sa.sa_mask, SIGNMI);
	sigaddset(&sa.sa_mask, SIGTRAP);
	sigaction(SIGRUNAWAY, &sa, NULL);
}
