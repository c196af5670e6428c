/* SPDX-License-Identifier: MIT */
/*
 * apic_base.c - IA32_APIC_BASE (MSR 0x1B) as the guest sees it.
 *
 * The guest owns its local APIC (pass-through), but the hypervisor sends its own
 * NMIs (stop-the-world, the test jobs) through the same LAPIC, in the mode it
 * chose (lapic.c): the LAPIC must never really be disabled, moved or switched.
 * Yet a common reset sequence in test kernels is a global disable and re-enable:
 * WRMSR APIC_BASE with EN (bit 11) clear, then set again.  Bochs 2.7 ignores every
 * later write once one has cleared EN ("WRMSR: MSR_APICBASE APIC global enable bit
 * cleared !"), so the APIC stays gone (its registers read 0xFFFFFFFF and an ICR
 * busy-wait spins forever); on a real CPU the hypervisor's NMIs would be gone.
 *
 * So the global enable flag is virtualized per CPU (workaround
 * `apic_base_virtual_enable`, docs/emulator-deviations.md):
 *   - a write that clears EN (EXTD clear too) marks the guest's APIC disabled and
 *     leaves the real one alone; reads then show EN = 0 (SDM vol. 3A, 10.4.3
 *     "Enabling or Disabling the Local APIC": with EN = 0 the processor is
 *     functionally one without an APIC, and CPUID.1:EDX.APIC (bit 9) reads 0,
 *     cpuid.c);
 *   - a write that sets EN again re-enables it and puts the registers the guest
 *     can write into their power-up state (10.4.3: "the APIC may return to the
 *     state described in Section 10.4.7.1"; the values of 10.12.5.1: TPR, LDR,
 *     timer and divide configuration 0, DFR all ones, every LVT masked, SVR 0xFF,
 *     that is, software-disabled until the guest sets it up again);
 *   - the rest as the hardware checks it (vol. 2B WRMSR, 10.4.4, 10.12.5): #GP for
 *     reserved bits, for EN = 0 with EXTD = 1 (the invalid state) and for the
 *     transitions figure 10-11 forbids (x2APIC -> xAPIC, disabled -> x2APIC);
 *     since the hypervisor's LAPIC cannot change, #GP for a new base address and
 *     for x2APIC under an xAPIC hypervisor (CPUID shows x2APIC only when the
 *     hypervisor runs it).  Under an x2APIC hypervisor the way back from disabled
 *     passes through xAPIC as figure 10-11 wants: kept virtual (the guest's xAPIC
 *     page reaches nothing meanwhile) until EXTD is set again.  The BSP flag is
 *     read-only.
 * While the guest's APIC is virtually disabled its MMIO page still reaches the real
 * LAPIC (a real disabled APIC would not answer there): only guests that touch an
 * APIC they disabled could tell.
 */
#include "foreign.h"
#include "hv.h"
#include "x86.h"

#define APIC_BASE_BSP      (1ull << 8)
#define APIC_BASE_EXTD     (1ull << 10)
#define APIC_BASE_EN       (1ull << 11)
#define APIC_BASE_ADDR     0x000FFFFFFFFFF000ull
#define APIC_BASE_RESERVED (~(APIC_BASE_ADDR | APIC_BASE_EN | APIC_BASE_EXTD | APIC_BASE_BSP))
#define LAPIC_MMIO         0xFEE00000ul

/* xAPIC register offsets (10.4.1, table 10-1); x2APIC MSR = 0x800 + offset / 16. */
#define REG_TPR       0x080
#define REG_LDR       0x0D0
#define REG_DFR       0x0E0
#define REG_SVR       0x0F0
#define REG_LVT_TMR   0x320
#define REG_LVT_THM   0x330
#define REG_LVT_PMC   0x340
#define REG_LVT_LINT0 0x350
#define REG_LVT_LINT1 0x360
#define REG_LVT_ERR   0x370
#define REG_TMR_ICR   0x380
#define REG_TMR_DCR   0x3E0
#define LVT_MASKED    (1u << 16)

/* Per CPU: the APIC's mode as the guest set it (0: not set yet, the real one). */
enum { MODE_REAL, MODE_DISABLED, MODE_XAPIC, MODE_X2APIC };
static volatile uint8_t guest_mode[MAX_CPUS];
static uint64_t disables, enables; /* for the report */

static unsigned mode_of(uint64_t v)
{
	if (!(v & APIC_BASE_EN))
		return MODE_DISABLED;
	return (v & APIC_BASE_EXTD) ? MODE_X2APIC : MODE_XAPIC;
}

static unsigned current_mode(uint64_t real)
{
	unsigned m = guest_mode[this_percpu()->index];
	return m == MODE_REAL ? mode_of(real) : m;
}

static void reg_write(unsigned reg, uint32_t v)
{
	if (lapic_x2apic()) {
		if (reg == REG_DFR || reg == REG_LDR)
			return; /* no DFR in x2APIC mode, LDR read-only */
		wrmsr(MSR_X2APIC + (reg >> 4), v);
	} else {
		mmio_write32(LAPIC_MMIO + reg, v);
	}
}

/* The registers a guest programs, as after power-up or reset (10.12.5.1). */
static void reset_guest_lapic(void)
{
	static const unsigned lvts[] = {REG_LVT_TMR,   REG_LVT_THM,   REG_LVT_PMC,
					REG_LVT_LINT0, REG_LVT_LINT1, REG_LVT_ERR};
	reg_write(REG_TMR_ICR, 0);
	for (unsigned i = 0; i < sizeof lvts / sizeof lvts[0]; i++)
		reg_write(lvts[i], LVT_MASKED);
	reg_write(REG_TMR_DCR, 0);
	reg_write(REG_TPR, 0);
	reg_write(REG_LDR, 0);
	reg_write(REG_DFR, 0xFFFFFFFFu);
	reg_write(REG_SVR, 0xFF);
}

int apic_base_read(uint32_t msr, uint64_t *val)
{
	uint64_t real = rdmsr(msr);
	unsigned m = current_mode(real);
	*val = (real & ~(APIC_BASE_EN | APIC_BASE_EXTD)) |
	       (m == MODE_X2APIC  ? APIC_BASE_EN | APIC_BASE_EXTD
		: m == MODE_XAPIC ? APIC_BASE_EN
				  : 0);
	return 0;
}

/* The transitions of SDM vol. 3A 10.12.5 (figure 10-11): xAPIC -> x2APIC,
 * xAPIC or x2APIC -> disabled, disabled -> xAPIC; anything else #GPs, as does the
 * invalid EN = 0, EXTD = 1. */
static int valid_transition(unsigned from, unsigned to)
{
	return from == to || (from == MODE_XAPIC && to == MODE_X2APIC) || to == MODE_DISABLED ||
	       (from == MODE_DISABLED && to == MODE_XAPIC);
}

int apic_base_write(uint32_t msr, uint64_t val)
{
	uint64_t real = rdmsr(msr);
	unsigned me = this_percpu()->index, hv = mode_of(real), from = current_mode(real);
	if (val & APIC_BASE_RESERVED)
		return -1;
	if ((val & APIC_BASE_ADDR) != (real & APIC_BASE_ADDR))
		return -1; /* the hypervisor's LAPIC does not move */
	if (!(val & APIC_BASE_EN) && (val & APIC_BASE_EXTD))
		return -1; /* EN = 0, EXTD = 1: the invalid state */
	unsigned to = mode_of(val);
	if (!valid_transition(from, to))
		return -1;
	/* x2APIC only where the hypervisor runs it (CPUID shows x2APIC only then);
	 * xAPIC under an x2APIC hypervisor only on the way back from disabled (its
	 * MMIO page reaches nothing meanwhile). */
	if (to == MODE_X2APIC && hv != MODE_X2APIC)
		return -1;
	if (to == MODE_XAPIC && hv == MODE_X2APIC && from != MODE_DISABLED && from != MODE_XAPIC)
		return -1;
	if (to == MODE_DISABLED && from != MODE_DISABLED)
		__atomic_fetch_add(&disables, 1, __ATOMIC_RELAXED);
	if (to == hv && from != hv) {
		/* Back in the hypervisor's mode after a disable: the registers as at
		 * power-up (10.4.3, 10.12.5.1). */
		reset_guest_lapic();
		__atomic_fetch_add(&enables, 1, __ATOMIC_RELAXED);
	}
	guest_mode[me] = (uint8_t)(to == hv ? MODE_REAL : to);
	return 0;
}

int apic_base_guest_disabled(void)
{
	return current_mode(rdmsr(MSR_APIC_BASE)) == MODE_DISABLED;
}

void apic_base_report(void)
{
	if (disables || enables)
		kprintf("vmx: guest IA32_APIC_BASE: %lu global disable(s), %lu re-enable(s) "
			"virtualized (the real LAPIC stayed enabled)\n",
			disables, enables);
}
