/* SPDX-License-Identifier: MIT */
/*
 * vmx_exp_guest.S - the VMX NMI experiments' guest code (vmx_exp.c drives it
 * through guest_call.S, one exit at a time).
 */
#include "hv.h"

/*
 * The guest's code: copied to a low page outside the hypervisor, so only relative
 * jumps and calls.  Every snippet ends in VMCALL (exit reason 18: "it got there").
 * Self-NMIs go through the xAPIC page to this CPU's own APIC ID (read from the
 * ID register: the "self" shorthand is not valid with delivery mode NMI, SDM vol.
 * 3A, 10.6.1 "Interrupt Command Register").
 */
#define APIC_ID     0xFEE00020
#define APIC_ICR_LO 0xFEE00300
#define APIC_ICR_HI 0xFEE00310
#define COUNT_PA    0x6F00		/* g_count's counter (vmx_exp.c) */
#define SPIN        20000

	.macro SELF_NMI
	movl APIC_ID, %eax
	movl %eax, APIC_ICR_HI
	movl $0x4400, APIC_ICR_LO	/* NMI, physical, assert */
99:	testl $0x1000, APIC_ICR_LO	/* delivery status: wait until sent */
	jnz 99b
	.endm

	.section .rodata
	.code32
	.globl exp_guest_start, exp_guest_end, g_vmcall, g_loop, g_iret, g_iret_after
	.globl g_selfnmi, g_selfnmi2, g_nmi_iret, g_hlt, g_after_hlt, g_handler, g_h21
	.globl g_count
exp_guest_start:
g_vmcall:			/* VMCALL at once */
	vmcall
	jmp g_vmcall
g_loop:				/* spin, then VMCALL */
	movl $SPIN, %ecx
1:	decl %ecx
	jnz 1b
	vmcall
	jmp g_loop
g_iret:				/* spin, IRET to the next instruction, spin, VMCALL */
	movl $SPIN, %ecx
1:	decl %ecx
	jnz 1b
	pushfl
	pushl $0x08
	call 2f
2:	addl $(g_iret_after - 2b), (%esp)
	iret
g_iret_after:
	movl $SPIN, %ecx
3:	decl %ecx
	jnz 3b
	vmcall
	jmp g_iret_after
g_selfnmi:			/* an NMI to itself through the LAPIC, spin, VMCALL */
	SELF_NMI
	movl $SPIN, %ecx
1:	decl %ecx
	jnz 1b
	vmcall
	jmp g_selfnmi
g_selfnmi2:			/* two NMIs to itself, spin, VMCALL */
	SELF_NMI
	SELF_NMI
	movl $SPIN, %ecx
1:	decl %ecx
	jnz 1b
	vmcall
	jmp g_selfnmi2
g_nmi_iret:			/* an NMI to itself, then g_iret's IRET */
	SELF_NMI
	jmp g_iret
g_hlt:				/* entered in the HLT activity state at g_after_hlt */
	hlt
g_after_hlt:
	vmcall
	jmp g_hlt
g_handler:			/* vector 2: VMCALL as its first instruction, then IRET */
	vmcall
	iret
g_h21:				/* vector 0x21: VMCALL as its first instruction, then IRET */
	vmcall
	iret
g_count:			/* vector 2, counting: no exit, IRET */
	lock incl COUNT_PA
	iret
exp_guest_end:
	.code64

	.section .note.GNU-stack, "", @progbits
