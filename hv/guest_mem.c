/* SPDX-License-Identifier: MIT */
/*
 * guest_mem.c - the guest's memory as the hypervisor reads it: its registers by
 * the number an exit qualification gives, linear addresses translated through the
 * guest's own page tables, and guest-physical reads.
 *
 * Guest-physical equals host-physical (ept.c: an identity EPT of the first 4 GiB)
 * except the hypervisor's own image, which the EPT hides from the guest and which
 * these functions therefore refuse too.  The hypervisor's page tables map the same
 * first 4 GiB, so a readable guest-physical address is a host pointer.
 *
 * The walker reads the paging mode from the VMCS (guest CR0, CR4, IA32_EFER or the
 * "IA-32e mode guest" entry control) and follows SDM vol. 3A, chapter 4 "Paging":
 * 32-bit paging (4.3, 4 MiB pages with CR4.PSE, PSE-36 address bits), PAE paging
 * (4.4: its PDPTEs are the ones the CPU loaded, which with EPT are the VMCS guest
 * PDPTE fields, SDM vol. 3C 26.3.2.4), 4-level and 5-level paging (4.5: 1 GiB and
 * 2 MiB pages).  It checks presence only, not access rights: it says where an
 * address leads, not whether the guest may use it.
 */
#include "hv.h"
#include "x86.h"

#define PTE_P      (1ull << 0)
#define PTE_PS     (1ull << 7)
#define ADDR_MASK  0x000FFFFFFFFFF000ull /* bits 51:12 of a PAE/4-level entry */
#define PHYS_LIMIT (4ull << 30) /* the EPT and the host map the first 4 GiB */
#define CR4_PSE    (1ull << 4)
#define CR4_PAE    (1ull << 5)
#define CR4_LA57   (1ull << 12)
#define EFER_LMA   (1ull << 10)
#define PAGE_SIZE  4096u

/* A guest-physical range the hypervisor may read for the guest: inside the EPT's
 * identity map and outside its hole. */
static int phys_readable(uint64_t gpa, uint64_t n)
{
	return gpa < PHYS_LIMIT && n <= PHYS_LIMIT - gpa &&
	       (gpa + n <= vmx_guest.hv_lo || gpa >= vmx_guest.hv_hi);
}

int guest_read_phys(uint64_t gpa, void *buf, unsigned n)
{
	if (!phys_readable(gpa, n))
		return -1;
	const volatile uint8_t *s = phys_ptr((uintptr_t)gpa);
	uint8_t *d = buf;
	for (unsigned i = 0; i < n; i++)
		d[i] = s[i];
	return 0;
}

/* One paging-structure entry of `size` bytes (4 or 8) at `table` + index. */
static int entry(uint64_t table, uint64_t index, unsigned size, uint64_t *e)
{
	uint64_t v = 0;
	if (guest_read_phys(table + index * size, &v, size) != 0)
		return -1;
	*e = v;
	return (v & PTE_P) ? 0 : -1;
}

int guest_long_mode(void)
{
	if (vmx_caps.exit & EXIT_SAVE_EFER)
		return (vmx_read(VMCS_GUEST_EFER) & EFER_LMA) != 0;
	/* Without "save IA32_EFER", EFER.LMA is what a VM exit stores into the
	 * "IA-32e mode guest" entry control (SDM vol. 3C, 27.2). */
	return (vmx_read(VMCS_ENTRY_CTLS) & ENTRY_IA32E_GUEST) != 0;
}

/* 4-level and 5-level paging (SDM vol. 3A, 4.5). */
static int walk_long(uint64_t gva, uint64_t cr3, int levels, uint64_t *gpa)
{
	uint64_t table = cr3 & ADDR_MASK, e;
	for (int level = levels; level >= 1; level--) {
		unsigned shift = 12 + 9 * (unsigned)(level - 1);
		if (entry(table, (gva >> shift) & 511, 8, &e) != 0)
			return -1;
		/* PS in a PDPTE (1 GiB) or PDE (2 MiB) maps a page. */
		if ((level == 2 || level == 3) && (e & PTE_PS)) {
			uint64_t size = 1ull << shift;
			*gpa = (e & ADDR_MASK & ~(size - 1)) | (gva & (size - 1));
			return 0;
		}
		table = e & ADDR_MASK;
	}
	*gpa = table | (gva & 0xFFF);
	return 0;
}

/* PAE paging (SDM vol. 3A, 4.4): the PDPTE the CPU holds, then two levels. */
static int walk_pae(uint64_t gva, uint64_t *gpa)
{
	uint64_t pdpte = vmx_read(VMCS_GUEST_PDPTE0 + 2 * ((gva >> 30) & 3)), e;
	if (!(pdpte & PTE_P))
		return -1;
	if (entry(pdpte & ADDR_MASK, (gva >> 21) & 511, 8, &e) != 0)
		return -1;
	if (e & PTE_PS) {
		*gpa = (e & ADDR_MASK & ~0x1FFFFFull) | (gva & 0x1FFFFF);
		return 0;
	}
	if (entry(e & ADDR_MASK, (gva >> 12) & 511, 8, &e) != 0)
		return -1;
	*gpa = (e & ADDR_MASK) | (gva & 0xFFF);
	return 0;
}

/* 32-bit paging (SDM vol. 3A, 4.3). */
static int walk_32(uint64_t gva, uint64_t cr3, uint64_t cr4, uint64_t *gpa)
{
	uint64_t e;
	if (entry(cr3 & 0xFFFFF000u, (gva >> 22) & 1023, 4, &e) != 0)
		return -1;
	if ((cr4 & CR4_PSE) && (e & PTE_PS)) {
		/* 4 MiB page: bits 31:22 from the PDE, 39:32 from its bits 20:13. */
		*gpa = (e & 0xFFC00000u) | ((e >> 13) & 0xFF) << 32 | (gva & 0x3FFFFF);
		return 0;
	}
	if (entry(e & 0xFFFFF000u, (gva >> 12) & 1023, 4, &e) != 0)
		return -1;
	*gpa = (e & 0xFFFFF000u) | (gva & 0xFFF);
	return 0;
}

int guest_virt_to_phys(uint64_t gva, uint64_t *gpa)
{
	uint64_t cr0 = vmx_read(VMCS_GUEST_CR0), cr4 = vmx_read(VMCS_GUEST_CR4);
	if (!(cr0 & CR0_PG)) {
		*gpa = gva; /* no paging: linear = physical */
		return 0;
	}
	uint64_t cr3 = vmx_read(VMCS_GUEST_CR3);
	if (guest_long_mode())
		return walk_long(gva, cr3, (cr4 & CR4_LA57) ? 5 : 4, gpa);
	if (cr4 & CR4_PAE)
		return walk_pae(gva & 0xFFFFFFFFu, gpa);
	return walk_32(gva & 0xFFFFFFFFu, cr3, cr4, gpa);
}

int guest_read(uint64_t gva, void *buf, unsigned n)
{
	uint8_t *d = buf;
	while (n) {
		uint64_t gpa;
		unsigned chunk = PAGE_SIZE - (unsigned)(gva & (PAGE_SIZE - 1));
		if (chunk > n)
			chunk = n;
		if (guest_virt_to_phys(gva, &gpa) != 0 || guest_read_phys(gpa, d, chunk) != 0)
			return -1;
		gva += chunk;
		d += chunk;
		n -= chunk;
	}
	return 0;
}

uint64_t guest_rip_linear(void)
{
	uint64_t rip = vmx_read(VMCS_GUEST_RIP);
	/* 64-bit mode (IA-32e mode and CS.L): CS base is ignored; otherwise the
	 * linear address is CS base + EIP, 32 bits (SDM vol. 3A, 3.4.4, 5.3.1). */
	if (guest_long_mode() && (vmx_read(VMCS_GUEST_CS_AR) & (1u << 13)))
		return rip;
	return (vmx_read(VMCS_GUEST_CS_BASE) + rip) & 0xFFFFFFFFu;
}

/* The general-purpose register number n of an exit qualification or instruction
 * information field (0 RAX, 1 RCX, 2 RDX, 3 RBX, 4 RSP, 5 RBP, 6 RSI, 7 RDI,
 * 8-15 R8-R15: SDM vol. 3C, 27.2.1, table 27-3).  RSP lives in the VMCS. */
static uint64_t *gpr_slot(struct guest_regs *r, unsigned n)
{
	switch (n & 15) {
	case 0: return &r->rax;
	case 1: return &r->rcx;
	case 2: return &r->rdx;
	case 3: return &r->rbx;
	case 5: return &r->rbp;
	case 6: return &r->rsi;
	case 7: return &r->rdi;
	case 8: return &r->r8;
	case 9: return &r->r9;
	case 10: return &r->r10;
	case 11: return &r->r11;
	case 12: return &r->r12;
	case 13: return &r->r13;
	case 14: return &r->r14;
	case 15: return &r->r15;
	default: return 0; /* 4: RSP */
	}
}

uint64_t guest_gpr(struct guest_regs *r, unsigned n)
{
	uint64_t *p = gpr_slot(r, n);
	return p ? *p : vmx_read(VMCS_GUEST_RSP);
}

void guest_set_gpr(struct guest_regs *r, unsigned n, uint64_t v)
{
	uint64_t *p = gpr_slot(r, n);
	if (p)
		*p = v;
	else
		vmx_write(VMCS_GUEST_RSP, v);
}
