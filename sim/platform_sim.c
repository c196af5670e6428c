/* SPDX-License-Identifier: MIT */
/*
 * platform_sim.c - nmi_platform.h for userspace.  Each function is the core's door
 * into one piece of the simulated machine (machine.h); every call is also counted
 * against the turn's budget (runaway.c) and, in fast mode, is a point where an NMI
 * may land (stepper.c).
 */
#define _GNU_SOURCE
#include <string.h>

#include "machine.h"
#include "nmi_platform.h"

/* Every call from the core comes through here first, with its return address. */
static void from_core(uintptr_t rip)
{
	runaway_count_call(self, rip);
	stepper_platform_call(rip);
}
#define FROM_CORE() from_core((uintptr_t)__builtin_return_address(0))

struct nmi_cpu *plat_this_cpu(void)
{
	FROM_CORE();
	return &self->core;
}

unsigned plat_ncpus(void)
{
	return M.ncpus;
}

uint64_t plat_vmcs_read(uint32_t field)
{
	FROM_CORE();
	uint64_t *f = vmx_hw_field(self, field);
	if (!f)
		plat_halt(__FILE__, __LINE__, "VMREAD of a field the simulated VMCS lacks");
	return *f;
}

void plat_vmcs_write(uint32_t field, uint64_t value)
{
	FROM_CORE();
	uint64_t *f = vmx_hw_field(self, field);
	if (!f)
		plat_halt(__FILE__, __LINE__, "VMWRITE of a field the simulated VMCS lacks");
	*f = value;
	if (field == VMCS_PROC_BASED_CTLS && tl_enabled())
		tl_event(self->id, 0, "VMWRITE proc-based controls: NMI-window exiting %s",
			 (value & PROC_NMI_WINDOW_EXITING) ? "on" : "off");
}

void plat_send_nmi(unsigned id)
{
	FROM_CORE();
	if (id >= M.ncpus || &M.cpu[id] == self)
		plat_halt(__FILE__, __LINE__, "NMI IPI to self or to a missing CPU");
	if (tl_enabled())
		tl_event(self->id, 0, "sends NMI IPI to cpu%u", id);
	sim_send_nmi(&M.cpu[id], 1);
}

void plat_nmi_iret(void)
{
	nmi_hw_iret(self);
}

void plat_relax(void)
{
	FROM_CORE();
	M.mode->relax(self);
}

unsigned long plat_spin_limit(void)
{
	return M.mode->spin_limit;
}

/* No simulator lock can be held by a parked CPU. */
void plat_world_lock(void) {}
void plat_world_unlock(void) {}

/* Nothing is cached: the flush is counted by the core (tlb_flushes), and the laws
 * check it (nmi_books.c, law `flushes`). */
void plat_tlb_flush(void) {}

_Noreturn void plat_halt(const char *file, int line, const char *what)
{
	struct sim_cpu *c = self;
	char msg[sizeof M.what];
	const char *base = strrchr(file, '/');
	base = base ? base + 1 : file;
	snprintf(msg, sizeof msg, "cpu%u: NMI core assertion failed at %s:%d: %s", c->id, base,
		 line, what);
	M.mode->halt(c, msg);
	__builtin_unreachable();
}
