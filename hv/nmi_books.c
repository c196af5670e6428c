/* SPDX-License-Identifier: MIT */
/*
 * nmi_books.c - the laws every NMI obeys (nmi_books.h), written once.
 *
 * Per CPU, whenever the CPU is not in the middle of a step:
 *   wrap             no counter went below zero
 *   conserve-taken   nmi_entries + exit_nmis = handled_direct + handled_exit + deferred
 *   conserve-deferred  deferred = drained + visited
 *   conserve-owner   handled_direct + handled_exit + drained
 *                      = quiesce_parks + guest_accepted + guest_coalesced + host_consumed
 *   conserve-guest   guest_accepted = guest_injected + guest_pending
 *   cap              guest_pending <= 2, <= 1 while the guest is blocked or an
 *                    injection is queued
 *   spurious         the guest never gets more NMIs than hardware would deliver
 *   inject-blocked   no injection queued while the guest is virtual-NMI blocked
 *   injected         every injection reaches the guest exactly once
 *   window           NMI-window exiting on exactly when an NMI waits and the guest
 *                    is not software-blocked
 *   detached         after the guest is detached, nothing is booked to it
 *   mask             the software mask is what the calls made on the CPU leave it
 *   attached         the guest is attached exactly when those calls attached it
 *   flushed          every TLB flush the core counts, the platform did
 *   injections       every injection the core counts was written to the VMCS once
 *   iret             every NMI VM exit was followed by one IRET
 * Machine-wide, when no CPU is mid-step and no stop-the-world round is open:
 *   parks            every round parks every other CPU exactly once
 *   flushes          every CPU flushes once per round that asked for a flush
 *   ipis             every round sent one NMI to every other CPU
 * At the end of a run:
 *   idle             every CPU is unmasked with nothing owed
 */
#include "nmi_books.h"

#include <stddef.h>

#define LINE_MAX 640

/* ---- Output: lines built without libc ------------------------------------------------ */

struct line {
	char buf[LINE_MAX];
	unsigned len;
};

static void put_s(struct line *l, const char *s)
{
	while (*s && l->len < LINE_MAX - 1)
		l->buf[l->len++] = *s++;
	l->buf[l->len] = 0;
}

static void put_u(struct line *l, uint64_t v)
{
	char d[20];
	unsigned n = 0;
	do {
		d[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n && l->len < LINE_MAX - 1)
		l->buf[l->len++] = d[--n];
	l->buf[l->len] = 0;
}

/* " key=value" */
static void put_kv(struct line *l, const char *key, uint64_t v)
{
	put_s(l, " ");
	put_s(l, key);
	put_s(l, "=");
	put_u(l, v);
}

/* ---- The table ---------------------------------------------------------------------- */

/* Every field of struct nmi_cpu but `id` (printed as cpu=), in declaration order. */
/* clang-format off */
#define FIELD(name) {#name, offsetof(struct nmi_cpu, name), sizeof(((struct nmi_cpu *)0)->name)}
/* clang-format on */
static const struct {
	const char *name;
	unsigned short off, size;
} fields[] = {
    FIELD(masked),         FIELD(visited),          FIELD(guest_present),
    FIELD(guest_pending),  FIELD(guest_sw_blocked), FIELD(quiesce_seen),
    FIELD(nmi_entries),    FIELD(exit_nmis),        FIELD(handled_direct),
    FIELD(handled_exit),   FIELD(deferred),         FIELD(drained),
    FIELD(quiesce_parks),  FIELD(guest_accepted),   FIELD(guest_coalesced),
    FIELD(guest_injected), FIELD(guest_reinjected), FIELD(host_consumed),
    FIELD(tlb_flushes),    FIELD(quiesce_rounds),   FIELD(quiesce_flush_rounds),
};
/* A field added to struct nmi_cpu belongs in the table above. */
_Static_assert(sizeof(struct nmi_cpu) == 8 * 4 + 15 * 8, "struct nmi_cpu changed: update fields[]");

static uint64_t field_value(const struct nmi_cpu *c, unsigned i)
{
	const volatile unsigned char *p = (const volatile unsigned char *)c + fields[i].off;
	if (fields[i].size == sizeof(uint32_t))
		return *(const volatile uint32_t *)p;
	return *(const volatile uint64_t *)p;
}

void nmi_books_table(const struct nmi_books *b, nmi_books_out *out, void *ctx)
{
	for (unsigned i = 0; i < b->ncpus; i++) {
		const struct nmi_cpu *c = b->cpu[i].core;
		struct line l;
		l.len = 0;
		put_s(&l, "books cpu=");
		put_u(&l, c->id);
		for (unsigned k = 0; k < sizeof fields / sizeof fields[0]; k++)
			put_kv(&l, fields[k].name, field_value(c, k));
		out(ctx, l.buf);
	}
}

/* ---- The laws ----------------------------------------------------------------------- */

struct verdict {
	nmi_books_out *out;
	void *ctx;
	unsigned failures;
	struct line l;
};

/* Start a `books: FAILED law=<law> cpu=<cpu>` line; the caller adds the detail and
 * calls emit(). */
static struct line *violation(struct verdict *v, const char *law, unsigned cpu)
{
	v->failures++;
	v->l.len = 0;
	put_s(&v->l, "books: FAILED law=");
	put_s(&v->l, law);
	put_s(&v->l, " cpu=");
	put_u(&v->l, cpu);
	return &v->l;
}

static void emit(struct verdict *v)
{
	v->out(v->ctx, v->l.buf);
}

/* `law` fails unless a == b; the detail names both sides. */
static void equal(struct verdict *v, const char *law, unsigned cpu, const char *lhs, uint64_t a,
		  const char *rhs, uint64_t b, const char *why)
{
	if (a == b)
		return;
	struct line *l = violation(v, law, cpu);
	put_kv(l, lhs, a);
	put_kv(l, rhs, b);
	if (why) {
		put_s(l, ": ");
		put_s(l, why);
	}
	emit(v);
}

/* `law` fails when a > b. */
static void at_most(struct verdict *v, const char *law, unsigned cpu, const char *lhs, uint64_t a,
		    const char *rhs, uint64_t b, const char *why)
{
	if (a <= b)
		return;
	struct line *l = violation(v, law, cpu);
	put_kv(l, lhs, a);
	put_kv(l, rhs, b);
	put_s(l, ": ");
	put_s(l, why);
	emit(v);
}

static void conservation(struct verdict *v, unsigned i, const struct nmi_cpu *c)
{
	uint64_t visited = c->visited, pending = c->guest_pending;

	at_most(v, "wrap", i, "visited", visited, "deferred", c->deferred,
		"the deferred-NMI counter went below zero: an NMI handled twice");
	at_most(v, "wrap", i, "drained", c->drained, "deferred", c->deferred,
		"more NMIs drained than were ever deferred");
	at_most(v, "wrap", i, "guest_pending", pending, "guest_accepted", c->guest_accepted,
		"the guest-pending counter went below zero");
	equal(v, "conserve-taken", i, "nmi_entries+exit_nmis", c->nmi_entries + c->exit_nmis,
	      "handled_direct+handled_exit+deferred",
	      c->handled_direct + c->handled_exit + c->deferred, NULL);
	equal(v, "conserve-deferred", i, "deferred", c->deferred, "drained+visited",
	      c->drained + visited,
	      c->drained + visited < c->deferred
		  ? "an NMI deferred while masked was never handled"
		  : "an NMI deferred while masked was handled twice");
	equal(v, "conserve-owner", i, "handled_direct+handled_exit+drained",
	      c->handled_direct + c->handled_exit + c->drained,
	      "quiesce_parks+guest_accepted+guest_coalesced+host_consumed",
	      c->quiesce_parks + c->guest_accepted + c->guest_coalesced + c->host_consumed,
	      "every handled NMI has exactly one owner");
	equal(v, "conserve-guest", i, "guest_accepted", c->guest_accepted,
	      "guest_injected+guest_pending", c->guest_injected + pending,
	      "every guest NMI accepted is injected or still pending");
}

static void guest_laws(struct verdict *v, unsigned i, const struct nmi_cpu *c,
		       const struct nmi_books_guest *g)
{
	uint64_t pending = c->guest_pending;
	int in_service = g && (g->blocked || g->queued);

	/* The guest may receive what hardware would deliver, and no more: NMIs it took,
	 * the one queued and those pending count against it. */
	if (g)
		at_most(v, "spurious", i, "guest_received+queued+guest_pending",
			g->received + g->queued + pending, "deliverable", g->deliverable,
			"the guest gets an NMI hardware would have dropped (one in service plus "
			"one latched)");
	at_most(v, "cap", i, "guest_pending", pending, in_service ? "cap_in_service" : "cap",
		in_service ? NMI_GUEST_PENDING_MAX_BLOCKED : NMI_GUEST_PENDING_MAX,
		in_service ? "more guest NMIs wait than one latched behind the one in service"
			   : "more guest NMIs wait than one in service plus one latched");
	if (!g)
		return;
	if (g->blocked && g->queued) {
		struct line *l = violation(v, "inject-blocked", i);
		put_s(l, " blocked=1 queued=1: an NMI injection while the guest is virtual-NMI "
			 "blocked (the VM entry fails)");
		emit(v);
	}
	equal(v, "injected", i, "guest_injected", c->guest_injected, "guest_received+queued",
	      g->received + g->queued, "every injection reaches the guest exactly once");
	if (c->guest_present) {
		uint64_t want = pending != 0 && !c->guest_sw_blocked;
		equal(v, "window", i, "window", g->window != 0,
		      "guest_pending>0&&!guest_sw_blocked", want,
		      "NMI-window exiting must be on exactly when a guest NMI can be delivered");
	}
}

/* After nmi_guest_detach(), the guest is gone: no NMI may be booked to it. */
static void detached_law(struct verdict *v, unsigned i, const struct nmi_cpu *c,
			 const struct nmi_cpu *then)
{
	if (c->guest_present) {
		struct line *l = violation(v, "detached", i);
		put_s(l, " guest_present=1: the guest was detached but the core still has it");
		emit(v);
	}
	equal(v, "detached", i, "guest_accepted", c->guest_accepted, "at_detach",
	      then->guest_accepted, "an NMI was booked to a detached guest");
	equal(v, "detached", i, "guest_coalesced", c->guest_coalesced, "at_detach",
	      then->guest_coalesced, "an NMI was booked to a detached guest");
	equal(v, "detached", i, "guest_injected", c->guest_injected, "at_detach",
	      then->guest_injected, "an NMI was injected into a detached guest");
	equal(v, "detached", i, "guest_reinjected", c->guest_reinjected, "at_detach",
	      then->guest_reinjected, "an NMI was injected into a detached guest");
}

/* The core's state against the platform's own model of it: the calls that ran on
 * this CPU say whether the mask is held and whether a guest is attached.  A core
 * that leaves a CPU masked defers every later NMI there for good; one that leaves
 * it unmasked edits NMI state with NMIs live. */
static void expect_laws(struct verdict *v, unsigned i, const struct nmi_cpu *c,
			const struct nmi_books_expect *e)
{
	if ((c->masked != 0) != (e->masked != 0)) {
		struct line *l = violation(v, "mask", i);
		put_s(l, " op=");
		put_s(l, e->after ? e->after : "?");
		put_kv(l, "masked", c->masked);
		put_kv(l, "expected", e->masked);
		put_s(l, e->masked
			     ? ": the CPU's critical section is not masked"
			     : ": the core leaves the CPU masked: its NMIs are deferred for good");
		emit(v);
	}
	if ((c->guest_present != 0) != (e->attached != 0)) {
		struct line *l = violation(v, "attached", i);
		put_s(l, " op=");
		put_s(l, e->after ? e->after : "?");
		put_kv(l, "guest_present", c->guest_present);
		put_kv(l, "expected", e->attached);
		put_s(l, e->attached ? ": the guest attached here is not the core's"
				     : ": the core has a guest that is not attached here");
		emit(v);
	}
}

/* The core's counters of what it asked for, against what its platform counted
 * doing: a counter is only the core's intent. */
static void platform_laws(struct verdict *v, unsigned i, const struct nmi_cpu *c,
			  const struct nmi_books_platform *p)
{
	equal(
	    v, "flushed", i, "tlb_flushes", c->tlb_flushes, "platform_tlb_flushes", p->tlb_flushes,
	    c->tlb_flushes > p->tlb_flushes ? "a TLB flush the core counts was never done"
					    : "a TLB flush was done that the core does not count");
	equal(v, "injections", i, "guest_injected+guest_reinjected",
	      c->guest_injected + c->guest_reinjected, "platform_injections", p->injections,
	      "every injection the core counts is one VMWRITE of an NMI to the VM-entry "
	      "interruption field");
	equal(v, "iret", i, "exit_nmis", c->exit_nmis, "platform_irets", p->irets,
	      "every NMI VM exit is followed by one IRET, or the host stays NMI-blocked");
}

/* Each round requested by CPU j parks every CPU but j once, and with a flush every
 * CPU (the requester included) flushes once.  Each round sends one NMI to every
 * other CPU, and no CPU sends one to itself. */
static void machine_laws(struct verdict *v, const struct nmi_books *b)
{
	uint64_t rounds = 0, flush_rounds = 0;
	for (unsigned i = 0; i < b->ncpus; i++) {
		rounds += b->cpu[i].core->quiesce_rounds;
		flush_rounds += b->cpu[i].core->quiesce_flush_rounds;
	}
	for (unsigned i = 0; i < b->ncpus; i++) {
		const struct nmi_cpu *c = b->cpu[i].core;
		equal(v, "parks", c->id, "quiesce_parks", c->quiesce_parks, "rounds_by_others",
		      rounds - c->quiesce_rounds,
		      "each stop-the-world round parks every other CPU once");
		equal(v, "flushes", c->id, "tlb_flushes", c->tlb_flushes, "flush_rounds",
		      flush_rounds, "each round with a flush flushes every CPU once");
		const struct nmi_books_platform *p = b->cpu[i].platform;
		for (unsigned t = 0; p && p->sent_to && t < b->ncpus; t++) {
			uint64_t want = t == i ? 0 : c->quiesce_rounds;
			if (p->sent_to[t] == want)
				continue;
			struct line *l = violation(v, "ipis", c->id);
			put_kv(l, "target", b->cpu[t].core->id);
			put_kv(l, "platform_nmis_sent", p->sent_to[t]);
			put_kv(l, t == i ? "to_self" : "quiesce_rounds", want);
			put_s(l, ": each stop-the-world round sends one NMI to every other CPU");
			emit(v);
		}
	}
}

unsigned nmi_books_check(const struct nmi_books *b, nmi_books_out *out, void *ctx)
{
	struct verdict v; /* no initializer: a freestanding build has no memset */
	v.out = out;
	v.ctx = ctx;
	v.failures = 0;
	int quiet = !nmi_quiesce_state.active && !nmi_quiesce_state.lock;

	for (unsigned i = 0; i < b->ncpus; i++) {
		const struct nmi_books_cpu *p = &b->cpu[i];
		if (p->busy) {
			quiet = 0;
			continue;
		}
		unsigned id = p->core->id;
		if (p->expect)
			expect_laws(&v, id, p->core, p->expect);
		conservation(&v, id, p->core);
		guest_laws(&v, id, p->core, p->guest);
		if (p->detached)
			detached_law(&v, id, p->core, p->detached);
		if (p->platform)
			platform_laws(&v, id, p->core, p->platform);
		if (b->at_rest && (p->core->masked || p->core->visited)) {
			struct line *l = violation(&v, "idle", id);
			put_kv(l, "masked", p->core->masked);
			put_kv(l, "visited", p->core->visited);
			put_s(l, ": the run is over but this CPU is masked or owes NMI handling");
			emit(&v);
		}
	}
	if (quiet)
		machine_laws(&v, b);
	return v.failures;
}

unsigned nmi_books_report(const struct nmi_books *b, nmi_books_out *out, void *ctx)
{
	nmi_books_table(b, out, ctx);
	unsigned n = nmi_books_check(b, out, ctx);
	if (n == 0)
		out(ctx, "books: ok");
	return n;
}

/* ---- What hardware would have delivered to the guest ---------------------------------- */

void nmi_books_guest_sync(struct nmi_books_guest *g, const struct nmi_cpu *c)
{
	uint64_t now = c->guest_accepted + c->guest_coalesced;
	uint64_t n = now - g->arrived;

	g->arrived = now;
	/* Each arrival takes the free slot, in service first, then the latch; with
	 * both taken, hardware drops it. */
	for (; n && !(g->in_service && g->latched); n--) {
		if (!g->in_service)
			g->in_service = 1;
		else
			g->latched = 1;
		g->deliverable++;
	}
}

void nmi_books_guest_iret(struct nmi_books_guest *g, const struct nmi_cpu *c)
{
	nmi_books_guest_sync(g, c);
	/* The NMI in service is done; the latched one is delivered at once. */
	g->in_service = g->latched;
	g->latched = 0;
}
