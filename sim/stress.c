/* SPDX-License-Identifier: MIT */
/*
 * stress.c - free-running stress: CPU threads run intercept-handler-like work,
 * guest time, stop-the-world rounds and IPIs, truly in parallel, while NMI-source
 * threads send SIGNMI at random times (a laptop-scale QMP NMI flood).  The core's
 * assertions are live throughout; the books are checked at the end, against the
 * same laws as every other run (nmi_books.c), and printed in their one format.
 *
 * Unlike the deterministic mode, the kernel's latch decides which NMIs are dropped
 * and nobody can count them one by one: "coalesced" below is sent - delivered.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "machine.h"
#include "nmi_platform.h"

static volatile int stop_sources, stop_cpus;
static volatile unsigned exited;
static pthread_barrier_t start; /* every CPU has a thread id before anyone sends */
static unsigned rng[SIM_MAX_CPUS]; /* each CPU thread's own random sequence */
/* Operations each CPU thread has finished: a thread that burns its CPU time without
 * finishing one runs away inside the core (the watch in sim_stress). */
static volatile uint64_t progress[SIM_MAX_CPUS];

static unsigned rnd(unsigned *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void work(unsigned n)
{
	for (volatile unsigned i = 0; i < n; i++)
		;
}

/* Guest time: the guest runs, takes injected NMIs and IRETs from its handler; any
 * NMI is a VM exit, handled between guest instructions. */
static void guest_time(struct sim_cpu *c)
{
	unsigned *r = &rng[c->id];
	vmx_hw_entry(c);
	unsigned n = 50 + rnd(r) % 400;
	for (unsigned i = 0; i < n && !M.failed; i++) {
		vmx_hw_exits(c);
		if (rnd(r) % 8 == 0)
			vmx_hw_guest_iret(c);
	}
	/* A VM exit for another reason ends the guest's turn. */
	vmx_hw_leave(c);
	nmi_mask();
	work(20);
	nmi_unmask();
}

static void *cpu_main(void *arg)
{
	struct sim_cpu *c = arg;
	unsigned *r = &rng[c->id];
	self = c;
	c->th.tid = gettid();
	c->th.thread = pthread_self();
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, SIGNMI);
	pthread_sigmask(SIG_UNBLOCK, &s, NULL);
	pthread_barrier_wait(&start);

	nmi_mask();
	nmi_guest_attach();
	nmi_unmask();
	while (!stop_cpus) {
		unsigned p = rnd(r) % 100;
		if (p < 50) {
			nmi_mask();
			work(30 + rnd(r) % 200);
			nmi_unmask();
		} else if (p < 80) {
			guest_time(c);
		} else if (p < 90) {
			nmi_mask();
			nmi_guest_block();
			work(50);
			nmi_guest_unblock();
			nmi_unmask();
		} else if (p < 91 && M.ncpus > 1 && rnd(r) % 8 == 0) {
			nmi_quiesce_begin();
			work(50);
			nmi_quiesce_end(rnd(r) & 1);
		} else if (M.ncpus > 1) {
			unsigned t = rnd(r) % M.ncpus;
			if (t != c->id) /* a cross-CPU IPI, the workload's, not the core's */
				sim_send_nmi(&M.cpu[t], 1);
		}
		progress[c->id]++;
	}
	/* Keep taking NMIs (and parking) until every CPU is out of its loop. */
	__atomic_fetch_add(&exited, 1, __ATOMIC_SEQ_CST);
	while (__atomic_load_n(&exited, __ATOMIC_SEQ_CST) < M.ncpus)
		plat_relax();
	usleep(1000); /* a pending SIGNMI lands on this syscall's return */
	return NULL;
}

/* An NMI source: a random CPU, a random moment.  It waits (up to a random bound)
 * for the NMI to be taken before the next one, the way a paced QMP flood does, so
 * that most NMIs exercise the core instead of being coalesced by the latch. */
static void *source_main(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg;
	while (!stop_sources) {
		struct sim_cpu *t = &M.cpu[rnd(&seed) % M.ncpus];
		uint64_t before = __atomic_load_n(&t->nmi.delivered, __ATOMIC_RELAXED);
		sim_send_nmi(t, 1);
		/* Yield while waiting: with more threads than host cores, the target
		 * takes the NMI only when it gets a core. */
		unsigned patience = rnd(&seed) % 64;
		for (unsigned i = 0; i < patience && !stop_sources; i++) {
			if (__atomic_load_n(&t->nmi.delivered, __ATOMIC_RELAXED) != before)
				break;
			sched_yield();
		}
	}
	return NULL;
}

static uint64_t total_delivered(void)
{
	uint64_t n = 0;
	for (unsigned i = 0; i < M.ncpus; i++)
		n += __atomic_load_n(&M.cpu[i].nmi.delivered, __ATOMIC_RELAXED);
	return n;
}

int sim_stress(const struct stress_config *cfg, struct stress_totals *t)
{
	if (cfg->cpus < 1 || cfg->cpus > SIM_MAX_CPUS || cfg->sources < 1 ||
	    cfg->sources > SIM_MAX_SOURCES) {
		fprintf(stderr, "stress: --cpus 1..%d and --sources 1..%d\n", SIM_MAX_CPUS,
			SIM_MAX_SOURCES);
		return -1;
	}
	sym_load();
	nmi_hw_install();
	runaway_install();
	machine_reset(cfg->cpus, &sim_free_running);
	memset((void *)progress, 0, sizeof progress);
	for (unsigned i = 0; i < M.ncpus; i++)
		rng[i] = cfg->seed * 2654435761u + i + 1;
	/* The main thread only watches: it must never take an NMI. */
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, SIGNMI);
	pthread_sigmask(SIG_BLOCK, &s, NULL);

	pthread_t cpus[SIM_MAX_CPUS], src[SIM_MAX_SOURCES];
	pthread_barrier_init(&start, NULL, M.ncpus + 1);
	for (unsigned i = 0; i < M.ncpus; i++)
		pthread_create(&cpus[i], NULL, cpu_main, &M.cpu[i]);
	pthread_barrier_wait(&start);
	double t0 = now(), last = t0;
	for (unsigned i = 0; i < cfg->sources; i++)
		pthread_create(&src[i], NULL, source_main,
			       (void *)(uintptr_t)(cfg->seed * 7919u + i + 1));
	/* Each CPU's progress, and its thread's CPU time when it last made some.  A
	 * thread that spins legitimately (parked, or waiting for the quiesce lock) is
	 * bounded by the core's own spin limit (SIM_STRESS_SPIN), which comes first. */
	uint64_t seen[SIM_MAX_CPUS];
	double cpu_at[SIM_MAX_CPUS];
	for (unsigned i = 0; i < M.ncpus; i++) {
		seen[i] = progress[i];
		cpu_at[i] = runaway_cpu_seconds(&M.cpu[i]);
	}
	for (;;) {
		usleep(20000);
		for (unsigned i = 0; i < M.ncpus; i++) {
			double cpu = runaway_cpu_seconds(&M.cpu[i]);
			if (progress[i] != seen[i]) {
				seen[i] = progress[i];
				cpu_at[i] = cpu;
			} else if (cpu - cpu_at[i] > SIM_STRESS_RUNAWAY_SECONDS) {
				pthread_kill(cpus[i], SIGRUNAWAY); /* reports and ends the run */
				cpu_at[i] = cpu;
			}
		}
		double el = now() - t0;
		uint64_t d = total_delivered();
		if (!cfg->quiet && now() - last >= 1.0) {
			last = now();
			fprintf(stderr, "  %5.1fs  %10llu NMIs delivered  %9.0f NMIs/s\n", el,
				(unsigned long long)d, (double)d / el);
		}
		if ((cfg->seconds > 0 && el >= cfg->seconds) || (cfg->nmis && d >= cfg->nmis))
			break;
	}
	stop_sources = 1;
	for (unsigned i = 0; i < cfg->sources; i++)
		pthread_join(src[i], NULL);
	stop_cpus = 1;
	for (unsigned i = 0; i < M.ncpus; i++)
		pthread_join(cpus[i], NULL);
	double el = now() - t0;

	memset(t, 0, sizeof *t);
	printf("\n");
	unsigned broken = oracle_report(stdout);
	uint64_t rounds = 0, flushes = 0;
	for (unsigned i = 0; i < M.ncpus; i++) {
		struct sim_cpu *c = &M.cpu[i];
		struct nmi_cpu *n = &c->core;
		t->sent += c->nmi.sent;
		t->delivered += c->nmi.delivered;
		t->handled += n->handled_direct + n->handled_exit + n->drained;
		t->lost += n->deferred - n->drained - n->visited;
		rounds += n->quiesce_rounds;
		flushes += n->tlb_flushes;
	}
	t->violations = broken + (M.failed ? 1 : 0);
	t->seconds = el;
	printf(
	    "\nsent %llu, delivered %llu (%llu coalesced by the latch), handled %llu, lost %llu; "
	    "%llu stop-the-world rounds, %llu TLB flushes; %.2f s, %.0f NMIs/s\n",
	    (unsigned long long)t->sent, (unsigned long long)t->delivered,
	    (unsigned long long)(t->sent - t->delivered), (unsigned long long)t->handled,
	    (unsigned long long)t->lost, (unsigned long long)rounds, (unsigned long long)flushes,
	    el, (double)t->delivered / el);
	if (M.failed)
		printf("VIOLATION: %s\n", M.what);
	return 0;
}
