/* SPDX-License-Identifier: MIT */
/*
 * stress.c - free-running stress: CPU threads run intercept-handler-like work,
 * guest time, stop-the-world rounds and IPIs, truly in parallel, while NMI-source
 * threads send SIGNMI at random times (a laptop-scale QMP NMI flood).  The core's
 * assertions are live throughout; the books are checked at the end.
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

static void work(struct sim_cpu *c, unsigned n)
{
	for (volatile unsigned i = 0; i < n; i++)
		c->ops++;
}

/* Guest time: the guest runs, takes injected NMIs and IRETs from its handler; any
 * NMI is a VM exit, handled between guest instructions. */
static void guest_time(struct sim_cpu *c)
{
	sim_vmentry(c);
	unsigned n = 50 + rnd(&c->rng) % 400;
	for (unsigned i = 0; i < n && !M.failed; i++) {
		sim_process_exits(c);
		if ((c->vmcs.guest_intr & GUEST_INTR_BLOCK_NMI) && rnd(&c->rng) % 8 == 0)
			c->vmcs.guest_intr &= ~(uint64_t)GUEST_INTR_BLOCK_NMI; /* guest IRET */
	}
	/* A VM exit for another reason ends the guest's turn. */
	c->in_guest = 0;
	nmi_mask();
	work(c, 20);
	nmi_unmask();
}

static void *cpu_main(void *arg)
{
	struct sim_cpu *c = arg;
	self = c;
	c->tid = gettid();
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, SIGNMI);
	pthread_sigmask(SIG_UNBLOCK, &s, NULL);
	pthread_barrier_wait(&start);

	nmi_mask();
	nmi_guest_attach();
	nmi_unmask();
	while (!stop_cpus) {
		unsigned r = rnd(&c->rng) % 100;
		if (r < 50) {
			nmi_mask();
			work(c, 30 + rnd(&c->rng) % 200);
			nmi_unmask();
		} else if (r < 80) {
			guest_time(c);
		} else if (r < 90) {
			nmi_mask();
			nmi_guest_block();
			work(c, 50);
			nmi_guest_unblock();
			nmi_unmask();
		} else if (r < 91 && M.ncpus > 1 && rnd(&c->rng) % 8 == 0) {
			nmi_quiesce_begin();
			work(c, 50);
			nmi_quiesce_end(rnd(&c->rng) & 1);
		} else if (M.ncpus > 1) {
			unsigned t = rnd(&c->rng) % M.ncpus;
			if (t != c->id)
				plat_send_nmi(t); /* a cross-CPU IPI: a guest NMI for t */
		}
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
		uint64_t before = __atomic_load_n(&t->delivered, __ATOMIC_RELAXED);
		sim_send_nmi(t, 1);
		/* Yield while waiting: with more threads than host cores, the target
		 * takes the NMI only when it gets a core. */
		unsigned patience = rnd(&seed) % 64;
		for (unsigned i = 0; i < patience && !stop_sources; i++) {
			if (__atomic_load_n(&t->delivered, __ATOMIC_RELAXED) != before)
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
		n += __atomic_load_n(&M.cpu[i].delivered, __ATOMIC_RELAXED);
	return n;
}

int sim_stress(const struct stress_config *cfg, struct stress_totals *t)
{
	if (cfg->cpus < 1 || cfg->cpus > SIM_MAX_CPUS || cfg->sources < 1 || cfg->sources > 16) {
		fprintf(stderr, "stress: --cpus 1..8 and --sources 1..16\n");
		return -1;
	}
	sym_load();
	sim_install_handlers();
	M.deterministic = 0;
	M.ncpus = cfg->cpus;
	M.failed = 0;
	nmi_core_init();
	for (unsigned i = 0; i < M.ncpus; i++) {
		struct sim_cpu *c = &M.cpu[i];
		memset(c, 0, sizeof *c);
		c->id = i;
		c->rng = cfg->seed * 2654435761u + i + 1;
		c->vmcs.pin = PIN_NMI_EXITING | PIN_VIRTUAL_NMIS;
		nmi_cpu_init(&c->core, i);
	}
	/* The main thread only watches: it must never take an NMI. */
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, SIGNMI);
	pthread_sigmask(SIG_BLOCK, &s, NULL);

	pthread_t cpus[SIM_MAX_CPUS], src[16];
	pthread_barrier_init(&start, NULL, M.ncpus + 1);
	for (unsigned i = 0; i < M.ncpus; i++)
		pthread_create(&cpus[i], NULL, cpu_main, &M.cpu[i]);
	pthread_barrier_wait(&start);
	double t0 = now(), last = t0;
	for (unsigned i = 0; i < cfg->sources; i++)
		pthread_create(&src[i], NULL, source_main,
			       (void *)(uintptr_t)(cfg->seed * 7919u + i + 1));
	for (;;) {
		usleep(20000);
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

	sim_check_conservation(0);
	memset(t, 0, sizeof *t);
	printf("\n%-4s %10s %10s %9s %9s %9s %8s %9s %9s %9s %10s\n", "cpu", "delivered", "direct",
	       "exit", "deferred", "drained", "parks", "injected", "coalesced", "host",
	       "violations");
	for (unsigned i = 0; i < M.ncpus; i++) {
		struct sim_cpu *c = &M.cpu[i];
		struct nmi_cpu *n = &c->core;
		int bad =
		    M.failed && strncmp(M.what, "cpu", 3) == 0 && (unsigned)atoi(M.what + 3) == i;
		printf("cpu%-1u %10llu %10llu %9llu %9llu %9llu %8llu %9llu %9llu %9llu %10d\n", i,
		       (unsigned long long)c->delivered, (unsigned long long)n->handled_direct,
		       (unsigned long long)n->handled_exit, (unsigned long long)n->deferred,
		       (unsigned long long)n->drained, (unsigned long long)n->quiesce_parks,
		       (unsigned long long)n->guest_injected,
		       (unsigned long long)n->guest_coalesced, (unsigned long long)n->host_consumed,
		       bad);
		t->sent += c->sent;
		t->delivered += c->delivered;
		t->handled += n->handled_direct + n->handled_exit + n->drained;
		t->lost += n->deferred - n->drained - n->visited;
	}
	t->violations = M.failed ? 1 : 0;
	t->seconds = el;
	uint64_t rounds = 0, tlb_flushes_seen = 0;
	for (unsigned i = 0; i < M.ncpus; i++) {
		rounds += M.cpu[i].core.quiesce_rounds;
		tlb_flushes_seen += M.cpu[i].core.tlb_flushes;
	}
	printf(
	    "\nsent %llu, delivered %llu (%llu coalesced by the latch), handled %llu, lost %llu; "
	    "%llu stop-the-world rounds, %llu TLB flushes; %.2f s, %.0f NMIs/s\n",
	    (unsigned long long)t->sent, (unsigned long long)t->delivered,
	    (unsigned long long)(t->sent - t->delivered), (unsigned long long)t->handled,
	    (unsigned long long)t->lost, (unsigned long long)rounds,
	    (unsigned long long)tlb_flushes_seen, el, (double)t->delivered / el);
	if (M.failed)
		printf("VIOLATION: %s\n", M.what);
	return 0;
}
