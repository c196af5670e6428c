/* SPDX-License-Identifier: MIT */
/*
 * vmx_root.c - VMX root operation on every CPU, and the capabilities it rests on.
 *
 * The BSP decides (check_capabilities): every control the hypervisor needs must be
 * allowed-1 in the capability MSRs (the TRUE_* ones when IA32_VMX_BASIC bit 55
 * says they exist); optional controls are taken where allowed; the must-be-1 bits
 * are added.  The result, vmx_caps, is what every VMCS gets.  Each CPU then forces
 * CR0/CR4 to the values VMX operation fixes, executes VMXON, and makes its own
 * VMCS current.  The APs follow the BSP's verdict.
 */
#include "hv.h"
#include "vmx_insn.h"
#include "x86.h"

struct vmx_caps vmx_caps;

/* One page per CPU each, page-aligned as VMXON and VMPTRLD demand (SDM vol. 3C,
 * 24.11.5 "VMXON Region", 24.2 "Format of the VMCS Region"): kept out of struct percpu for that
 * alignment. */
static uint8_t vmxon_region[MAX_CPUS][4096] __attribute__((aligned(4096)));
static uint8_t vmcs_region[MAX_CPUS][4096] __attribute__((aligned(4096)));

/* Decided on the BSP by vmx_cpu_init(). */
static const char *unavailable_why;
static uint32_t vmx_cpus; /* CPUs in VMX root operation */

/* A control word: `want` must be allowed-1, `optional` is taken where allowed, the
 * CPU's must-be-1 bits are added.  (Allowed-0 settings are in the low half of the
 * capability MSR, allowed-1 in the high half: SDM vol. 3D, A.3.1.)  Returns NULL,
 * or `what` when a wanted bit is not allowed. */
static const char *control(uint32_t msr, uint32_t want, uint32_t optional, uint32_t *out,
			   const char *what)
{
	uint64_t cap = rdmsr(msr);
	uint32_t must = (uint32_t)cap, may = (uint32_t)(cap >> 32);
	if (want & ~may)
		return what;
	*out = want | (optional & may) | must;
	return NULL;
}

/* BSP: can this CPU run our guest at all?  Fills in vmx_caps. */
static const char *check_capabilities(void)
{
	struct vmx_caps *c = &vmx_caps;
	uint64_t basic = rdmsr(MSR_VMX_BASIC);
	uint32_t true_off =
	    (basic & VMX_BASIC_TRUE_CTLS) ? MSR_VMX_TRUE_PINBASED - MSR_VMX_PINBASED : 0;
	const char *why;
	c->revision = (uint32_t)basic & 0x7FFFFFFFu;
	if (((basic >> 32) & 0x1FFF) > 4096)
		return "VMCS region larger than 4 KiB";
	c->pin_may = (uint32_t)(rdmsr(MSR_VMX_PINBASED + true_off) >> 32);
	if ((why = control(MSR_VMX_PINBASED + true_off, PIN_NMI_EXITING | PIN_VIRTUAL_NMIS, 0,
			   &c->pin, "pin-based controls lack NMI exiting or virtual NMIs")))
		return why;
	/* NMI-window exiting must be allowed-1, but starts at 0: the core sets it. */
	if ((why = control(MSR_VMX_PROCBASED + true_off, PROC_NMI_WINDOW_EXITING, 0, &c->proc,
			   "processor-based controls lack NMI-window exiting")))
		return why;
	/* CR3-load/store exiting are not asked for: off wherever the TRUE controls
	 * allow it (their must-be-1 bits otherwise: cr.c emulates MOV CR3). */
	if ((why = control(MSR_VMX_PROCBASED + true_off,
			   PROC_SECONDARY | PROC_USE_MSR_BITMAPS | PROC_USE_IO_BITMAPS, 0, &c->proc,
			   "processor-based controls lack secondary controls, MSR or I/O bitmaps")))
		return why;
	/* RDTSCP, INVPCID, XSAVES/XRSTORS: without their enable control they are #UD
	 * in the guest (SDM vol. 3C, 25.3); cpuid.c hides each one not enabled. */
	if ((why = control(MSR_VMX_PROCBASED2, PROC2_EPT | PROC2_UNRESTRICTED,
			   PROC2_RDTSCP | PROC2_INVPCID | PROC2_XSAVES, &c->proc2,
			   "secondary controls lack EPT or unrestricted guest")))
		return why;
	/* The guest's IA32_EFER and IA32_PAT are its own: saved on exit, loaded on
	 * entry, the host's loaded on exit (24.7.1, 24.8.1), where allowed. */
	if ((why = control(MSR_VMX_EXIT + true_off, EXIT_HOST_64,
			   EXIT_SAVE_EFER | EXIT_LOAD_EFER | EXIT_SAVE_PAT | EXIT_LOAD_PAT,
			   &c->exit, "exit controls lack a 64-bit host")))
		return why;
	if ((why = control(MSR_VMX_ENTRY + true_off, 0, ENTRY_LOAD_EFER | ENTRY_LOAD_PAT, &c->entry,
			   "entry controls")))
		return why;
	/* The IA-32e mode guest bit is per guest (vmcs.c, cr.c, msr.c), not a control. */
	c->entry &= ~(uint32_t)ENTRY_IA32E_GUEST;
	c->ept_cap = rdmsr(MSR_VMX_EPT_VPID_CAP);
	c->misc = rdmsr(MSR_VMX_MISC);
	return NULL;
}

/* This CPU into VMX root operation with its own VMCS current. */
static const char *enter_root(struct percpu *p)
{
	uint32_t a, b, c, d;
	cpuid(1, &a, &b, &c, &d);
	if (!(c & CPUID1_ECX_VMX))
		return "CPUID.1:ECX.VMX is 0";
	uint64_t fc = rdmsr(MSR_FEATURE_CONTROL);
	if (!(fc & FC_LOCK))
		wrmsr(MSR_FEATURE_CONTROL, fc | FC_LOCK | FC_VMXON_OUTSIDE_SMX);
	else if (!(fc & FC_VMXON_OUTSIDE_SMX))
		return "IA32_FEATURE_CONTROL is locked with VMXON disabled";
	if (p->index == 0) {
		const char *why = check_capabilities();
		if (why)
			return why;
	}
	/* CR0.NE and CR4.VMXE among others: the bits VMX operation fixes (SDM vol. 3C,
	 * 23.8 "Restrictions on VMX Operation"). */
	write_cr0((read_cr0() | rdmsr(MSR_VMX_CR0_FIXED0)) & rdmsr(MSR_VMX_CR0_FIXED1));
	write_cr4((read_cr4() | rdmsr(MSR_VMX_CR4_FIXED0) | CR4_VMXE) & rdmsr(MSR_VMX_CR4_FIXED1));

	*(uint32_t *)vmxon_region[p->index] = vmx_caps.revision;
	*(uint32_t *)vmcs_region[p->index] = vmx_caps.revision;
	if (vmxon((uint64_t)vmxon_region[p->index]))
		return "VMXON failed";
	uint64_t vmcs = (uint64_t)vmcs_region[p->index];
	if (vmclear(vmcs) || vmptrld(vmcs))
		return "VMCLEAR/VMPTRLD failed";
	p->vmx.vmcs_pa = vmcs;
	return NULL;
}

void vmx_cpu_init(void)
{
	struct percpu *p = this_percpu();
	if (p->index != 0 && unavailable_why)
		return; /* the BSP already said why */
	const char *why = enter_root(p);
	if (why) {
		if (p->index == 0) {
			unavailable_why = why;
			kprintf("VMX unavailable: %s\n", why);
		} else {
			kprintf("vmx: cpu %u: %s\n", p->index, why);
		}
		return;
	}
	__atomic_fetch_add(&vmx_cpus, 1, __ATOMIC_SEQ_CST);
	if (p->index == 0)
		kprintf(
		    "vmx: VMX root operation (VMCS revision 0x%x; pin 0x%x proc 0x%x proc2 0x%x "
		    "exit 0x%x entry 0x%x misc 0x%lx)\n",
		    vmx_caps.revision, vmx_caps.pin, vmx_caps.proc, vmx_caps.proc2, vmx_caps.exit,
		    vmx_caps.entry, vmx_caps.misc);
}

const char *vmx_unavailable(void)
{
	if (unavailable_why)
		return unavailable_why;
	if (__atomic_load_n(&vmx_cpus, __ATOMIC_ACQUIRE) != ncpus)
		return "not every CPU entered VMX root operation";
	return NULL;
}
