/* SPDX-License-Identifier: MIT */
/*
 * controller.c - the deterministic run: CPU threads that run one at a time, and
 * sim_run(), which replays a schedule on them.
 *
 * Token passing: the controller (the caller of sim_run) hands the token to one CPU
 * thread with a command and waits until that thread hands it back: at the end of
 * its step, or at a spin (plat_relax), where it stays "busy" until a later step
 * resumes it.  A CPU thread that waits for the token has SIGNMI blocked, so NMIs
 * sent to it are held (latched) until it runs again; a CPU that is not blocked
 * takes them at once because the controller "services" it right after the step
 * that sent them.  Nothing depends on the host's thread scheduling.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "machine.h"

unsigned sim_step_all_from = 0, sim_step_all_to = SIM_MAX_STEPS;

static sem_t ctl; /* the token comes back here */
static int started; /* the CPU threads exist    */

void controller_hand_back(void)
{
	sem_post(&ctl);
}

/* Wait for the token inside a step (from a spin or a stopped CPU).  The NMI mask
 * the CPU had at the yield point comes back with the token, and a latched NMI is
 * taken right there. */
void controller_wait_turn(struct sim_cpu *c)
{
	sigset_t old;
	nmi_hw_block(&old);
	while (sem_wait(&c->th.go) != 0 && errno == EINTR)
		;
	if (c->th.cmd == CMD_ABORT)
		siglongjmp(c->th.base, 1); /* the run is over: back to the idle loop */
	runaway_turn_begins(c);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* A spin in a deterministic run is a scheduling point: the schedule decides who
 * runs next. */
void controller_relax(struct sim_cpu *c)
{
	c->busy = 1;
	/* Its callee-saved registers, for explore.c's hash of the machine's state: the
	 * rest of this thread's future lies on its stack and in memory. */
	getcontext(&c->th.parked);
	controller_hand_back();
	controller_wait_turn(c);
	if (c->th.resume_own) {
		c->th.resume_own = 0;
		stepper_resume(c, c->th.step);
	}
}

/* Give CPU c the token and wait for it back (runaway.c bounds the wait). */
static void turn(struct sim_cpu *c, int cmd)
{
	c->th.cmd = cmd;
	sem_post(&c->th.go);
	runaway_watch(c, &ctl);
}

/* ---- A step, run on the CPU's own thread ----------------------------------------- */

static void step_on_cpu(struct sim_cpu *c, const struct sim_step *s)
{
	stepper_begin(c, s);
	if (c->vmx.in_guest)
		vmx_hw_exits(c); /* an NMI taken when the token came */
	c->th.ignored = ops_run(c, s);
	if (c->vmx.in_guest)
		vmx_hw_exits(c);
	stepper_end(c);
}

/* Zero the stack below the caller, where a turn's frames are about to go.  What
 * lies there was left by whatever ran before (the wait for the token, a previous
 * run's steps), and a slot a frame reserves but never writes (alignment padding)
 * would show it to explore.c's hash of the machine's state: states that are equal
 * would hash apart, by chance, and pruning would vary from run to run. */
static __attribute__((noinline)) void scrub_stack(void)
{
	volatile uint64_t area[512];
	for (unsigned i = 0; i < sizeof area / sizeof area[0]; i++)
		area[i] = 0;
}

static void *cpu_main(void *arg)
{
	struct sim_cpu *c = arg;
	sigset_t unblocked;

	self = c;
	c->th.tid = gettid();
	c->th.stack_hi = (uintptr_t)__builtin_frame_address(0);
	nmi_hw_block(&unblocked);
	sigdelset(&unblocked, SIGNMI);
	controller_hand_back(); /* started: NMIs can be sent to this thread from now on */
	if (sigsetjmp(c->th.base, 1)) {
		/* Back from an aborted step (halt or end of run): acknowledge. */
		tf_off();
		stepper_end(c);
		controller_hand_back();
	}
	for (;;) {
		while (sem_wait(&c->th.go) != 0 && errno == EINTR)
			;
		runaway_turn_begins(c);
		scrub_stack();
		switch (c->th.cmd) {
		case CMD_QUIT: return NULL;
		case CMD_FLUSH: nmi_hw_discard(); break;
		case CMD_OP:
		case CMD_SERVICE:
			/* Take the hardware mask the CPU has now: latched NMIs land here. */
			if (!nmi_hw_blocked(c))
				pthread_sigmask(SIG_SETMASK, &unblocked, NULL);
			if (c->th.cmd == CMD_OP)
				step_on_cpu(c, c->th.step);
			else if (c->vmx.in_guest)
				vmx_hw_exits(c);
			nmi_hw_block(NULL);
			break;
		default: break;
		}
		c->busy = 0;
		controller_hand_back();
	}
}

/* ---- The controller ---------------------------------------------------------------- */

int sim_init(void)
{
	if (started)
		return 0;
	sym_load();
	nmi_hw_install();
	stepper_install();
	runaway_install();
	sem_init(&ctl, 0, 0);
	/* Only one thread of a deterministic run is ever runnable: keep them all on one
	 * host core, so a hand-off is a same-core context switch, not a cross-core
	 * wake-up that waits for the other core's scheduler. */
	cpu_set_t one;
	CPU_ZERO(&one);
	CPU_SET(sched_getcpu() < 0 ? 0 : sched_getcpu(), &one);
	pthread_setaffinity_np(pthread_self(), sizeof one, &one);
	machine_reset(1, &sim_deterministic);
	for (unsigned i = 0; i < SIM_MAX_CPUS; i++) {
		struct sim_cpu *c = &M.cpu[i];
		sem_init(&c->th.go, 0, 0);
		if (pthread_create(&c->th.thread, NULL, cpu_main, c) != 0) {
			perror("pthread_create");
			return -1;
		}
		while (sem_wait(&ctl) != 0 && errno == EINTR)
			;
	}
	started = 1;
	return 0;
}

void sim_fini(void)
{
	if (!started)
		return;
	for (unsigned i = 0; i < SIM_MAX_CPUS; i++) {
		turn(&M.cpu[i], CMD_ABORT);
		M.cpu[i].th.cmd = CMD_QUIT;
		sem_post(&M.cpu[i].th.go);
		pthread_join(M.cpu[i].th.thread, NULL);
	}
	started = 0;
}

/* What the last run left behind goes: spinning or stopped CPUs back to their idle
 * loop, NMIs still pending discarded.  Then the one reset. */
static void new_run(unsigned ncpus)
{
	for (unsigned i = 0; i < SIM_MAX_CPUS; i++) {
		struct sim_cpu *c = &M.cpu[i];
		if (c->busy || c->halted)
			turn(c, CMD_ABORT);
		if (c->nmi.latched)
			turn(c, CMD_FLUSH);
	}
	machine_reset(ncpus, &sim_deterministic);
}

/* CPUs that are not blocked take their latched NMIs now. */
static void service_all(void)
{
	for (unsigned round = 0; round < SIM_MAX_SERVICE && !M.failed; round++) {
		int progress = 0;
		for (unsigned i = 0; i < M.ncpus && !M.failed; i++) {
			struct sim_cpu *c = &M.cpu[i];
			if (!c->busy && !c->halted && (c->nmi.latched || c->nmi.burst) &&
			    !nmi_hw_blocked(c)) {
				turn(c, CMD_SERVICE);
				progress = 1;
			}
		}
		if (!progress)
			return;
	}
}

/* The end of a schedule: every critical section ends and every spin finishes.  A
 * CPU the schedule left holding the mask (a `mask` step with no `unmask` after it,
 * by ops.c's model: never the core's own `masked`, which the laws check) releases
 * it, since critical sections are bounded; spinning CPUs run on, round-robin, until
 * the machine is quiet. */
static void finish_all(void)
{
	static const struct sim_step unmask = {.op = OP_UNMASK};
	for (unsigned rounds = 0; !M.failed; rounds++) {
		int any = 0;
		for (unsigned i = 0; i < M.ncpus && !M.failed; i++) {
			struct sim_cpu *c = &M.cpu[i];
			if (c->halted)
				continue;
			if (c->busy) {
				turn(c, CMD_RESUME);
			} else if (c->expect.masked) {
				c->th.step = &unmask;
				turn(c, CMD_OP);
			} else {
				continue;
			}
			any = 1;
			service_all();
		}
		if (!any)
			return;
		if (rounds > SIM_MAX_FINISH) {
			sim_fail("CPUs still spinning after %u rounds: livelock", rounds);
			return;
		}
	}
}

int sim_run(const struct sim_schedule *s, unsigned flags, struct sim_result *r)
{
	if (sim_init() != 0)
		return -1;
	memset(r, 0, sizeof *r);
	r->flags = flags;
	tl_enable((flags & SIM_TIMELINE) != 0);
	tl_reset();
	new_run(s->ncpus ? s->ncpus : 1);
	M.flags = flags;
	M.fast = s->fast;
	coverage_run_begins(); /* make coverage (sim/coverage.c) */

	for (unsigned i = 0; i < s->nsteps && !M.failed; i++) {
		const struct sim_step *st = &s->step[i];
		struct sim_cpu *c = &M.cpu[st->cpu % M.ncpus];
		M.cur_step = i;
		M.flags = flags & ~SIM_STEP_ALL;
		if ((flags & SIM_STEP_ALL) && i >= sim_step_all_from && i <= sim_step_all_to)
			M.flags |= SIM_STEP_ALL;
		if (c->halted)
			continue;
		tl_schedule_step(i, st, c->busy);
		if (c->busy) {
			/* A `run` step with NMIs of its own counts and places them in the turn
			 * it resumes (stepper_resume); not a spin inside the NMI handler,
			 * where NMIs are blocked, and not in a run stepped throughout
			 * (explore's nodes): there a resumed turn under the trap flag has
			 * corrupted the resumed CPU's registers (a schedule of two
			 * requesters' rounds and their `run` steps, with an NMI in each),
			 * so explore counts no boundaries in resumed turns. */
			int own = st->op == OP_RUN && st->nat && !(M.flags & SIM_STEP_ALL) &&
				  !c->nmi.in_handler;
			if (own)
				c->th.step = st;
			c->th.resume_own = own;
			r->step_flags[i] = SIM_STEP_RESUMED;
			turn(c, CMD_RESUME);
			if (own)
				r->step_insns[i] = c->step.count;
		} else if (st->op == OP_NMI) {
			sim_send_nmi(c, st->arg ? st->arg : 1);
		} else if (st->op == OP_RUN) {
			r->step_flags[i] = SIM_STEP_IGNORED; /* nothing spinning */
		} else {
			c->th.step = st;
			c->th.ignored = 0;
			turn(c, CMD_OP);
			r->step_insns[i] = c->step.count;
			r->step_flags[i] = c->th.ignored ? SIM_STEP_IGNORED : 0;
		}
		service_all();
		oracle_step();
		tl_snapshot();
	}
	/* The end of the schedule: spinning CPUs run on, masks left held are released,
	 * then the books must balance. */
	M.cur_step = s->nsteps;
	M.flags = flags;
	if (tl_enabled())
		tl_step(0, 0, "(end of schedule: spinning CPUs run on, masks are released)");
	finish_all();
	oracle_end();
	tl_snapshot();
	r->failed = M.failed;
	snprintf(r->what, sizeof r->what, "%s", M.what);
	return 0;
}
