/* SPDX-License-Identifier: MIT */
/*
 * symbols.c - addresses of this executable as "function+offset" and "file:line",
 * for timelines and for "nmi@symbol+offset" in scenarios.  Reads the ELF symbol
 * table of /proc/self/exe (static functions included); source lines come from
 * binutils' addr2line, asked only when a timeline is printed.
 */
#define _GNU_SOURCE
#include <elf.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sim.h"

struct sym {
	uintptr_t addr;
	size_t size;
	const char *name;
};

static struct sym *syms;
static size_t nsyms;

static int by_addr(const void *a, const void *b)
{
	const struct sym *x = a, *y = b;
	return x->addr < y->addr ? -1 : x->addr > y->addr;
}

int sym_load(void)
{
	if (syms)
		return 0;
	int fd = open("/proc/self/exe", O_RDONLY);
	if (fd < 0)
		return -1;
	struct stat st;
	if (fstat(fd, &st) != 0) {
		close(fd);
		return -1;
	}
	const unsigned char *img = mmap(NULL, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (img == MAP_FAILED)
		return -1;
	const Elf64_Ehdr *eh = (const Elf64_Ehdr *)img;
	const Elf64_Shdr *sh = (const Elf64_Shdr *)(img + eh->e_shoff);
	for (unsigned i = 0; i < eh->e_shnum; i++) {
		if (sh[i].sh_type != SHT_SYMTAB)
			continue;
		const Elf64_Sym *s = (const Elf64_Sym *)(img + sh[i].sh_offset);
		const char *str = (const char *)(img + sh[sh[i].sh_link].sh_offset);
		size_t n = sh[i].sh_size / sizeof *s;
		syms = calloc(n, sizeof *syms);
		if (!syms)
			return -1;
		for (size_t k = 0; k < n; k++) {
			if (ELF64_ST_TYPE(s[k].st_info) != STT_FUNC || !s[k].st_value)
				continue;
			syms[nsyms++] =
			    (struct sym){s[k].st_value, s[k].st_size, str + s[k].st_name};
		}
	}
	/* The image stays mapped: names point into it. */
	qsort(syms, nsyms, sizeof *syms, by_addr);
	return 0;
}

static const struct sym *find(uintptr_t addr)
{
	size_t lo = 0, hi = nsyms;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (syms[mid].addr <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == 0)
		return NULL;
	const struct sym *s = &syms[lo - 1];
	return addr < s->addr + (s->size ? s->size : 1) ? s : NULL;
}

const char *sym_describe(uintptr_t addr)
{
	static char buf[4][128];
	static unsigned k;
	char *b = buf[k++ % 4];
	const struct sym *s = find(addr);
	if (s)
		snprintf(b, 128, "%s+%#lx", s->name, (unsigned long)(addr - s->addr));
	else
		snprintf(b, 128, "%#lx", (unsigned long)addr);
	return b;
}

uintptr_t sym_lookup(const char *name)
{
	sym_load();
	for (size_t i = 0; i < nsyms; i++)
		if (strcmp(syms[i].name, name) == 0)
			return syms[i].addr;
	return 0;
}

const char *sym_source_line(uintptr_t addr)
{
	static struct {
		uintptr_t addr;
		char text[96];
	} cache[64];
	static unsigned ncache;
	for (unsigned i = 0; i < ncache; i++)
		if (cache[i].addr == addr)
			return cache[i].text;
	char cmd[128], out[512] = "?";
	snprintf(cmd, sizeof cmd, "addr2line -e /proc/%d/exe %#lx 2>/dev/null", (int)getpid(),
		 (unsigned long)addr);
	FILE *p = popen(cmd, "r");
	if (p) {
		if (!fgets(out, sizeof out, p))
			snprintf(out, sizeof out, "?");
		pclose(p);
	}
	out[strcspn(out, "\n ")] = 0;
	const char *base = strrchr(out, '/');
	base = base ? base + 1 : out;
	unsigned slot = ncache < 64 ? ncache++ : (unsigned)(addr % 64);
	cache[slot].addr = addr;
	snprintf(cache[slot].text, sizeof cache[slot].text, "%s", base);
	return cache[slot].text;
}
