/* SPDX-License-Identifier: MIT */
/*
 * platform_sim.c - nmi_platform.h for userspace.  Each function is the core's door
 * into one piece of the simulated machine (machine.h); every call is also counted
 * against the turn's budget (runaway.c) and, in fast mode, is a point where an NMI
 * may land (stepper.c).
 *
 * Only the core calls these functions, so what they do is what the core asked for:
 * each one counts it, as it does it, in the calling CPU's struct sim_asked, and the
 * laws hold the core's own counters to those counts (nmi_books.c: `flushed`,
 * `injections`, `iret`, `ipis`).
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

/* One more of something the core asked for.  The CPU's own thread is the only
 * writer, but an NMI can land inside a platform call: one atomic add is one
 * instruction, and no NMI splits it. */
static void count(uint64_t *n)
{
	__atomic_fetch_add(n, 1, __ATOMIC_RELAXED);
}

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
	count(&self->asked.vmcs_writes[f - (uint64_t *)&self->vmx.vmcs]);
	if (field == VMCS_ENTRY_INTR_INFO && (value & INTR_INFO_VALID) &&
	    (value & INTR_INFO_TYPE_MASK) == INTR_INFO_TYPE_NMI)
		count(&self->asked.injections);
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
	count(&self->asked.sent_to[id]);
	sim_send_nmi(&M.cpu[id], 1);
}

/* Counted first: a latched NMI is taken inside the IRET. */
void plat_nmi_iret(void)
{
	count(&self->asked.irets);
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

/* Nothing is cached, so a flush is only counted, here: law `flushed` holds the
 * core's tlb_flushes to it, law `flushes` the rounds that asked for one. */
void plat_tlb_flush(void)
{
	count(&self->asked.tlb_flushes);
}

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
