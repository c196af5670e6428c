/* SPDX-License-Identifier: MIT */
/*
 * vmx_entry.S - the way into the guest and back.
 *
 * VM exit: the CPU loads the host state from the VMCS (RIP = vmx_exit_entry, RSP =
 * the top of this CPU's exit stack, RFLAGS = 0x2: interrupts off) and nothing
 * else: the guest's general-purpose registers are still in the registers.  They
 * are saved as a struct guest_regs, vmx_exit_handler() runs, and VMRESUME enters
 * the guest again with whatever the handler left in the struct.  Each exit starts
 * on an empty exit stack, so nothing survives from one exit to the next here.
 *
 * When this CPU's trace_nmi flag is set (`make trace TRACE=guest-nmi`), an NMI
 * exit breaks into the Bochs debugger before anything else: the traced region
 * starts there.  The tests only change RFLAGS, whose guest value is in the VMCS.
 */
#include "hv.h"
#include "vmx.h"

	.macro SAVE_GUEST		/* struct guest_regs, rax at the lowest address */
	pushq $0			/* pad: the stack stays 16-byte aligned */
	pushq %r15
	pushq %r14
	pushq %r13
	pushq %r12
	pushq %r11
	pushq %r10
	pushq %r9
	pushq %r8
	pushq %rbp
	pushq %rdi
	pushq %rsi
	pushq %rdx
	pushq %rcx
	pushq %rbx
	pushq %rax
	.endm

	.text
	.globl vmx_exit_entry
vmx_exit_entry:
	cmpl $0, %gs:PERCPU_TRACE_NMI
	jne trace_exit
exit_save:
	SAVE_GUEST
	movq %rsp, %rdi
	call vmx_exit_handler		/* returns only when the guest goes on */
	popq %rax
	popq %rbx
	popq %rcx
	popq %rdx
	popq %rsi
	popq %rdi
	popq %rbp
	popq %r8
	popq %r9
	popq %r10
	popq %r11
	popq %r12
	popq %r13
	popq %r14
	popq %r15
	vmresume
	/* Only a failed VMRESUME gets here (RFLAGS.CF or ZF says how). */
	pushfq
	popq %rdi
	andq $~0xf, %rsp
	call vmx_entry_failed		/* never returns */

/* Only while tracing: break on exit reason 0 (exception or NMI), not on others. */
trace_exit:
	pushq %rax
	movl $VMCS_EXIT_REASON, %eax
	vmread %rax, %rax
	cmpw $EXIT_EXCEPTION_NMI, %ax
	popq %rax
	jne exit_save
	xchgw %bx, %bx			/* trace: an NMI exit */
	jmp exit_save

/*
 * int vmx_launch(uint64_t rax, uint64_t rbx, uint64_t rsi): the first entry, with
 * the boot protocol's hand-over registers (multiboot: EAX, EBX; Linux: ESI).  Returns only when VMLAUNCH fails: the RFLAGS it left.
 */
	.globl vmx_launch
vmx_launch:
	PUSH_CALLEE_SAVED		/* kept for the failure return */
	movq %rdi, %rax
	movq %rsi, %rbx
	movq %rdx, %rsi
	/* Every other register starts at 0: the guest sees no host pointers. */
	xorl %ecx, %ecx
	xorl %edx, %edx
	xorl %edi, %edi
	xorl %ebp, %ebp
	xorl %r8d, %r8d
	xorl %r9d, %r9d
	xorl %r10d, %r10d
	xorl %r11d, %r11d
	xorl %r12d, %r12d
	xorl %r13d, %r13d
	xorl %r14d, %r14d
	xorl %r15d, %r15d
	vmlaunch
	pushfq
	popq %rax
	POP_CALLEE_SAVED
	ret

	.section .note.GNU-stack, "", @progbits
