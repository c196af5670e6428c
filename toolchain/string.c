/* SPDX-License-Identifier: MIT */
/*
 * string.c - the four functions a freestanding C compiler may call on its own.
 *
 * gcc and clang both document that a freestanding program must provide memcpy,
 * memmove, memset and memcmp: they lower structure copies and zeroing to calls.
 * With the hypervisor's flags gcc happens to inline every one; clang calls memset
 * and memcpy (nmi_cpu_init, hv/vmx.c).  So a build with HV_CC=clang links this object
 * into hv.elf (the Makefile, after hv/hv.mk).  The definitions are weak: if the
 * hypervisor ever defines its own, those win.  String instructions, not C loops, so
 * that no compiler can turn the body back into a call to itself.
 */
#include <stddef.h>

__attribute__((weak)) void *memcpy(void *dst, const void *src, size_t n)
{
	void *d = dst;
	__asm__ volatile("rep movsb" : "+D"(d), "+S"(src), "+c"(n) : : "memory");
	return dst;
}

__attribute__((weak)) void *memset(void *dst, int c, size_t n)
{
	void *d = dst;
	__asm__ volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
	return dst;
}

__attribute__((weak)) void *memmove(void *dst, const void *src, size_t n)
{
	if ((const char *)src >= (char *)dst || (const char *)src + n <= (char *)dst)
		return memcpy(dst, src, n);
	/* Overlapping, destination above the source: copy backwards. */
	char *d = (char *)dst + n - 1;
	const char *s = (const char *)src + n - 1;
	__asm__ volatile("std; rep movsb; cld" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
	return dst;
}

__attribute__((weak)) int memcmp(const void *a, const void *b, size_t n)
{
	const unsigned char *x = a, *y = b;
	for (size_t i = 0; i < n; i++)
		if (x[i] != y[i])
			return x[i] - y[i];
	return 0;
}
