/* SPDX-License-Identifier: MIT */
/*
 * machine.c - the simulated machine's state, and its one reset: before every
 * deterministic run and before a stress run alike.
 */
#include "machine.h"

struct sim_machine M;
__thread struct sim_cpu *self;

/* Every CPU back to power-on: the core's state, the NMI line, the VMCS, stepping.
 * The CPU threads of a deterministic run (struct sim_thread) are not touched. */
void machine_reset(unsigned ncpus, const struct sim_mode *mode)
{
	M.mode = mode;
	M.ncpus = ncpus;
	M.failed = 0;
	M.what[0] = 0;
	M.cur_step = 0;
	nmi_core_init();
	for (unsigned i = 0; i < SIM_MAX_CPUS; i++) {
		struct sim_cpu *c = &M.cpu[i];
		c->id = i;
		c->busy = c->halted = 0;
		c->spins = 0;
		c->nmi = (struct sim_nmi_hw){0};
		c->step = (struct sim_stepper){0};
		c->budget = (struct sim_budget){0};
		c->asked = (struct sim_asked){0};
		c->expect = (struct nmi_books_expect){.after = "power-on"};
		vmx_hw_reset(c);
		nmi_cpu_init(&c->core, i);
	}
}
