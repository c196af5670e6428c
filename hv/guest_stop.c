/* SPDX-License-Identifier: MIT */
/*
 * guest_stop.c - the one way a guest CPU stops (hv.h, "Errors"): the guest's
 * state dump when it is stopped for something it did (or a VM entry failed), then
 * leave the guest on this CPU for good (detached from the NMI core, so NMIs from
 * now on are host-consumed) and hand over to the run's verdict (guest_run.c).
 * The hypervisor keeps running: a stop never returns to the guest and never hangs.
 */
#include "hv.h"
#include "x86.h"

void vmx_dump_guest(const struct guest_regs *r)
{
	kprintf("  exit reason 0x%lx qualification 0x%lx intr-info 0x%lx idt-vectoring 0x%lx\n",
		vmx_read(VMCS_EXIT_REASON), vmx_read(VMCS_EXIT_QUAL), vmx_read(VMCS_EXIT_INTR_INFO),
		vmx_read(VMCS_IDT_VECTORING_INFO));
	kprintf("  guest rip=0x%lx rsp=0x%lx rflags=0x%lx cr0=0x%lx cr3=0x%lx cr4=0x%lx\n",
		vmx_read(VMCS_GUEST_RIP), vmx_read(VMCS_GUEST_RSP), vmx_read(VMCS_GUEST_RFLAGS),
		vmx_read(VMCS_GUEST_CR0), vmx_read(VMCS_GUEST_CR3), vmx_read(VMCS_GUEST_CR4));
	kprintf("  interruptibility 0x%lx activity %lu guest-physical 0x%lx linear 0x%lx\n",
		vmx_read(VMCS_GUEST_INTERRUPTIBILITY), vmx_read(VMCS_GUEST_ACTIVITY),
		vmx_read(VMCS_GUEST_PHYS_ADDR), vmx_read(VMCS_GUEST_LINEAR_ADDR));
	if (r)
		kprintf("  eax=0x%lx ebx=0x%lx ecx=0x%lx edx=0x%lx esi=0x%lx edi=0x%lx ebp=0x%lx\n",
			r->rax, r->rbx, r->rcx, r->rdx, r->rsi, r->rdi, r->rbp);
}

/* Masked context (an exit handler): out of the guest on this CPU. */
static void detach(void)
{
	nmi_guest_detach();
	__atomic_store_n(&this_percpu()->vmx.in_guest, 0, __ATOMIC_RELEASE);
	nmi_unmask();
}

_Noreturn void guest_stop(const char *why)
{
	detach();
	guest_run_finish(why);
}

_Noreturn void guest_fail(const char *why, const struct guest_regs *r)
{
	vmx_dump_guest(r);
	guest_stop(why);
}

_Noreturn void guest_leave_idle(void)
{
	detach();
	for (;;)
		cpu_pause(); /* unmasked: parkable */
}

/* vmx_entry.S: VMRESUME failed (RFLAGS.CF or ZF says how), after the exit
 * handler's nmi_unmask(). */
_Noreturn void vmx_entry_failed(uint64_t rflags);
_Noreturn void vmx_entry_failed(uint64_t rflags)
{
	kprintf("vmx: cpu %u: VMRESUME failed (rflags 0x%lx, VM-instruction error %lu)\n",
		this_percpu()->index, rflags, (rflags & 0x40) ? vmx_read(VMCS_INSTR_ERROR) : 0);
	nmi_mask();
	guest_fail("VM entry failed", 0);
}
