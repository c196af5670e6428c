/* SPDX-License-Identifier: MIT */
/* replay_guest.c - guest steps of workload=replay (placeholder while host steps land). */
#include "hv.h"
#include "replay.h"
#include "vmx.h"

void replay_guest_reset(unsigned me)
{
	struct replay_cpu *r = &rcpu[me];
	r->in_guest = r->detached = 0;
	r->guest = (struct nmi_books_guest){0};
}

void replay_guest_op(unsigned me, const struct replay_step *s)
{
	(void)me;
	replay_fail("guest step '%c' not replayed yet", s->op);
}

void replay_service_guest(unsigned me)
{
	(void)me;
}

int replay_guest_available(const char **why)
{
	*why = "guest steps are not replayed yet";
	return 0;
}

void replay_guest_books(unsigned me, struct nmi_books_guest *out)
{
	nmi_books_guest_sync(&rcpu[me].guest, &percpu[me].nmi);
	*out = rcpu[me].guest;
}
