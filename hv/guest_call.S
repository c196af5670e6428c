/* SPDX-License-Identifier: MIT */
/*
 * guest_call.S - enter a guest as if it were a call, for code that drives a guest
 * step by step (vmx_exp.c's experiments, replay_guest.c's replay guest).
 *
 * uint64_t guest_call(int resume, struct guest_call *c): enters the guest with the
 * registers in c->regs (VMLAUNCH, or VMRESUME when `resume`) and returns 0 at its
 * next VM exit with the guest's registers back in c->regs; the RFLAGS of a failed
 * entry (CF or ZF set) otherwise.  The exit lands on guest_call_exit (VMCS host RIP)
 * on the exit stack guest_call_host() set up, whose top word holds c (host RSP
 * points at it), so each CPU driving a guest has its own context.  No NMI-core
 * involvement: what to do with an exit is the caller's.
 */
#include "hv.h"

/* struct guest_regs (vmx.h) at %rax, rax at offset 0: load every other GPR from it,
 * then %rax itself; store every other GPR into it (%rax, which holds the address, is
 * saved apart). */
	.macro LOAD_GUEST_REGS_RAX
	movq 8(%rax), %rbx
	movq 16(%rax), %rcx
	movq 24(%rax), %rdx
	movq 32(%rax), %rsi
	movq 40(%rax), %rdi
	movq 48(%rax), %rbp
	movq 56(%rax), %r8
	movq 64(%rax), %r9
	movq 72(%rax), %r10
	movq 80(%rax), %r11
	movq 88(%rax), %r12
	movq 96(%rax), %r13
	movq 104(%rax), %r14
	movq 112(%rax), %r15
	movq 0(%rax), %rax
	.endm
	.macro STORE_GUEST_REGS_RAX
	movq %rbx, 8(%rax)
	movq %rcx, 16(%rax)
	movq %rdx, 24(%rax)
	movq %rsi, 32(%rax)
	movq %rdi, 40(%rax)
	movq %rbp, 48(%rax)
	movq %r8, 56(%rax)
	movq %r9, 64(%rax)
	movq %r10, 72(%rax)
	movq %r11, 80(%rax)
	movq %r12, 88(%rax)
	movq %r13, 96(%rax)
	movq %r14, 104(%rax)
	movq %r15, 112(%rax)
	.endm
	.text
	.globl guest_call, guest_call_exit
guest_call:
	PUSH_CALLEE_SAVED
	movq %rsp, 128(%rsi)		/* ctx->host_rsp */
	testl %edi, %edi		/* flags survive the movs below */
	movq %rsi, %rax
	LOAD_GUEST_REGS_RAX
	jnz 1f
	vmlaunch
	jmp 2f
1:	vmresume
2:	pushfq				/* the entry failed */
	popq %rax
	jmp 3f

guest_call_exit:				/* [rsp] = ctx */
	pushq %rax
	movq 8(%rsp), %rax
	STORE_GUEST_REGS_RAX
	popq %rbx
	movq %rbx, 0(%rax)
	movq 128(%rax), %rsp
	xorl %eax, %eax
3:	POP_CALLEE_SAVED
	ret

	.section .note.GNU-stack, "", @progbits
