/* SPDX-License-Identifier: MIT */
/*
 * hypercall.c - VMCALL (exit reason 18): the guest <-> hypervisor interface of
 * hypercall.h and docs/vmx.md, "Hypercalls".  One function per hypercall number,
 * found in a table; an unknown number returns HC_ERROR and changes nothing.
 */
#include "hv.h"
#include "hypercall.h"

/* Returns the guest's new EAX. */
typedef uint32_t hypercall_fn(struct guest_regs *r);

static uint64_t bad;

static uint32_t hc_ping(struct guest_regs *r)
{
	(void)r;
	return HC_PING_MAGIC;
}

/* The guest's verdict: the guest stops and the run is judged. */
static uint32_t hc_done(struct guest_regs *r)
{
	guest_run_done((uint32_t)r->rbx, (uint32_t)r->rcx, (uint32_t)r->rdx);
	guest_stop("HC_DONE");
}

static uint32_t hc_hv_range(struct guest_regs *r)
{
	r->rbx = (uint32_t)vmx_guest.hv_hi;
	return (uint32_t)vmx_guest.hv_lo;
}

static uint32_t hc_nmi_job(struct guest_regs *r)
{
	return guest_jobs_start((uint32_t)r->rbx, (uint32_t)r->rcx);
}

static uint32_t hc_nmi_poll(struct guest_regs *r)
{
	(void)r;
	return guest_jobs_poll();
}

static uint32_t hc_ept_lazy(struct guest_regs *r)
{
	return guest_jobs_ept_lazy((uint32_t)r->rbx);
}

static uint32_t hc_quiesce(struct guest_regs *r)
{
	return guest_jobs_quiesce((uint32_t)r->rcx);
}

static hypercall_fn *const hypercalls[] = {
    [HC_PING] = hc_ping,       [HC_DONE] = hc_done,         [HC_HV_RANGE] = hc_hv_range,
    [HC_NMI_JOB] = hc_nmi_job, [HC_NMI_POLL] = hc_nmi_poll, [HC_EPT_LAZY] = hc_ept_lazy,
    [HC_QUIESCE] = hc_quiesce,
};

void exit_vmcall(struct vmexit *x)
{
	uint32_t nr = (uint32_t)x->r->rax;
	hypercall_fn *fn = nr < sizeof hypercalls / sizeof hypercalls[0] ? hypercalls[nr] : 0;
	if (fn) {
		x->r->rax = fn(x->r);
	} else {
		__atomic_fetch_add(&bad, 1, __ATOMIC_RELAXED);
		x->r->rax = HC_ERROR;
	}
	vmx_skip_instruction();
}

uint64_t hypercalls_bad(void)
{
	return __atomic_load_n(&bad, __ATOMIC_RELAXED);
}
