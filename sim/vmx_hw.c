/* SPDX-License-Identifier: MIT */
/*
 * vmx_hw.c - VMX non-root operation as the core sees it: NMI exiting and virtual
 * NMIs on (E=1, V=1), the five VMCS fields the core uses, VM entries and exits,
 * and a guest that executes no code of its own but takes injected NMIs and IRETs.
 *
 *  - An NMI that lands in guest mode is a VM exit (nmi_hw.c leaves the host
 *    NMI-blocked until plat_nmi_iret()).
 *  - Virtual-NMI blocking is set by an injected NMI and cleared by the guest's IRET;
 *    an NMI-window exit happens as soon as the control is set and the guest is not
 *    blocked; the injected event has priority over the window exit.
 *  - A VM entry that injects an NMI while the guest is blocked fails.
 *  - After OP_FAULT, the next injected NMI's delivery exits midway: IDT-vectoring
 *    information = NMI, virtual-NMI blocking still clear.
 * Not modelled: MOV-SS/STI blocking, the activity state (HLT), injection of other
 * event types, interrupt-window exits.
 */
#include <pthread.h>
#include <signal.h>

#include "machine.h"

/* Hold / release this CPU's NMI signal around what hardware does in one
 * instruction (VM entry, IRET, a VM exit), so no NMI of its own lands in between. */
static sigset_t nmi_hold(void)
{
	sigset_t nmi, old;
	sigemptyset(&nmi);
	sigaddset(&nmi, SIGNMI);
	pthread_sigmask(SIG_BLOCK, &nmi, &old);
	return old;
}

static void nmi_release(const sigset_t *old)
{
	pthread_sigmask(SIG_SETMASK, old, NULL);
}

void vmx_hw_reset(struct sim_cpu *c)
{
	c->vmx = (struct sim_vmx){.vmcs = {.pin = PIN_NMI_EXITING | PIN_VIRTUAL_NMIS}};
}

uint64_t *vmx_hw_field(struct sim_cpu *c, uint32_t field)
{
	switch (field) {
	case VMCS_PIN_BASED_CTLS: return &c->vmx.vmcs.pin;
	case VMCS_PROC_BASED_CTLS: return &c->vmx.vmcs.proc;
	case VMCS_ENTRY_INTR_INFO: return &c->vmx.vmcs.entry_intr;
	case VMCS_GUEST_INTERRUPTIBILITY: return &c->vmx.vmcs.guest_intr;
	case VMCS_IDT_VECTORING_INFO: return &c->vmx.vmcs.idt_vectoring;
	}
	return NULL;
}

/* An NMI arrives (nmi_hw.c's handler): in guest mode it is a VM exit.  Returns
 * nonzero when it was. */
int vmx_hw_nmi_exit(struct sim_cpu *c)
{
	if (!c->vmx.in_guest)
		return 0;
	c->vmx.exit_pending = 1;
	if (tl_enabled())
		tl_event(c->id, 0, "NMI in guest mode: VM exit (NMI), host now NMI-blocked");
	return 1;
}

static void entry(struct sim_cpu *c);

/* VM entry: deliver a queued injection, then take an NMI-window exit if one is due.
 * Priority as in the SDM: the injected event first, then the NMI-window exit.  A VM
 * entry is one instruction: no NMI of this CPU lands between consuming the
 * injection and the virtual-NMI blocking it sets (an NMI in between would find
 * neither, and the core would rightly accept one more than hardware delivers), so in
 * free-running stress the signal is held across it. */
void vmx_hw_entry(struct sim_cpu *c)
{
	sigset_t old = nmi_hold();
	entry(c);
	nmi_release(&old);
}

static void entry(struct sim_cpu *c)
{
	struct sim_vmcs *v = &c->vmx.vmcs;
	if (v->entry_intr & INTR_INFO_VALID) {
		if (v->guest_intr & GUEST_INTR_BLOCK_NMI) {
			oracle_entry_failed(c); /* the entry fails; the books say why */
			v->entry_intr = 0;
			return;
		}
		v->entry_intr &= ~(uint64_t)INTR_INFO_VALID; /* consumed by the entry */
		if (c->vmx.fault_armed) {
			/* Delivery starts and faults (EPT violation on the guest's IDT): a
			 * VM exit with the NMI in the IDT-vectoring information, and no
			 * virtual-NMI blocking, since nothing was delivered. */
			c->vmx.fault_armed = 0;
			c->vmx.vectoring = INTR_INFO_NMI;
			c->vmx.in_guest = 1;
			if (tl_enabled())
				tl_event(c->id, 0,
					 "VM entry injects NMI: its delivery faults, VM "
					 "exit (EPT violation), IDT-vectoring = NMI");
			return;
		}
		v->guest_intr |= GUEST_INTR_BLOCK_NMI;
		c->vmx.guest.received++;
		if (tl_enabled())
			tl_event(c->id, 0,
				 "VM entry injects NMI: guest NMI handler runs (guest "
				 "NMI #%llu), virtual-NMI blocked",
				 (unsigned long long)c->vmx.guest.received);
	}
	c->vmx.in_guest = 1;
}

/* One VM exit (its IDT-vectoring information: `info`), handled by the hypervisor
 * under the mask, then the VM entry. */
#define EXIT(c, info, handler)                                                                     \
	do {                                                                                       \
		(c)->vmx.vmcs.idt_vectoring = (info);                                              \
		(c)->vmx.in_guest = 0;                                                             \
		CORE(nmi_mask());                                                                  \
		CORE(handler);                                                                     \
		CORE(nmi_unmask());                                                                \
		vmx_hw_entry(c);                                                                   \
	} while (0)

/* Run the hypervisor's exit handlers for every exit that is due, re-entering the
 * guest after each, until the guest runs undisturbed.  Bounded where the mode
 * bounds it: an exit storm is a finding, not a hang. */
void vmx_hw_exits(struct sim_cpu *c)
{
	for (unsigned n = 0; c->vmx.in_guest && !M.failed; n++) {
		if (M.mode->max_exits && n > M.mode->max_exits) {
			sim_fail("cpu%u: VM exit storm (%u exits without guest progress)", c->id,
				 M.mode->max_exits);
			return;
		}
		if (c->vmx.vectoring) {
			uint32_t info = c->vmx.vectoring;
			c->vmx.vectoring = 0;
			EXIT(c, info, nmi_vmexit_vectoring(info));
		} else if (c->vmx.exit_pending) {
			c->vmx.exit_pending = 0;
			EXIT(c, 0, nmi_vmexit_nmi());
		} else if ((c->vmx.vmcs.proc & PROC_NMI_WINDOW_EXITING) &&
			   !(c->vmx.vmcs.guest_intr & GUEST_INTR_BLOCK_NMI)) {
			if (tl_enabled())
				tl_event(c->id, 0, "VM exit: NMI window open");
			EXIT(c, 0, nmi_vmexit_nmi_window());
		} else {
			return;
		}
	}
}

/* A VM exit for another reason: the hypervisor runs in host mode until it enters
 * the guest again.  An NMI that arrived in guest mode is an NMI exit that happens
 * first: it left the host NMI-blocked (the signal blocked, on_nmi()) until the core's
 * plat_nmi_iret(), so leaving guest mode with it unprocessed would hold every later
 * NMI of this CPU for ever (a stop-the-world requester then waits for a check-in
 * that never comes).  The check and the leave happen with the signal held, so no
 * NMI lands between them; one that slips in before is handled as the exit it is. */
void vmx_hw_leave(struct sim_cpu *c)
{
	sigset_t old;
	for (;;) {
		old = nmi_hold();
		if (M.failed || (!c->vmx.exit_pending && !c->vmx.vectoring))
			break;
		nmi_release(&old);
		if (c->vmx.vectoring) {
			uint32_t info = c->vmx.vectoring;
			c->vmx.vectoring = 0;
			EXIT(c, info, nmi_vmexit_vectoring(info));
		} else {
			c->vmx.exit_pending = 0;
			EXIT(c, 0, nmi_vmexit_nmi());
		}
	}
	c->vmx.vmcs.idt_vectoring = 0;
	c->vmx.in_guest = 0;
	nmi_release(&old);
}

/* The guest executes IRET: it ends its NMI handler if it is in one.  IRET is one
 * instruction: no NMI of this CPU lands between the end of the NMI in service (the
 * books' model of what hardware delivers) and the end of virtual-NMI blocking.  In
 * free-running stress the signal is held for those few lines, or an NMI taken in
 * between would see the blocking still set but the model already past it (an
 * off-by-one `spurious` report that hardware could never produce). */
void vmx_hw_guest_iret(struct sim_cpu *c)
{
	if (!(c->vmx.vmcs.guest_intr & GUEST_INTR_BLOCK_NMI))
		return;
	sigset_t old = nmi_hold();
	nmi_books_guest_iret(&c->vmx.guest, &c->core);
	c->vmx.vmcs.guest_intr &= ~(uint64_t)GUEST_INTR_BLOCK_NMI;
	nmi_release(&old);
	if (tl_enabled())
		tl_event(c->id, 0, "guest IRET: virtual-NMI blocking cleared");
}

void vmx_hw_arm_fault(struct sim_cpu *c)
{
	c->vmx.fault_armed = 1;
	if (tl_enabled())
		tl_event(c->id, 0, "armed: the next NMI delivery meets an EPT violation");
}

/* nmi_guest_detach() returned: the guest is gone for good.  From here on the books
 * may not book anything to it (law `detached`). */
void vmx_hw_detached(struct sim_cpu *c)
{
	c->vmx.detached = 1;
	c->vmx.at_detach = c->core;
	if (tl_enabled())
		tl_event(c->id, 0, "guest detached for good");
}
