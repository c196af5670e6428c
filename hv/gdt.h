/* SPDX-License-Identifier: MIT */
/*
 * gdt.h - the hypervisor's GDT layout, defined once.  The boot GDT (boot.S), the
 * AP trampoline's GDT (trampoline.S) and every CPU's own GDT (cpu.c, which adds
 * its TSS) hold the same flat descriptors at the same selectors.
 *
 * Descriptor format: Intel SDM vol. 3A, 3.4.5 "Segment Descriptors" (base 0, limit
 * 0xFFFFF with G=1, present, DPL 0); a 64-bit code segment has L=1, D=0 (5.2.1 "Code-Segment
 * Descriptor in 64-bit Mode").
 */
#ifndef HV_GDT_H
#define HV_GDT_H

/* Selectors: descriptor index * 8, table indicator 0, RPL 0. */
#define SEL_CODE64 0x08
#define SEL_DATA   0x10
#define SEL_CODE32 0x18
#define SEL_TSS    0x20 /* cpu.c only: a 16-byte system descriptor (two slots) */

/* The flat descriptors (no integer suffix: the assembler reads them too). */
#define GDT_DESC_CODE64 0x00AF9A000000FFFF /* execute/read, L=1, G=1 */
#define GDT_DESC_DATA   0x00CF92000000FFFF /* read/write, D/B=1, G=1 */
#define GDT_DESC_CODE32 0x00CF9A000000FFFF /* execute/read, D=1, G=1 */

#ifdef __ASSEMBLER__
/* The boot and trampoline GDTs: null, then the three flat descriptors in selector
 * order (the .if lines keep the selectors and this order in step).  Assembly:
 * clang-format keeps out. */
/* clang-format off */
	.macro GDT_FLAT
	.if SEL_CODE64 != 8 || SEL_DATA != 16 || SEL_CODE32 != 24
	.error "gdt.h: selectors and GDT_FLAT disagree"
	.endif
	.quad 0
	.quad GDT_DESC_CODE64
	.quad GDT_DESC_DATA
	.quad GDT_DESC_CODE32
	.endm
/* clang-format on */
#endif

#endif /* HV_GDT_H */
