/* SPDX-License-Identifier: MIT */
/*
 * ept.c - the guest's extended page tables: guest-physical = host-physical for the
 * first 4 GiB (RAM, the LAPIC and the other MMIO the guest drives directly), with
 * one hole, the hypervisor's own image ([__load_start, __bss_end): code, data,
 * stacks, page tables, VMCSs and these tables).  A guest access to the hole is an
 * EPT violation, which stops that guest (vmexit.c, guest_run.c).
 *
 * 2 MiB pages everywhere except the 2 MiB regions the hole touches, which get 4 KiB
 * page tables that leave the hole's pages not-present.  Memory type WB below
 * 3 GiB and UC above, as the hypervisor's own page tables (boot.S) have it.
 * ept_set_page() takes single pages out and puts them back (HC_EPT_LAZY, guest_jobs.c).
 */
#include "hv.h"
#include "vmx.h"
#include "vmx_insn.h"

#define EPT_RWX             7ull
#define EPT_LARGE           (1ull << 7)
#define EPT_MT_UC           (0ull << 3)
#define EPT_MT_WB           (6ull << 3)
#define EPT_MT              (7ull << 3) /* the memory-type field */
#define EPTP_WALK4          (3ull << 3) /* page-walk length - 1 */
#define EPTP_MT_WB          6ull
#define EPTP_MT_UC          0ull
#define INVEPT_ALL_CONTEXTS 2

/* IA32_VMX_EPT_VPID_CAP bits. */
#define CAP_WALK4      (1ull << 6)
#define CAP_UC         (1ull << 8)
#define CAP_WB         (1ull << 14)
#define CAP_2M         (1ull << 16)
#define CAP_INVEPT     (1ull << 20)
#define CAP_INVEPT_ALL (1ull << 26)

#define MIB2    (2ull << 20)
#define UC_FROM (3ull << 30)
#define MAX_PT  9 /* the hole may span 8 2-MiB regions (16 MiB); one for ept_set_page */

static uint64_t pml4[512] __attribute__((aligned(4096)));
static uint64_t pdpt[512] __attribute__((aligned(4096)));
static uint64_t pd[4][512] __attribute__((aligned(4096)));
static uint64_t pt[MAX_PT][512] __attribute__((aligned(4096)));
static unsigned npt; /* page tables in use */
static int invept_ok;

static uint64_t memory_type(uint64_t pa)
{
	return pa >= UC_FROM ? EPT_MT_UC : EPT_MT_WB;
}

uint64_t ept_build(uint64_t hv_lo, uint64_t hv_hi, uint64_t cap, const char **why)
{
	if (!(cap & CAP_WALK4) || !(cap & CAP_2M) || !(cap & (CAP_WB | CAP_UC))) {
		*why = "EPT lacks 4-level walks, 2 MiB pages or a usable memory type";
		return 0;
	}
	if (hv_hi - (hv_lo & ~(MIB2 - 1)) > MAX_PT * MIB2) {
		*why = "hypervisor image too large for the EPT hole's page tables";
		return 0;
	}
	invept_ok = (cap & CAP_INVEPT) && (cap & CAP_INVEPT_ALL);

	npt = 0;
	pml4[0] = (uint64_t)pdpt | EPT_RWX;
	for (unsigned g = 0; g < 4; g++) {
		pdpt[g] = (uint64_t)pd[g] | EPT_RWX;
		for (unsigned i = 0; i < 512; i++) {
			uint64_t base = ((uint64_t)g << 30) | ((uint64_t)i << 21);
			uint64_t mt = memory_type(base);
			if (base + MIB2 <= hv_lo || base >= hv_hi) {
				pd[g][i] = base | EPT_RWX | EPT_LARGE | mt;
				continue;
			}
			uint64_t *t = pt[npt++];
			for (unsigned j = 0; j < 512; j++) {
				uint64_t pa = base + ((uint64_t)j << 12);
				t[j] = (pa >= hv_lo && pa < hv_hi) ? 0 : (pa | EPT_RWX | mt);
			}
			pd[g][i] = (uint64_t)t | EPT_RWX;
		}
	}
	return (uint64_t)pml4 | EPTP_WALK4 | ((cap & CAP_WB) ? EPTP_MT_WB : EPTP_MT_UC);
}

int ept_set_page_access(uint64_t gpa, unsigned access)
{
	if (gpa >= (4ull << 30))
		return -1;
	uint64_t *pde = &pd[gpa >> 30][(gpa >> 21) & 511];
	if (*pde & EPT_LARGE) { /* split the 2 MiB page into 512 equal 4 KiB ones */
		if (npt == MAX_PT)
			return -1;
		uint64_t *t = pt[npt++];
		uint64_t base = *pde & ~(MIB2 - 1), flags = *pde & (EPT_RWX | EPT_MT);
		for (unsigned j = 0; j < 512; j++)
			t[j] = (base + ((uint64_t)j << 12)) | flags;
		*pde = (uint64_t)t | EPT_RWX;
	}
	uint64_t *t = (uint64_t *)(*pde & ~0xFFFull);
	uint64_t pa = gpa & ~0xFFFull;
	t[(gpa >> 12) & 511] = access ? (pa | access | memory_type(pa)) : 0;
	return 0;
}

int ept_set_page(uint64_t gpa, int present)
{
	return ept_set_page_access(gpa, present ? EPT_RWX : 0);
}

/* Type 2 (all contexts): the descriptor's EPTP is ignored (SDM vol. 3C, 30.3
 * "INVEPT"). */
void ept_flush(void)
{
	if (invept_ok)
		(void)invept(INVEPT_ALL_CONTEXTS, 0);
}
