/* SPDX-License-Identifier: MIT */
/*
 * entry.S - guest2's entry, IDT stubs and AP trampoline: a multiboot v1 kernel in
 * the manner of test kernels written for QEMU (kvm-unit-tests' x86 cstart, for
 * one): linked at 4 MiB, address fields in the header so QEMU's -kernel loads it,
 * entered in flat 32-bit protected mode with EAX = 0x2BADB002, EBX = the
 * multiboot information.  Nothing here knows about our hypervisor.
 */
#define MB1_MAGIC 0x1BADB002
#define MB1_FLAGS 0x00010003	/* page-align modules, memory info, address fields */
#define AP_TRAMP_PA 0x7000	/* keep in sync with guest2.c */

	.section .multiboot, "a"
	.align 4
mb1_header:
	.long MB1_MAGIC
	.long MB1_FLAGS
	.long -(MB1_MAGIC + MB1_FLAGS)
	.long mb1_header
	.long __load_start
	.long __load_end
	.long __bss_end
	.long _start

	.data
	.align 8
gdt:
	.quad 0
	.quad 0x00CF9A000000FFFF	/* 0x08: flat 32-bit code */
	.quad 0x00CF92000000FFFF	/* 0x10: flat data */
gdt_end:
gdtr:
	.word gdt_end - gdt - 1
	.long gdt

	.bss
	.align 16
stack:	.skip 16384
stack_top:

	.text
	.code32
	.globl _start
_start:
	cli
	cld
	movl $stack_top, %esp
	lgdt gdtr
	ljmp $0x08, $1f
1:	movw $0x10, %cx
	movw %cx, %ds
	movw %cx, %es
	movw %cx, %ss
	movw %cx, %fs
	movw %cx, %gs
	movl %eax, %edx		/* zero .bss (a loader need not), keep EAX/EBX */
	movl $__load_end, %edi
	movl $__bss_end, %ecx
	subl %edi, %ecx
	xorl %eax, %eax
	rep stosb
	pushl %ebx
	pushl %edx
	call main		/* never returns: it writes its exit code */
2:	cli
	hlt
	jmp 2b

/* Vector 2: count. */
	.globl nmi_stub
nmi_stub:
	lock incl nmi_count
	iret

/* Every other vector: an unexpected exception ends the test (exit code 3). */
	.globl exc_stub
exc_stub:
	cld
	pushl %esp
	call unexpected		/* never returns */

/* Real mode at AP_TRAMP_PA (SIPI vector 7): into flat protected mode, count in,
 * halt (no stack: nothing here pushes). */
	.code16
	.globl ap_tramp, ap_tramp_end
ap_tramp:
	cli
	xorw %ax, %ax
	movw %ax, %ds
	lgdtl AP_TRAMP_PA + (ap_gdtr - ap_tramp)
	movl %cr0, %eax
	orl $1, %eax
	movl %eax, %cr0
	ljmpl $0x08, $ap_start32
	.align 4
ap_gdtr:
	.word gdt_end - gdt - 1
	.long gdt
ap_tramp_end:

	.code32
ap_start32:
	movw $0x10, %cx
	movw %cx, %ds
	movw %cx, %es
	movw %cx, %ss
	lock incl aps_online
3:	cli
	hlt
	jmp 3b

	.section .note.GNU-stack, "", @progbits
