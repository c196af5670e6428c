/* SPDX-License-Identifier: MIT */
/*
 * linux_boot.c - the Linux/x86 boot protocol, 32-bit entry, for a bzImage guest.
 *
 * What a boot loader owes the kernel (the kernel's Documentation/arch/x86/boot.rst,
 * "32-bit boot protocol", and the setup header it describes):
 *   - the protected-mode part of the bzImage (after the (setup_sects + 1) * 512
 *     bytes of real-mode setup) at a `kernel_alignment`-aligned physical address
 *     with `init_size` bytes free from there on (the kernel decompresses in place);
 *   - a zero page (struct boot_params): the image's setup header copied to offset
 *     0x1F1, the loader's fields filled in (type_of_loader, cmd_line_ptr,
 *     ramdisk_image/size), and the e820 memory map at 0x2D0;
 *   - entry at the protected-mode part's first byte in flat 32-bit protected mode,
 *     paging off, interrupts off, with a GDT whose selectors 0x10 (__BOOT_CS) and
 *     0x18 (__BOOT_DS) are 4 GiB flat code and data, CS = 0x10, DS = ES = SS = 0x18,
 *     ESI = the zero page, EBP = EDI = EBX = 0.
 *
 * The e820 map is the firmware's with the hypervisor's image reserved, the same
 * map a multiboot guest gets; the EPT does not map that range either.  The real
 * ACPI tables stay where the firmware put them, so the guest finds its CPUs and
 * starts them itself (INIT-SIPI-SIPI; lapic_guard.c makes that work under Bochs).
 * The initrd stays where the boot loader put the module.
 */
#include "hv.h"
#include "linux_boot.h"
#include "vmx.h"
#include "x86.h"

/* Low guest memory for the hand-over: below 64 KiB, which Linux neither
 * allocates nor overwrites before it has copied the zero page and command line
 * (it reserves the first 64 KiB for the BIOS by default). */
#define ZERO_PAGE_PA 0x5000u
#define CMDLINE_PA   0x6000u
#define CMDLINE_MAX  2048u
#define BOOT_GDT_PA  0x6800u

/* struct boot_params / struct setup_header offsets (boot.rst, "The real-mode
 * kernel header", and the zero-page layout). */
#define BP_E820_ENTRIES   0x1E8u
#define BP_SETUP_SECTS    0x1F1u
#define BP_HEADER         0x202u /* "HdrS" */
#define BP_VERSION        0x206u
#define BP_JUMP           0x200u /* the header ends at 0x202 + the byte at 0x201 */
#define BP_TYPE_OF_LOADER 0x210u
#define BP_LOADFLAGS      0x211u
#define BP_CODE32_START   0x214u
#define BP_RAMDISK_IMAGE  0x218u
#define BP_RAMDISK_SIZE   0x21Cu
#define BP_CMD_LINE_PTR   0x228u
#define BP_INITRD_MAX     0x22Cu
#define BP_KERNEL_ALIGN   0x230u
#define BP_RELOCATABLE    0x234u
#define BP_CMDLINE_SIZE   0x238u
#define BP_PREF_ADDRESS   0x258u
#define BP_INIT_SIZE      0x260u
#define BP_E820_TABLE     0x2D0u
#define E820_MAX          128u
#define HDRS_MAGIC        0x53726448u /* "HdrS" */
#define MIN_VERSION       0x020Au /* 2.10: pref_address, init_size */
#define LOADED_HIGH       0x01u
#define LOADER_UNDEFINED  0xFFu

struct e820_entry {
	uint64_t addr, size;
	uint32_t type;
} __attribute__((packed));

static uint32_t rd32(const uint8_t *p, unsigned off)
{
	return (uint32_t)p[off] | (uint32_t)p[off + 1] << 8 | (uint32_t)p[off + 2] << 16 |
	       (uint32_t)p[off + 3] << 24;
}

static void wr32(uint8_t *p, unsigned off, uint32_t v)
{
	for (unsigned i = 0; i < 4; i++)
		p[off + i] = (uint8_t)(v >> (8 * i));
}

int linux_is_bzimage(const uint8_t *img, uint64_t size)
{
	return size > BP_INIT_SIZE + 4 && rd32(img, BP_HEADER) == HDRS_MAGIC;
}

static int overlaps(uint64_t a, uint64_t b, uint64_t lo, uint64_t hi)
{
	return a < hi && lo < b;
}

/* Where [at, at + size) is RAM in the guest's map and clear of every busy range. */
static int fits(uint64_t at, uint64_t size, const struct region *map, unsigned n,
		const uint64_t (*busy)[2], unsigned nbusy)
{
	int in_ram = 0;
	for (unsigned i = 0; i < n; i++)
		if (map[i].type == E820_RAM && at >= map[i].base &&
		    at + size <= map[i].base + map[i].len)
			in_ram = 1;
	for (unsigned i = 0; in_ram && i < nbusy; i++)
		if (overlaps(at, at + size, busy[i][0], busy[i][1]))
			return 0;
	return in_ram;
}

static void copy64(uint64_t dst, const uint8_t *src, uint64_t n)
{
	uint64_t *d = phys_ptr(dst);
	const uint64_t *s = (const uint64_t *)src;
	for (uint64_t i = 0; i < n / 8; i++)
		d[i] = s[i];
	for (uint64_t i = n & ~7ull; i < n; i++)
		((uint8_t *)d)[i] = src[i];
}

const char *linux_load(struct guest_image *g, const struct guest_module *kernel,
		       const struct guest_module *initrd, const struct region *map, unsigned n,
		       uint64_t hv_lo, uint64_t hv_hi)
{
	const uint8_t *img = phys_ptr(kernel->lo);
	uint64_t size = kernel->hi - kernel->lo;
	uint16_t version = (uint16_t)(img[BP_VERSION] | img[BP_VERSION + 1] << 8);
	if (version < MIN_VERSION)
		return "bzImage boot protocol older than 2.10";
	if (!(img[BP_LOADFLAGS] & LOADED_HIGH) || !img[BP_RELOCATABLE])
		return "not a relocatable bzImage (loadflags.LOADED_HIGH or relocatable_kernel 0)";
	unsigned setup_sects = img[BP_SETUP_SECTS] ? img[BP_SETUP_SECTS] : 4;
	uint64_t pm_off = (uint64_t)(setup_sects + 1) * 512;
	if (pm_off >= size)
		return "bzImage shorter than its setup sectors";
	uint64_t pm_size = size - pm_off;
	uint64_t align = rd32(img, BP_KERNEL_ALIGN), init_size = rd32(img, BP_INIT_SIZE);
	uint64_t pref = rd32(img, BP_PREF_ADDRESS);
	if (!align || (align & (align - 1)))
		return "bzImage kernel_alignment is not a power of two";
	if (init_size < pm_size)
		init_size = pm_size;

	/* The kernel: at pref_address if that is free, else the first aligned place
	 * above it that is (the decompressor moves itself up to pref_address at
	 * least, so nothing lower is of use). */
	uint64_t busy[4][2] = {
	    {hv_lo, hv_hi},
	    {kernel->lo, kernel->hi},
	    {initrd ? initrd->lo : 0, initrd ? initrd->hi : 0},
	    {0, 0x100000},
	};
	uint64_t at = pref ? pref : align;
	while (at < (4ull << 30) && !fits(at, init_size, map, n, busy, 4))
		at += align;
	if (at >= (4ull << 30))
		return "no free RAM below 4 GiB for the kernel's init_size";
	copy64(at, img + pm_off, pm_size);

	/* The zero page: zeroes, then the setup header, then the loader's fields. */
	uint8_t *bp = phys_ptr(ZERO_PAGE_PA);
	for (unsigned i = 0; i < 4096; i++)
		bp[i] = 0;
	unsigned hdr_end = BP_HEADER + img[BP_JUMP + 1];
	for (unsigned i = BP_SETUP_SECTS; i < hdr_end && i < 4096; i++)
		bp[i] = img[i];
	bp[BP_TYPE_OF_LOADER] = LOADER_UNDEFINED;
	wr32(bp, BP_CODE32_START, (uint32_t)at);

	/* The command line: the module's string, cut to what the kernel accepts. */
	uint32_t cmdline_max = rd32(img, BP_CMDLINE_SIZE);
	if (!cmdline_max || cmdline_max >= CMDLINE_MAX)
		cmdline_max = CMDLINE_MAX - 1;
	char *cmd = phys_ptr(CMDLINE_PA);
	unsigned len = 0;
	for (; kernel->string[len] && len < cmdline_max; len++)
		cmd[len] = kernel->string[len];
	cmd[len] = 0;
	wr32(bp, BP_CMD_LINE_PTR, CMDLINE_PA);

	if (initrd) {
		if (initrd->hi > (uint64_t)rd32(img, BP_INITRD_MAX) + 1)
			return "initrd above the kernel's initrd_addr_max";
		wr32(bp, BP_RAMDISK_IMAGE, (uint32_t)initrd->lo);
		wr32(bp, BP_RAMDISK_SIZE, (uint32_t)(initrd->hi - initrd->lo));
	}

	struct e820_entry *e = (struct e820_entry *)(bp + BP_E820_TABLE);
	unsigned k = 0;
	for (unsigned i = 0; i < n && k < E820_MAX; i++)
		e[k++] = (struct e820_entry){map[i].base, map[i].len, map[i].type};
	bp[BP_E820_ENTRIES] = (uint8_t)k;

	/* The boot GDT: null, null, __BOOT_CS (0x10), __BOOT_DS (0x18). */
	uint64_t *gdt = phys_ptr(BOOT_GDT_PA);
	gdt[0] = 0;
	gdt[1] = 0;
	gdt[2] = 0x00CF9B000000FFFFull; /* base 0, limit 4 GiB, code, execute/read, accessed */
	gdt[3] = 0x00CF93000000FFFFull; /* base 0, limit 4 GiB, data, read/write, accessed */

	*g = (struct guest_image){
	    .protocol = GUEST_LINUX,
	    .entry = (uint32_t)at,
	    .esi = ZERO_PAGE_PA,
	    .code_sel = 0x10,
	    .data_sel = 0x18,
	    .gdt_base = BOOT_GDT_PA,
	    .gdt_limit = 4 * 8 - 1,
	    .load_lo = (uint32_t)at,
	    .load_hi = (uint32_t)(at + init_size),
	    .name = cmd,
	};
	kprintf("vmx: Linux bzImage (boot protocol %u.%02u): kernel at 0x%lx (init_size 0x%lx), "
		"initrd %s [0x%lx, 0x%lx), %u e820 entries, command line \"%s\"\n",
		version >> 8, version & 0xFF, at, init_size, initrd ? "at" : "none",
		initrd ? initrd->lo : 0, initrd ? initrd->hi : 0, k, cmd);
	return NULL;
}
