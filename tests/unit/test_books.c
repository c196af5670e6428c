/* SPDX-License-Identifier: MIT */
/*
 * test_books.c - unit tests of the laws (hv/nmi_books.c) on books written by hand:
 * a consistent two-CPU machine passes, and each case breaks it in one way that
 * its law must name.  Also the output format, and the guest model.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>

#include "nmi_books.h"

struct machine {
	struct nmi_cpu core[2];
	struct nmi_books_guest guest[2];
	struct nmi_cpu at_detach;
	int detached, busy0, at_rest;
	uint64_t sent_to[2][2];
	struct nmi_books_platform platform[2];
	struct nmi_books_expect expect[2];
};

/* CPU 0 runs a guest that took one NMI and has one more pending behind it; it
 * requested one stop-the-world round with a flush, which parked CPU 1.  The
 * platform did what the core counts: one flush on each CPU, one injection and one
 * IRET on CPU 0, one NMI from CPU 0 to CPU 1; the calls made leave both CPUs
 * unmasked and a guest attached on CPU 0. */
static void consistent(struct machine *m)
{
	memset(m, 0, sizeof *m);
	struct nmi_cpu *c = &m->core[0];
	c->id = 0;
	c->guest_present = 1;
	c->nmi_entries = 2, c->exit_nmis = 1;
	c->handled_direct = 1, c->handled_exit = 1, c->deferred = 1, c->drained = 1;
	c->guest_accepted = 2, c->host_consumed = 1;
	c->guest_injected = 1, c->guest_pending = 1;
	c->quiesce_rounds = 1, c->quiesce_flush_rounds = 1, c->tlb_flushes = 1;
	m->guest[0] = (struct nmi_books_guest){.blocked = 1,
					       .window = 1,
					       .received = 1,
					       .deliverable = 2,
					       .arrived = 2,
					       .in_service = 1,
					       .latched = 1};
	c = &m->core[1];
	c->id = 1;
	c->nmi_entries = 1, c->handled_direct = 1, c->quiesce_parks = 1, c->tlb_flushes = 1;
	m->sent_to[0][1] = 1;
	m->platform[0] = (struct nmi_books_platform){
	    .tlb_flushes = 1, .injections = 1, .irets = 1, .sent_to = m->sent_to[0]};
	m->platform[1] = (struct nmi_books_platform){.tlb_flushes = 1, .sent_to = m->sent_to[1]};
	m->expect[0] = (struct nmi_books_expect){.after = "enter", .attached = 1};
	m->expect[1] = (struct nmi_books_expect){.after = "quiesce"};
}

/* Each case: a way to break the consistent machine, and the law that must say so
 * (NULL: every law must hold). */
struct law_case {
	const char *name;
	const char *law;
	void (*brk)(struct machine *m);
};

static void nothing(struct machine *m)
{
	(void)m;
}
static void wrap(struct machine *m)
{
	m->core[0].visited = 0xFFFFFFFFu; /* the seed's race */
}
static void taken(struct machine *m)
{
	m->core[0].nmi_entries++;
}
static void lost(struct machine *m)
{
	m->core[0].drained = 0;
}
static void two_owners(struct machine *m)
{
	m->core[0].host_consumed++;
}
static void guest_lost(struct machine *m)
{
	m->core[0].guest_pending = 0;
}
static void blocked_two_pending(struct machine *m)
{
	m->core[0].guest_pending = 2, m->core[0].guest_accepted = 3, m->core[0].host_consumed = 0;
}
static void spurious(struct machine *m)
{
	m->guest[0].deliverable = 1;
}
static void inject_blocked(struct machine *m)
{
	m->guest[0].queued = 1, m->guest[0].received = 0;
}
static void not_received(struct machine *m)
{
	m->guest[0].received = 0;
}
static void window(struct machine *m)
{
	m->guest[0].window = 0;
}
static void still_attached(struct machine *m)
{
	m->detached = 1, m->at_detach = m->core[0];
}
static void booked_after_detach(struct machine *m)
{
	m->detached = 1, m->at_detach = m->core[0];
	m->at_detach.guest_accepted--, m->at_detach.guest_pending--;
	m->core[0].guest_present = m->at_detach.guest_present = 0;
	m->expect[0].attached = 0, m->expect[0].after = "detach";
}
static void parked_twice(struct machine *m)
{
	struct nmi_cpu *c = &m->core[1];
	c->nmi_entries++, c->handled_direct++, c->quiesce_parks++;
}
static void no_flush(struct machine *m)
{
	m->core[1].tlb_flushes = 0, m->platform[1].tlb_flushes = 0;
}
static void left_masked(struct machine *m)
{
	m->core[1].masked = 1; /* the requester's round did not unmask it */
}
static void unmasked_section(struct machine *m)
{
	m->expect[1].masked = 1, m->expect[1].after = "mask";
}
static void not_attached(struct machine *m)
{
	m->core[0].guest_present = 0;
}
static void flush_not_done(struct machine *m)
{
	m->platform[0].tlb_flushes = 0; /* counted by the core, never asked of the platform */
}
static void injection_not_written(struct machine *m)
{
	m->platform[0].injections = 0;
}
static void reinjection_not_written(struct machine *m)
{
	m->core[0].guest_reinjected = 1;
}
static void no_iret(struct machine *m)
{
	m->platform[0].irets = 0; /* the host stays NMI-blocked after the exit */
}
static void ipi_missing(struct machine *m)
{
	m->sent_to[0][1] = 0;
}
static void ipi_to_self(struct machine *m)
{
	m->sent_to[1][1] = 1;
}
static void no_platform_counts(struct machine *m)
{
	m->platform[0].tlb_flushes = 0, m->platform[0].irets = 0, m->sent_to[0][1] = 0;
	m->core[1].masked = 1; /* nor a model: a platform that keeps none checks neither */
	m->detached = -1;
}
static void still_masked(struct machine *m)
{
	m->at_rest = 1, m->core[0].masked = 1;
}
static void busy_broken(struct machine *m)
{
	m->busy0 = 1, m->core[0].nmi_entries++;
	m->core[1].tlb_flushes = 0, m->platform[1].tlb_flushes = 0; /* not flushed yet */
	m->sent_to[0][1] = 0; /* the IPI is not sent yet either */
}

static const struct law_case cases[] = {
    {"a consistent machine keeps every law", NULL, nothing},
    {"a counter below zero", "wrap", wrap},
    {"an NMI taken but neither handled nor deferred", "conserve-taken", taken},
    {"a deferred NMI never drained", "conserve-deferred", lost},
    {"a handled NMI with two owners", "conserve-owner", two_owners},
    {"a guest NMI neither injected nor pending", "conserve-guest", guest_lost},
    {"a blocked guest with two NMIs pending: the cap", "cap", blocked_two_pending},
    {"a blocked guest with two NMIs pending: more than hardware delivers", "spurious",
     blocked_two_pending},
    {"more for the guest than hardware would deliver", "spurious", spurious},
    {"an injection queued while the guest is blocked", "inject-blocked", inject_blocked},
    {"an injection the guest never took", "injected", not_received},
    {"NMI-window exiting off with an NMI pending", "window", window},
    {"a detached guest still attached", "detached", still_attached},
    {"an NMI booked to a detached guest", "detached", booked_after_detach},
    {"a CPU parked twice in one round", "parks", parked_twice},
    {"a CPU that missed a flush", "flushes", no_flush},
    {"a CPU still masked at the end", "idle", still_masked},
    {"a CPU the core leaves masked after its operation", "mask", left_masked},
    {"a critical section the core does not mask", "mask", unmasked_section},
    {"a guest attached by the calls but not by the core", "attached", not_attached},
    {"a TLB flush counted but never done", "flushed", flush_not_done},
    {"an injection counted but never written to the VMCS", "injections", injection_not_written},
    {"a re-injection counted but never written to the VMCS", "injections", reinjection_not_written},
    {"an NMI VM exit with no IRET", "iret", no_iret},
    {"a stop-the-world round that sent no NMI to a CPU", "ipis", ipi_missing},
    {"an NMI sent to the sender itself", "ipis", ipi_to_self},
    {"a platform that counts nothing and keeps no model: those laws are skipped", NULL,
     no_platform_counts},
    {"a CPU mid-step is not checked, nor the machine-wide laws", NULL, busy_broken},
};

struct capture {
	char text[4096];
	size_t len;
	unsigned lines;
};

static void capture(void *ctx, const char *line)
{
	struct capture *k = ctx;
	k->len += (size_t)snprintf(k->text + k->len, sizeof k->text - k->len, "%s\n", line);
	k->lines++;
}

/* detached < 0: the platform neither counts what it was asked nor keeps a model. */
static unsigned run(struct machine *m, struct capture *k, int report)
{
	int counts = m->detached >= 0;
	struct nmi_books_cpu cpu[2] = {
	    {.core = &m->core[0],
	     .guest = &m->guest[0],
	     .platform = counts ? &m->platform[0] : NULL,
	     .expect = counts ? &m->expect[0] : NULL,
	     .detached = m->detached > 0 ? &m->at_detach : NULL,
	     .busy = m->busy0},
	    {.core = &m->core[1],
	     .guest = &m->guest[1],
	     .platform = counts ? &m->platform[1] : NULL,
	     .expect = counts ? &m->expect[1] : NULL},
	};
	struct nmi_books b = {.ncpus = 2, .cpu = cpu, .at_rest = m->at_rest};
	memset(k, 0, sizeof *k);
	return report ? nmi_books_report(&b, capture, k) : nmi_books_check(&b, capture, k);
}

static void verdict(unsigned *passed, unsigned *failed, const char *name, const char *why)
{
	if (why[0]) {
		printf("FAIL unit: books: %s: %s\n", name, why);
		(*failed)++;
	} else {
		printf("PASS unit: books: %s\n", name);
		(*passed)++;
	}
}

static void laws(unsigned *passed, unsigned *failed)
{
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const struct law_case *t = &cases[i];
		struct machine m;
		struct capture k;
		char want[64], why[8192] = "";
		consistent(&m);
		t->brk(&m);
		unsigned n = run(&m, &k, 0);
		snprintf(want, sizeof want, "books: FAILED law=%s cpu=", t->law ? t->law : "");
		if (!t->law && n)
			snprintf(why, sizeof why, "%u violation(s): %s", n, k.text);
		else if (t->law && !strstr(k.text, want))
			snprintf(why, sizeof why, "no '%s' line in: %s", want,
				 n ? k.text : "(none)");
		else if (n != k.lines)
			snprintf(why, sizeof why, "returned %u for %u lines", n, k.lines);
		verdict(passed, failed, t->name, why);
	}
}

/* The format, exactly: a line per CPU with every field by name, then the verdict. */
static void format(unsigned *passed, unsigned *failed)
{
	static const char want[] =
	    "books cpu=0 masked=0 visited=0 guest_present=1 guest_pending=1 guest_sw_blocked=0 "
	    "quiesce_seen=0 nmi_entries=2 exit_nmis=1 handled_direct=1 handled_exit=1 "
	    "deferred=1 drained=1 quiesce_parks=0 guest_accepted=2 guest_coalesced=0 "
	    "guest_injected=1 guest_reinjected=0 host_consumed=1 tlb_flushes=1 "
	    "quiesce_rounds=1 quiesce_flush_rounds=1\n"
	    "books cpu=1 masked=0 visited=0 guest_present=0 guest_pending=0 guest_sw_blocked=0 "
	    "quiesce_seen=0 nmi_entries=1 exit_nmis=0 handled_direct=1 handled_exit=0 "
	    "deferred=0 drained=0 quiesce_parks=1 guest_accepted=0 guest_coalesced=0 "
	    "guest_injected=0 guest_reinjected=0 host_consumed=0 tlb_flushes=1 "
	    "quiesce_rounds=0 quiesce_flush_rounds=0\n"
	    "books: ok\n";
	struct machine m;
	struct capture k;
	char why[8192] = "";
	consistent(&m);
	if (run(&m, &k, 1) != 0 || strcmp(k.text, want) != 0)
		snprintf(why, sizeof why, "got:\n%swant:\n%s", k.text, want);
	verdict(passed, failed, "the report's format", why);

	consistent(&m);
	m.core[0].drained = 0;
	run(&m, &k, 1);
	const char *v = strstr(k.text, "books: FAILED law=conserve-deferred cpu=0 deferred=1 "
				       "drained+visited=0: ");
	why[0] = 0;
	if (!v || strstr(k.text, "books: ok"))
		snprintf(why, sizeof why, "got:\n%s", k.text);
	verdict(passed, failed, "a violation's line names its law, its CPU and both sides", why);
}

/* The guest model: one in service plus one latched, an IRET frees the service. */
static void model(unsigned *passed, unsigned *failed)
{
	struct nmi_books_guest g = {0};
	struct nmi_cpu c = {0};
	char why[256] = "";
	c.guest_accepted = 2, c.guest_coalesced = 1; /* three at once */
	nmi_books_guest_sync(&g, &c);
	if (g.deliverable != 2)
		snprintf(why, sizeof why, "three at once: %llu deliverable, want 2",
			 (unsigned long long)g.deliverable);
	verdict(passed, failed, "guest model: three NMIs at once, two delivered", why);

	nmi_books_guest_iret(&g, &c); /* the first handler ends, the latched one runs */
	c.guest_accepted++; /* one more arrives while it runs: latched */
	nmi_books_guest_sync(&g, &c);
	c.guest_coalesced++; /* and one more: dropped */
	nmi_books_guest_iret(&g, &c);
	why[0] = 0;
	if (g.deliverable != 3 || g.in_service != 1 || g.latched != 0)
		snprintf(why, sizeof why, "deliverable %llu in_service %u latched %u, want 3 1 0",
			 (unsigned long long)g.deliverable, g.in_service, g.latched);
	verdict(passed, failed, "guest model: an IRET delivers the latched NMI, drops none", why);
}

void test_books(unsigned *passed, unsigned *failed);
void test_books(unsigned *passed, unsigned *failed)
{
	laws(passed, failed);
	format(passed, failed);
	model(passed, failed);
}
