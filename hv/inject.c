/* SPDX-License-Identifier: MIT */
/*
 * inject.c - events into the guest through the VM-entry interruption-information
 * field (SDM vol. 3C, 24.8.3 "VM-Entry Controls for Event Injection", 26.5 "Event
 * Injection"): an event whose delivery an exit interrupted, delivered again, and
 * the exceptions the exit handlers raise for the guest (#GP, #UD).
 *
 * The field belongs to the NMI core (docs/vmx.md, "The VM-exit path"); these are
 * the only other writers.  They write it only when it is free, or when the SDM's
 * rules for two events say what the one event must be.
 */
#include "hv.h"
#include "x86.h"

#define VEC_DF            8
#define EXC_CLASS_BENIGN  0
#define EXC_CLASS_CONTRIB 1
#define EXC_CLASS_PF      2

void vmx_redeliver(uint32_t vectoring)
{
	if (nmi_vmexit_vectoring(vectoring))
		return; /* an NMI the core injected: the core queues it again */
	uint32_t type = INTR_INFO_TYPE(vectoring);
	vmx_write(VMCS_ENTRY_INTR_INFO, vectoring & INTR_INFO_ENTRY_BITS);
	if (vectoring & INTR_INFO_ERRCODE)
		vmx_write(VMCS_ENTRY_EXC_ERRCODE, vmx_read(VMCS_IDT_VECTORING_ERR));
	/* INT n, INT1, INT3, INTO: the entry pushes RIP + length as the return address. */
	if (type == INTR_TYPE_SOFT_INT || type == INTR_TYPE_PRIV_SOFT_EXC ||
	    type == INTR_TYPE_SOFT_EXC)
		vmx_write(VMCS_ENTRY_INSTR_LEN, vmx_read(VMCS_EXIT_INSTR_LEN));
	this_percpu()->vmx.reinjected++;
}

/* SDM vol. 3A, 6.15, table 6-4 "Exception Classes". */
static int exc_class(unsigned vector)
{
	switch (vector) {
	case 0:
	case 10:
	case 11:
	case 12:
	case 13: return EXC_CLASS_CONTRIB;
	case 14: return EXC_CLASS_PF;
	default: return EXC_CLASS_BENIGN;
	}
}

void vmx_inject_exception(unsigned vector, int has_error, uint32_t error)
{
	uint32_t pending = (uint32_t)vmx_read(VMCS_ENTRY_INTR_INFO);
	if (pending & INTR_INFO_VALID) {
		unsigned pvec = INTR_INFO_VECTOR(pending);
		if (INTR_INFO_TYPE(pending) != INTR_TYPE_HW_EXC) {
			/* An interrupted NMI, interrupt or software event is
			 * delivered first; the faulting instruction (not skipped)
			 * runs again after it and faults again. */
			return;
		}
		if (pvec == VEC_DF) {
			/* A fault while delivering #DF: shutdown (SDM vol. 3A, 6.15,
			 * "Interrupt 8"). */
			kprintf("vmx: exception %u while delivering #DF: triple fault\n", vector);
			guest_fail("triple fault (exception during #DF)", 0);
		}
		int a = exc_class(pvec), b = exc_class(vector);
		/* Table 6-5 "Conditions for Generating a Double Fault". */
		if ((a == EXC_CLASS_CONTRIB && b == EXC_CLASS_CONTRIB) ||
		    (a == EXC_CLASS_PF && b != EXC_CLASS_BENIGN)) {
			vector = VEC_DF;
			has_error = 1;
			error = 0;
		} else {
			return; /* handled serially: the pending one first */
		}
	}
	/* Real mode under unrestricted guest delivers no error code: VM entry demands
	 * bit 11 = 0 when CR0.PE = 0 (SDM vol. 3C, 26.2.1.3). */
	if (!(vmx_read(VMCS_GUEST_CR0) & CR0_PE))
		has_error = 0;
	uint32_t info = INTR_INFO_VALID | (INTR_TYPE_HW_EXC << 8) | vector;
	if (has_error) {
		info |= INTR_INFO_ERRCODE;
		vmx_write(VMCS_ENTRY_EXC_ERRCODE, error);
	}
	vmx_write(VMCS_ENTRY_INTR_INFO, info);
}
