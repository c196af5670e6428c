/* SPDX-License-Identifier: MIT */
/*
 * cr.c - the guest's control registers.
 *
 * VMX operation fixes some CR0 and CR4 bits (IA32_VMX_CR0/CR4_FIXED0/1: CR0.NE,
 * CR4.VMXE; CR0.PE and CR0.PG are free under unrestricted guest).  Those bits, and
 * the ones the CPU does not support at all, are the hypervisor's: they are set in
 * the CR0/CR4 guest/host masks (SDM vol. 3C, 24.6.6 "Guest/Host Masks and Read
 * Shadows for CR0 and CR4").  For a masked bit the guest reads the read shadow
 * (25.3 "Changes to Instruction Behavior in VMX Non-Root Operation", MOV from
 * CR0/CR4) and a MOV to CR0/CR4, CLTS or LMSW that would change it against the
 * shadow exits (25.1.3) with a control-register-access exit (reason 28; exit
 * qualification: 27.2.1, table 27-3).  The exit emulates the instruction: the
 * shadow takes the guest's value, the real register takes it with the fixed bits
 * forced.  So the guest reads back what it wrote, and CR4.VMXE reads 0 and cannot
 * be set (#GP, as on a CPU without VMX).  MOV to/from CR3 exits only where the
 * CPU cannot turn CR3-load/store exiting off (vmx_root.c); CR8 likewise.
 */
#include "hv.h"
#include "x86.h"

#define QUAL_CR(q)       ((unsigned)(q)&15u)
#define QUAL_TYPE(q)     (((unsigned)(q) >> 4) & 3u)
#define QUAL_GPR(q)      (((unsigned)(q) >> 8) & 15u)
#define QUAL_LMSW_SRC(q) (((q) >> 16) & 0xFFFFu)
#define TYPE_MOV_TO      0u
#define TYPE_MOV_FROM    1u
#define TYPE_CLTS        2u
#define TYPE_LMSW        3u

#define CR0_MP       (1ull << 1)
#define CR0_EM       (1ull << 2)
#define CR0_TS       (1ull << 3)
#define CR0_NW       (1ull << 29)
#define CR0_CD       (1ull << 30)
#define CR4_PAE      (1ull << 5)
#define CR4_PCIDE    (1ull << 17)
#define CR3_NOFLUSH  (1ull << 63)
#define EFER_LME     (1ull << 8)
#define EFER_LMA     (1ull << 10)
#define CS_AR_L      (1u << 13)
#define VEC_GP       13
#define PDPTE_P      1ull
#define HIGH_32_BITS 0xFFFFFFFF00000000ull

/* The masks and fixed values, the same on every CPU (IA32_VMX_CR*_FIXED*). */
static struct {
	uint64_t cr0_mask, cr0_set, cr0_keep; /* real = (value | set) & keep */
	uint64_t cr4_mask, cr4_set, cr4_keep;
} fix;

static void init_fixed(void)
{
	uint64_t cr0_fixed0 = rdmsr(MSR_VMX_CR0_FIXED0), cr0_fixed1 = rdmsr(MSR_VMX_CR0_FIXED1);
	uint64_t cr4_fixed0 = rdmsr(MSR_VMX_CR4_FIXED0), cr4_fixed1 = rdmsr(MSR_VMX_CR4_FIXED1);
	/* Unrestricted guest: PE and PG may be 0 (SDM vol. 3C, 26.3.1.1). */
	fix.cr0_set = cr0_fixed0 & ~(CR0_PE | CR0_PG);
	fix.cr0_keep = cr0_fixed1 | CR0_PE | CR0_PG;
	/* Owned: bits VMX forces to 1, and bits it forces to 0 (32 high bits
	 * included: a MOV that sets them would #GP natively; here it exits). */
	fix.cr0_mask = fix.cr0_set | ~fix.cr0_keep;
	fix.cr4_set = cr4_fixed0; /* CR4.VMXE */
	fix.cr4_keep = cr4_fixed1;
	fix.cr4_mask = fix.cr4_set | ~fix.cr4_keep;
}

void cr_setup_vmcs(uint64_t cr0, uint64_t cr4)
{
	if (!fix.cr0_mask)
		init_fixed();
	vmx_write(VMCS_CR0_MASK, fix.cr0_mask);
	vmx_write(VMCS_CR0_SHADOW, cr0);
	vmx_write(VMCS_GUEST_CR0, (cr0 | fix.cr0_set) & fix.cr0_keep);
	vmx_write(VMCS_CR4_MASK, fix.cr4_mask);
	vmx_write(VMCS_CR4_SHADOW, cr4);
	vmx_write(VMCS_GUEST_CR4, (cr4 | fix.cr4_set) & fix.cr4_keep);
}

/* What the guest believes its CR0/CR4 are: masked bits from the shadow, the rest
 * from the real register. */
uint64_t cr_guest_cr0(void)
{
	return (vmx_read(VMCS_GUEST_CR0) & ~fix.cr0_mask) |
	       (vmx_read(VMCS_CR0_SHADOW) & fix.cr0_mask);
}

uint64_t cr_guest_cr4(void)
{
	return (vmx_read(VMCS_GUEST_CR4) & ~fix.cr4_mask) |
	       (vmx_read(VMCS_CR4_SHADOW) & fix.cr4_mask);
}

static int in_64bit_code(void)
{
	return guest_long_mode() && (vmx_read(VMCS_GUEST_CS_AR) & CS_AR_L);
}

/* PAE paging with EPT: the CPU uses the PDPTEs VM entry loads from the VMCS (SDM
 * vol. 3C, 26.3.2.4), and a MOV to CR0/CR3/CR4 that the hypervisor emulates must
 * load them as the instruction would (vol. 3A, 4.4.1).  Returns -1 for a PDPTE
 * with reserved bits set (#GP). */
static int load_pdptes(uint64_t cr0, uint64_t cr3, uint64_t cr4)
{
	if (!(cr0 & CR0_PG) || !(cr4 & CR4_PAE) || guest_long_mode())
		return 0;
	uint64_t pdpte[4];
	if (guest_read_phys(cr3 & 0xFFFFFFE0u, pdpte, sizeof pdpte) != 0)
		return -1;
	for (unsigned i = 0; i < 4; i++)
		if ((pdpte[i] & PDPTE_P) && (pdpte[i] & 0x1E6)) /* bits 2:1, 8:5 reserved */
			return -1;
	for (unsigned i = 0; i < 4; i++)
		vmx_write(VMCS_GUEST_PDPTE0 + 2 * i, pdpte[i]);
	return 0;
}

/* MOV to CR0 (and CLTS, LMSW): SDM vol. 2B "MOV—Move to/from Control Registers"
 * #GP conditions, then the IA-32e mode transitions CR0.PG makes (vol. 3A, 9.8.5
 * "Initializing IA-32e Mode"): with EFER.LME, setting PG activates IA-32e mode
 * (EFER.LMA, and the "IA-32e mode guest" entry control that must match it, vol.
 * 3C 26.3.1.1); clearing it deactivates it. */
static int guest_write_cr0(uint64_t val)
{
	uint64_t old = cr_guest_cr0(), cr4 = cr_guest_cr4();
	if ((val & HIGH_32_BITS) || ((val & CR0_PG) && !(val & CR0_PE)) ||
	    ((val & CR0_NW) && !(val & CR0_CD)))
		return -1;
	if ((old ^ val) & CR0_PG && (vmx_caps.entry & ENTRY_LOAD_EFER)) {
		uint64_t efer = vmx_read(VMCS_GUEST_EFER), entry = vmx_read(VMCS_ENTRY_CTLS);
		if ((val & CR0_PG) && (efer & EFER_LME)) {
			if (!(cr4 & CR4_PAE))
				return -1;
			efer |= EFER_LMA;
			entry |= ENTRY_IA32E_GUEST;
		} else if (!(val & CR0_PG) && (efer & EFER_LMA)) {
			if (in_64bit_code())
				return -1; /* only from compatibility mode */
			efer &= ~EFER_LMA;
			entry &= ~(uint64_t)ENTRY_IA32E_GUEST;
		}
		vmx_write(VMCS_GUEST_EFER, efer);
		vmx_write(VMCS_ENTRY_CTLS, entry);
	}
	if (load_pdptes(val, vmx_read(VMCS_GUEST_CR3), cr4) != 0)
		return -1;
	/* VM entry never loads CR0.CD and NW (SDM vol. 3C, 26.3.2.1) and VM exit
	 * never changes them (27.5.1): root and guest share them, so the guest's
	 * value goes into the real CR0 here. */
	uint64_t host = read_cr0();
	if ((host ^ val) & (CR0_CD | CR0_NW))
		write_cr0((host & ~(CR0_CD | CR0_NW)) | (val & (CR0_CD | CR0_NW)));
	vmx_write(VMCS_CR0_SHADOW, val);
	vmx_write(VMCS_GUEST_CR0, (val | fix.cr0_set) & fix.cr0_keep);
	return 0;
}

/* MOV to CR4: #GP for bits the CPU lacks, CR4.VMXE (VMX is hidden), clearing PAE
 * in IA-32e mode, or setting PCIDE outside IA-32e mode or with CR3[11:0] != 0. */
static int guest_write_cr4(uint64_t val)
{
	uint64_t old = cr_guest_cr4();
	if ((val & ~fix.cr4_keep) || (val & CR4_VMXE))
		return -1;
	if (guest_long_mode() && !(val & CR4_PAE))
		return -1;
	if ((val & CR4_PCIDE) && !(old & CR4_PCIDE) &&
	    (!guest_long_mode() || (vmx_read(VMCS_GUEST_CR3) & 0xFFF)))
		return -1;
	if (load_pdptes(cr_guest_cr0(), vmx_read(VMCS_GUEST_CR3), val) != 0)
		return -1;
	vmx_write(VMCS_CR4_SHADOW, val);
	vmx_write(VMCS_GUEST_CR4, (val | fix.cr4_set) & fix.cr4_keep);
	return 0;
}

/* MOV to CR3 (with CR3-load exiting): bit 63 with CR4.PCIDE asks for no flush and
 * is not stored (vol. 3A, 4.10.4.1).  Without VPID every VM entry flushes this
 * guest's linear translations anyway (vol. 3C, 28.3.3.3). */
static int guest_write_cr3(uint64_t val)
{
	if (cr_guest_cr4() & CR4_PCIDE)
		val &= ~CR3_NOFLUSH;
	if (load_pdptes(cr_guest_cr0(), val, cr_guest_cr4()) != 0)
		return -1;
	vmx_write(VMCS_GUEST_CR3, val);
	return 0;
}

static uint64_t read_cr8(void)
{
	uint64_t v;
	__asm__ __volatile__("mov %%cr8, %0" : "=r"(v));
	return v;
}

static void write_cr8(uint64_t v)
{
	__asm__ __volatile__("mov %0, %%cr8" ::"r"(v) : "memory");
}

static _Noreturn void unhandled(struct vmexit *x, uint64_t q)
{
	kprintf("vmx: control-register access not emulated (qualification 0x%lx)\n", q);
	guest_fail("unhandled control-register access", x->r);
}

/* Control-register access (reason 28). */
void exit_cr_access(struct vmexit *x)
{
	uint64_t q = vmx_read(VMCS_EXIT_QUAL);
	unsigned cr = QUAL_CR(q), gpr = QUAL_GPR(q);
	/* Outside 64-bit mode MOV CR uses 32-bit operands (vol. 2B, MOV CR). */
	uint64_t width = in_64bit_code() ? ~0ull : 0xFFFFFFFFull;
	int rc = 0;
	switch (QUAL_TYPE(q)) {
	case TYPE_MOV_TO: {
		uint64_t val = guest_gpr(x->r, gpr) & width;
		if (cr == 0)
			rc = guest_write_cr0(val);
		else if (cr == 3)
			rc = guest_write_cr3(val);
		else if (cr == 4)
			rc = guest_write_cr4(val);
		else if (cr == 8)
			write_cr8(val);
		else
			unhandled(x, q);
		break;
	}
	case TYPE_MOV_FROM:
		if (cr == 3)
			guest_set_gpr(x->r, gpr, vmx_read(VMCS_GUEST_CR3) & width);
		else if (cr == 8)
			guest_set_gpr(x->r, gpr, read_cr8());
		else
			unhandled(x, q); /* CR0/CR4 reads never exit */
		break;
	case TYPE_CLTS: rc = guest_write_cr0(cr_guest_cr0() & ~CR0_TS); break;
	case TYPE_LMSW: {
		/* LMSW loads PE, MP, EM, TS and never clears PE (vol. 2A, LMSW). */
		uint64_t src = QUAL_LMSW_SRC(q) & (CR0_PE | CR0_MP | CR0_EM | CR0_TS);
		uint64_t old = cr_guest_cr0();
		rc = guest_write_cr0((old & ~(CR0_MP | CR0_EM | CR0_TS)) | src);
		break;
	}
	}
	if (rc) {
		vmx_inject_exception(VEC_GP, 1, 0);
		return;
	}
	vmx_skip_instruction();
}
