/* SPDX-License-Identifier: MIT */
/*
 * guest.S - the test guest's entry, descriptor tables and interrupt stubs.
 *
 * A 32-bit multiboot v1 kernel: the loader (QEMU -kernel, GRUB, or our
 * hypervisor) enters _start in flat 32-bit protected mode, paging off, with
 * EAX = 0x2BADB002 and EBX = the multiboot information.  The guest never enables
 * paging and never leaves ring 0, so the NMI pushes its frame on the interrupted
 * stack (no IST in 32-bit mode; each CPU has its own stack).
 *
 * Application processors start in ap_tramp, copied to AP_TRAMP_PA (SIPI vector
 * AP_TRAMP_PA >> 12): real mode -> flat 32-bit protected mode -> guest_ap_main()
 * on its own stack, ap_stacks[index], index taken from ap_next in start order.
 */
#define AP_TRAMP_PA 0x7000	/* keep in sync with guest.c */
#define MAX_APS 15		/* keep in sync with guest.c */
#define MB1_MAGIC 0x1BADB002
#define MB1_FLAGS 0x00010003	/* page-align modules, memory info, address fields valid */

	.section .multiboot, "a"
	.align 4
mb1_header:
	.long MB1_MAGIC
	.long MB1_FLAGS
	.long -(MB1_MAGIC + MB1_FLAGS)
	.long mb1_header	/* header_addr */
	.long __load_start	/* load_addr */
	.long __load_end	/* load_end_addr */
	.long __bss_end		/* bss_end_addr */
	.long _start		/* entry_addr */

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

trace_break:	.long 0		/* set by guest_main for `trace` */

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
	/* .bss is not loaded by every loader: zero it before C runs (EAX/EBX kept). */
	movl %eax, %edx
	movl $__load_end, %edi
	movl $__bss_end, %ecx
	subl %edi, %ecx
	xorl %eax, %eax
	rep stosb
	pushl %ebx
	pushl %edx
	call guest_main
2:	cli
	hlt
	jmp 2b

/* Vector 2.  The CPU blocks NMIs until the iret.  With `trace` on the command
 * line the first NMI breaks into the Bochs debugger (magic breakpoint) three
 * instructions in: the end of a `make trace TRACE=guest-nmi` region. */
	.globl nmi_stub, trace_break
nmi_stub:
	cmpl $0, trace_break
	je 1f
	movl $0, trace_break
	xchgw %bx, %bx
1:	pushal
	cld
	call guest_nmi
	popal
	iret

/* The software-interrupt vector of the re-injection test (guest.c): count, return. */
	.globl soft_stub
soft_stub:
	lock incl soft_count
	iret

/* Exceptions: [vector, error code] on top of the hardware frame, then C. */
	.macro EXC vec, has_error
exc_\vec:
	.if \has_error == 0
	pushl $0
	.endif
	pushl $\vec
	jmp exc_common
	.endm

	.irp v, 0,1,3,4,5,6,7,9,15,16,18,19,20,22,23,24,25,26,27,28,29,30,31
	EXC \v, 0
	.endr
	.irp v, 8,10,11,12,13,14,17,21
	EXC \v, 1
	.endr
exc_common:
	cld
	pushl %esp		/* struct exc_frame * */
	call guest_exception	/* never returns */

/* Position-independent real-mode start: runs at AP_TRAMP_PA with CS = its
 * segment, interrupts off.  DS = 0 reaches the copy's GDT pointer by its
 * physical address; the far jump is absolute. */
	.code16
	.globl ap_tramp, ap_tramp_end
ap_tramp:
	cli
	xorw %ax, %ax
	movw %ax, %ds
	lgdtl AP_TRAMP_PA + (ap_gdtr - ap_tramp)
	movl %cr0, %eax
	orl $1, %eax		/* PE */
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
	movw %cx, %fs
	movw %cx, %gs
	movl $1, %eax		/* index = ap_next++ */
	lock xaddl %eax, ap_next
	cmpl $MAX_APS, %eax
	jae 1f			/* no stack for it: it halts */
	leal 1(%eax), %edx
	shll $12, %edx
	leal ap_stacks(%edx), %esp
	cld
	pushl %eax
	call guest_ap_main	/* never returns */
1:	cli
	hlt
	jmp 1b

	.section .rodata
	.align 4
	.globl exc_stubs
exc_stubs:			/* vectors 0-31; 2 is the NMI */
	.long exc_0, exc_1, nmi_stub
	.irp v, 3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	.long exc_\v
	.endr

	.section .note.GNU-stack, "", @progbits
