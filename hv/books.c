/* SPDX-License-Identifier: MIT */
/*
 * books.c - the end-of-run checks every hypervisor run shares: the NMI core's
 * conservation laws (struct nmi_cpu in nmi_core.h) on every CPU, and "each
 * stop-the-world round parks every other CPU exactly once".  A failed check is
 * printed and counted; the run's verdict reads books_failures.
 */
#include "hv.h"

int books_failures;

void books_check(int ok, const char *what, unsigned cpu, uint64_t a, uint64_t b)
{
	if (ok)
		return;
	books_failures++;
	kprintf("check FAILED: %s (cpu %u: %lu vs %lu)\n", what, cpu, a, b);
}

void books_check_core(void)
{
	uint64_t parks = 0, rounds = 0;
	for (unsigned i = 0; i < ncpus; i++) {
		const struct nmi_cpu *c = &percpu[i].nmi;
		uint64_t taken = c->nmi_entries + c->exit_nmis;
		uint64_t handled = c->handled_direct + c->handled_exit + c->drained;
		uint64_t owned =
		    c->quiesce_parks + c->guest_accepted + c->guest_coalesced + c->host_consumed;
		books_check(taken == c->handled_direct + c->handled_exit + c->deferred,
			    "nmi_entries + exit_nmis == handled_direct + handled_exit + deferred",
			    i, taken, c->handled_direct + c->handled_exit + c->deferred);
		books_check(c->deferred == c->drained + c->visited, "deferred == drained + visited",
			    i, c->deferred, c->drained + c->visited);
		books_check(handled == owned,
			    "handled == quiesce_parks + guest_accepted + guest_coalesced + "
			    "host_consumed",
			    i, handled, owned);
		books_check(c->guest_accepted == c->guest_injected + c->guest_pending,
			    "guest_accepted == guest_injected + guest_pending", i,
			    c->guest_accepted, c->guest_injected + c->guest_pending);
		books_check(c->masked == 0 && c->visited == 0,
			    "idle CPU is unmasked with nothing owed", i, c->masked, c->visited);
		parks += c->quiesce_parks;
		rounds += c->quiesce_rounds;
	}
	books_check(parks == rounds * (ncpus - 1), "sum quiesce_parks == rounds * (ncpus - 1)", 0,
		    parks, rounds * (ncpus - 1));
}
