/* SPDX-License-Identifier: MIT */
/*
 * nmi_platform.h - everything nmi_core.c needs from the environment it runs in.
 *
 * Two implementations exist: hv/platform_hv.c (bare metal: LAPIC, real VMCS, PAUSE)
 * and sim/platform_sim.c (userspace: POSIX threads are CPUs, a signal is the NMI,
 * a simulated VMCS).  nmi_core.c is compiled once per variant, with the hypervisor's
 * compiler and code-generation flags, and the same object is linked into both, so
 * every function here is a real out-of-line call from the core: no inline platform
 * code can make the two builds' machine code differ.
 *
 * Contract for every function: callable from NMI context (hardware NMI-blocked),
 * async-signal-safe in the simulator, never takes a lock that normal context may hold.
 */
#ifndef NMI_PLATFORM_H
#define NMI_PLATFORM_H

#include <stdint.h>

struct nmi_cpu;

/* ---- Per-CPU state ------------------------------------------------------------ */

/* The calling CPU's state.  Valid in any context, including the NMI handler. */
struct nmi_cpu *plat_this_cpu(void);
/* Number of CPUs taking part in stop-the-world (all online CPUs). */
unsigned plat_ncpus(void);

/* ---- VMCS ----------------------------------------------------------------------- */

/* Read / write a field of the current CPU's current VMCS (VMREAD / VMWRITE).
 * Only called while that CPU has a loaded VMCS (nmi_cpu.guest_present != 0). */
uint64_t plat_vmcs_read(uint32_t field);
void plat_vmcs_write(uint32_t field, uint64_t value);

/* ---- NMIs --------------------------------------------------------------------- */

/* Send an NMI IPI to CPU `id` (LAPIC ICR delivery mode NMI; never to self). */
void plat_send_nmi(unsigned id);
/* Leave hardware NMI blocking as an IRET would.  Called after an NMI VM exit:
 * the exit left the host NMI-blocked, and until an IRET executes every NMI from
 * another CPU (stop-the-world included) is held. */
void plat_nmi_iret(void);

/* ---- Spinning ------------------------------------------------------------------- */

/* One iteration of a spin-wait (PAUSE on hardware; a scheduling point in the
 * deterministic simulator). */
void plat_relax(void);
/* Iterations after which a spin-wait is declared stuck and reported through
 * plat_halt() instead of hanging.  Constant for the life of a run. */
unsigned long plat_spin_limit(void);

/* ---- Stop-the-world ----------------------------------------------------------- */

/* Take / release every lock a parked CPU could be holding when it is stopped
 * (console, page-table locks).  Called by the stop-the-world requester after it
 * holds the quiesce lock: lock order is quiesce lock -> world locks. */
void plat_world_lock(void);
void plat_world_unlock(void);
/* Drop this CPU's cached guest-physical translations (INVEPT on hardware).  Run by
 * every CPU at the end of a stop-the-world round that asked for a flush: by each
 * parked CPU before it resumes, and by the requester for itself. */
void plat_tlb_flush(void);

/* ---- Failure ------------------------------------------------------------------ */

/* An invariant of the core broke: report file:line, the failed condition and the
 * NMI state of every CPU, then stop this CPU for good.  Never returns. */
_Noreturn void plat_halt(const char *file, int line, const char *what);

/* ---- Memory ordering (the same instructions on both builds) -------------------- */

/* Compiler-only barrier: an NMI on this CPU sees every earlier store. */
static inline void nmi_compiler_barrier(void)
{
	__asm__ __volatile__("" ::: "memory");
}
/* Full fence: another CPU sees every earlier store before any later one. */
static inline void nmi_full_barrier(void)
{
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

#endif /* NMI_PLATFORM_H */
