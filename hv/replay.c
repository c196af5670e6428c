/* SPDX-License-Identifier: MIT */
/*
 * replay.c - workload=replay: a simulator scenario on real CPUs (docs/replay.md).
 *
 *   replay=<ncpus>:<step>/<step>/...      the schedule (replay_sched.c)
 *   replay_trace=<K>                      bracket case K with Bochs magic breakpoints
 *
 * Scenario CPU i is hypervisor CPU i (the core's CPU ids must be the scenario's), and
 * CPU <ncpus> is the controller: it plays sim/controller.c's part, handing the token
 * to one CPU at a time, sending the scenario's external NMIs as real NMI IPIs,
 * servicing CPUs whose NMIs wait, letting spinning CPUs run on at the end, and
 * checking nmi_books.c's laws after every step, as the simulator's oracle does.  A
 * step with nmi@* runs once to count its core instructions, then once per boundary,
 * the machine's NMI state reset in between, all in one boot.
 *
 * Output, one line each (scripts/replay_hv.py parses them):
 *   REPLAY: scenario cpus=N steps=S variant=V wildcard_step=W
 *   REPLAY: count step=W insns=N
 *   REPLAY: case at=K|- verdict=pass | verdict=FAIL what=<the simulator's wording>
 *   REPLAY: done cases=C pass=P fail=F
 *   RESULT: PASS replay ... | RESULT: FAIL replay: <why> | RESULT: SKIP replay: <why>
 */
#include <stdarg.h>

#include "hv.h"
#include "nmi_platform.h"
#include "replay.h"
#include "x86.h"

#define TURN_US 20000000u /* a turn that does not end is a hang, not a verdict */
/* An NMI sent to a CPU that is not NMI-blocked and not taken by then was dropped by
 * a latch (a third NMI of a burst).  Under QEMU TCG a vCPU is a host thread that a
 * loaded host may not run for a while, so this is generous: only such a drop waits
 * it out. */
#define INFLIGHT_US 500000u
#define MAX_SERVICE 64u /* rounds of servicing after one step (SIM_MAX_SERVICE)  */
#define MAX_FINISH  4000u /* rounds of letting spinning CPUs end (SIM_MAX_FINISH) */
#define SPIN_LIMIT  1000u /* plat_spin_limit() while replaying (SIM_SPIN_LIMIT)    */

volatile int replay_on;
unsigned replay_ncpus;
volatile int replay_failed;
char replay_what[256];
volatile int replay_trace_now;

static struct replay_sched sched;
#define steps     sched.step
#define nsteps    sched.nsteps
#define wild_step sched.wild_step
#define wild_at   sched.wild_at
static uint64_t lost[REPLAY_MAX_CPUS]; /* NMIs written off as dropped by a latch */
static volatile uint32_t cpus_ready;
static int verbose; /* print the per-step state lines (one case, or the traced one) */

void replay_fail(const char *fmt, ...)
{
	if (__atomic_exchange_n(&replay_failed, 1, __ATOMIC_ACQ_REL))
		return; /* the first violation is the verdict */
	va_list ap;
	va_start(ap, fmt);
	kvsnprintf(replay_what, sizeof replay_what, fmt, ap);
	va_end(ap);
}

/* An assertion of the core: recorded as it is, worded at the verdict (formatting
 * it here would bury the race in a TRACE=1 trace). */
static struct {
	unsigned cpu;
	const char *file, *what;
	int line;
} assertion;

void replay_fail_assert(unsigned cpu, const char *file, int line, const char *what)
{
	if (__atomic_exchange_n(&replay_failed, 1, __ATOMIC_ACQ_REL))
		return;
	assertion.cpu = cpu;
	assertion.file = file;
	assertion.line = line;
	assertion.what = what;
}

static void print_verdict(const char *at)
{
	if (!assertion.file) {
		kprintf("REPLAY: case at=%s verdict=FAIL what=%s\n", at, replay_what);
		return;
	}
	const char *base = assertion.file;
	for (const char *p = assertion.file; *p; p++)
		if (*p == '/')
			base = p + 1;
	kprintf("REPLAY: case at=%s verdict=FAIL what=cpu%u: NMI core assertion failed at %s:%d: "
		"%s\n",
		at, assertion.cpu, base, assertion.line, assertion.what);
}

static _Noreturn void machinery(const char *why, unsigned cpu)
{
	kprintf("RESULT: FAIL replay: cpu%u: %s\n", cpu, why);
	hv_exit(1);
}

/* ---- Turns ---------------------------------------------------------------------------- */

static void turn(unsigned i, int cmd)
{
	rcpu[i].cmd = cmd;
	rcpu[i].seq++;
	__atomic_store_n(replay_token, (int)i, __ATOMIC_RELEASE);
	uint64_t deadline = time_us() + TURN_US;
	while (__atomic_load_n(replay_token, __ATOMIC_ACQUIRE) == (int)i)
		if (time_us() > deadline)
			machinery("its turn did not end (a loop without plat_relax?)", i);
		else
			cpu_pause();
}

static int hw_blocked(unsigned i)
{
	return rcpu[i].in_nmi || rcpu[i].exit_blocked;
}

static uint64_t in_flight(unsigned i)
{
	return rcpu[i].sent - rcpu[i].arrived - lost[i];
}

/* CPUs whose NMIs wait take them now (sim/controller.c's service_all); NMIs still on
 * their way are waited for, and written off as dropped when a latch took them. */
static void settle(int flush)
{
	for (unsigned round = 0; round < MAX_SERVICE; round++) {
		int progress = 0;
		for (unsigned i = 0; i < replay_ncpus; i++)
			if (!rcpu[i].halted && !rcpu[i].busy && rcpu[i].nmi_wait) {
				turn(i, flush ? CMD_FLUSH : CMD_SERVICE);
				progress = 1;
			}
		if (progress)
			continue;
		uint64_t deadline = time_us() + INFLIGHT_US;
		int waiting = 1;
		while (waiting && time_us() < deadline) {
			waiting = 0;
			for (unsigned i = 0; i < replay_ncpus; i++)
				if (in_flight(i) && !hw_blocked(i) && !rcpu[i].nmi_wait)
					waiting = 1;
			cpu_pause();
		}
		if (!waiting) {
			int any = 0;
			for (unsigned i = 0; i < replay_ncpus; i++)
				any |= rcpu[i].nmi_wait && !rcpu[i].busy && !rcpu[i].halted;
			if (!any)
				return;
			continue;
		}
		for (unsigned i = 0; i < replay_ncpus; i++)
			if (in_flight(i) && !hw_blocked(i) && !rcpu[i].nmi_wait)
				lost[i] = rcpu[i].sent - rcpu[i].arrived;
	}
}

/* `burst` external NMIs at CPU i: the first, then (once it is taken, so the next one
 * latches behind it, as sim/nmi_hw.c's burst does) the rest back to back. */
static void send_nmis(unsigned i, unsigned burst)
{
	uint64_t before = rcpu[i].arrived;
	int blocked = hw_blocked(i);
	for (unsigned n = 0; n < burst; n++) {
		rcpu[i].sent++;
		lapic_send_ipi(percpu[i].apic_id, 0x00004400u);
		if (n == 0 && !blocked) {
			uint64_t deadline = time_us() + INFLIGHT_US;
			while (rcpu[i].arrived == before && time_us() < deadline)
				cpu_pause();
		}
	}
}

/* ---- The oracle: nmi_books.c's laws, as sim/oracle.c checks them ------------------- */

static void law_broken(void *ctx, const char *line)
{
	(void)ctx;
	replay_fail("%s", line);
}

static void check_books(int at_rest)
{
	struct nmi_books_cpu cpu[REPLAY_MAX_CPUS];
	struct nmi_books_guest guest[REPLAY_MAX_CPUS];
	struct nmi_books_platform platform[REPLAY_MAX_CPUS];
	for (unsigned i = 0; i < replay_ncpus; i++) {
		replay_guest_books(i, &guest[i]);
		plat_hv_asked(i, &platform[i]);
		cpu[i] = (struct nmi_books_cpu){
		    .core = &percpu[i].nmi,
		    .guest = &guest[i],
		    .platform = &platform[i],
		    .detached = rcpu[i].detached ? &rcpu[i].at_detach : 0,
		    .busy = rcpu[i].busy || rcpu[i].halted,
		};
	}
	struct nmi_books b = {.ncpus = replay_ncpus, .cpu = cpu, .at_rest = at_rest};
	if (!replay_failed)
		nmi_books_check(&b, law_broken, 0);
}

static void print_line(void *ctx, const char *line)
{
	(void)ctx;
	kprintf("REPLAY: %s\n", line);
}

/* Every CPU's books (nmi_books.c's table), as the simulator prints them. */
static void books_table(void)
{
	struct nmi_books_cpu cpu[REPLAY_MAX_CPUS];
	struct nmi_books_guest guest[REPLAY_MAX_CPUS];
	for (unsigned i = 0; i < replay_ncpus; i++) {
		replay_guest_books(i, &guest[i]);
		cpu[i] = (struct nmi_books_cpu){.core = &percpu[i].nmi, .guest = &guest[i]};
		kprintf("REPLAY: guest cpu=%u received=%lu deliverable=%lu arrived=%lu blocked=%u "
			"queued=%u window=%u\n",
			i, guest[i].received, guest[i].deliverable, guest[i].arrived,
			guest[i].blocked, guest[i].queued, guest[i].window);
	}
	struct nmi_books b = {.ncpus = replay_ncpus, .cpu = cpu};
	nmi_books_table(&b, print_line, 0);
}

static void state_line(unsigned step)
{
	kprintf("REPLAY: state after=%u", step);
	for (unsigned i = 0; i < replay_ncpus; i++) {
		const struct nmi_cpu *c = &percpu[i].nmi;
		struct nmi_books_guest g;
		replay_guest_books(i, &g);
		kprintf(" | cpu%u %c mask=%u visited=%u pend=%u vblk=%u win=%u", i,
			rcpu[i].halted     ? 'X'
			: rcpu[i].busy     ? 's'
			: rcpu[i].in_guest ? 'g'
					   : 'h',
			c->masked, c->visited, c->guest_pending, g.blocked, g.window);
	}
	kprintf("\n");
}

/* ---- One case ---------------------------------------------------------------------------- */

/* What the last case left behind goes: spinning CPUs back to their idle loop, NMIs
 * still arriving discarded.  Then the one reset of the core's state. */
static void new_case(void)
{
	for (unsigned i = 0; i < replay_ncpus; i++)
		if (rcpu[i].busy || rcpu[i].in_guest)
			turn(i, CMD_ABORT);
	settle(1);
	nmi_core_init();
	for (unsigned i = 0; i < replay_ncpus; i++) {
		struct replay_cpu *r = &rcpu[i];
		nmi_cpu_init(&percpu[i].nmi, i);
		plat_hv_asked_reset(i);
		r->halted = r->busy = 0;
		r->sent = r->arrived = lost[i] = 0;
		replay_guest_reset(i);
	}
	replay_failed = 0;
	replay_what[0] = 0;
	assertion.file = 0;
}

static void finish(void)
{
	static const struct replay_step unmask = {.op = R_UNMASK};
	for (unsigned rounds = 0; !replay_failed; rounds++) {
		int any = 0;
		for (unsigned i = 0; i < replay_ncpus && !replay_failed; i++) {
			if (rcpu[i].halted)
				continue;
			if (rcpu[i].busy) {
				turn(i, CMD_RESUME);
			} else if (percpu[i].nmi.masked) {
				rcpu[i].step = &unmask;
				turn(i, CMD_OP);
			} else {
				continue;
			}
			any = 1;
			settle(0);
		}
		if (!any)
			return;
		if (rounds > MAX_FINISH)
			replay_fail("CPUs still spinning after %u rounds: livelock", rounds);
	}
}

/* Run the schedule once; step `count_step` (or -1) counts its core instructions. */
static void run_case(int count_step)
{
	new_case();
	for (unsigned i = 0; i < nsteps && !replay_failed; i++) {
		const struct replay_step *s = &steps[i];
		unsigned c = s->cpu;
		if (rcpu[c].halted)
			continue;
		if (rcpu[c].busy) {
			turn(c, CMD_RESUME);
		} else if (s->op == R_NMI) {
			send_nmis(c, s->arg ? s->arg : 1);
		} else if (s->op != R_RUN) {
			rcpu[c].st.count_only = (int)i == count_step;
			rcpu[c].step = s;
			turn(c, CMD_OP);
		}
		settle(0);
		check_books(0);
		if (verbose)
			state_line(i + 1);
	}
	finish();
	check_books(1);
	if (verbose)
		state_line(nsteps + 1);
}

static unsigned cases, failures;

static void verdict(const char *at)
{
	replay_trace_now = 0;
	cases++;
	if (verbose)
		books_table();
	if (replay_failed) {
		failures++;
		print_verdict(at);
	} else {
		kprintf("REPLAY: case at=%s verdict=pass\n", at);
	}
}

/* The controller: every case, then the run's verdict. */
static _Noreturn void controller(void)
{
	while (__atomic_load_n(&cpus_ready, __ATOMIC_ACQUIRE) != (1u << replay_ncpus) - 1)
		cpu_pause();
	uint64_t trace = cmdline_u64("replay_trace", 0);
	int traced = cmdline_str("replay_trace", 0) != 0;
	kprintf("REPLAY: scenario cpus=%u steps=%u variant=%s wildcard_step=%d\n", replay_ncpus,
		nsteps, nmi_variant_name, wild_step >= 0 ? wild_step + 1 : 0);
	uint64_t t0 = time_us();
	if (wild_step < 0) {
		verbose = 1;
		replay_trace_now = traced;
		run_case(-1);
		verdict("-");
	} else {
		struct replay_at *w = &steps[wild_step].at[wild_at];
		/* The count: the schedule with the wildcard's NMI placed nowhere, its step
		 * stepped through.  Its verdict is a case too (at=none); when it fails
		 * before the step ran, every placement would fail the same way. */
		w->kind = AT_INDEX;
		w->index = 0; /* matches no boundary */
		rcpu[steps[wild_step].cpu].st.counted = 0;
		run_case(wild_step);
		unsigned n = rcpu[steps[wild_step].cpu].st.counted;
		kprintf("REPLAY: count step=%d insns=%u\n", wild_step + 1, n);
		verdict("none");
		for (unsigned k = 1; k <= n; k++) {
			char at[12];
			w->index = k;
			verbose = traced && trace == k;
			replay_trace_now = verbose;
			run_case(-1);
			ksnprintf(at, sizeof at, "%u", k);
			verdict(at);
		}
	}
	kprintf("REPLAY: done cases=%u pass=%u fail=%u\n", cases, cases - failures, failures);
	kprintf("RESULT: PASS replay cpus=%u cases=%u pass=%u fail=%u elapsed_ms=%lu\n",
		replay_ncpus, cases, cases - failures, failures, (time_us() - t0) / 1000);
	hv_exit(0);
}

/* ---- The workload ------------------------------------------------------------------------ */

void workload_release_aps(void);

_Noreturn void replay_bsp(void);
_Noreturn void replay_bsp(void)
{
	const char *why = replay_sched_parse(&sched);
	replay_ncpus = sched.ncpus;
	replay_guest_boot();
	if (why)
		hv_fail("replay", why);
	if (ncpus < replay_ncpus + 1) {
		kprintf("RESULT: FAIL replay: the scenario has %u CPUs and needs one more for "
			"the controller; the machine has %u\n",
			replay_ncpus, ncpus);
		hv_exit(1);
	}
	for (unsigned i = 0; i < nsteps; i++)
		if (!replay_guest_available(&why) && steps[i].op != R_MASK &&
		    steps[i].op != R_UNMASK && steps[i].op != R_CRIT && steps[i].op != R_NMI &&
		    steps[i].op != R_QUIESCE && steps[i].op != R_RUN) {
			kprintf("RESULT: SKIP replay: step %u needs VMX: %s\n", i + 1, why);
			hv_exit(0);
		}
	replay_on = 1;
	workload_release_aps();
	replay_ap();
	for (;;)
		cpu_pause();
}

void replay_ap(void)
{
	unsigned me = this_percpu()->index;
	if (me == replay_ncpus)
		controller();
	if (me > replay_ncpus)
		return; /* not in the scenario: idle */
	__atomic_fetch_or(&cpus_ready, 1u << me, __ATOMIC_ACQ_REL);
	replay_cpu_loop(me);
}

unsigned long replay_spin_limit(void)
{
	return SPIN_LIMIT;
}
