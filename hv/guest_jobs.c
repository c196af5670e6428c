/* SPDX-License-Identifier: MIT */
/*
 * guest_jobs.c - what the test guest asks for beyond running (hypercall.h): jobs
 * another CPU runs while the guest runs (HC_NMI_JOB, HC_NMI_POLL: paced NMIs to
 * CPU 0, stop-the-world rounds), a guest page taken out of the EPT until the
 * guest touches it (HC_EPT_LAZY: the re-injection test), and stop-the-world
 * rounds from the calling guest CPU (HC_QUIESCE).  Not part of running a guest:
 * test instruments, with their counts for the verdict.
 */
#include "hv.h"
#include "hypercall.h"
#include "nmi_platform.h"
#include "x86.h"

#define JOB_NMI_TIMEOUT_US 1000000u
#define PAGE_MASK          (~0xFFFull)

/* The job CPU 1 runs for the guest.  Written by the guest CPU's exit handler while
 * `active` is 0, then owned by CPU 1 until it clears `active`. */
static struct {
	volatile uint32_t active;
	volatile uint32_t kind, remaining;
	volatile uint64_t nmis_sent, nmis_lost, rounds;
} job;

/* HC_EPT_LAZY: the page now out of the EPT (0: none), and pages put back. */
static uint64_t lazy_page, lazy_restored;

/* Start a job on CPU 1 (masked context: only plain stores, CPU 1 polls).  With
 * guest_smp=1 CPU 1 runs the guest: there is no helper. */
uint32_t guest_jobs_start(uint32_t kind, uint32_t count)
{
	if (ncpus < 2 || vmx_guest.smp || job.active ||
	    (kind != HC_JOB_NMIS && kind != HC_JOB_QUIESCE))
		return HC_ERROR;
	job.kind = kind;
	job.remaining = count;
	__atomic_store_n(&job.active, 1, __ATOMIC_RELEASE);
	return 0;
}

uint32_t guest_jobs_poll(void)
{
	return __atomic_load_n(&job.active, __ATOMIC_ACQUIRE) ? job.remaining + 1 : 0;
}

/* Only while no other guest CPU has run: this CPU's INVEPT is the only flush. */
uint32_t guest_jobs_ept_lazy(uint64_t gpa)
{
	uint64_t page = gpa & PAGE_MASK;
	if (vmx_other_guest_cpu_started())
		return HC_ERROR;
	if (lazy_page || !page || (page < vmx_guest.hv_hi && page + 0x1000 > vmx_guest.hv_lo) ||
	    ept_set_page(page, 0) != 0)
		return HC_ERROR;
	ept_flush();
	lazy_page = page;
	return 0;
}

int guest_jobs_lazy_fault(uint64_t gpa, uint64_t qual, uint32_t vectoring)
{
	if (!lazy_page || (gpa & PAGE_MASK) != lazy_page)
		return 0;
	ept_set_page(lazy_page, 1);
	ept_flush();
	kprintf("vmx: lazy EPT page 0x%lx mapped again (guest rip 0x%lx, idt-vectoring 0x%x)\n",
		lazy_page, vmx_read(VMCS_GUEST_RIP), vectoring);
	lazy_page = 0;
	lazy_restored++;
	/* An IRET that faulted after it had unblocked virtual NMIs runs again: its
	 * blocking must be back (SDM vol. 3C, 27.2.1, table 27-7 "Exit Qualification for EPT
	 * Violations", bit 12: NMI unblocking due to IRET). */
	if ((qual & EPT_QUAL_NMI_UNBLOCKED) && !(vectoring & INTR_INFO_VALID))
		vmx_write(VMCS_GUEST_INTERRUPTIBILITY,
			  vmx_read(VMCS_GUEST_INTERRUPTIBILITY) | GUEST_INTR_BLOCK_NMI);
	return 1;
}

/* The rounds run after this exit's nmi_unmask() (vmexit.c); refused while a CPU
 * could not be parked. */
uint32_t guest_jobs_quiesce(uint32_t count)
{
	if (!vmx_all_parkable())
		return HC_ERROR;
	vmx_owe_quiesce_rounds(count);
	return 0;
}

/* One NMI to CPU 0, then wait until the core injected it into the guest: the
 * next one may only come once this one is in service, or hardware-like capping
 * would rightly drop it. */
static void send_paced_nmi(void)
{
	const uint64_t *injected = &percpu[0].nmi.guest_injected;
	uint64_t before = __atomic_load_n(injected, __ATOMIC_ACQUIRE);
	uint64_t deadline = time_us() + JOB_NMI_TIMEOUT_US;
	hv_send_nmi(0);
	job.nmis_sent++;
	while (__atomic_load_n(injected, __ATOMIC_ACQUIRE) == before) {
		if (time_us() > deadline) {
			job.nmis_lost++;
			return;
		}
		cpu_pause();
	}
}

_Noreturn void guest_jobs_helper(void)
{
	for (;;) {
		while (!__atomic_load_n(&job.active, __ATOMIC_ACQUIRE))
			cpu_pause();
		for (; job.remaining; job.remaining--) {
			if (job.kind == HC_JOB_NMIS) {
				send_paced_nmi();
			} else {
				nmi_quiesce_begin();
				nmi_quiesce_end(
				    (int)(job.remaining & 1)); /* INVEPT every other round */
				job.rounds++;
			}
		}
		__atomic_store_n(&job.active, 0, __ATOMIC_RELEASE);
	}
}

void guest_jobs_wait_idle(void)
{
	while (__atomic_load_n(&job.active, __ATOMIC_ACQUIRE))
		cpu_pause();
}

struct guest_jobs_stats guest_jobs_stats(void)
{
	return (struct guest_jobs_stats){job.nmis_sent, job.nmis_lost, job.rounds, lazy_restored};
}
