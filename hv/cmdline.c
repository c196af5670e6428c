/* SPDX-License-Identifier: MIT */
/*
 * cmdline.c - the boot command line from multiboot v1 (QEMU -kernel -append, GRUB
 * `multiboot`) or multiboot2 (GRUB `multiboot2`), as space-separated key=value
 * words.  The first word may be the kernel's path (GRUB passes it): words
 * without '=' are ignored.  docs/booting.md lists the keys.
 */
#include "hv.h"

#define MB1_BOOT_MAGIC   0x2BADB002u
#define MB2_BOOT_MAGIC   0x36D76289u
#define MB1_INFO_CMDLINE (1u << 2)
#define MB2_TAG_CMDLINE  1u
#define CMDLINE_MAX      512

static char line[CMDLINE_MAX];

static void copy(const char *s)
{
	unsigned i = 0;
	for (; s && s[i] && i < CMDLINE_MAX - 1; i++)
		line[i] = s[i];
	line[i] = 0;
}

void cmdline_init(uint32_t magic, uint64_t info)
{
	if (magic == MB1_BOOT_MAGIC) {
		const uint32_t *mbi = (const uint32_t *)info;
		if (mbi[0] & MB1_INFO_CMDLINE)
			copy((const char *)(uintptr_t)mbi[4]);
	} else if (magic == MB2_BOOT_MAGIC) {
		const uint8_t *p = (const uint8_t *)info + 8,
			      *end = p + *(const uint32_t *)info - 8;
		while (p < end) {
			uint32_t type = ((const uint32_t *)p)[0], size = ((const uint32_t *)p)[1];
			if (type == 0)
				break;
			if (type == MB2_TAG_CMDLINE)
				copy((const char *)(p + 8));
			p += (size + 7) & ~7u;
		}
	}
}

const char *cmdline_raw(void)
{
	return line;
}

/* Start of the value of `key`, or NULL. */
static const char *find(const char *key)
{
	for (const char *w = line; *w;) {
		while (*w == ' ')
			w++;
		const char *k = key, *p = w;
		while (*k && *p == *k) {
			k++;
			p++;
		}
		if (!*k && *p == '=')
			return p + 1;
		while (*w && *w != ' ')
			w++;
	}
	return NULL;
}

/* The value of `key` as a NUL-terminated string (in one of 8 rotating static
 * buffers, so boot code may hold a few at once), or `def`.  BSP boot code only. */
const char *cmdline_str(const char *key, const char *def)
{
	static char vals[8][32];
	static unsigned next;
	const char *v = find(key);
	if (!v)
		return def;
	char *out = vals[next++ % 8];
	unsigned i = 0;
	while (v[i] && v[i] != ' ' && i < sizeof vals[0] - 1) {
		out[i] = v[i];
		i++;
	}
	out[i] = 0;
	return out;
}

uint64_t cmdline_u64(const char *key, uint64_t def)
{
	const char *v = find(key);
	if (!v || *v < '0' || *v > '9')
		return def;
	uint64_t n = 0;
	if (v[0] == '0' && (v[1] == 'x' || v[1] == 'X')) { /* hexadecimal: 0xf4 */
		for (v += 2;; v++) {
			unsigned d = (*v >= '0' && *v <= '9')   ? (unsigned)(*v - '0')
				     : (*v >= 'a' && *v <= 'f') ? (unsigned)(*v - 'a' + 10)
				     : (*v >= 'A' && *v <= 'F') ? (unsigned)(*v - 'A' + 10)
								: 16;
			if (d == 16)
				return n;
			n = n * 16 + d;
		}
	}
	while (*v >= '0' && *v <= '9')
		n = n * 10 + (uint64_t)(*v++ - '0');
	return n;
}
