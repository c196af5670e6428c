/* SPDX-License-Identifier: MIT */
/*
 * msr.c - the guest's RDMSR and WRMSR.
 *
 * Through the MSR bitmap (SDM vol. 3C, 24.6.9 "MSR-Bitmap Address"; 25.1.3
 * "Instructions That Cause VM Exits Conditionally") every MSR in the two ranges
 * the bitmap covers passes through, except the list below, whose accesses exit
 * (reasons 31 and 32) and are emulated here.  An MSR outside those ranges always
 * exits; it gets #GP, as an MSR a CPU does not implement does.
 *
 *   MSR                          read                       write
 *   0x3A IA32_FEATURE_CONTROL    lock bit set, VMX off      #GP (a locked MSR)
 *   0x480-0x493 IA32_VMX_*       #GP                        #GP (a CPU without VMX)
 *   0x9B IA32_SMM_MONITOR_CTL    #GP                        #GP (idem)
 *   0x1B IA32_APIC_BASE          EN as the guest set it     apic_base.c: a global
 *                                                           disable/re-enable
 *                                                           virtualized; #GP for a new
 *                                                           base or mode
 *   0x79 IA32_BIOS_UPDT_TRIG     passes through             ignored: no microcode update
 *                                                           under the hypervisor (the
 *                                                           guest reads the revision
 *                                                           unchanged, as after an
 *                                                           update the CPU refused)
 *   0x10 IA32_TSC                passes through             ignored (the hypervisor's
 *                                                           clock is this TSC)
 *   0x3B IA32_TSC_ADJUST         the guest's value          kept, not written (idem)
 *   0x560-0x561, 0x570-0x572,    #GP                        #GP (Intel PT would trace
 *   0x580-0x587 Intel PT                                    the hypervisor; CPUID
 *                                                           hides PT)
 *   0xC0000080 IA32_EFER         passes through (the VMCS   emulated into the guest
 *                                loads and saves it)        EFER field
 *   0x830 x2APIC ICR             passes through             apic_icr_write()
 *
 * The bitmap is one for all guest CPUs; msr_intercept() and msr_register() change
 * it before the guest starts.
 */
#include "foreign.h"
#include "hv.h"
#include "x86.h"

#define MSR_SMM_MONITOR_CTL 0x09Bu
#define MSR_VMX_FIRST       MSR_VMX_BASIC
#define MSR_VMX_LAST        0x493u /* IA32_VMX_EXIT_CTLS2 (0x492: PROCBASED_CTLS3) */
#define MSR_TSC             0x010u
#define MSR_TSC_ADJUST      0x03Bu
#define MSR_BIOS_UPDT_TRIG  0x079u
#define MSR_RTIT_OUT_FIRST  0x560u /* Intel PT: output base, mask */
#define MSR_RTIT_OUT_LAST   0x561u
#define MSR_RTIT_CTL_FIRST  0x570u /* control, status, CR3 match */
#define MSR_RTIT_CTL_LAST   0x572u
#define MSR_RTIT_ADDR_FIRST 0x580u /* address ranges 0-3, A and B */
#define MSR_RTIT_ADDR_LAST  0x587u
#define LOW_LAST            0x00001FFFu
#define HIGH_FIRST          0xC0000000u
#define HIGH_LAST           0xC0001FFFu
#define VEC_GP              13

#define FC_SENTER_BITS (0x7Full << 8) /* SENTER local functions, SENTER enable */
#define FC_VMX_BITS    ((1ull << 1) | (1ull << 2)) /* VMXON inside/outside SMX */

#define APIC_BASE_EXTD (1ull << 10)

#define EFER_SCE   (1ull << 0)
#define EFER_LME   (1ull << 8)
#define EFER_LMA   (1ull << 10)
#define EFER_NXE   (1ull << 11)
#define CPUID_EXT1 0x80000001u
#define EXT1_SCE   (1u << 11) /* CPUID.80000001H:EDX: SYSCALL/SYSRET */
#define EXT1_NX    (1u << 20)
#define EXT1_LM    (1u << 29)

#define MAX_RULES 32

/* The MSR bitmap: read low, read high, write low, write high, 1 KiB each. */
static uint8_t bitmap[4096] __attribute__((aligned(4096)));

static struct msr_rule {
	uint32_t first, last;
	msr_read_fn *read; /* NULL: reads pass through */
	msr_write_fn *write; /* NULL: writes pass through */
} rules[MAX_RULES];
static unsigned nrules;

static int gp_read(uint32_t msr, uint64_t *val)
{
	(void)msr;
	(void)val;
	return -1;
}

static int gp_write(uint32_t msr, uint64_t val)
{
	(void)msr;
	(void)val;
	return -1;
}

/* Locked, VMXON disabled inside and outside SMX, no SENTER: what the firmware of
 * a CPU without VMX leaves (SDM vol. 3C, 23.7 "Enabling and Entering VMX
 * Operation").  The other bits (LMCE, SGX...) are the real ones. */
static int feature_control_read(uint32_t msr, uint64_t *val)
{
	*val = (rdmsr(msr) & ~(FC_VMX_BITS | FC_SENTER_BITS)) | FC_LOCK;
	return 0;
}

/* IA32_TSC and IA32_TSC_ADJUST (SDM vol. 3B, 17.17.3 "Time-Stamp Counter
 * Adjustment"): the hypervisor's clock (time.c) is this CPU's TSC, and a guest
 * that moves it back would stretch every timeout of the hypervisor.  Writes of
 * the TSC are ignored; TSC_ADJUST keeps the guest's value for the guest to read
 * back, without touching the real one.  (A guest that needs its TSC moved would
 * need TSC offsetting, not used.) */
static uint64_t tsc_adjust[MAX_CPUS];
static uint8_t tsc_adjust_written[MAX_CPUS];

static int ignore_write(uint32_t msr, uint64_t val)
{
	(void)msr;
	(void)val;
	return 0;
}

static int tsc_adjust_read(uint32_t msr, uint64_t *val)
{
	unsigned me = this_percpu()->index;
	*val = tsc_adjust_written[me] ? tsc_adjust[me] : rdmsr(msr);
	return 0;
}

static int tsc_adjust_write(uint32_t msr, uint64_t val)
{
	(void)msr;
	unsigned me = this_percpu()->index;
	tsc_adjust[me] = val;
	tsc_adjust_written[me] = 1;
	return 0;
}

/* WRMSR to IA32_EFER (SDM vol. 3A, 2.2.1 "Extended Feature Enable Register";
 * vol. 2B WRMSR: #GP for reserved bits or a change of LME while paging is on).
 * LMA is read-only: it keeps its value.  The guest's EFER lives in the VMCS
 * ("load IA32_EFER" on entry, "save IA32_EFER" on exit), and the "IA-32e mode
 * guest" entry control must equal its LMA (SDM vol. 3C, 26.2.4 / 26.3.1.1). */
static int efer_write(uint32_t msr, uint64_t val)
{
	(void)msr;
	if (!(vmx_caps.entry & ENTRY_LOAD_EFER) || !(vmx_caps.exit & EXIT_SAVE_EFER)) {
		kprintf("vmx: guest WRMSR IA32_EFER 0x%lx: this CPU lacks the load/save "
			"IA32_EFER controls\n",
			val);
		return -1;
	}
	uint32_t a, b, c, d;
	cpuid(CPUID_EXT1, &a, &b, &c, &d);
	uint64_t allowed = EFER_LMA | ((d & EXT1_SCE) ? EFER_SCE : 0) |
			   ((d & EXT1_NX) ? EFER_NXE : 0) | ((d & EXT1_LM) ? EFER_LME : 0);
	uint64_t cur = vmx_read(VMCS_GUEST_EFER);
	if (val & ~allowed)
		return -1;
	if (((val ^ cur) & EFER_LME) && (vmx_read(VMCS_GUEST_CR0) & CR0_PG))
		return -1;
	uint64_t efer = (val & ~EFER_LMA) | (cur & EFER_LMA);
	vmx_write(VMCS_GUEST_EFER, efer);
	uint64_t entry = vmx_read(VMCS_ENTRY_CTLS) & ~(uint64_t)ENTRY_IA32E_GUEST;
	vmx_write(VMCS_ENTRY_CTLS, entry | ((efer & EFER_LMA) ? ENTRY_IA32E_GUEST : 0));
	return 0;
}

/* x2APIC mode only: in xAPIC mode the MSR does not exist (#GP), and WRMSR of it
 * in root operation would fault the hypervisor. */
static int x2apic_icr_write(uint32_t msr, uint64_t val)
{
	(void)msr;
	if (!(rdmsr(MSR_APIC_BASE) & APIC_BASE_EXTD))
		return -1;
	return apic_icr_write(val); /* lapic_guard.c: INITs through guest_init.c */
}

/* Where `msr`'s read bit is (its write bit is 2048 bytes further); -1 outside
 * the two ranges the bitmap covers. */
static int bit_index(uint32_t msr, unsigned *byte, uint8_t *mask)
{
	uint32_t off;
	if (msr <= LOW_LAST)
		off = 0;
	else if (msr >= HIGH_FIRST && msr <= HIGH_LAST)
		off = 1024;
	else
		return -1;
	uint32_t n = msr & LOW_LAST;
	*byte = off + n / 8;
	*mask = (uint8_t)(1u << (n % 8));
	return 0;
}

void msr_intercept(uint32_t msr, int read, int write)
{
	unsigned byte;
	uint8_t mask;
	if (bit_index(msr, &byte, &mask) != 0)
		return; /* outside the bitmap: every access exits anyway */
	bitmap[byte] = read ? bitmap[byte] | mask : bitmap[byte] & (uint8_t)~mask;
	bitmap[byte + 2048] =
	    write ? bitmap[byte + 2048] | mask : bitmap[byte + 2048] & (uint8_t)~mask;
}

void msr_register(uint32_t first, uint32_t last, msr_read_fn *read, msr_write_fn *write)
{
	if (nrules == MAX_RULES) {
		panic_begin();
		panic_printf("vmx: more than %u MSR rules\nRESULT: FAIL vmx setup\n", MAX_RULES);
		hv_exit(1);
	}
	rules[nrules++] = (struct msr_rule){first, last, read, write};
	for (uint64_t m = first; m <= last; m++)
		msr_intercept((uint32_t)m, read != 0, write != 0);
}

uint64_t msr_bitmap_init(void)
{
	static int done;
	if (!done) {
		done = 1;
		msr_register(MSR_FEATURE_CONTROL, MSR_FEATURE_CONTROL, feature_control_read,
			     gp_write);
		msr_register(MSR_VMX_FIRST, MSR_VMX_LAST, gp_read, gp_write);
		msr_register(MSR_SMM_MONITOR_CTL, MSR_SMM_MONITOR_CTL, gp_read, gp_write);
		msr_register(MSR_APIC_BASE, MSR_APIC_BASE, apic_base_read, apic_base_write);
		msr_register(MSR_BIOS_UPDT_TRIG, MSR_BIOS_UPDT_TRIG, 0, ignore_write);
		msr_register(MSR_TSC, MSR_TSC, 0, ignore_write);
		msr_register(MSR_TSC_ADJUST, MSR_TSC_ADJUST, tsc_adjust_read, tsc_adjust_write);
		msr_register(MSR_RTIT_OUT_FIRST, MSR_RTIT_OUT_LAST, gp_read, gp_write);
		msr_register(MSR_RTIT_CTL_FIRST, MSR_RTIT_CTL_LAST, gp_read, gp_write);
		msr_register(MSR_RTIT_ADDR_FIRST, MSR_RTIT_ADDR_LAST, gp_read, gp_write);
		msr_register(MSR_EFER, MSR_EFER, 0, efer_write);
		msr_register(MSR_X2APIC_ICR, MSR_X2APIC_ICR, 0, x2apic_icr_write);
	}
	return (uint64_t)bitmap;
}

static const struct msr_rule *find(uint32_t msr)
{
	for (unsigned i = 0; i < nrules; i++)
		if (msr >= rules[i].first && msr <= rules[i].last)
			return &rules[i];
	return 0;
}

static int outside_bitmap(uint32_t msr)
{
	unsigned byte;
	uint8_t mask;
	return bit_index(msr, &byte, &mask) != 0;
}

/* An MSR exit no rule covers: intercepted by msr_intercept() without a handler.
 * A hypervisor that cannot say what the access should do stops the guest. */
static _Noreturn void unhandled(struct vmexit *x, const char *what, uint32_t msr)
{
	kprintf("vmx: %s of MSR 0x%x intercepted without a handler\n", what, msr);
	guest_fail("unhandled MSR access", x->r);
}

/* Both MSR exits, one path: the rule's handler, or #GP for an MSR outside the
 * bitmap's ranges (it always exits; a CPU that does not implement an MSR faults).
 * Returns 0 when the access is done; otherwise #GP is queued, a fault: RIP stays
 * on the instruction.  ECX = MSR; *val is the value read, or the one to write. */
static int msr_access(struct vmexit *x, int write, uint64_t *val)
{
	uint32_t msr = (uint32_t)x->r->rcx;
	const struct msr_rule *rule = find(msr);
	int rc;
	if (rule && (write ? rule->write != 0 : rule->read != 0))
		rc = write ? rule->write(msr, *val) : rule->read(msr, val);
	else if (outside_bitmap(msr))
		rc = -1;
	else
		unhandled(x, write ? "WRMSR" : "RDMSR", msr);
	if (rc)
		vmx_inject_exception(VEC_GP, 1, 0);
	return rc;
}

/* RDMSR (reason 31): the value in EDX:EAX (SDM vol. 2B, RDMSR). */
void exit_rdmsr(struct vmexit *x)
{
	uint64_t val = 0;
	if (msr_access(x, 0, &val))
		return;
	x->r->rax = (uint32_t)val;
	x->r->rdx = (uint32_t)(val >> 32);
	vmx_skip_instruction();
}

/* WRMSR (reason 32): EDX:EAX = value. */
void exit_wrmsr(struct vmexit *x)
{
	uint64_t val = ((uint64_t)(uint32_t)x->r->rdx << 32) | (uint32_t)x->r->rax;
	if (msr_access(x, 1, &val) == 0)
		vmx_skip_instruction();
}
