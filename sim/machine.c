/* SPDX-License-Identifier: MIT */
/*
 * machine.c - the deterministic simulator: CPU threads that run one at a time,
 * schedules of steps, NMIs at instruction boundaries, and the oracle.
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
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "machine.h"
#include "nmi_platform.h"

void (*sim_nmi_hook)(uintptr_t rip, const struct nmi_cpu *state, int in_guest);

static void block_nmi(sigset_t *old)
{
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, SIGNMI);
	pthread_sigmask(SIG_BLOCK, &s, old);
}

void sim_hand_back(struct sim_cpu *c)
{
	(void)c;
	sem_post(&M.ctl);
}

/* Wait for the token inside a step (from plat_relax or plat_halt).  The NMI mask
 * the CPU had at the yield point comes back with the token, and a latched NMI is
 * taken right there. */
void sim_wait_turn(struct sim_cpu *c)
{
	sigset_t old;
	block_nmi(&old);
	while (sem_wait(&c->go) != 0 && errno == EINTR)
		;
	if (c->cmd == CMD_ABORT)
		siglongjmp(c->base, 1); /* the run is over: back to the idle loop */
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

static double thread_cpu_seconds(struct sim_cpu *c)
{
	clockid_t clk;
	struct timespec ts;
	if (pthread_getcpuclockid(c->thread, &clk) != 0 || clock_gettime(clk, &ts) != 0)
		return 0;
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Give CPU c the token and wait for it back.  A step that burns more than
 * SIM_RUNAWAY_SECONDS of CPU time without handing back is a loop that will not end
 * (the seed's wrapped counter drains ~4 billion times): the CPU is stopped with a
 * report of where it loops, instead of hanging the run.  Wall time is not used, so
 * a loaded host cannot cause a false report. */
#define SIM_RUNAWAY_SECONDS 0.1
static void turn(struct sim_cpu *c, int cmd)
{
	double start = thread_cpu_seconds(c);
	int kicked = 0;
	c->cmd = cmd;
	sem_post(&c->go);
	for (;;) {
		struct timespec dl;
		clock_gettime(CLOCK_REALTIME, &dl);
		dl.tv_nsec += 50 * 1000 * 1000;
		if (dl.tv_nsec >= 1000000000) {
			dl.tv_sec++;
			dl.tv_nsec -= 1000000000;
		}
		if (sem_timedwait(&M.ctl, &dl) == 0)
			return;
		if (errno == ETIMEDOUT && !kicked &&
		    thread_cpu_seconds(c) - start > SIM_RUNAWAY_SECONDS) {
			kicked = 1;
			pthread_kill(c->thread, SIGRUNAWAY);
		}
	}
}

/* ---- Steps, run on the CPU's own thread ------------------------------------------ */

static void critical_work(struct sim_cpu *c)
{
	/* Stands for an intercept handler's edits of per-CPU state under the mask. */
	for (volatile int i = 0; i < 4; i++)
		c->ops++;
}

static void ignored(struct sim_cpu *c, const char *why)
{
	if (tl_enabled())
		tl_event(c->id, 0, "(ignored: %s)", why);
}

static void world_stopped_check(struct sim_cpu *c)
{
	uint32_t round = nmi_quiesce_state.round;
	for (unsigned i = 0; i < M.ncpus; i++) {
		struct sim_cpu *o = &M.cpu[i];
		if (o == c)
			continue;
		if (o->core.quiesce_seen != round || !o->busy)
			sim_fail("stop-the-world round %u began while cpu%u was not parked", round,
				 i);
	}
	if (tl_enabled())
		tl_event(c->id, 0, "world stopped: every other CPU parked (round %u)", round);
}

static void run_op(struct sim_cpu *c, const struct sim_step *s)
{
	int host = !c->in_guest, unmasked = !c->core.masked;
	if (M.flags & SIM_RAW)
		host = 1, unmasked = s->op == OP_MASK ? 1 : 0;

	switch (s->op) {
	case OP_MASK:
		if (!host || !unmasked)
			return ignored(c, host ? "already masked" : "in guest mode");
		CORE(nmi_mask());
		break;
	case OP_UNMASK:
		if (unmasked)
			return ignored(c, "not masked");
		CORE(nmi_unmask());
		break;
	case OP_CRIT:
		if (!host || !unmasked)
			return ignored(c, host ? "already masked" : "in guest mode");
		CORE(nmi_mask());
		critical_work(c);
		CORE(nmi_unmask());
		break;
	case OP_ENTER:
		if (!host || !unmasked)
			return ignored(c, host ? "masked" : "already in guest mode");
		if (!c->core.guest_present) {
			CORE(nmi_mask());
			CORE(nmi_guest_attach());
			CORE(nmi_unmask());
		}
		sim_vmentry(c);
		break;
	case OP_EXIT:
		if (host)
			return ignored(c, "not in guest mode");
		c->in_guest = 0;
		CORE(nmi_mask());
		critical_work(c);
		CORE(nmi_unmask());
		break;
	case OP_GIRET:
		if (host)
			return ignored(c, "not in guest mode");
		if (c->vmcs.guest_intr & GUEST_INTR_BLOCK_NMI) {
			c->vmcs.guest_intr &= ~(uint64_t)GUEST_INTR_BLOCK_NMI;
			c->guest_in_nmi = 0;
			if (tl_enabled())
				tl_event(c->id, 0, "guest IRET: virtual-NMI blocking cleared");
		}
		break;
	case OP_BLOCK:
	case OP_UNBLOCK:
		if (!host || !unmasked)
			return ignored(c, host ? "masked" : "in guest mode");
		if (!c->core.guest_present)
			return ignored(c, "no guest attached");
		CORE(nmi_mask());
		if (s->op == OP_BLOCK)
			CORE(nmi_guest_block());
		else
			CORE(nmi_guest_unblock());
		CORE(nmi_unmask());
		break;
	case OP_FAULT:
		c->fault_armed = 1;
		if (tl_enabled())
			tl_event(c->id, 0, "armed: the next NMI delivery meets an EPT violation");
		break;
	case OP_QUIESCE: {
		if (!host || !unmasked)
			return ignored(c, host ? "masked" : "in guest mode");
		uint64_t flushes[SIM_MAX_CPUS];
		CORE(nmi_quiesce_begin());
		world_stopped_check(c);
		/* Counted once the world is stopped: before, this CPU may still take part
		 * in another CPU's round while it waits for the quiesce lock. */
		for (unsigned i = 0; i < M.ncpus; i++)
			flushes[i] = M.cpu[i].core.tlb_flushes;
		CORE(nmi_quiesce_end(s->arg));
		/* Every CPU has checked out, so every flush asked for has run. */
		for (unsigned i = 0; i < M.ncpus && s->arg; i++)
			if (M.cpu[i].core.tlb_flushes != flushes[i] + 1)
				sim_fail(
				    "stop-the-world with flush: cpu%u flushed %llu times", i,
				    (unsigned long long)(M.cpu[i].core.tlb_flushes - flushes[i]));
		break;
	}
	default: break;
	}
}

static void step_on_cpu(struct sim_cpu *c, const struct sim_step *s)
{
	c->nat = 0;
	c->atpos = 0;
	c->icount = 0;
	for (unsigned i = 0; i < s->nat && i < SIM_MAX_AT; i++)
		c->at[c->nat++] = s->at[i];
	/* AT_INDEX arrivals are sorted, so the trap handler only looks at the next one. */
	for (unsigned i = 1; i < c->nat; i++)
		for (unsigned j = i;
		     j > 0 && c->at[j - 1].kind == AT_INDEX && c->at[j].kind == AT_INDEX &&
		     c->at[j - 1].index > c->at[j].index;
		     j--) {
			struct sim_at t = c->at[j];
			c->at[j] = c->at[j - 1];
			c->at[j - 1] = t;
		}
	c->stepping = c->nat != 0 || (M.flags & SIM_STEP_ALL);
	c->last_rip = 0;
	if (c->in_guest)
		sim_process_exits(c); /* an NMI taken when the token came */
	run_op(c, s);
	if (c->in_guest)
		sim_process_exits(c);
	c->stepping = 0;
}

static void *cpu_main(void *arg)
{
	struct sim_cpu *c = arg;
	sigset_t unblocked;

	self = c;
	c->tid = gettid();
	block_nmi(&unblocked);
	sigdelset(&unblocked, SIGNMI);
	sim_hand_back(c); /* started: NMIs can be sent to this thread from now on */
	if (sigsetjmp(c->base, 1)) {
		/* Back from an aborted step (halt or end of run): acknowledge. */
		tf_off();
		c->stepping = 0;
		sim_hand_back(c);
	}
	for (;;) {
		while (sem_wait(&c->go) != 0 && errno == EINTR)
			;
		switch (c->cmd) {
		case CMD_QUIT: return NULL;
		case CMD_ABORT: break;
		case CMD_FLUSH: {
			/* Consume a pending SIGNMI without taking it: it belongs to a run
			 * that is over. */
			sigset_t s;
			struct timespec zero = {0, 0};
			sigemptyset(&s);
			sigaddset(&s, SIGNMI);
			while (sigtimedwait(&s, NULL, &zero) > 0)
				;
			break;
		}
		case CMD_OP:
		case CMD_SERVICE:
			/* Take the hardware mask the CPU has now: latched NMIs land here. */
			if (!sim_hw_blocked(c))
				pthread_sigmask(SIG_SETMASK, &unblocked, NULL);
			if (c->cmd == CMD_OP)
				step_on_cpu(c, c->step);
			else if (c->in_guest)
				sim_process_exits(c);
			block_nmi(NULL);
			break;
		default: break;
		}
		c->busy = 0;
		sim_hand_back(c);
	}
}

/* ---- The controller ---------------------------------------------------------------- */

int sim_init(void)
{
	if (M.started)
		return 0;
	sym_load();
	sim_install_handlers();
	sem_init(&M.ctl, 0, 0);
	/* Only one thread of a deterministic run is ever runnable: keep them all on one
	 * host core, so a hand-off is a same-core context switch, not a cross-core
	 * wake-up that waits for the other core's scheduler. */
	cpu_set_t one;
	CPU_ZERO(&one);
	CPU_SET(sched_getcpu() < 0 ? 0 : sched_getcpu(), &one);
	pthread_setaffinity_np(pthread_self(), sizeof one, &one);
	M.deterministic = 1;
	for (unsigned i = 0; i < SIM_MAX_CPUS; i++) {
		struct sim_cpu *c = &M.cpu[i];
		c->id = i;
		sem_init(&c->go, 0, 0);
		if (pthread_create(&c->thread, NULL, cpu_main, c) != 0) {
			perror("pthread_create");
			return -1;
		}
		while (sem_wait(&M.ctl) != 0 && errno == EINTR)
			;
	}
	M.started = 1;
	return 0;
}

void sim_fini(void)
{
	if (!M.started)
		return;
	for (unsigned i = 0; i < SIM_MAX_CPUS; i++) {
		turn(&M.cpu[i], CMD_ABORT);
		M.cpu[i].cmd = CMD_QUIT;
		sem_post(&M.cpu[i].go);
		pthread_join(M.cpu[i].thread, NULL);
	}
	M.started = 0;
}

static void reset_machine(unsigned ncpus)
{
	for (unsigned i = 0; i < SIM_MAX_CPUS; i++) {
		struct sim_cpu *c = &M.cpu[i];
		if (c->busy || c->halted)
			turn(c, CMD_ABORT);
		if (c->latched)
			turn(c, CMD_FLUSH); /* an aborted run left an NMI pending */
	}
	M.ncpus = ncpus;
	M.failed = 0;
	M.what[0] = 0;
	nmi_core_init();
	for (unsigned i = 0; i < SIM_MAX_CPUS; i++) {
		struct sim_cpu *c = &M.cpu[i];
		c->busy = c->halted = 0;
		c->in_handler = c->exit_blocked = c->latched = 0;
		c->burst = 0;
		c->sent = c->delivered = c->dropped = 0;
		c->in_guest = c->exit_pending = 0;
		c->guest_nmis = c->nmi_exits = c->window_exits = c->entries = 0;
		c->fault_armed = 0;
		c->vectoring = 0;
		c->guest_in_nmi = 0;
		c->stepping = 0;
		c->vmcs = (struct sim_vmcs){.pin = PIN_NMI_EXITING | PIN_VIRTUAL_NMIS};
		nmi_cpu_init(&c->core, i);
	}
}

static void service_all(void)
{
	for (unsigned round = 0; round < 64 && !M.failed; round++) {
		int progress = 0;
		for (unsigned i = 0; i < M.ncpus && !M.failed; i++) {
			struct sim_cpu *c = &M.cpu[i];
			if (!c->busy && !c->halted && (c->latched || c->burst) &&
			    !sim_hw_blocked(c)) {
				turn(c, CMD_SERVICE);
				progress = 1;
			}
		}
		if (!progress)
			return;
	}
}

/* Invariants that hold after every step, for every CPU that is not mid-step. */
static void check_step_invariants(void)
{
	for (unsigned i = 0; i < M.ncpus && !M.failed; i++) {
		struct sim_cpu *c = &M.cpu[i];
		struct nmi_cpu *n = &c->core;
		if (c->busy || c->halted)
			continue;
		if (n->visited > 0x10000u)
			sim_fail("cpu%u: deferred-NMI counter wrapped: visited = %#x", i,
				 n->visited);
		else if (n->guest_pending > NMI_GUEST_PENDING_MAX)
			sim_fail("cpu%u: %u guest NMIs pending, more than hardware could hold", i,
				 n->guest_pending);
		else if (n->guest_present) {
			int w = (c->vmcs.proc & PROC_NMI_WINDOW_EXITING) != 0;
			int want = n->guest_pending != 0 && !n->guest_sw_blocked;
			if (w != want)
				sim_fail(
				    "cpu%u: NMI-window exiting is %s with %u pending and guest "
				    "NMIs %s",
				    i, w ? "on" : "off", n->guest_pending,
				    n->guest_sw_blocked ? "blocked" : "unblocked");
		}
	}
}

/* NMI conservation, for a quiescent machine (nmi_core.h's accounting identities). */
void sim_check_conservation(int hw_exact)
{
	for (unsigned i = 0; i < M.ncpus && !M.failed; i++) {
		struct sim_cpu *c = &M.cpu[i];
		struct nmi_cpu *n = &c->core;
		uint64_t taken = n->nmi_entries + n->exit_nmis;
		uint64_t handled = n->handled_direct + n->handled_exit + n->drained;
		uint64_t owned =
		    n->quiesce_parks + n->guest_accepted + n->guest_coalesced + n->host_consumed;
		int queued = (c->vmcs.entry_intr & INTR_INFO_VALID) != 0;

		if (hw_exact && c->sent != c->delivered + c->dropped + c->latched + c->burst)
			sim_fail(
			    "cpu%u: hardware model: %llu NMIs sent, %llu delivered, %llu dropped "
			    "by the latch",
			    i, (unsigned long long)c->sent, (unsigned long long)c->delivered,
			    (unsigned long long)c->dropped);
		else if (c->delivered != taken)
			sim_fail("cpu%u: %llu NMIs delivered but the core saw %llu", i,
				 (unsigned long long)c->delivered, (unsigned long long)taken);
		else if (taken != n->handled_direct + n->handled_exit + n->deferred)
			sim_fail("cpu%u: %llu NMIs taken, %llu handled directly + %llu deferred", i,
				 (unsigned long long)taken,
				 (unsigned long long)(n->handled_direct + n->handled_exit),
				 (unsigned long long)n->deferred);
		else if (n->deferred != n->drained + n->visited || n->visited != 0)
			sim_fail("cpu%u: %s: %llu deferred while masked, %llu drained, %u still "
				 "counted",
				 i,
				 n->drained > n->deferred
				     ? "deferred-NMI counter underflow (decremented more often "
				       "than incremented: an NMI handled twice)"
				     : "NMI lost",
				 (unsigned long long)n->deferred, (unsigned long long)n->drained,
				 n->visited);
		else if (handled != owned)
			sim_fail("cpu%u: %llu NMIs handled but %llu given an owner", i,
				 (unsigned long long)handled, (unsigned long long)owned);
		else if (n->guest_accepted != n->guest_injected + n->guest_pending)
			sim_fail("cpu%u: guest NMI lost: %llu accepted, %llu injected, %u pending",
				 i, (unsigned long long)n->guest_accepted,
				 (unsigned long long)n->guest_injected, n->guest_pending);
		else if (n->guest_injected != c->guest_nmis + (uint64_t)queued)
			sim_fail("cpu%u: %llu NMIs injected but the guest took %llu", i,
				 (unsigned long long)n->guest_injected,
				 (unsigned long long)c->guest_nmis);
	}
}

/* The end of a schedule: every critical section ends and every spin finishes.  A
 * CPU left holding the mask by a `mask` step releases it (critical sections are
 * bounded), spinning CPUs run on, round-robin, until the machine is quiet. */
static void finish_all(void)
{
	static const struct sim_step unmask = {.op = OP_UNMASK};
	for (unsigned turns = 0; !M.failed; turns++) {
		int any = 0;
		for (unsigned i = 0; i < M.ncpus && !M.failed; i++) {
			struct sim_cpu *c = &M.cpu[i];
			if (c->halted)
				continue;
			if (c->busy) {
				turn(c, CMD_RESUME);
			} else if (c->core.masked) {
				c->step = &unmask;
				turn(c, CMD_OP);
			} else {
				continue;
			}
			any = 1;
			service_all();
		}
		if (!any)
			return;
		if (turns > plat_spin_limit() * 4) {
			sim_fail("CPUs still spinning after %u rounds: livelock", turns);
			return;
		}
	}
}

static void timeline_step(unsigned idx, const struct sim_step *s, int resume)
{
	if (!tl_enabled())
		return;
	char at[160] = "";
	size_t off = 0;
	for (unsigned i = 0; i < s->nat; i++) {
		const struct sim_at *a = &s->at[i];
		if (a->kind == AT_INDEX)
			off += snprintf(at + off, sizeof at - off, " nmi@%u", a->index);
		else if (a->kind == AT_ADDR)
			off +=
			    snprintf(at + off, sizeof at - off, " nmi@%s", sym_describe(a->addr));
		if (off >= sizeof at)
			break;
	}
	if (resume)
		tl_step(idx + 1, s->cpu, "run (resumes its spin)");
	else if (s->op == OP_NMI && s->arg > 1)
		tl_step(idx + 1, s->cpu, "nmi x%u (external)", s->arg);
	else if (s->op == OP_NMI)
		tl_step(idx + 1, s->cpu, "nmi (external)");
	else if (s->op == OP_QUIESCE && s->arg)
		tl_step(idx + 1, s->cpu, "quiesce flush%s", at);
	else
		tl_step(idx + 1, s->cpu, "%s%s", sched_op_name(s->op), at);
}

int sim_run(const struct sim_schedule *s, unsigned flags, struct sim_result *r)
{
	if (sim_init() != 0)
		return -1;
	memset(r, 0, sizeof *r);
	M.deterministic = 1;
	M.flags = flags;
	M.fast = s->fast;
	tl_enable((flags & SIM_TIMELINE) != 0);
	tl_reset();
	reset_machine(s->ncpus ? s->ncpus : 1);

	unsigned i;
	for (i = 0; i < s->nsteps && !M.failed; i++) {
		const struct sim_step *st = &s->step[i];
		struct sim_cpu *c = &M.cpu[st->cpu % M.ncpus];
		M.cur_step = i;
		if (c->halted)
			continue;
		if (c->busy) {
			timeline_step(i, st, 1);
			turn(c, CMD_RESUME);
		} else if (st->op == OP_NMI) {
			timeline_step(i, st, 0);
			sim_send_nmi(c, st->arg ? st->arg : 1);
		} else if (st->op == OP_RUN) {
			timeline_step(i, st, 0);
		} else {
			timeline_step(i, st, 0);
			c->step = st;
			turn(c, CMD_OP);
			r->step_insns[i] = c->icount;
			r->core_insns += c->icount;
		}
		service_all();
		check_step_invariants();
		tl_snapshot();
	}
	/* The end of the schedule: spinning CPUs run on, masks left held are released,
	 * then the books must balance. */
	M.cur_step = s->nsteps;
	if (tl_enabled())
		tl_step(0, 0, "(end of schedule: spinning CPUs run on, masks are released)");
	finish_all();
	service_all();
	finish_all();
	check_step_invariants();
	sim_check_conservation(1);
	tl_snapshot();
	r->failed = M.failed;
	r->step = M.failed ? M.cur_step : s->nsteps;
	snprintf(r->what, sizeof r->what, "%s", M.what);
	return 0;
}
