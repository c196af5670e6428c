/* SPDX-License-Identifier: MIT */
/*
 * failure.c - what happens when something breaks: the first violation of a run is
 * recorded (and marked on the timeline); in a deterministic run the CPU it happened
 * on is taken out of the run, in a free-running one the process ends with every
 * CPU's books.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

#include "machine.h"

void sim_fail(const char *fmt, ...)
{
	if (M.failed)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(M.what, sizeof M.what, fmt, ap);
	va_end(ap);
	M.failed = 1;
	if (tl_enabled())
		tl_event(self ? self->id : 0, 0, "VIOLATION: %s", M.what);
}

/* Record a violation at `rip` (0: none) and take CPU c out of the run: it hands the
 * token back and, when the controller ends the run, returns to its idle loop. */
_Noreturn void failure_stop_cpu(struct sim_cpu *c, uintptr_t rip, const char *fmt, ...)
{
	char what[sizeof M.what];
	va_list ap;
	tf_off();
	c->step.on = 0;
	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	if (rip && tl_enabled() && !M.failed)
		tl_event(c->id, rip, "stopped here");
	sim_fail("%s", what);
	c->halted = 1;
	controller_hand_back();
	for (;;) {
		controller_wait_turn(c);
		siglongjmp(c->th.base, 1);
	}
}

_Noreturn void failure_halt_deterministic(struct sim_cpu *c, const char *what)
{
	failure_stop_cpu(c, 0, "%s", what);
}

_Noreturn void failure_halt_free(struct sim_cpu *c, const char *what)
{
	(void)c;
	fprintf(stderr, "\n%s\n", what);
	oracle_table(stderr);
	fflush(stderr);
	_exit(3);
}
