/* SPDX-License-Identifier: MIT */
/*
 * mode.c - the one place where deterministic and free-running runs differ.
 *
 * Deterministic (sim_run: scenarios, the fuzzer, the explorer): one CPU thread runs
 * at a time; a spin hands the token back; the latch model counts every NMI, so it
 * must balance exactly; a failure stops only the CPU it happened on, and every turn
 * is bounded.  Free-running (sim_stress): the threads run truly in parallel, the
 * kernel's latch decides which NMIs are dropped, a spin is a PAUSE, and a failure
 * ends the process with every CPU's books.
 */
#define _GNU_SOURCE
#include <sched.h>

#include "machine.h"

/* A spin on a free-running CPU: more CPU threads than host cores, so yield now and
 * then or the CPU being waited for never gets a core. */
static void relax_free(struct sim_cpu *c)
{
	__builtin_ia32_pause();
	if ((++c->spins & 63) == 0)
		sched_yield();
}

const struct sim_mode sim_deterministic = {
    .name = "deterministic",
    .spin_limit = SIM_SPIN_LIMIT,
    .exact_latch = 1,
    .scheduled = 1,
    .max_exits = SIM_MAX_EXITS,
    .max_turn_calls = SIM_MAX_TURN_CALLS,
    .send = nmi_hw_send_exact,
    .delivered = nmi_hw_delivered_exact,
    .relax = controller_relax,
    .halt = failure_halt_deterministic,
};

const struct sim_mode sim_free_running = {
    .name = "free-running",
    .spin_limit = SIM_STRESS_SPIN,
    .exact_latch = 0,
    .scheduled = 0,
    .max_exits = 0,
    .max_turn_calls = 0,
    .send = nmi_hw_send_free,
    .delivered = nmi_hw_delivered_free,
    .relax = relax_free,
    .halt = failure_halt_free,
};
