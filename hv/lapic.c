/* SPDX-License-Identifier: MIT */
/*
 * lapic.c - the local APIC in xAPIC (MMIO) mode.
 *
 * LINT1 is programmed for NMI delivery on the BSP only: QEMU's QMP inject-nmi
 * raises LINT1 on every CPU whose LINT1 is unmasked, and the tests want those NMIs
 * on CPU 0 alone.  The BIOS leaves LINT0/LINT1 masked.  Interrupts stay disabled
 * (IF=0), so only NMIs (LINT1 and NMI IPIs) ever arrive.
 */
#include "hv.h"
#include "x86.h"

#define LAPIC_BASE    0xFEE00000ul
#define MSR_APIC_BASE 0x1Bu

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

static inline uint32_t rd(unsigned reg)
{
	return mmio_read32(LAPIC_BASE + reg);
}
static inline void wr(unsigned reg, uint32_t v)
{
	mmio_write32(LAPIC_BASE + reg, v);
}

void lapic_init(int bsp)
{
	wrmsr(MSR_APIC_BASE, rdmsr(MSR_APIC_BASE) | (1u << 11)); /* global enable, xAPIC */
	wr(REG_SVR, SVR_ENABLE | 0xFF);
	wr(REG_LVT_LINT0, LVT_MASKED);
	wr(REG_LVT_LINT1, bsp ? LVT_NMI : LVT_MASKED);
}

uint32_t lapic_id(void)
{
	return rd(REG_ID) >> 24;
}

/*
 * Send an IPI.  Callable from NMI context even when the interrupted code was in
 * the middle of its own lapic_send_ipi(): the destination register is restored
 * before returning, so the interrupted sender's ICR_LO write still goes to the
 * destination it had written (nested senders restore in LIFO order).
 */
void lapic_send_ipi(uint32_t apic_id, uint32_t icr_low)
{
	while (rd(REG_ICR_LO) & ICR_BUSY)
		cpu_pause();
	uint32_t saved_hi = rd(REG_ICR_HI);
	wr(REG_ICR_HI, apic_id << 24);
	wr(REG_ICR_LO, icr_low);
	while (rd(REG_ICR_LO) & ICR_BUSY)
		cpu_pause();
	wr(REG_ICR_HI, saved_hi);
}
