/* SPDX-License-Identifier: MIT */
/*
 * guest_image.h - what a guest loader hands the VMCS setup: the boot modules it
 * was given, the memory map it passes on, and where and how to enter the guest.
 */
#ifndef HV_GUEST_IMAGE_H
#define HV_GUEST_IMAGE_H

#include <stdint.h>

#define E820_RAM      1u
#define E820_RESERVED 2u

/* A memory-map entry (firmware e820 types). */
struct region {
	uint64_t base, len;
	uint32_t type;
};

/* A boot module: [lo, hi) physical, and its command-line string. */
struct guest_module {
	uint64_t lo, hi;
	const char *string;
};

enum guest_protocol {
	GUEST_MULTIBOOT, /* EAX = 0x2BADB002, EBX = multiboot information       */
	GUEST_LINUX, /* Linux 32-bit boot protocol: ESI = the zero page     */
};

/* The multiboot hand-over's selectors (the spec leaves them undefined, with the
 * guest required to load its own GDT before it reloads a segment register). */
#define GUEST_MB_CODE_SEL 0x08u
#define GUEST_MB_DATA_SEL 0x10u
/* The entry state every guest image starts from (the multiboot one); a loader
 * fills in the rest. */
#define GUEST_IMAGE_FLAT                                                                           \
	{                                                                                          \
		.protocol = GUEST_MULTIBOOT, .code_sel = GUEST_MB_CODE_SEL,                        \
		.data_sel = GUEST_MB_DATA_SEL, .gdt_limit = 0xFFFF                                 \
	}

/* A loaded guest: where to enter it (flat 32-bit protected mode, paging off)
 * and what to hand it. */
struct guest_image {
	enum guest_protocol protocol;
	uint32_t entry; /* EIP */
	uint32_t mbi; /* GUEST_MULTIBOOT: EBX */
	uint32_t esi; /* GUEST_LINUX: the zero page */
	uint16_t code_sel, data_sel; /* CS; DS = ES = SS = FS = GS */
	uint32_t gdt_base; /* GDTR: a GDT in guest memory holding those selectors */
	uint16_t gdt_limit; /* (0 base and 0xFFFF limit: the guest loads its own) */
	uint32_t load_lo; /* physical range the image occupies */
	uint32_t load_hi;
	const char *name; /* the module's string */
};

#endif /* HV_GUEST_IMAGE_H */
