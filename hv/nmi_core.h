/* SPDX-License-Identifier: MIT */
/*
 * nmi_core.h - the hypervisor's NMI subsystem: software NMI mask, NMI entry points,
 * guest NMI virtualization and stop-the-world.  One implementation (nmi_core.c),
 * linked unchanged into the bare-metal hypervisor and into the simulator.
 *
 * Contexts used below:
 *   normal   - ordinary hypervisor code, hardware NMIs unblocked;
 *   NMI      - the vector-2 handler, hardware NMI-blocked until its IRET;
 *   masked   - between nmi_mask() and nmi_unmask() on this CPU.
 */
#ifndef NMI_CORE_H
#define NMI_CORE_H

#include <stdint.h>

/* Build-time variants: one step each of the seed's history (docs/variants.md). */
#define NMI_VARIANT_COALESCING     1 /* boolean visited flag                       */
#define NMI_VARIANT_RACY_COUNTER   2 /* handler calls unmask/drain: the seed's bug */
#define NMI_VARIANT_REENTRANT_LOOP 3 /* first fix: re-check under the mask         */
#define NMI_VARIANT_FINAL          4 /* handler handles directly, atomic drain     */

/* VMCS field encodings and bits the core uses (Intel SDM vol. 3, appendix B). */
#define VMCS_PIN_BASED_CTLS         0x4000u
#define VMCS_PROC_BASED_CTLS        0x4002u
#define VMCS_ENTRY_INTR_INFO        0x4016u
#define VMCS_GUEST_INTERRUPTIBILITY 0x4824u
#define VMCS_IDT_VECTORING_INFO     0x4408u
#define PIN_NMI_EXITING             (1u << 3)
#define PIN_VIRTUAL_NMIS            (1u << 5)
#define PROC_NMI_WINDOW_EXITING     (1u << 22)
#define INTR_INFO_VALID             (1u << 31)
#define INTR_INFO_NMI               0x80000202u /* valid, type 2 (NMI), vector 2 */
#define INTR_INFO_TYPE_MASK         (7u << 8)
#define INTR_INFO_TYPE_NMI          (2u << 8)
#define GUEST_INTR_BLOCK_NMI        (1u << 3)

/* Hardware-like caps on guest NMIs that wait for an NMI window. */
#define NMI_GUEST_PENDING_MAX         2u
#define NMI_GUEST_PENDING_MAX_BLOCKED 1u

/* Per-CPU NMI state.  Fields marked [NMI] are written from NMI context. */
struct nmi_cpu {
	unsigned id;
	/* Software mask: nonzero while this CPU is inside a critical section that
	 * edits NMI state (cached VMCS, pending counters).  Written only by this CPU. */
	volatile uint32_t masked;
	/* [NMI] NMIs that arrived while masked and still wait for nmi_unmask() to
	 * handle them.  Invariant: visited != 0 implies the handling is owed, never
	 * that it was done; it may only be decremented with the mask held. */
	volatile uint32_t visited;
	/* Nonzero while a VMCS is loaded and a guest runs (or is about to run) here. */
	uint32_t guest_present;
	/* Guest NMIs accepted but not yet injected.  Capped (NMI_GUEST_PENDING_MAX*). */
	uint32_t guest_pending;
	/* Nonzero while a hypervisor extension keeps guest NMIs from being delivered. */
	uint32_t guest_sw_blocked;
	/* [NMI] The stop-the-world round this CPU last parked for. */
	volatile uint32_t quiesce_seen;

	/* Accounting (monotonic).  Conservation, for a quiescent CPU:
	 *   nmi_entries + exit_nmis      = handled_direct + handled_exit + deferred
	 *   deferred                     = drained + visited
	 *   handled_direct + handled_exit + drained
	 *                                = quiesce_parks + guest_accepted
	 *                                  + guest_coalesced + host_consumed
	 *   guest_accepted               = guest_injected + guest_pending
	 * These and the other laws every NMI obeys are checked in one place,
	 * nmi_books.c, by every build (docs/nmi-semantics.md names them).          */
	uint64_t nmi_entries; /* [NMI] vector-2 handler entries                  */
	uint64_t exit_nmis; /* NMI VM exits                                     */
	uint64_t handled_direct; /* [NMI] handled in the vector-2 handler            */
	uint64_t handled_exit; /* handled in the NMI VM-exit path                  */
	uint64_t deferred; /* [NMI] counted in `visited` because masked        */
	uint64_t drained; /* handled by nmi_unmask()                          */
	uint64_t quiesce_parks; /* NMIs that parked this CPU for stop-the-world     */
	uint64_t guest_accepted; /* guest NMIs made pending                          */
	uint64_t guest_coalesced; /* guest NMIs dropped by the 2/1 cap                */
	uint64_t guest_injected; /* NMIs injected at an NMI-window exit              */
	uint64_t guest_reinjected; /* queued again after an exit interrupted delivery */
	uint64_t host_consumed; /* guest-owned NMIs with no guest to take them      */
	uint64_t tlb_flushes; /* plat_tlb_flush() calls: parked or as requester   */
	uint64_t quiesce_rounds; /* stop-the-world rounds this CPU requested         */
	uint64_t quiesce_flush_rounds; /* ... of which asked for a TLB flush        */
};

/* Stop-the-world state, one per system. */
struct nmi_quiesce {
	volatile uint32_t lock; /* the quiesce lock (test-and-set)               */
	volatile uint32_t active; /* a round is collecting CPUs                    */
	volatile uint32_t resume; /* parked CPUs may leave                         */
	volatile uint32_t round; /* round number, never 0 while active            */
	volatile uint32_t flush; /* parked CPUs run plat_tlb_flush before leaving  */
	volatile uint32_t checked_in; /* CPUs parked in the current round              */
	volatile uint32_t resumed; /* CPUs that left the current round              */
	volatile uint32_t owner; /* requesting CPU id                             */
};

extern struct nmi_quiesce nmi_quiesce_state;
/* The variant this object was compiled as (NMI_VARIANT_*) and its name. */
extern const int nmi_variant;
extern const char nmi_variant_name[];

/* ---- Setup -------------------------------------------------------------------- */
/* Reset the global stop-the-world state.  Before any CPU uses the core. */
void nmi_core_init(void);
/* Reset one CPU's state.  Before that CPU takes NMIs. */
void nmi_cpu_init(struct nmi_cpu *c, unsigned id);

/* ---- Software NMI mask (normal context) ----------------------------------------- */
/* Enter a critical section: NMIs on this CPU are only counted until nmi_unmask(). */
void nmi_mask(void);
/* Leave it: handle every counted NMI, one at a time with the mask held. */
void nmi_unmask(void);

/* ---- Entry points -------------------------------------------------------------- */
/* The vector-2 (host NMI) handler's body. NMI context. */
void nmi_host_entry(void);
/* An NMI VM exit (exit reason 0, NMI).  Masked context: the exit handler holds the
 * software mask; the exit left hardware NMI blocking set, which this clears. */
void nmi_vmexit_nmi(void);
/* An NMI-window VM exit (reason 8).  Masked context.  Injects one pending NMI. */
void nmi_vmexit_nmi_window(void);

/* Any VM exit whose IDT-vectoring information is valid (an exit in the middle of
 * delivering an event).  Masked context.  When the event was an NMI the core
 * injected, it was not delivered: queue it again.  Returns nonzero when it did;
 * other event types are the caller's to re-inject. */
int nmi_vmexit_vectoring(uint32_t idt_vectoring_info);

/* ---- Guest NMI control (masked context) ----------------------------------------- */
/* A VMCS is now loaded on this CPU / about to be dropped. */
void nmi_guest_attach(void);
void nmi_guest_detach(void);
/* Keep guest NMIs pending (not delivered) until nmi_guest_unblock(). */
void nmi_guest_block(void);
void nmi_guest_unblock(void);

/* ---- Stop-the-world (normal context, unmasked) ---------------------------------- */
/* Park every other CPU in its NMI handler.  Returns masked, holding the quiesce
 * lock and the world locks. */
void nmi_quiesce_begin(void);
/* Release the parked CPUs (each runs plat_tlb_flush() first when `flush`, and so
 * does the requester), then drop the locks and the mask. */
void nmi_quiesce_end(int flush);

#endif /* NMI_CORE_H */
