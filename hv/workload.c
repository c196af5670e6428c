/* SPDX-License-Identifier: MIT */
/*
 * workload.c - host-side NMI workloads run through the NMI core, and the final
 * report.  `workload=` on the command line picks one (docs/booting.md):
 *
 *   selftest   short IPI storm + stop-the-world rounds, fixed number of rounds
 *   mask-loop  critical sections only; NMIs come from the host (QMP inject-nmi)
 *   ipi-storm  critical sections + NMI IPIs to other CPUs
 *   quiesce    critical sections + stop-the-world rounds requested by every CPU
 *   stress     ipi-storm + quiesce
 *   trace-nmi, trace-mask   one NMI bracketed by Bochs magic breakpoints
 *   crash-pf, crash-assert  exercise the failure reports: a page fault, and
 *                           a core assertion (nested nmi_mask())
 *   guest      run the boot module as a VMX guest on CPU 0 (vmx_guest.c, docs/vmx.md)
 *   vmx-exp    measure VMX NMI corner cases (vmx_exp.c)
 *              (both: without VMX, say why and run selftest instead)
 *   replay     run a simulator scenario on these CPUs (replay.c, docs/replay.md)
 *
 * One table (`workloads`) says what CPU 0 and the other CPUs run for each name.
 * Every CPU of the NMI-loop workloads loops: nmi_mask(); touch per-CPU state; nmi_unmask(); then,
 * per the parameters, sends an NMI IPI (every `ipi` iterations) and requests a stop-the-world round
 * (every `quiesce` iterations, TLB flush on every other one). Every CPU watches for the end (the
 * deadline, the host's byte; CPU 0 the rounds) and none requests a round once it has come: the
 * quiesce lock is not fair, and on a busy host a CPU can lose it to the others for as long as they
 * keep asking, so an end that only CPU 0 could see, between two of its own rounds, might never be
 * seen.  Then every CPU idles with NMIs unmasked, in-flight NMIs settle, and CPU 0 checks the
 * core's conservation laws on every CPU.  CPU 0 prints a `progress:` line every second meanwhile
 * (the test runner judges a silent run as stuck), and with host=1 ack=1 a `HOST-NMIS: seen=N`
 * line whenever its count of host NMIs changes (the host paces its injections by it).
 */
#include "hv.h"
#include "nmi_platform.h"
#include "replay.h"
#include "vmx.h"
#include "x86.h"

#define SETTLE_US     20000u
#define WORK_WORDS    32
#define PROGRESS_US   1000000u
#define LEAVE_LOOP_US 10000000u

struct wl_cpu {
	uint64_t rng; /* xorshift64 state: critical-section lengths */
	uint64_t iters;
	uint64_t ipis_sent;
	uint64_t rounds_requested;
	uint64_t flush_rounds_requested;
	volatile uint32_t done;
	volatile uint64_t work[WORK_WORDS];
} __attribute__((aligned(64)));

static struct wl_cpu wl[MAX_CPUS];

struct workload;

static struct {
	const struct workload *w;
	const char *name;
	int iret_first; /* an IRET to itself before the loop (selftest) */
	unsigned work; /* mean loop iterations inside a critical section */
	unsigned ipi; /* send an NMI IPI every N iterations (0: never) */
	unsigned quiesce; /* request a stop-the-world round every N iterations */
	uint64_t rounds; /* stop after N iterations on every CPU (0: by time) */
	uint64_t seconds; /* run time, or timeout when `rounds` or `host` is set */
	uint64_t nmis; /* host NMIs expected on CPU 0 (exact check), 0: none */
	int host; /* stop when the host writes a byte to COM1 */
	int ack; /* with host: print CPU 0's count of host NMIs whenever it changes */
	int aps_halt; /* APs sit in HLT instead of looping (aps=halt) */
	uint64_t seed; /* varies the critical-section lengths between runs */
	uint64_t start_us; /* when CPU 0 released the others (set before `go`) */
} cfg;

static volatile uint32_t go, trace_send;
static volatile uint32_t stop; /* 0 running, else why it ended: 1 normally, 2 timeout */

static int streq(const char *a, const char *b)
{
	while (*a && *a == *b) {
		a++;
		b++;
	}
	return *a == *b;
}

/* The "critical section" body: dependent read-modify-writes of per-CPU state. */
static void touch(struct wl_cpu *w, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		w->work[i % WORK_WORDS] =
		    w->work[(i + 7) % WORK_WORDS] * 6364136223846793005ull + i;
}

/*
 * Length of the next critical section: uniform in [work/2, 3*work/2].  Fixed
 * lengths phase-lock CPUs that interleave deterministically (Bochs): one CPU's
 * IPIs then always land at the same point of the other's loop, and whole
 * windows of the NMI path are never hit.
 */
static unsigned section_length(struct wl_cpu *w)
{
	w->rng ^= w->rng << 13;
	w->rng ^= w->rng >> 7;
	w->rng ^= w->rng << 17;
	return cfg.work / 2 + (unsigned)(w->rng % (cfg.work + 1));
}

static void stop_the_world(unsigned me)
{
	struct wl_cpu *w = &wl[me];
	int flush = (int)(w->rounds_requested & 1);
	nmi_quiesce_begin();
	touch(w, 16);
	w->rounds_requested++;
	w->flush_rounds_requested += (uint64_t)flush;
	nmi_quiesce_end(flush);
}

/* Should the run end now?  Returns 1 to stop, 2 on timeout.  Every CPU asks (the
 * rounds: CPU 0 alone). */
static int should_stop(unsigned me, uint64_t deadline_us)
{
	/* COM1 is polled once a millisecond: under emulation every port access is
	 * an exit to the device model (and under QEMU, a global lock round trip).
	 * Two CPUs that both see the byte both end the run: the byte is all it says. */
	static uint64_t next_poll_us[MAX_CPUS];
	uint64_t now = time_us();
	if (cfg.host && now >= next_poll_us[me]) {
		next_poll_us[me] = now + 1000;
		if (serial_poll_byte() >= 0)
			return 1;
	}
	if (me == 0 && !cfg.host && cfg.rounds) {
		unsigned i = 0;
		while (i < ncpus && (wl[i].iters >= cfg.rounds || (i && cfg.aps_halt)))
			i++;
		if (i == ncpus)
			return 1;
	}
	if (now >= deadline_us)
		return (cfg.host || cfg.rounds) ? 2 : 1;
	return 0;
}

/* CPU 0, in its loop: the progress line every second, and with ack=1 its count of
 * host NMIs each time it changes (the test's paced injection waits for it).  CPU 0
 * prints unmasked and holds no quiesce lock: a requester waits for the console lock,
 * which is also its world lock, before it sends a round's NMIs. */
static uint64_t host_nmis(void);

static void cpu0_report_progress(uint64_t start_us)
{
	static uint64_t next_us, seen;
	if (cfg.ack) {
		uint64_t n = host_nmis();
		if (n != seen) {
			seen = n;
			kprintf("HOST-NMIS: seen=%lu\n", n);
		}
	}
	uint64_t now = time_us();
	if (now < next_us)
		return;
	if (next_us) {
		uint64_t iters = 0, rounds = 0, nmis = 0;
		for (unsigned i = 0; i < ncpus; i++) {
			iters += wl[i].iters;
			rounds += wl[i].rounds_requested;
			nmis += percpu[i].nmi.nmi_entries;
		}
		kprintf("progress: %lu ms iters=%lu quiesce_rounds=%lu nmi_entries=%lu\n",
			(now - start_us) / 1000, iters, rounds, nmis);
	}
	next_us = now + PROGRESS_US;
}

/* The loop every CPU runs.  Returns why the run ended: 1 (normal stop) or 2 (timeout). */
static int worker(unsigned me, uint64_t start_us, uint64_t deadline_us)
{
	struct wl_cpu *w = &wl[me];
	unsigned target = me;

	w->rng = 0x9E3779B97F4A7C15ull * (me + 1 + cfg.seed * MAX_CPUS);
	while (!stop) {
		unsigned n = section_length(w);
		nmi_mask();
		touch(w, n);
		nmi_unmask();
		w->iters++;

		/* IPI storm: round-robin over the other CPUs; CPU 0 is left out while
		 * it counts host NMIs, so that count stays exact. */
		if (cfg.ipi && w->iters % cfg.ipi == 0) {
			unsigned first = cfg.host ? 1 : 0, span = ncpus - first;
			if (span > 1 || (span == 1 && me != first)) {
				do
					target = first + (target + 1 - first) % span;
				while (target == me);
				hv_send_nmi(target);
				w->ipis_sent++;
			}
		}
		/* No round once the end has come, nor past this CPU's rounds: the
		 * others' end must not wait for the quiesce lock. */
		if (cfg.quiesce && ncpus > 1 && w->iters % cfg.quiesce == 0 && !stop &&
		    !(cfg.rounds && w->iters > cfg.rounds))
			stop_the_world(me);

		uint32_t why = (uint32_t)should_stop(me, deadline_us);
		if (why) {
			uint32_t running = 0;
			__atomic_compare_exchange_n(&stop, &running, why, 0, __ATOMIC_SEQ_CST,
						    __ATOMIC_SEQ_CST);
		}
		if (me == 0)
			cpu0_report_progress(start_us);
		else if (!cfg.host && cfg.rounds && w->iters >= cfg.rounds)
			break; /* idle (NMIs unmasked, parkable) until the run ends */
	}
	__atomic_store_n(&w->done, 1, __ATOMIC_RELEASE);
	return (int)stop;
}

/* Trace workloads: CPU 1 sends one NMI to CPU 0 when asked, then halts so that
 * nothing but CPU 0's path shows in the Bochs trace. */
static void trace_sender(void)
{
	while (!trace_send)
		cpu_pause();
	hv_send_nmi(0);
	cpu_halt_forever();
}

static _Noreturn void trace_main(int mask)
{
	struct nmi_cpu *c = plat_this_cpu();
	uint64_t before = c->nmi_entries;
	if (ncpus < 2)
		hv_fail(cfg.name, "trace workloads need 2 CPUs");
	go = 1;
	if (mask) {
		/* The whole sequence: mask, NMI arrives and is deferred, unmask drains. */
		magic_break();
		nmi_mask();
		trace_send = 1;
		while (!c->visited)
			cpu_pause();
		nmi_unmask();
		magic_break();
	} else {
		/* One NMI: the stub's magic breaks fire at entry and before IRET. */
		percpu[0].trace_nmi = 1;
		trace_send = 1;
		while (c->nmi_entries == before)
			cpu_pause();
		percpu[0].trace_nmi = 0;
	}
	kprintf("trace: nmi_entries %lu handled_direct %lu deferred %lu drained %lu\n",
		c->nmi_entries, c->handled_direct, c->deferred, c->drained);
	kprintf("RESULT: PASS traced %s\n", mask ? "mask-nmi-unmask" : "one NMI");
	hv_exit(0);
}

static _Noreturn void trace_nmi_main(void)
{
	trace_main(0);
}

static _Noreturn void trace_mask_main(void)
{
	trace_main(1);
}

/* The NMI-loop workloads on an AP: the loop, or HLT with aps=halt. */
static void loop_ap(void)
{
	unsigned me = this_percpu()->index;
	if (cfg.aps_halt) {
		/* Leave the emulator's host CPUs to CPU 0; an NMI still wakes us. */
		__atomic_store_n(&wl[me].done, 1, __ATOMIC_RELEASE);
		for (;;)
			__asm__ __volatile__("hlt");
	}
	worker(me, cfg.start_us, cfg.start_us + cfg.seconds * 1000000);
}

/* The core's books and laws (books.c prints them), then what this workload itself
 * counted. */
static void check_invariants(void)
{
	books_check_core();
	for (unsigned i = 0; i < ncpus; i++) {
		const struct nmi_cpu *c = &percpu[i].nmi;
		books_check(c->quiesce_rounds == wl[i].rounds_requested,
			    "quiesce_rounds == rounds requested", i, c->quiesce_rounds,
			    wl[i].rounds_requested);
		books_check(c->quiesce_flush_rounds == wl[i].flush_rounds_requested,
			    "quiesce_flush_rounds == flush rounds requested", i,
			    c->quiesce_flush_rounds, wl[i].flush_rounds_requested);
	}
}

static void report(void)
{
	for (unsigned i = 0; i < ncpus; i++)
		kprintf("workload cpu=%u iters=%lu ipis_sent=%lu\n", i, wl[i].iters,
			wl[i].ipis_sent);
}

/* Host NMIs: CPU 0's entries minus the NMIs other CPUs sent it (stop-the-world;
 * the IPI storm leaves CPU 0 out when host=1).  Exact once the run has settled;
 * meanwhile a round's NMI may be counted before its requester's round is. */
static uint64_t host_nmis(void)
{
	uint64_t to_cpu0 = 0;
	for (unsigned i = 1; i < ncpus; i++)
		to_cpu0 += wl[i].rounds_requested;
	uint64_t entries = percpu[0].nmi.nmi_entries;
	return entries > to_cpu0 ? entries - to_cpu0 : 0;
}

/* The NMI-loop workloads on CPU 0: run, then report and judge. */
static _Noreturn void loop_main(void)
{
	kprintf("workload %s: cpus=%u work=%u ipi=%u quiesce=%u rounds=%lu seconds=%lu host=%d "
		"nmis=%lu aps=%s\n",
		cfg.name, ncpus, cfg.work, cfg.ipi, cfg.quiesce, cfg.rounds, cfg.seconds, cfg.host,
		cfg.nmis, cfg.aps_halt ? "halt" : "work");
	if (cfg.iret_first)
		hv_nmi_iret(); /* the IRET-to-self the VM-exit path will use must not fault */
	uint64_t start = time_us();
	cfg.start_us = start;
	__atomic_store_n(&go, 1, __ATOMIC_RELEASE);
	if (cfg.host)
		kprintf("READY: inject NMIs now, then write one byte to COM1\n");
	int why = worker(0, start, start + cfg.seconds * 1000000);

	/* Everybody out of the loop (a CPU may still finish the round it was waiting
	 * for), then let in-flight NMIs land. */
	uint64_t deadline = time_us() + LEAVE_LOOP_US;
	for (unsigned i = 1; i < ncpus; i++)
		while (!wl[i].done && time_us() < deadline)
			cpu_pause();
	udelay(SETTLE_US);
	uint64_t elapsed = time_us() - start;

	report();
	check_invariants();
	for (unsigned i = 1; i < ncpus; i++)
		books_check(wl[i].done, "CPU left its loop", i, 0, 1);

	uint64_t ipis = 0, entries = 0;
	for (unsigned i = 0; i < ncpus; i++) {
		ipis += wl[i].ipis_sent;
		entries += percpu[i].nmi.nmi_entries;
	}
	if (cfg.host) {
		uint64_t got = host_nmis();
		kprintf("HOST-NMIS: received=%lu expected=%lu\n", got, cfg.nmis);
		if (cfg.nmis)
			books_check(got == cfg.nmis, "host NMIs received == expected", 0, got,
				    cfg.nmis);
	}
	kprintf("totals: nmi_entries=%lu ipis_sent=%lu elapsed_ms=%lu\n", entries, ipis,
		elapsed / 1000);
	if (why == 2) {
		kprintf("RESULT: FAIL timeout after %lu s (%s)\n", cfg.seconds,
			cfg.host ? "no end-of-injection byte from the host" : "rounds not reached");
		hv_exit(1);
	}
	if (books_failures) {
		kprintf("RESULT: FAIL %d invariant check(s)\n", books_failures);
		hv_exit(1);
	}
	kprintf("RESULT: PASS %s cpus=%u nmi_entries=%lu ipis_sent=%lu invariants ok\n", cfg.name,
		ncpus, entries, ipis);
	hv_exit(0);
}

static _Noreturn void crash_pf_main(void)
{
	*(volatile uint64_t *)phys_ptr(0x40000000000ull) = 1; /* unmapped: #PF */
	hv_fail(cfg.name, "no page fault");
}

static _Noreturn void crash_assert_main(void)
{
	nmi_mask();
	nmi_mask(); /* critical sections do not nest: the core halts */
	hv_fail(cfg.name, "no assertion");
}

static _Noreturn void guest_main(void)
{
	__atomic_store_n(&go, 1, __ATOMIC_RELEASE);
	vmx_run_guest();
}

/* vmx-exp, crash-*: `go` is never set, the APs wait for it (unmasked: parkable). */
static void idle_ap(void) {}

static const struct workload {
	const char *name;
	void (*bsp)(void); /* CPU 0; never returns */
	void (*ap)(void); /* the other CPUs, once `go` is set */
	int vmx; /* needs VMX; without it selftest runs instead */
	unsigned ipi, quiesce; /* defaults of ipi= and quiesce= */
	uint64_t rounds; /* default of rounds= */
	int iret_first; /* cfg.iret_first */
} workloads[] = {
    {"selftest", loop_main, loop_ap, 0, 4, 256, 3000, 1},
    {"mask-loop", loop_main, loop_ap, 0, 0, 0, 0, 0},
    {"ipi-storm", loop_main, loop_ap, 0, 1, 0, 0, 0},
    {"quiesce", loop_main, loop_ap, 0, 0, 64, 0, 0},
    {"stress", loop_main, loop_ap, 0, 1, 64, 0, 0},
    {"trace-nmi", trace_nmi_main, trace_sender, 0, 0, 0, 0, 0},
    {"trace-mask", trace_mask_main, trace_sender, 0, 0, 0, 0, 0},
    {"crash-pf", crash_pf_main, idle_ap, 0, 0, 0, 0, 0},
    {"crash-assert", crash_assert_main, idle_ap, 0, 0, 0, 0, 0},
    {"guest", guest_main, vmx_helper_ap, 1, 0, 0, 0, 0},
    {"vmx-exp", vmx_experiments, idle_ap, 1, 0, 0, 0, 0},
    {"replay", replay_bsp, replay_ap, 0, 0, 0, 0, 0},
};

/* For a workload whose CPU 0 sets up what the APs read first (replay). */
void workload_release_aps(void)
{
	__atomic_store_n(&go, 1, __ATOMIC_RELEASE);
}

static const struct workload *find_workload(const char *name)
{
	for (unsigned i = 0; i < sizeof workloads / sizeof workloads[0]; i++)
		if (streq(workloads[i].name, name))
			return &workloads[i];
	return NULL;
}

void workload_ap(void)
{
	while (!__atomic_load_n(&go, __ATOMIC_ACQUIRE)) /* cfg is valid from here on */
		cpu_pause();
	cfg.w->ap();
	for (;;)
		cpu_pause(); /* idle with NMIs unmasked: may still be parked or hit */
}

_Noreturn void workload_main(void)
{
	const char *name = cmdline_str("workload", "selftest");
	const struct workload *w = find_workload(name);
	if (!w)
		hv_fail(name, "unknown workload");
	if (w->vmx) {
		const char *why = vmx_unavailable();
		cfg.w = w;
		cfg.name = w->name;
		if (!why)
			w->bsp();
		kprintf("VMX unavailable: %s: running the host-side selftest instead\n", why);
		w = find_workload("selftest");
	}
	cfg.w = w;
	cfg.name = w->name;
	cfg.work = (unsigned)cmdline_u64("work", 200);
	cfg.ipi = (unsigned)cmdline_u64("ipi", w->ipi);
	cfg.quiesce = (unsigned)cmdline_u64("quiesce", w->quiesce);
	cfg.rounds = cmdline_u64("rounds", w->rounds);
	cfg.host = (int)cmdline_u64("host", 0);
	cfg.ack = cfg.host && cmdline_u64("ack", 0);
	cfg.seconds = cmdline_u64("seconds", (cfg.host || cfg.rounds) ? 60 : 2);
	cfg.nmis = cmdline_u64("nmis", 0);
	cfg.aps_halt = streq(cmdline_str("aps", "work"), "halt");
	cfg.seed = cmdline_u64("seed", 0);
	cfg.iret_first = w->iret_first;
	w->bsp();
	hv_fail(cfg.name, "the workload returned");
}
