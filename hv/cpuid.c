/* SPDX-License-Identifier: MIT */
/*
 * cpuid.c - the guest's CPUID (exit reason 10; CPUID exits unconditionally in VMX
 * non-root operation, SDM vol. 3C, 25.1.2).
 *
 * The answer is the CPU's own (executed here, on the guest's CPU, so APIC IDs
 * and topology are right), with these changes:
 *   - leaves 0x40000000-0x400000FF: the hypervisor's signature (hypercall.h);
 *   - leaf 1 ECX: VMX (bit 5) hidden, "hypervisor present" (bit 31) set,
 *     OSXSAVE (bit 27) = the guest's CR4.OSXSAVE (the host's CR4 is not the
 *     guest's: vol. 2A CPUID, "OSXSAVE"), x2APIC (bit 21) hidden unless the
 *     hypervisor's LAPIC is in x2APIC mode (msr.c keeps the mode fixed);
 *   - leaf 1 EDX APIC (bit 9) clear while the guest has globally disabled its
 *     APIC (apic_base.c; vol. 3A 10.4.3: "the CPUID feature flag for the APIC is
 *     also set to 0");
 *   - leaf 7 EBX INVPCID (bit 10) hidden unless "enable INVPCID" is on (without
 *     it INVPCID is #UD in VMX non-root operation, vol. 3C 25.3), ECX OSPKE (bit
 *     4) = the guest's CR4.PKE; EBX Intel PT (bit 25) hidden: its MSRs #GP
 *     (msr.c: trace output would record the hypervisor's own execution);
 *   - leaf 0xD sub-leaf 1 EAX XSAVES (bit 3) hidden unless "enable
 *     XSAVES/XRSTORS" is on (else #UD, 25.3);
 *   - leaf 0x80000001 EDX RDTSCP (bit 27) hidden unless "enable RDTSCP" is on
 *     (else #UD, 25.3);
 *   - leaves 0x15 and 0x16 (TSC/crystal ratio, base frequency) report the TSC
 *     rate the hypervisor measured against the PIT when the CPU's own claim is
 *     off by more than a quarter.  No real CPU is: Bochs 2.7 reports a 3.5 GHz
 *     Skylake-X while its TSC counts emulated instructions (about 50 MHz with the
 *     project's `ips=50000000`), so a kernel that believes CPUID waits 70 times
 *     too long for each timer (docs/emulator-deviations.md).
 */
#include "foreign.h"
#include "hv.h"
#include "hypercall.h"
#include "x86.h"

#define CPUID1_ECX_X2APIC  (1u << 21)
#define CPUID1_ECX_OSXSAVE (1u << 27)
#define CPUID1_EDX_APIC    (1u << 9)
#define CPUID7_EBX_INVPCID (1u << 10)
#define CPUID7_EBX_PT      (1u << 25)
#define CPUID7_ECX_OSPKE   (1u << 4)
#define CPUIDD1_EAX_XSAVES (1u << 3)
#define EXT1_EDX_RDTSCP    (1u << 27)
#define CR4_PKE            (1ull << 22)

#define LEAF_TSC_RATIO 0x15u /* EAX denominator, EBX numerator, ECX crystal Hz */
#define LEAF_FREQ      0x16u /* EAX base MHz, EBX maximum MHz */

/* The measured TSC rate in MHz when CPUID's base frequency is more than 25% off
 * from it, else 0: leave CPUID alone. */
static uint32_t tsc_mhz_override(void)
{
	uint32_t a, b, c, d, max;
	cpuid_sub(0, 0, &max, &b, &c, &d);
	if (max < LEAF_FREQ)
		return 0;
	cpuid_sub(LEAF_FREQ, 0, &a, &b, &c, &d);
	uint64_t measured = time_tsc_per_us(), claimed = a & 0xFFFFu;
	return claimed * 4 > measured * 5 || claimed * 5 < measured * 4 ? (uint32_t)measured : 0;
}

static void set_bit(uint32_t *reg, uint32_t bit, int on)
{
	*reg = on ? *reg | bit : *reg & ~bit;
}

void exit_cpuid(struct vmexit *x)
{
	struct guest_regs *r = x->r;
	uint32_t leaf = (uint32_t)r->rax, sub = (uint32_t)r->rcx, a, b, c, d;
	uint32_t proc2 = vmx_caps.proc2; /* the controls every VMCS got */
	if ((leaf & 0xFFFFFF00u) == HV_CPUID_LEAF) {
		int sig = leaf == HV_CPUID_LEAF;
		a = sig ? HV_CPUID_LEAF : 0;
		b = sig ? HV_CPUID_EBX : 0;
		c = sig ? HV_CPUID_ECX : 0;
		d = sig ? HV_CPUID_EDX : 0;
	} else {
		cpuid_sub(leaf, sub, &a, &b, &c, &d);
		uint64_t cr4 = cr_guest_cr4();
		if (leaf == 1) {
			c &= ~CPUID1_ECX_VMX; /* no VMX for the guest */
			c |= CPUID1_ECX_HYPERVISOR; /* "running under a hypervisor" */
			set_bit(&c, CPUID1_ECX_OSXSAVE, (cr4 & CR4_OSXSAVE) != 0);
			if (!lapic_x2apic())
				c &= ~CPUID1_ECX_X2APIC;
			if (apic_base_guest_disabled())
				d &= ~CPUID1_EDX_APIC;
		} else if (leaf == 7 && sub == 0) {
			if (!(proc2 & PROC2_INVPCID))
				b &= ~CPUID7_EBX_INVPCID;
			b &= ~CPUID7_EBX_PT;
			set_bit(&c, CPUID7_ECX_OSPKE, (cr4 & CR4_PKE) != 0);
		} else if (leaf == 0xD && sub == 1) {
			if (!(proc2 & PROC2_XSAVES))
				a &= ~CPUIDD1_EAX_XSAVES;
		} else if (leaf == 0x80000001u) {
			if (!(proc2 & PROC2_RDTSCP))
				d &= ~EXT1_EDX_RDTSCP;
		} else if ((leaf == LEAF_TSC_RATIO || leaf == LEAF_FREQ) && tsc_mhz_override()) {
			uint32_t mhz = tsc_mhz_override();
			if (leaf == LEAF_TSC_RATIO) { /* TSC = crystal * EBX / EAX */
				a = 1;
				b = 1;
				c = mhz * 1000000u;
			} else {
				a = mhz;
				b = mhz;
			}
		}
	}
	r->rax = a;
	r->rbx = b;
	r->rcx = c;
	r->rdx = d;
	vmx_skip_instruction();
}
