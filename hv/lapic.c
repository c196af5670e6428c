/* SPDX-License-Identifier: MIT */
/*
 * lapic.c - the local APIC: xAPIC (MMIO) by default, x2APIC (MSRs) with the
 * command line's x2apic=1 where the CPU offers it (CPUID.1:ECX bit 21).  x2APIC
 * is not the default because a guest that is given the LAPIC by pass-through
 * programs it through the xAPIC page, which x2APIC mode disables.
 *
 * LINT1 is programmed for NMI delivery on the BSP only: QEMU's QMP inject-nmi
 * raises LINT1 on every CPU whose LINT1 is unmasked, and the tests want those NMIs
 * on CPU 0 alone.  The BIOS leaves LINT0/LINT1 masked.  Interrupts stay disabled
 * (IF=0), so only NMIs (LINT1 and NMI IPIs) ever arrive.
 */
#include "hv.h"
#include "x86.h"

#define LAPIC_BASE 0xFEE00000ul

#define APIC_BASE_EXTD   (1u << 10) /* x2APIC mode */
#define APIC_BASE_ENABLE (1u << 11)
#define CPUID1_X2APIC    (1u << 21)

#define REG_ID        0x020
#define REG_SVR       0x0F0
#define REG_ICR_LO    0x300
#define REG_ICR_HI    0x310
#define REG_LVT_LINT0 0x350
#define REG_LVT_LINT1 0x360

#define SVR_ENABLE (1u << 8)
#define LVT_MASKED (1u << 16)
#define LVT_NMI    (4u << 8)
#define ICR_BUSY   (1u << 12)

/* Chosen by the BSP before any AP starts; every CPU then switches its own LAPIC. */
static int x2apic;

static inline uint32_t rd(unsigned reg)
{
	return x2apic ? (uint32_t)rdmsr(MSR_X2APIC + (reg >> 4)) : mmio_read32(LAPIC_BASE + reg);
}
static inline void wr(unsigned reg, uint32_t v)
{
	if (x2apic)
		wrmsr(MSR_X2APIC + (reg >> 4), v);
	else
		mmio_write32(LAPIC_BASE + reg, v);
}

void lapic_init(int bsp)
{
	if (bsp && cmdline_u64("x2apic", 0)) {
		uint32_t a, b, c, d;
		cpuid(1, &a, &b, &c, &d);
		x2apic = (c & CPUID1_X2APIC) != 0;
		kprintf("lapic: %s\n", x2apic ? "x2APIC mode" : "x2APIC not offered, xAPIC mode");
	}
	/* Global enable first: xAPIC -> x2APIC must pass through enabled xAPIC. */
	wrmsr(MSR_APIC_BASE, rdmsr(MSR_APIC_BASE) | APIC_BASE_ENABLE);
	if (x2apic)
		wrmsr(MSR_APIC_BASE, rdmsr(MSR_APIC_BASE) | APIC_BASE_EXTD);
	wr(REG_SVR, SVR_ENABLE | 0xFF);
	wr(REG_LVT_LINT0, LVT_MASKED);
	wr(REG_LVT_LINT1, bsp ? LVT_NMI : LVT_MASKED);
}

int lapic_x2apic(void)
{
	return x2apic;
}

/* This CPU's APIC ID, whatever mode its LAPIC is in yet (an AP asks before its
 * lapic_init). */
uint32_t lapic_id(void)
{
	if (rdmsr(MSR_APIC_BASE) & APIC_BASE_EXTD)
		return (uint32_t)rdmsr(MSR_X2APIC + (REG_ID >> 4));
	return mmio_read32(LAPIC_BASE + REG_ID) >> 24;
}

/*
 * Send an IPI.  Callable from NMI context even when the interrupted code was in
 * the middle of its own lapic_send_ipi(): the destination register is restored
 * before returning, so the interrupted sender's ICR_LO write still goes to the
 * destination it had written (nested senders restore in LIFO order).
 */
void lapic_send_ipi(uint32_t apic_id, uint32_t icr_low)
{
	if (x2apic) {
		/* One 64-bit MSR write: destination and command cannot be torn apart
		 * by a nested sender, and there is no delivery-status bit to poll. */
		wrmsr(MSR_X2APIC_ICR, (uint64_t)apic_id << 32 | icr_low);
		return;
	}
	while (rd(REG_ICR_LO) & ICR_BUSY)
		cpu_pause();
	uint32_t saved_hi = rd(REG_ICR_HI);
	wr(REG_ICR_HI, apic_id << 24);
	wr(REG_ICR_LO, icr_low);
	while (rd(REG_ICR_LO) & ICR_BUSY)
		cpu_pause();
	wr(REG_ICR_HI, saved_hi);
}
