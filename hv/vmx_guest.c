/* SPDX-License-Identifier: MIT */
/*
 * vmx_guest.c - bringing one guest up: on the BSP, or with `guest_smp=1` on every
 * CPU.
 *
 * The guest is a multiboot v1 kernel (guest_load.c), entered in flat 32-bit
 * protected mode with paging off (unrestricted guest + EPT, ept.c).  With
 * `guest_smp=1` every AP gets its own VMCS for the same guest, entered in the
 * wait-for-SIPI activity state: the guest's own SIPI starts it (vmexit.c).
 * Without it, the other CPUs stay the hypervisor's (CPU 1 serves the test jobs,
 * guest_jobs.c).  Each guest CPU attaches its VMCS to the NMI core before its
 * first VM entry.
 */
#include "hv.h"
#include "nmi_platform.h"
#include "x86.h"

#define AP_ENTRY_TIMEOUT_US 1000000u
#define MB1_BOOT_MAGIC      0x2BADB002u

extern char __load_start[], __bss_end[];
uint64_t vmx_launch(uint64_t rax, uint64_t rbx, uint64_t rsi); /* vmx_entry.S */

struct vmx_guest vmx_guest;

uint64_t vmx_build_ept(const char **why)
{
	vmx_guest.hv_lo = (uint64_t)__load_start & ~0xFFFull;
	vmx_guest.hv_hi = ((uint64_t)__bss_end + 0xFFF) & ~0xFFFull;
	return ept_build(vmx_guest.hv_lo, vmx_guest.hv_hi, vmx_caps.ept_cap, why);
}

int vmx_all_parkable(void)
{
	for (unsigned i = 0; i < ncpus; i++)
		if (__atomic_load_n(&percpu[i].vmx.waiting_for_sipi, __ATOMIC_ACQUIRE))
			return 0;
	return 1;
}

int vmx_other_guest_cpu_started(void)
{
	for (unsigned i = 1; i < ncpus; i++)
		if (vmx_guest.smp && !percpu[i].vmx.waiting_for_sipi)
			return 1;
	return 0;
}

/* The current VMCS is set up: attach it to the core and enter the guest. */
static _Noreturn void launch(uint64_t rax, uint64_t rbx, uint64_t rsi)
{
	struct percpu *p = this_percpu();
	ept_flush();
	/* From here the core reads and writes this VMCS (NMI window, injection). */
	nmi_mask();
	nmi_guest_attach();
	__atomic_store_n(&p->vmx.in_guest, 1, __ATOMIC_RELEASE);
	nmi_unmask();
	uint64_t rflags = vmx_launch(rax, rbx, rsi);
	kprintf("vmx: cpu %u: VMLAUNCH failed (rflags 0x%lx, VM-instruction error %lu)\n", p->index,
		rflags, (rflags & 0x40) ? vmx_read(VMCS_INSTR_ERROR) : 0);
	nmi_mask();
	guest_fail("VMLAUNCH failed", 0);
}

/* Everything that can keep the guest from starting, before any VM entry. */
static const char *prepare(struct guest_image *g, uint64_t *eptp)
{
	const char *why = NULL;
	if (!(*eptp = vmx_build_ept(&why)))
		return why;
	if ((why = guest_load(g, vmx_guest.hv_lo, vmx_guest.hv_hi)))
		return why;
	vmx_guest.smp = cmdline_u64("guest_smp", 0) != 0;
	/* A guest on every CPU starts its APs itself: its LAPIC writes are seen, so
	 * that its INITs go through guest_init.c (lapic_guard.c).  A guest on CPU 0
	 * alone keeps a pass-through APIC page. */
	if (vmx_guest.smp && (why = lapic_guard_setup()))
		return why;
	/* Every guest's console lines are told apart from the hypervisor's. */
	guest_console_setup();
	testport_setup();
	if ((why = guest_run_check_expect()))
		return why;
	if (vmx_guest.smp && !(vmx_caps.misc & VMX_MISC_WAIT_FOR_SIPI))
		return "guest_smp=1 needs the wait-for-SIPI activity state, IA32_VMX_MISC lacks it "
		       "(bit 8)";
	return NULL;
}

/* guest_smp=1: a SIPI that finds its CPU still in VMX root operation is lost: let
 * every AP reach its VMLAUNCH before the guest can send one. */
static const char *start_guest_aps(uint64_t eptp)
{
	for (unsigned i = 1; i < ncpus; i++)
		percpu[i].vmx.waiting_for_sipi = 1;
	__atomic_store_n(&vmx_guest.eptp, eptp, __ATOMIC_RELEASE);
	uint64_t deadline = time_us() + AP_ENTRY_TIMEOUT_US;
	for (unsigned i = 1; i < ncpus; i++)
		while (!__atomic_load_n(&percpu[i].vmx.in_guest, __ATOMIC_ACQUIRE)) {
			if (time_us() > deadline)
				return "a CPU never entered its guest";
			cpu_pause();
		}
	return NULL;
}

_Noreturn void vmx_run_guest(void)
{
	struct guest_image g;
	uint64_t eptp;
	const char *why = prepare(&g, &eptp);
	if (why)
		hv_fail("vmx-guest", why);
	vmx_setup_vmcs(&g, eptp);
	/* trace_nmi=1: the first NMI exit starts a `make trace TRACE=guest-nmi` region. */
	this_percpu()->trace_nmi = (uint32_t)cmdline_u64("trace_nmi", 0);
	if (vmx_guest.smp && (why = start_guest_aps(eptp)))
		hv_fail("vmx-guest", why);
	kprintf("vmx: entering the guest at 0x%x (EPT pointer 0x%lx) on CPU 0; %s\n", g.entry, eptp,
		vmx_guest.smp ? "the other CPUs wait for the guest's SIPI"
			      : "the other CPUs stay the hypervisor's");
	if (g.protocol == GUEST_LINUX)
		launch(0, 0, g.esi);
	launch(MB1_BOOT_MAGIC, g.mbi, 0);
}

/* guest_smp=1, an AP: its own VMCS for the guest, entered in wait-for-SIPI. */
static _Noreturn void run_guest_ap(void)
{
	uint64_t eptp;
	while (!(eptp = __atomic_load_n(&vmx_guest.eptp, __ATOMIC_ACQUIRE)))
		cpu_pause(); /* unmasked: parkable */
	const struct guest_image none = GUEST_IMAGE_FLAT;
	vmx_setup_vmcs(&none, eptp);
	vmx_write(VMCS_GUEST_ACTIVITY, ACTIVITY_WAIT_FOR_SIPI);
	launch(0, 0, 0);
}

_Noreturn void vmx_helper_ap(void)
{
	/* The command line, not vmx_guest.smp: the BSP may not have parsed it yet. */
	if (cmdline_u64("guest_smp", 0))
		run_guest_ap();
	if (this_percpu()->index == 1)
		guest_jobs_helper();
	for (;;)
		cpu_pause(); /* idle, NMIs unmasked: parkable */
}
