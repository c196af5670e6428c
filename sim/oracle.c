/* SPDX-License-Identifier: MIT */
/*
 * oracle.c - what must hold, after every step of a run and at its end.
 *
 * The laws every NMI obeys are nmi_books.c's, the same the hypervisor checks; the
 * simulator adds what only it can see: the guest (what it took, what hardware
 * would have given it), the NMI line, what the core asked of the platform (counted
 * by platform_sim.c, not by the core), and what the schedule's operations leave
 * each CPU's software mask and guest at (kept by ops.c, not read from the core).
 * Its own checks are of its hardware model: the latch balances, every delivered
 * NMI reaches the core, a stop-the-world round begins with every other CPU parked.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>

#include "machine.h"

static struct nmi_books_guest guest_view(struct sim_cpu *c)
{
	struct nmi_books_guest g = c->vmx.guest;
	const struct sim_vmcs *v = &c->vmx.vmcs;
	g.blocked = (v->guest_intr & GUEST_INTR_BLOCK_NMI) != 0;
	g.queued = (v->entry_intr & INTR_INFO_VALID) != 0;
	g.window = (v->proc & PROC_NMI_WINDOW_EXITING) != 0;
	return g;
}

struct views {
	struct nmi_books books;
	struct nmi_books_cpu cpu[SIM_MAX_CPUS];
	struct nmi_books_guest guest[SIM_MAX_CPUS];
	struct nmi_books_platform platform[SIM_MAX_CPUS];
};

/* Every CPU's books as the laws see them.  A CPU mid-step (spinning), stopped by a
 * violation, or other than `only` (when given) is not checked.  `only` is a CPU
 * in the middle of its operation: the model of what the operation leaves its mask
 * at applies once it has completed, not yet. */
static void views(struct views *v, const struct sim_cpu *only, int at_rest)
{
	for (unsigned i = 0; i < M.ncpus; i++) {
		struct sim_cpu *c = &M.cpu[i];
		nmi_books_guest_sync(&c->vmx.guest, &c->core);
		v->guest[i] = guest_view(c);
		v->platform[i] = (struct nmi_books_platform){
		    .tlb_flushes = c->asked.tlb_flushes,
		    .injections = c->asked.injections,
		    .irets = c->asked.irets,
		    .sent_to = c->asked.sent_to,
		};
		v->cpu[i] = (struct nmi_books_cpu){
		    .core = &c->core,
		    .guest = &v->guest[i],
		    .platform = &v->platform[i],
		    .expect = only || !M.mode->scheduled ? NULL : &c->expect,
		    .detached = c->vmx.detached ? &c->vmx.at_detach : NULL,
		    .busy = c->busy || c->halted || (only && c != only),
		};
	}
	v->books = (struct nmi_books){.ncpus = M.ncpus, .cpu = v->cpu, .at_rest = at_rest};
}

/* A violation line: the run's verdict (the first one) and the timeline's. */
static void violation(void *ctx, const char *line)
{
	(void)ctx;
	unsigned cpu = 0;
	const char *p = strstr(line, " cpu=");
	if (p)
		sscanf(p, " cpu=%u", &cpu);
	if (!M.failed)
		sim_fail("%s", line);
	else if (tl_enabled())
		tl_event(cpu, 0, "%s", line);
}

static void check(const struct sim_cpu *only, int at_rest)
{
	struct views v;
	views(&v, only, at_rest);
	nmi_books_check(&v.books, violation, NULL);
}

void oracle_step(void)
{
	if (!M.failed)
		check(NULL, 0);
}

/* A VM entry that injects an NMI while the guest is blocked fails: the books say
 * which law broke (inject-blocked), for this CPU alone. */
void oracle_entry_failed(struct sim_cpu *c)
{
	check(c, 0);
	sim_fail("cpu%u: VM entry failed: NMI injected while the guest is virtual-NMI blocked",
		 c->id);
}

/* Step s is one the schedule may ask of CPU c (ops.c's model says so) but the core's
 * state forbids it: the core left the CPU masked, unmasked, attached or detached
 * when the calls made there say otherwise.  Never a skip: a skipped operation
 * would hide the very state that forbids it. */
void oracle_cannot_run(struct sim_cpu *c, const struct sim_step *s, const char *law)
{
	int mask = strcmp(law, "mask") == 0;
	sim_fail("books: FAILED law=%s cpu=%u op=%s %s=%u expected=%u: the core's state forbids "
		 "the schedule's next operation (after %s)",
		 law, c->id, sched_op_name(s->op), mask ? "masked" : "guest_present",
		 mask ? c->core.masked : c->core.guest_present,
		 mask ? c->expect.masked : c->expect.attached, c->expect.after);
}

/* Every other CPU is parked in the round the requester just began. */
void oracle_world_stopped(struct sim_cpu *requester)
{
	uint32_t round = nmi_quiesce_state.round;
	for (unsigned i = 0; i < M.ncpus; i++) {
		struct sim_cpu *o = &M.cpu[i];
		if (o != requester && (o->core.quiesce_seen != round || !o->busy))
			sim_fail("stop-the-world round %u began while cpu%u was not parked", round,
				 i);
	}
	if (tl_enabled())
		tl_event(requester->id, 0, "world stopped: every other CPU parked (round %u)",
			 round);
}

/* The hardware model: every NMI sent is delivered, dropped by the latch or still
 * pending (exact only when it counts them one by one), and every delivered NMI
 * reached the core's handler or its NMI-exit path. */
static void hardware(void)
{
	for (unsigned i = 0; i < M.ncpus && !M.failed; i++) {
		struct sim_cpu *c = &M.cpu[i];
		const struct sim_nmi_hw *h = &c->nmi;
		uint64_t taken = c->core.nmi_entries + c->core.exit_nmis;
		if (M.mode->exact_latch &&
		    h->sent != h->delivered + h->dropped + h->latched + h->burst)
			sim_fail("cpu%u: hardware model: %llu NMIs sent, %llu delivered, %llu "
				 "dropped by the latch",
				 i, (unsigned long long)h->sent, (unsigned long long)h->delivered,
				 (unsigned long long)h->dropped);
		else if (h->delivered != taken)
			sim_fail("cpu%u: %llu NMIs delivered but the core saw %llu", i,
				 (unsigned long long)h->delivered, (unsigned long long)taken);
	}
}

void oracle_end(void)
{
	if (M.failed)
		return;
	check(NULL, 1);
	hardware();
}

static void to_file(void *ctx, const char *line)
{
	fprintf(ctx, "%s\n", line);
}

void oracle_table(FILE *f)
{
	struct views v;
	views(&v, NULL, 0);
	nmi_books_table(&v.books, to_file, f);
}

/* The table and the verdict, for a run that is over (stress). */
unsigned oracle_report(FILE *f)
{
	struct views v;
	views(&v, NULL, 1);
	unsigned n = nmi_books_report(&v.books, to_file, f);
	hardware();
	return n;
}

void sim_books_table(FILE *f)
{
	oracle_table(f);
}
