/* SPDX-License-Identifier: MIT */
/*
 * watchdog.c - `watchdog_ms=N`: every N ms of guest time, each guest CPU leaves
 * its guest through the VMX-preemption timer (pin-based control bit 6, exit
 * reason 52; SDM vol. 3C, 25.5.1 "VMX-Preemption Timer") and prints one line of
 * state: where the guest is, whether it can take interrupts and NMIs, its local
 * APIC's in-service and request registers, and the NMI core's view.  A guest that
 * stops making progress (every CPU halted, no interrupt ever arriving) is then
 * seen from outside instead of hanging silently.  Off by default: it costs an
 * exit per period per CPU.
 *
 * The timer counts down at the TSC rate shifted right by IA32_VMX_MISC[4:0]; it is
 * reloaded from the VMCS field at every VM entry (its value is not saved at
 * exits), so the period restarts at each entry and a busy guest prints less.
 */
#include "hv.h"
#include "x86.h"

#define LAPIC            0xFEE00000ul
#define REG_TPR          0x080u
#define REG_PPR          0x0A0u
#define REG_ISR          0x100u
#define REG_IRR          0x200u
#define REG_LVT_TIMER    0x320u
#define MSR_TSC_DEADLINE 0x6E0u
#define MISC_RATE_MASK   0x1Fu

static uint32_t ticks; /* the timer's value at each VM entry: 0 = off */

uint32_t watchdog_pin_control(void)
{
	uint64_t ms = cmdline_u64("watchdog_ms", 0);
	if (!ms || !(vmx_caps.pin_may & PIN_PREEMPT_TIMER))
		return 0;
	uint64_t t = ms * 1000 * time_tsc_per_us() >> (vmx_caps.misc & MISC_RATE_MASK);
	ticks = t > 0xFFFFFFFFu ? 0xFFFFFFFFu : (uint32_t)t;
	return PIN_PREEMPT_TIMER;
}

void watchdog_setup_vmcs(void)
{
	if (ticks)
		vmx_write(VMCS_PREEMPT_TIMER, ticks);
}

/* The highest set bit of an 8 x 32-bit APIC bitmap (ISR, IRR), or -1. */
static int highest(unsigned reg)
{
	for (int i = 7; i >= 0; i--) {
		uint32_t v = mmio_read32(LAPIC + reg + 16u * (unsigned)i);
		for (int b = 31; b >= 0; b--)
			if (v & (1u << b))
				return i * 32 + b;
	}
	return -1;
}

void exit_preemption_timer(struct vmexit *x)
{
	(void)x;
	struct percpu *p = this_percpu();
	const struct nmi_cpu *c = &p->nmi;
	kprintf("watchdog: cpu %u: rip 0x%lx rflags 0x%lx activity %lu interruptibility 0x%lx "
		"proc 0x%lx | lapic tpr 0x%x ppr 0x%x isr %d irr %d lvt_timer 0x%x "
		"tsc_deadline_in %ld | core pending %u visited %u injected %lu exits %lu\n",
		p->index, vmx_read(VMCS_GUEST_RIP), vmx_read(VMCS_GUEST_RFLAGS),
		vmx_read(VMCS_GUEST_ACTIVITY), vmx_read(VMCS_GUEST_INTERRUPTIBILITY),
		vmx_read(VMCS_PROC_BASED_CTLS), mmio_read32(LAPIC + REG_TPR),
		mmio_read32(LAPIC + REG_PPR), highest(REG_ISR), highest(REG_IRR),
		mmio_read32(LAPIC + REG_LVT_TIMER),
		rdmsr(MSR_TSC_DEADLINE) ? (int64_t)(rdmsr(MSR_TSC_DEADLINE) - rdtsc()) : 0,
		c->guest_pending, c->visited, c->guest_injected, p->vmx.exits_total);
}
