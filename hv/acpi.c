/* SPDX-License-Identifier: MIT */
/*
 * acpi.c - find the CPUs: RSDP (EBDA, then 0xE0000-0xFFFFF) -> RSDT/XSDT -> MADT,
 * whose Processor Local APIC entries (type 0) list the LAPIC IDs of usable CPUs.
 */
#include "hv.h"
#include "x86.h"

struct rsdp {
	char sig[8];
	uint8_t checksum;
	char oem[6];
	uint8_t revision;
	uint32_t rsdt;
	uint32_t length;
	uint64_t xsdt;
	uint8_t xchecksum;
	uint8_t reserved[3];
} __attribute__((packed));

struct sdt_header {
	char sig[4];
	uint32_t length;
	uint8_t revision, checksum;
	char oem[6], oem_table[8];
	uint32_t oem_rev, creator, creator_rev;
} __attribute__((packed));

static int sum_ok(const void *p, unsigned len)
{
	uint8_t s = 0;
	for (unsigned i = 0; i < len; i++)
		s = (uint8_t)(s + ((const uint8_t *)p)[i]);
	return s == 0;
}

static int sig_is(const char *a, const char *b, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (a[i] != b[i])
			return 0;
	return 1;
}

static const struct rsdp *scan(uintptr_t start, uintptr_t end)
{
	for (uintptr_t a = start; a + sizeof(struct rsdp) <= end; a += 16) {
		const struct rsdp *r = phys_ptr(a);
		if (sig_is(r->sig, "RSD PTR ", 8) && sum_ok(r, 20))
			return r;
	}
	return NULL;
}

static const struct sdt_header *find_madt(const struct rsdp *r)
{
	int x = r->revision >= 2 && r->xsdt;
	const struct sdt_header *root =
	    (const struct sdt_header *)(uintptr_t)(x ? r->xsdt : r->rsdt);
	unsigned entry = x ? 8 : 4, n = (root->length - sizeof *root) / entry;
	const uint8_t *ents = (const uint8_t *)(root + 1);
	for (unsigned i = 0; i < n; i++) {
		uint64_t a = 0;
		for (unsigned b = 0; b < entry; b++)
			a |= (uint64_t)ents[i * entry + b] << (8 * b);
		const struct sdt_header *h = (const struct sdt_header *)(uintptr_t)a;
		if (sig_is(h->sig, "APIC", 4) && sum_ok(h, h->length))
			return h;
	}
	return NULL;
}

/* Fills apic_ids[] (BSP first as the firmware lists it) and returns the count;
 * 0 when there is no usable MADT. */
unsigned acpi_find_cpus(uint32_t *apic_ids, unsigned max)
{
	uintptr_t ebda = (uintptr_t)(*(const uint16_t *)phys_ptr(0x40E)) << 4; /* BDA */
	const struct rsdp *r = ebda ? scan(ebda, ebda + 1024) : NULL;
	if (!r)
		r = scan(0xE0000, 0x100000);
	if (!r)
		return 0;
	const struct sdt_header *madt = find_madt(r);
	if (!madt)
		return 0;
	unsigned n = 0;
	const uint8_t *p = (const uint8_t *)madt + sizeof *madt + 8; /* LAPIC addr, flags */
	const uint8_t *end = (const uint8_t *)madt + madt->length;
	while (p + 2 <= end && p[1] >= 2) {
		/* type 0: ACPI id, APIC id, flags (bit 0 enabled, bit 1 online-capable) */
		if (p[0] == 0 && (p[4] & 3) && n < max)
			apic_ids[n++] = p[3];
		p += p[1];
	}
	return n;
}
