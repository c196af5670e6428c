/* SPDX-License-Identifier: MIT */
/*
 * guest_load.c - load the guest kernel passed to the hypervisor as its first boot
 * module (GRUB `module`/`module2`, QEMU -initrd).  A Linux bzImage (recognised by
 * its setup header) goes to linux_boot.c with the second module as its initrd.
 * Anything else must be a multiboot v1 kernel, given what a multiboot v1 loader
 * gives: the image at its physical address, and multiboot information (memory
 * sizes, a memory map, the command line = the module's string).
 *
 * The memory map marks the hypervisor's image reserved: the guest's EPT does not
 * map it either (ept.c).  The information lives at GUEST_MBI_PA, low memory the
 * hypervisor no longer uses once its APs are up.  Failures are returned as
 * `why` (hv.h, "Errors").
 */
#include "hv.h"
#include "linux_boot.h"
#include "vmx.h"
#include "x86.h"

#define MB1_BOOT_MAGIC   0x2BADB002u
#define MB2_BOOT_MAGIC   0x36D76289u
#define MB1_HEADER_MAGIC 0x1BADB002u
#define MB1_SEARCH       8192u
#define MB1_FLAG_ADDRS   (1u << 16)
#define MB1_INFO_MEM     (1u << 0)
#define MB1_INFO_CMDLINE (1u << 2)
#define MB1_INFO_MODS    (1u << 3)
#define MB1_INFO_MMAP    (1u << 6)
#define MB2_TAG_MODULE   3u
#define MB2_TAG_MMAP     6u

#define GUEST_MBI_PA 0x5000u /* one page: info, map, command line */
#define MAX_MAP      32
#define MAX_MODULES  8

extern uint32_t boot_magic, boot_info; /* boot.S: what the loader passed */

struct mb1_info {
	uint32_t flags, mem_lower, mem_upper, boot_device, cmdline, mods_count, mods_addr;
	uint32_t syms[4], mmap_length, mmap_addr;
} __attribute__((packed));

struct mb1_mmap {
	uint32_t size; /* of the rest of the entry */
	uint64_t base, len;
	uint32_t type;
} __attribute__((packed));

static struct region host_map[MAX_MAP];
static unsigned host_map_n;
static struct guest_module modules[MAX_MODULES];
static unsigned modules_n;

static void module_add(uint64_t lo, uint64_t hi, const char *string)
{
	if (modules_n < MAX_MODULES)
		modules[modules_n++] = (struct guest_module){lo, hi, string};
}

static void map_add(struct region *m, unsigned *n, uint64_t base, uint64_t len, uint32_t type)
{
	if (len && *n < MAX_MAP)
		m[(*n)++] = (struct region){base, len, type};
}

/* The boot modules, in order, and the firmware memory map. */
static void find_modules(void)
{
	modules_n = host_map_n = 0;
	if (boot_magic == MB1_BOOT_MAGIC) {
		const struct mb1_info *mi = phys_ptr(boot_info);
		if (mi->flags & MB1_INFO_MODS)
			for (uint32_t k = 0; k < mi->mods_count; k++) {
				const uint32_t *mod = phys_ptr(mi->mods_addr + 16 * k);
				module_add(mod[0], mod[1], mod[2] ? phys_ptr(mod[2]) : "");
			}
		if (mi->flags & MB1_INFO_MMAP)
			for (uint32_t off = 0; off < mi->mmap_length;) {
				const struct mb1_mmap *e = phys_ptr(mi->mmap_addr + off);
				map_add(host_map, &host_map_n, e->base, e->len, e->type);
				off += e->size + 4;
			}
	} else if (boot_magic == MB2_BOOT_MAGIC) {
		const uint8_t *p = (const uint8_t *)phys_ptr(boot_info) + 8;
		const uint8_t *end = p + *(const uint32_t *)phys_ptr(boot_info) - 8;
		while (p < end) {
			const uint32_t *tag = (const uint32_t *)p;
			if (tag[0] == 0)
				break;
			if (tag[0] == MB2_TAG_MODULE)
				module_add(tag[2], tag[3], (const char *)&tag[4]);
			if (tag[0] == MB2_TAG_MMAP)
				for (uint32_t off = 16; off + tag[2] <= tag[1]; off += tag[2]) {
					const uint8_t *e = p + off;
					map_add(host_map, &host_map_n, *(const uint64_t *)e,
						*(const uint64_t *)(e + 8),
						*(const uint32_t *)(e + 16));
				}
			p += (tag[1] + 7) & ~7u;
		}
	}
}

static void copy(uint64_t dst, const uint8_t *src, uint64_t n)
{
	uint8_t *d = phys_ptr(dst);
	for (uint64_t i = 0; i < n; i++)
		d[i] = src[i];
}

static void zero(uint64_t dst, uint64_t n)
{
	uint8_t *d = phys_ptr(dst);
	for (uint64_t i = 0; i < n; i++)
		d[i] = 0;
}

static int overlaps(uint64_t a, uint64_t b, uint64_t lo, uint64_t hi)
{
	return a < hi && lo < b;
}

/* ELF32 program headers, for a multiboot kernel without the address fields. */
static const char *load_elf32(const uint8_t *img, uint64_t size, struct guest_image *g)
{
	const uint32_t *eh = (const uint32_t *)img;
	if (size < 52 || eh[0] != 0x464C457Fu || img[4] != 1)
		return "guest module is neither an a.out-kludge nor an ELF32 multiboot kernel";
	uint32_t phoff = eh[7];
	uint16_t phentsize = *(const uint16_t *)(img + 42), phnum = *(const uint16_t *)(img + 44);
	g->entry = eh[6];
	g->load_lo = 0xFFFFFFFFu;
	g->load_hi = 0;
	for (unsigned i = 0; i < phnum; i++) {
		const uint32_t *ph = (const uint32_t *)(img + phoff + i * phentsize);
		if (ph[0] != 1) /* PT_LOAD */
			continue;
		uint32_t off = ph[1], pa = ph[3], filesz = ph[4], memsz = ph[5];
		if (off + (uint64_t)filesz > size)
			return "guest ELF segment beyond the module";
		copy(pa, img + off, filesz);
		zero(pa + filesz, memsz - filesz);
		if (pa < g->load_lo)
			g->load_lo = pa;
		if (pa + memsz > g->load_hi)
			g->load_hi = pa + memsz;
	}
	return NULL;
}

/* The guest's memory map: the firmware's, with the hypervisor's image reserved. */
static unsigned guest_map(struct region *m, uint64_t hv_lo, uint64_t hv_hi)
{
	unsigned n = 0;
	for (unsigned i = 0; i < host_map_n; i++) {
		struct region r = host_map[i];
		if (r.type != E820_RAM || !overlaps(r.base, r.base + r.len, hv_lo, hv_hi)) {
			map_add(m, &n, r.base, r.len, r.type);
			continue;
		}
		uint64_t end = r.base + r.len;
		if (r.base < hv_lo)
			map_add(m, &n, r.base, hv_lo - r.base, E820_RAM);
		map_add(m, &n, hv_lo, hv_hi - hv_lo, E820_RESERVED);
		if (end > hv_hi)
			map_add(m, &n, hv_hi, end - hv_hi, E820_RAM);
	}
	return n;
}

/* The map in multiboot v1 form. */
static void mb1_map(struct mb1_mmap *out, const struct region *m, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		out[i] = (struct mb1_mmap){sizeof out[i] - 4, m[i].base, m[i].len, m[i].type};
}

/* ---- What a loader gives a kernel written for QEMU ------------------------------ */
#define MOD_STRING_MAX 127u

struct mb1_mod {
	uint32_t start, end, string, reserved;
};

/* mem_upper as a loader reports it (multiboot spec, 3.3 "Boot information
 * format": KiB of upper memory from 1 MiB to the first hole): from the firmware's
 * map, where the RAM at 1 MiB ends.  The hypervisor's image inside it is reserved
 * in the guest's map and out of its EPT, as a loader's own memory and modules
 * are, not a hole: a kernel whose allocator runs from its own end to mem_upper
 * (one linked at 4 MiB, above the hypervisor) finds the memory it expects. */
static uint32_t firmware_upper_kb(void)
{
	for (unsigned i = 0; i < host_map_n; i++) {
		const struct region *r = &host_map[i];
		if (r->type == E820_RAM && r->base <= 0x100000 && r->base + r->len > 0x100000) {
			uint64_t kb = (r->base + r->len - 0x100000) >> 10;
			return kb > 0xFFFFFFFFu ? 0xFFFFFFFFu : (uint32_t)kb;
		}
	}
	return 0;
}

/* Append the following modules' list and strings at `at` (in the information's
 * page, below `limit`); returns how many, 0 when none or no room. */
static uint32_t list_modules(char *at, const char *limit, uint32_t *mods_addr, uint64_t img_lo,
			     uint64_t img_hi, const char **why)
{
	/* The boot modules after the guest's own (its environment, an initrd), in
	 * order: the multiboot information lists them for the guest (flag bit 3). */
	const struct guest_module *m = modules + 1;
	unsigned n = modules_n - 1;
	at = (char *)(((uintptr_t)at + 15) & ~(uintptr_t)15);
	struct mb1_mod *mods = (struct mb1_mod *)at;
	char *s = (char *)(mods + n);
	*why = NULL;
	for (unsigned k = 0; k < n; k++) {
		if (overlaps(img_lo, img_hi, m[k].lo, m[k].hi) || m[k].hi > 0xFFFFFFFFull) {
			*why = "a boot module overlaps the guest's image or lies above 4 GiB";
			return 0;
		}
		if (s + MOD_STRING_MAX + 1 > limit) {
			*why = "too many boot modules for the multiboot information page";
			return 0;
		}
		mods[k] = (struct mb1_mod){(uint32_t)m[k].lo, (uint32_t)m[k].hi,
					   (uint32_t)(uintptr_t)s, 0};
		unsigned i = 0;
		for (; m[k].string[i] && i < MOD_STRING_MAX; i++)
			s[i] = m[k].string[i];
		s[i] = 0;
		s += i + 1;
		kprintf("vmx: guest module %u \"%s\" [0x%lx, 0x%lx)\n", k + 1, m[k].string, m[k].lo,
			m[k].hi);
	}
	*mods_addr = (uint32_t)(uintptr_t)mods;
	return n;
}

const char *guest_load(struct guest_image *g, uint64_t hv_lo, uint64_t hv_hi)
{
	const char *why;
	find_modules();
	if (!modules_n)
		return "no boot module: pass the guest kernel with GRUB `module2` or QEMU -initrd";
	uint64_t mod_lo = modules[0].lo, mod_hi = modules[0].hi;
	const char *name = modules[0].string;
	const uint8_t *img = phys_ptr(mod_lo);
	uint64_t size = mod_hi - mod_lo;
	struct region map[MAX_MAP];
	unsigned n = guest_map(map, hv_lo, hv_hi);
	if (linux_is_bzimage(img, size))
		return linux_load(g, &modules[0], modules_n > 1 ? &modules[1] : NULL, map, n, hv_lo,
				  hv_hi);
	*g = (struct guest_image)GUEST_IMAGE_FLAT;

	/* The multiboot v1 header: 4-byte aligned in the first 8 KiB. */
	const uint32_t *h = 0;
	uint32_t hoff = 0;
	for (; hoff + 32 <= size && hoff < MB1_SEARCH; hoff += 4) {
		const uint32_t *w = (const uint32_t *)(img + hoff);
		if (w[0] == MB1_HEADER_MAGIC && w[0] + w[1] + w[2] == 0) {
			h = w;
			break;
		}
	}
	if (!h)
		return "guest module has no multiboot v1 header";
	if (h[1] & MB1_FLAG_ADDRS) {
		/* a.out kludge: [load_addr, load_end) from the file, zero to bss_end. */
		uint32_t header_addr = h[3], load = h[4], load_end = h[5], bss_end = h[6];
		uint64_t file_off = hoff - (uint64_t)(header_addr - load);
		uint64_t len = (load_end ? load_end : load + size - file_off) - load;
		if (file_off + len > size)
			return "guest multiboot header's load range exceeds the module";
		g->entry = h[7];
		g->load_lo = load;
		g->load_hi = bss_end > load + len ? bss_end : (uint32_t)(load + len);
		if (overlaps(g->load_lo, g->load_hi, hv_lo, hv_hi) ||
		    overlaps(g->load_lo, g->load_hi, mod_lo, mod_hi))
			goto clash;
		copy(load, img + file_off, len);
		zero(load + len, g->load_hi - (load + len));
	} else {
		if ((why = load_elf32(img, size, g)))
			return why;
		if (overlaps(g->load_lo, g->load_hi, hv_lo, hv_hi))
			goto clash;
	}

	/* Multiboot information: [info][map][command line] in one low page. */
	struct mb1_info *mi = phys_ptr(GUEST_MBI_PA);
	struct mb1_mmap *mmap = (struct mb1_mmap *)(mi + 1);
	mb1_map(mmap, map, n);
	char *cmd = (char *)(mmap + n);
	unsigned i = 0;
	for (; name[i] && i < 255; i++)
		cmd[i] = name[i];
	cmd[i] = 0;
	uint32_t mods_addr = 0;
	uint32_t mods = list_modules(cmd + i + 1, (const char *)mi + 4096, &mods_addr, g->load_lo,
				     g->load_hi, &why);
	if (why)
		return why;
	*mi = (struct mb1_info){
	    .flags = MB1_INFO_MEM | MB1_INFO_CMDLINE | (n ? MB1_INFO_MMAP : 0) |
		     (mods ? MB1_INFO_MODS : 0),
	    .mem_lower = 639,
	    .mem_upper = firmware_upper_kb(),
	    .cmdline = (uint32_t)(uintptr_t)cmd,
	    .mods_count = mods,
	    .mods_addr = mods_addr,
	    .mmap_length = n * (uint32_t)sizeof *mmap,
	    .mmap_addr = (uint32_t)(uintptr_t)mmap,
	};
	g->mbi = GUEST_MBI_PA;
	g->name = cmd;
	kprintf("vmx: guest \"%s\": image [0x%x, 0x%x) entry 0x%x, %u memory-map entries, "
		"hypervisor [0x%lx, 0x%lx) reserved, mem_upper %u KiB, %u module(s)\n",
		cmd, g->load_lo, g->load_hi, g->entry, n, hv_lo, hv_hi, mi->mem_upper, mods);
	return NULL;
clash:
	return "guest image overlaps the hypervisor or its own module";
}
