/* SPDX-License-Identifier: MIT */
/*
 * trampoline.S - application processor start-up code.  smp.c copies
 * [tramp_start, tramp_end) to TRAMPOLINE_PA, fills the tramp_* parameter slots and
 * sends INIT-SIPI-SIPI with vector TRAMPOLINE_PA >> 12.  The AP starts in real mode
 * at CS:IP = 0x0800:0000 and walks through protected mode into long mode, using the
 * BSP's page tables, then calls ap_entry(percpu) on its own stack.
 */
#include "hv.h"

/* Address of a trampoline label once copied. */
#define T(x) ((x) - tramp_start + TRAMPOLINE_PA)

	.section .rodata.trampoline, "a"
	.globl tramp_start, tramp_end, tramp_cr3, tramp_stack, tramp_arg, tramp_entry
	.code16
tramp_start:
	cli
	cld
	xorw %ax, %ax
	movw %ax, %ds
	lgdtl T(tramp_gdtr)
	movl %cr0, %eax
	orl $1, %eax
	movl %eax, %cr0
	ljmpl $SEL_CODE32, $T(tramp32)

	.code32
tramp32:
	movw $SEL_DATA, %ax
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %ss
	movl T(tramp_cr3), %eax
	movl %eax, %cr3
	LONG_MODE_ON
	ljmp $SEL_CODE64, $T(tramp64)

	.code64
tramp64:
	xorw %ax, %ax
	movw %ax, %fs
	movw %ax, %gs
	movq T(tramp_stack), %rsp
	movq T(tramp_arg), %rdi
	movq T(tramp_entry), %rax
	call *%rax
1:	cli
	hlt
	jmp 1b

	.align 16
tramp_gdt:
	GDT_FLAT			/* gdt.h */
tramp_gdt_end:
tramp_gdtr:
	.word tramp_gdt_end - tramp_gdt - 1
	.long T(tramp_gdt)
	.align 8
tramp_cr3:	.quad 0
tramp_stack:	.quad 0
tramp_arg:	.quad 0
tramp_entry:	.quad 0
tramp_end:

	.section .note.GNU-stack, "", @progbits
