/* SPDX-License-Identifier: MIT */
/*
 * boot.S - multiboot v1/v2 headers and the BSP's way from 32-bit protected mode
 * (as both loaders leave it) to long mode.
 *
 * Paging: the first 4 GiB identity-mapped with 2 MiB pages; the top GiB (LAPIC,
 * IOAPIC, other MMIO) uncached.  The same tables serve the APs (smp.c).
 */
#include "hv.h"

#define MB1_MAGIC 0x1BADB002
/* page-align modules, memory info, address fields valid (QEMU -kernel needs
 * the address fields to load an ELF64 image) */
#define MB1_FLAGS 0x00010003
#define MB2_MAGIC 0xE85250D6

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

	.align 8
mb2_header:
	.long MB2_MAGIC
	.long 0			/* architecture: i386 protected mode */
	.long mb2_header_end - mb2_header
	.long -(MB2_MAGIC + (mb2_header_end - mb2_header))
	.short 0, 0		/* end tag */
	.long 8
mb2_header_end:

	.section .data
	.align 4
	.globl boot_magic, boot_info
boot_magic:	.long 0
boot_info:	.long 0

	.align 16
	.globl boot_gdt, boot_gdtr
boot_gdt:
	GDT_FLAT			/* gdt.h */
boot_gdt_end:
boot_gdtr:
	.word boot_gdt_end - boot_gdt - 1
	.quad boot_gdt

	.section .bss
	.align 4096
	.globl boot_pml4
boot_pml4:	.skip 4096
boot_pdpt:	.skip 4096
boot_pd:	.skip 4 * 4096
	.align 16
boot_stack:	.skip 16384
boot_stack_top:

	.section .text.boot, "ax"
	.code32
	.globl _start
_start:
	cli
	cld
	/* .data is loaded, .bss is not zeroed yet: park the loader's registers. */
	movl %eax, boot_magic
	movl %ebx, boot_info

	movl $__bss_start, %edi
	movl $__bss_end, %ecx
	subl %edi, %ecx
	xorl %eax, %eax
	rep stosb
	movl $boot_stack_top, %esp

	/* PML4[0] -> PDPT; PDPT[0..3] -> the four page directories. */
	movl $boot_pdpt + 3, boot_pml4
	movl $boot_pd + 3, %eax
	xorl %ecx, %ecx
1:	movl %eax, boot_pdpt(, %ecx, 8)
	addl $4096, %eax
	incl %ecx
	cmpl $4, %ecx
	jne 1b

	/* 2048 2 MiB pages: present, writable, PS; PCD|PWT above 3 GiB. */
	xorl %ecx, %ecx
2:	movl %ecx, %eax
	shll $21, %eax
	orl $0x83, %eax
	cmpl $1536, %ecx
	jb 3f
	orl $0x18, %eax
3:	movl %eax, boot_pd(, %ecx, 8)
	incl %ecx
	cmpl $2048, %ecx
	jne 2b

	movl $boot_pml4, %eax
	movl %eax, %cr3
	LONG_MODE_ON
	lgdt boot_gdtr
	ljmp $SEL_CODE64, $long_entry

	.code64
long_entry:
	movw $SEL_DATA, %ax
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %ss
	xorw %ax, %ax
	movw %ax, %fs
	movw %ax, %gs
	movq $boot_stack_top, %rsp
	movl boot_magic, %edi
	movl boot_info, %esi
	call kmain
4:	cli
	hlt
	jmp 4b

	.section .note.GNU-stack, "", @progbits
