/* SPDX-License-Identifier: MIT */
/*
 * entry.S - IDT entry stubs.
 *
 * Interrupts stay disabled (IF=0) for the whole run: the only asynchronous events
 * are NMIs.  Exceptions are fatal; their stubs build a struct exc_frame and call
 * exception_handler(), which never returns (but for workload=replay's own #DB traps).
 */
#include "hv.h"

	.macro PUSH_GPRS
	pushq %rax
	pushq %rbx
	pushq %rcx
	pushq %rdx
	pushq %rsi
	pushq %rdi
	pushq %rbp
	pushq %r8
	pushq %r9
	pushq %r10
	pushq %r11
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
	.endm

	.macro POP_GPRS
	popq %r15
	popq %r14
	popq %r13
	popq %r12
	popq %r11
	popq %r10
	popq %r9
	popq %r8
	popq %rbp
	popq %rdi
	popq %rsi
	popq %rdx
	popq %rcx
	popq %rbx
	popq %rax
	.endm

	.text
/*
 * Vector 2, on its own IST stack.  The CPU blocks further NMIs until the iretq
 * below.  15 pushes after the 5-word hardware frame leave %rsp 16-byte aligned
 * for the call (the IST top is 16-aligned).
 *
 * When this CPU's trace_nmi flag is set, magic breakpoints bracket the whole
 * handler for `make trace`: the first instruction and the one before iretq.
 * The flag tests may clobber RFLAGS: the hardware frame holds the interrupted
 * RFLAGS and iretq restores them.
 */
	.globl nmi_entry
nmi_entry:
	cmpl $0, %gs:PERCPU_TRACE_NMI
	je 1f
	xchgw %bx, %bx			/* trace: NMI handler entry */
1:	PUSH_GPRS
	call nmi_handler_body		/* nmi_host_entry(), with workload=replay's token */
	POP_GPRS
	cmpl $0, %gs:PERCPU_TRACE_NMI
	je 2f
	xchgw %bx, %bx			/* trace: about to IRET */
2:	iretq

/* Spurious-interrupt vector (LAPIC SVR): no EOI, just return. */
	.globl spurious_entry
spurious_entry:
	iretq

/*
 * Vector 1 (#DB).  workload=replay single-steps the core with the trap flag
 * (replay_step.c): debug_trap() returns there after a trap it placed, and reports
 * every other #DB as the fatal exception it is.  Same frame as exc_common.
 */
db_entry:
	pushq $0
	pushq $1
	PUSH_GPRS
	movq %rsp, %rdi
	call debug_trap
	POP_GPRS
	addq $16, %rsp
	iretq

/* Exceptions (every vector below 32 but the NMI): normalize to
 * [vector, error code, hardware frame]. */
	.macro EXC vec, has_error
exc_\vec:
	.if \has_error == 0
	pushq $0
	.endif
	pushq $\vec
	jmp exc_common
	.endm

	.irp v, 0,3,4,5,6,7,9,15,16,18,19,20,22,23,24,25,26,27,28,31
	EXC \v, 0
	.endr
	.irp v, 8,10,11,12,13,14,17,21,29,30
	EXC \v, 1
	.endr
exc_common:
	PUSH_GPRS
	movq %rsp, %rdi
	call exception_handler
3:	cli
	hlt
	jmp 3b

	.section .rodata
	.align 8
	.globl exc_stubs
exc_stubs:			/* entry points of vectors 0-31; 2 is the NMI */
	.quad exc_0, db_entry, nmi_entry
	.irp v, 3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	.quad exc_\v
	.endr

	.section .note.GNU-stack, "", @progbits
