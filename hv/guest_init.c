/* SPDX-License-Identifier: MIT */
/*
 * guest_init.c - an INIT the guest sends to one of its CPUs that is already
 * running (guest_smp=1), emulated instead of sent.
 *
 * On a CPU that follows the SDM an INIT to a CPU in VMX non-root operation causes
 * an INIT VM exit (SDM vol. 3C, 25.2 "Other Causes of VM Exits"), whose handler
 * (vmexit.c) puts that guest CPU back into wait-for-SIPI; its next SIPI starts it
 * again.  Bochs 2.7 never consumes such an INIT: after the SIPI exit every VM
 * entry in the active state exits again for it, so the CPU never runs its guest
 * again (docs/emulator-deviations.md).  INITs to CPUs that all still wait for
 * their SIPI are absorbed: the INIT would only put them where they are (for the
 * xAPIC page the lead's lapic_guard.c does the same; the x2APIC ICR, msr.c, comes
 * here), as are INIT level de-asserts.  This file also takes the other case, an
 * INIT to CPUs that run, the way a guest restarts a CPU it had started.
 *
 * Workaround `guest_init_emulated` (docs/emulator-deviations.md): the CPU that
 * wrote the ICR marks each target and, after its own exit, runs stop-the-world
 * rounds (guest_init_finish()) until every target took it; a round's NMI makes every target
 * exit (the NMI is the round's, never the guest's: nmi_core.c decides ownership
 * by the round in progress), and each target, on its way back from that exit,
 * does what its INIT exit would have done (guest_init_take()).  The result is the
 * architectural one on every CPU, Bochs or not.  The round needs every CPU
 * parkable (none in wait-for-SIPI, where NMIs are held); otherwise, and for the
 * shorthands self/all-including-self and logical destinations, the INIT is sent
 * as written (guest_init_emulate() returns 0).
 */
#include "foreign.h"
#include "hv.h"
#include "x86.h"

#define ICR_MODE(lo)      (((lo) >> 8) & 7u)
#define ICR_LOGICAL       (1u << 11)
#define ICR_ASSERT        (1u << 14)
#define ICR_LEVEL         (1u << 15)
#define ICR_SHORTHAND(lo) (((lo) >> 18) & 3u)
#define MODE_INIT         5u
#define SHORTHAND_NONE    0u
#define SHORTHAND_OTHERS  3u

#define MAX_ROUNDS 8

static volatile uint32_t init_requested[MAX_CPUS];
static uint32_t init_sent[MAX_CPUS]; /* per sender: the targets of its INIT */
static uint64_t emulated; /* for the report */

/* A CPU that runs the guest (entered, out of wait-for-SIPI). */
static int running_guest_cpu(unsigned i)
{
	const struct vmx_cpu *v = &percpu[i].vmx;
	return vmx_guest.smp && __atomic_load_n(&v->in_guest, __ATOMIC_ACQUIRE) &&
	       !__atomic_load_n(&v->waiting_for_sipi, __ATOMIC_ACQUIRE);
}

static uint64_t absorbed; /* for the report */

/* Every target waits for its SIPI: the INIT would put them where they are (their
 * INIT exit would, vmexit.c), and Bochs 2.7 would hold it for after the SIPI. */
static int all_waiting(uint32_t targets)
{
	for (unsigned i = 0; i < ncpus; i++)
		if ((targets & (1u << i)) &&
		    !(vmx_guest.smp &&
		      __atomic_load_n(&percpu[i].vmx.waiting_for_sipi, __ATOMIC_ACQUIRE)))
			return 0;
	return 1;
}

int guest_init_emulate(uint32_t icr_lo, uint32_t dest_apic_id)
{
	unsigned me = this_percpu()->index;
	uint32_t targets = 0;
	if (ICR_MODE(icr_lo) != MODE_INIT || (icr_lo & ICR_LOGICAL))
		return 0;
	if ((icr_lo & ICR_LEVEL) && !(icr_lo & ICR_ASSERT)) {
		__atomic_fetch_add(&absorbed, 1, __ATOMIC_RELAXED);
		return 1; /* INIT level de-assert: a no-op since the Pentium 4 (10.6.1) */
	}
	if (ICR_SHORTHAND(icr_lo) == SHORTHAND_NONE) {
		for (unsigned i = 0; i < ncpus; i++)
			if (percpu[i].apic_id == dest_apic_id && i != me)
				targets |= 1u << i;
	} else if (ICR_SHORTHAND(icr_lo) == SHORTHAND_OTHERS) {
		for (unsigned i = 0; i < ncpus; i++)
			if (i != me)
				targets |= 1u << i;
	}
	if (!targets)
		return 0;
	if (all_waiting(targets)) {
		__atomic_fetch_add(&absorbed, 1, __ATOMIC_RELAXED);
		return 1;
	}
	if (!vmx_all_parkable())
		return 0;
	for (unsigned i = 0; i < ncpus; i++)
		if ((targets & (1u << i)) && !running_guest_cpu(i))
			return 0; /* a CPU outside the guest: the INIT is not ours */
	for (unsigned i = 0; i < ncpus; i++)
		if (targets & (1u << i))
			__atomic_store_n(&init_requested[i], 1, __ATOMIC_RELEASE);
	init_sent[me] = targets; /* guest_init_finish(), after this exit */
	return 1;
}

void guest_init_finish(void)
{
	unsigned me = this_percpu()->index;
	uint32_t targets = init_sent[me];
	init_sent[me] = 0;
	/* A round's NMI makes every target exit and take its INIT on the way back.
	 * A target busy in root operation during a round may have passed
	 * guest_init_take() already: another round then, while the targets left
	 * still run (one that took it waits for its SIPI, where no round could park
	 * it: the rest then take theirs at their next exit). */
	for (unsigned round = 0; targets && round < MAX_ROUNDS; round++) {
		uint32_t left = 0;
		for (unsigned i = 0; i < ncpus; i++)
			if ((targets & (1u << i)) &&
			    __atomic_load_n(&init_requested[i], __ATOMIC_ACQUIRE))
				left |= 1u << i;
		if (!left || !vmx_all_parkable())
			break;
		nmi_quiesce_begin();
		nmi_quiesce_end(0);
	}
}

void guest_init_report(void)
{
	if (absorbed || emulated)
		kprintf("vmx: guest INITs: %lu absorbed (every target waited for its SIPI, or a "
			"de-assert), %lu emulated on running CPUs\n",
			absorbed, emulated);
}

void guest_init_take(void)
{
	struct percpu *p = this_percpu();
	if (!__atomic_load_n(&init_requested[p->index], __ATOMIC_ACQUIRE))
		return;
	/* An event queued for this entry (a re-delivery; the VM-entry field is the
	 * core's otherwise) cannot enter wait-for-SIPI (26.3.1.5): it goes first,
	 * the INIT at this CPU's next exit. */
	if (vmx_read(VMCS_ENTRY_INTR_INFO) & INTR_INFO_VALID)
		return;
	__atomic_store_n(&init_requested[p->index], 0, __ATOMIC_RELEASE);
	/* What the INIT exit does (vmexit.c, exit_init): back to wait-for-SIPI with
	 * every blocking ended (24.4.2: activity state 3). */
	vmx_write(VMCS_GUEST_INTERRUPTIBILITY, 0);
	vmx_write(VMCS_GUEST_ACTIVITY, ACTIVITY_WAIT_FOR_SIPI);
	__atomic_store_n(&p->vmx.waiting_for_sipi, 1, __ATOMIC_RELEASE);
	__atomic_fetch_add(&emulated, 1, __ATOMIC_RELAXED);
	kprintf("vmx: cpu %u: the guest's INIT to this running CPU emulated: back to "
		"wait-for-SIPI\n",
		p->index);
}
