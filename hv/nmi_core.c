/* SPDX-License-Identifier: MIT */
/*
 * nmi_core.c - the hypervisor's whole NMI path.
 *
 * The model is a UNIX signal handler (docs/nmi-semantics.md, "The design"):
 *
 *  - Code that edits per-CPU NMI state (guest_pending, the VMCS NMI-window control,
 *    the injection field) runs under a per-CPU SOFTWARE mask.  An NMI that lands
 *    while the mask is held only counts itself in `visited` and returns; the
 *    hardware is not involved, so the mask costs two stores.
 *  - nmi_unmask() drains `visited`, handling one NMI per count with the mask held.
 *  - Every handled NMI has exactly one owner, decided in handle_one(): the
 *    stop-the-world round in progress (if this CPU has not parked for it yet), or
 *    the guest.  Ownership is decided by state, not by the NMI's source, because
 *    the hardware does not say where an NMI came from and may merge two into one.
 *  - Guest NMIs are only ever delivered by injection at an NMI-window exit, so the
 *    core never injects while the guest is still inside its own NMI handler.
 *
 * The four build-time variants (docs/variants.md) differ only in nmi_host_entry()
 * and nmi_unmask(); everything else is shared.  Everything that depends on where
 * the core runs (bare metal or the simulator) is behind nmi_platform.h.
 */
#include "nmi_core.h"
#include "nmi_platform.h"

#ifndef NMI_VARIANT
#error "compile with -DNMI_VARIANT=NMI_VARIANT_<name> (the Makefile's VARIANT=)"
#endif

#define NMI_ASSERT(cond)                                                                           \
	do {                                                                                       \
		if (__builtin_expect(!(cond), 0))                                                  \
			plat_halt(__FILE__, __LINE__, #cond);                                      \
	} while (0)

struct nmi_quiesce nmi_quiesce_state;

/* ---- Shared by every variant ------------------------------------------------------ */

void nmi_core_init(void)
{
	struct nmi_quiesce *q = &nmi_quiesce_state;

	q->lock = 0;
	q->active = 0;
	q->resume = 0;
	q->round = 0;
	q->flush = 0;
	q->checked_in = 0;
	q->resumed = 0;
	q->owner = 0;
	nmi_full_barrier();
}

void nmi_cpu_init(struct nmi_cpu *c, unsigned id)
{
	*c = (struct nmi_cpu){0};
	c->id = id;
}

/* Spin until *p == want.  Bounded: a CPU that never checks in (its NMI lost, or a
 * deadlock) is reported with everyone's state instead of hanging the machine. */
static void spin_until(volatile uint32_t *p, uint32_t want, const char *what)
{
	unsigned long n = 0;

	while (__atomic_load_n(p, __ATOMIC_ACQUIRE) != want) {
		if (++n > plat_spin_limit())
			plat_halt(__FILE__, __LINE__, what);
		plat_relax();
	}
}

/* NMI-window exiting must be set exactly when a guest NMI waits and nothing in the
 * hypervisor blocks guest NMIs.  Called after every change of either input.  There
 * is no cached VMCS copy: this write is the last one before VM entry. */
static void update_window(struct nmi_cpu *c)
{
	if (!c->guest_present)
		return;
	uint64_t proc = plat_vmcs_read(VMCS_PROC_BASED_CTLS);
	uint64_t want = (c->guest_pending != 0 && !c->guest_sw_blocked)
			    ? (proc | PROC_NMI_WINDOW_EXITING)
			    : (proc & ~(uint64_t)PROC_NMI_WINDOW_EXITING);
	if (want != proc)
		plat_vmcs_write(VMCS_PROC_BASED_CTLS, want);
}

/* IDT-vectoring information that says the exit interrupted an NMI's delivery. */
static int delivering_nmi(uint64_t idt_vectoring_info)
{
	return (idt_vectoring_info & INTR_INFO_VALID) &&
	       (idt_vectoring_info & INTR_INFO_TYPE_MASK) == INTR_INFO_TYPE_NMI;
}

/* A guest-owned NMI: make it pending, capped the way hardware caps NMIs: a CPU
 * holds one NMI in service plus one latched.  One is in service while the guest
 * is virtual-NMI blocked (inside its handler), while an injection is queued, and
 * between an exit that interrupted an NMI's delivery and nmi_vmexit_vectoring()
 * queueing it again (the exit's IDT-vectoring information still says so); then
 * only one more may wait.  A capped NMI is dropped exactly where hardware would
 * drop it: one more would reach the guest as a spurious NMI (an OS logs "NMI
 * received for unknown reason"), one fewer would be lost. */
static void guest_nmi(struct nmi_cpu *c)
{
	if (!c->guest_present) {
		c->host_consumed++;
		return;
	}
	uint32_t cap = NMI_GUEST_PENDING_MAX;
	if ((plat_vmcs_read(VMCS_GUEST_INTERRUPTIBILITY) & GUEST_INTR_BLOCK_NMI) ||
	    (plat_vmcs_read(VMCS_ENTRY_INTR_INFO) & INTR_INFO_VALID) ||
	    delivering_nmi(plat_vmcs_read(VMCS_IDT_VECTORING_INFO)))
		cap = NMI_GUEST_PENDING_MAX_BLOCKED;
	if (c->guest_pending >= cap) {
		c->guest_coalesced++;
		return;
	}
	c->guest_pending++;
	c->guest_accepted++;
	update_window(c);
}

/* Park this CPU for stop-the-world round `round`: check in, wait for the resume
 * signal, optionally flush, check out.  Runs in NMI context or with the mask held,
 * so nothing on this CPU touches NMI state meanwhile. */
static void park(struct nmi_cpu *c, uint32_t round)
{
	struct nmi_quiesce *q = &nmi_quiesce_state;

	c->quiesce_seen = round;
	c->quiesce_parks++;
	__atomic_fetch_add(&q->checked_in, 1, __ATOMIC_SEQ_CST);
	spin_until(&q->resume, 1, "parked CPU: resume never came");
	if (q->flush) {
		plat_tlb_flush();
		c->tlb_flushes++;
	}
	__atomic_fetch_add(&q->resumed, 1, __ATOMIC_SEQ_CST);
}

/* Handle one NMI on this CPU.  Caller holds the software mask or is in NMI
 * context (hardware blocks nesting either way).  Decides the NMI's single owner. */
static void handle_one(struct nmi_cpu *c)
{
	struct nmi_quiesce *q = &nmi_quiesce_state;

	if (__atomic_load_n(&q->active, __ATOMIC_ACQUIRE)) {
		uint32_t round = __atomic_load_n(&q->round, __ATOMIC_ACQUIRE);
		if (c->quiesce_seen != round) {
			park(c, round);
			return;
		}
	}
	guest_nmi(c);
}

void nmi_mask(void)
{
	struct nmi_cpu *c = plat_this_cpu();

	NMI_ASSERT(!c->masked); /* critical sections do not nest */
	c->masked = 1;
	nmi_compiler_barrier(); /* the mask is visible to an NMI before the section's stores */
}

void nmi_vmexit_nmi(void)
{
	struct nmi_cpu *c = plat_this_cpu();

	NMI_ASSERT(c->masked);
	c->exit_nmis++;
	/* The exit left this CPU NMI-blocked.  Unblock first: a latched NMI is taken
	 * right here and, the mask being held, only counted for the drain. */
	plat_nmi_iret();
	c->handled_exit++;
	handle_one(c);
}

void nmi_vmexit_nmi_window(void)
{
	struct nmi_cpu *c = plat_this_cpu();

	NMI_ASSERT(c->masked);
	NMI_ASSERT(c->guest_present);
	if (c->guest_pending != 0 && !c->guest_sw_blocked) {
		/* A successful VM entry clears the injection field's valid bit, and a
		 * window exit only follows a VM entry: no injection can be queued. */
		NMI_ASSERT(!(plat_vmcs_read(VMCS_ENTRY_INTR_INFO) & INTR_INFO_VALID));
		plat_vmcs_write(VMCS_ENTRY_INTR_INFO, INTR_INFO_NMI);
		c->guest_pending--;
		c->guest_injected++;
	}
	update_window(c); /* a spurious window exit just corrects the control */
}

/* SDM: an exit during the delivery of an NMI leaves virtual-NMI blocking clear
 * and the NMI undelivered.  It was counted as injected when it was queued, and it
 * still is owed to the guest exactly once: queue the same injection again, with no
 * change to the books, so nothing is lost and nothing is counted twice. */
int nmi_vmexit_vectoring(uint32_t idt_vectoring_info)
{
	struct nmi_cpu *c = plat_this_cpu();

	NMI_ASSERT(c->masked);
	if (!delivering_nmi(idt_vectoring_info))
		return 0;
	NMI_ASSERT(c->guest_present);
	NMI_ASSERT(!(plat_vmcs_read(VMCS_ENTRY_INTR_INFO) & INTR_INFO_VALID));
	plat_vmcs_write(VMCS_ENTRY_INTR_INFO, INTR_INFO_NMI);
	c->guest_reinjected++;
	return 1;
}

void nmi_guest_attach(void)
{
	struct nmi_cpu *c = plat_this_cpu();

	NMI_ASSERT(c->masked);
	c->guest_present = 1;
	update_window(c);
}

void nmi_guest_detach(void)
{
	struct nmi_cpu *c = plat_this_cpu();

	NMI_ASSERT(c->masked);
	c->guest_present = 0;
}

void nmi_guest_block(void)
{
	struct nmi_cpu *c = plat_this_cpu();

	NMI_ASSERT(c->masked);
	c->guest_sw_blocked = 1;
	update_window(c);
}

void nmi_guest_unblock(void)
{
	struct nmi_cpu *c = plat_this_cpu();

	NMI_ASSERT(c->masked);
	c->guest_sw_blocked = 0;
	update_window(c);
}

/* Stop-the-world.  Lock order: quiesce lock, then the platform's world locks.
 * The requester waits for the quiesce lock UNMASKED, so that while it waits another
 * requester's NMI can park it; waiting masked would defer that NMI and deadlock. */
void nmi_quiesce_begin(void)
{
	struct nmi_quiesce *q = &nmi_quiesce_state;
	struct nmi_cpu *c = plat_this_cpu();
	unsigned long n = 0;

	NMI_ASSERT(!c->masked);
	while (__atomic_exchange_n(&q->lock, 1, __ATOMIC_ACQUIRE)) {
		if (++n > plat_spin_limit())
			plat_halt(__FILE__, __LINE__, "quiesce lock never released");
		plat_relax();
	}
	nmi_mask();
	plat_world_lock();

	uint32_t round = q->round + 1;
	if (round == 0)
		round = 1; /* quiesce_seen == 0 means "never parked" */
	c->quiesce_seen = round; /* the requester counts as stopped */
	q->owner = c->id;
	q->flush = 0;
	q->checked_in = 0;
	q->resumed = 0;
	q->round = round;
	/* Round number before the flag, flag before the IPIs (seq_cst store = fence). */
	__atomic_store_n(&q->active, 1, __ATOMIC_SEQ_CST);
	for (unsigned i = 0; i < plat_ncpus(); i++)
		if (i != c->id)
			plat_send_nmi(i);
	spin_until(&q->checked_in, plat_ncpus() - 1, "stop-the-world: a CPU never checked in");
	c->quiesce_rounds++;
}

void nmi_quiesce_end(int flush)
{
	struct nmi_quiesce *q = &nmi_quiesce_state;
	struct nmi_cpu *c = plat_this_cpu();

	NMI_ASSERT(c->masked && q->lock && q->active && q->owner == c->id);
	q->flush = flush != 0;
	/* Clear the round BEFORE raising resume: an NMI latched behind a parked CPU's
	 * handler is delivered after resume and must not find the round still open. */
	__atomic_store_n(&q->active, 0, __ATOMIC_SEQ_CST);
	__atomic_store_n(&q->resume, 1, __ATOMIC_SEQ_CST);
	spin_until(&q->resumed, plat_ncpus() - 1, "stop-the-world: a CPU never resumed");
	__atomic_store_n(&q->resume, 0, __ATOMIC_SEQ_CST);
	if (flush) {
		plat_tlb_flush();
		c->tlb_flushes++;
		c->quiesce_flush_rounds++;
	}
	plat_world_unlock();
	__atomic_store_n(&q->lock, 0, __ATOMIC_RELEASE);
	/* Unmask last: an NMI deferred during the round (another requester's, perhaps)
	 * is handled now that this CPU holds no lock. */
	nmi_unmask();
}

/* ---- The variants: nmi_host_entry() and nmi_unmask() ------------------------------- */

#if NMI_VARIANT == NMI_VARIANT_FINAL
const int nmi_variant = NMI_VARIANT_FINAL;
const char nmi_variant_name[] = "final";

/* Hardware blocks NMIs until this handler's IRET, so it handles directly and never
 * calls the drain: nothing here can be interrupted by another NMI on this CPU. */
void nmi_host_entry(void)
{
	struct nmi_cpu *c = plat_this_cpu();

	c->nmi_entries++;
	if (c->masked) {
		c->visited++; /* not interruptible: we are the NMI */
		c->deferred++;
		NMI_ASSERT(c->visited != 0);
		return;
	}
	c->handled_direct++;
	handle_one(c);
}

/* Invariant: `visited` is only decremented with the mask held, by one atomic
 * read-modify-write, so an NMI landing anywhere in this loop either is counted
 * before the decrement or after it, never inside it. */
void nmi_unmask(void)
{
	struct nmi_cpu *c = plat_this_cpu();

	NMI_ASSERT(c->masked);
	for (;;) {
		while (c->visited != 0) {
			uint32_t before = __atomic_fetch_sub(&c->visited, 1, __ATOMIC_SEQ_CST);
			NMI_ASSERT(before != 0);
			c->drained++;
			handle_one(c);
		}
		nmi_compiler_barrier();
		c->masked = 0;
		nmi_compiler_barrier();
		/* An NMI that landed after the last check but before the unmask was
		 * counted, not handled: take the mask back and drain it now, or it waits
		 * for the next critical section (and may stall a stop-the-world). */
		if (c->visited == 0)
			return;
		c->masked = 1;
		nmi_compiler_barrier();
	}
}

#elif NMI_VARIANT == NMI_VARIANT_RACY_COUNTER || NMI_VARIANT == NMI_VARIANT_COALESCING
#if NMI_VARIANT == NMI_VARIANT_RACY_COUNTER
const int nmi_variant = NMI_VARIANT_RACY_COUNTER;
const char nmi_variant_name[] = "racy-counter";
#else
const int nmi_variant = NMI_VARIANT_COALESCING;
const char nmi_variant_name[] = "coalescing";
#endif

/* The seed's handler (lines H1-H8): when unmasked it masks, handles and calls the
 * drain loop itself, from NMI context.  That call is the bug: the drain can run
 * nested inside another activation of itself. */
void nmi_host_entry(void)
{
	struct nmi_cpu *c = plat_this_cpu();

	c->nmi_entries++;
	if (c->masked) { /* H1 */
#if NMI_VARIANT == NMI_VARIANT_COALESCING
		c->visited = 1; /* a flag: two NMIs while masked become one */
#else
		c->visited++; /* H2 */
#endif
		c->deferred++;
		NMI_ASSERT(c->visited != 0); /* H3 */
		return;
	}
	nmi_mask(); /* H5 */
	c->handled_direct++;
	handle_one(c); /* H6 */
	nmi_unmask(); /* H7 */
}

/* The seed's drain loop (lines E1-E9): decrement, then mask.  An NMI between the
 * test (E3) and the decrement (E4) runs the nested drain above, which takes the
 * same count; E4 then takes it again and `visited` wraps to 0xFFFFFFFF. */
void nmi_unmask(void)
{
	struct nmi_cpu *c = plat_this_cpu();

	NMI_ASSERT(c->masked); /* E1 */
	c->masked = 0; /* E2 */
	nmi_compiler_barrier();
	while (c->visited) { /* E3 */
#if NMI_VARIANT == NMI_VARIANT_COALESCING
		c->visited = 0;
#else
		c->visited--; /* E4 */
		NMI_ASSERT(c->visited != UINT32_MAX); /* the seed's underflow */
#endif
		c->masked = 1; /* E5 */
		nmi_compiler_barrier();
		c->drained++;
		handle_one(c); /* E6 */
		nmi_compiler_barrier();
		c->masked = 0; /* E7 */
		nmi_compiler_barrier();
	}
	NMI_ASSERT(!c->masked); /* E9 */
}

#elif NMI_VARIANT == NMI_VARIANT_REENTRANT_LOOP
const int nmi_variant = NMI_VARIANT_REENTRANT_LOOP;
const char nmi_variant_name[] = "reentrant-loop";

/* Unchanged from the seed: the handler still calls the drain from NMI context. */
void nmi_host_entry(void)
{
	struct nmi_cpu *c = plat_this_cpu();

	c->nmi_entries++;
	if (c->masked) {
		c->visited++;
		c->deferred++;
		NMI_ASSERT(c->visited != 0);
		return;
	}
	nmi_mask();
	c->handled_direct++;
	handle_one(c);
	nmi_unmask();
}

/* The first fix: mask, re-check, then decrement, so a nested drain can no longer
 * take the same count twice.  It is still wrong when `visited--` compiles to a
 * separate load, subtract and store: an NMI between the load and the store is
 * counted by the handler and then overwritten, and its handling is lost. */
void nmi_unmask(void)
{
	struct nmi_cpu *c = plat_this_cpu();

	NMI_ASSERT(c->masked);
	c->masked = 0;
	nmi_full_barrier();
	while (c->visited) {
		c->masked = 1;
		nmi_full_barrier();
		if (c->visited) {
			c->visited--;
			NMI_ASSERT(c->visited != UINT32_MAX);
			c->drained++;
			handle_one(c);
		}
		nmi_full_barrier();
		c->masked = 0;
		nmi_full_barrier();
	}
}

#else
#error "unknown NMI_VARIANT"
#endif
