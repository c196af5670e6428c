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

/* The 16 bytes at the guest's RIP, through its page tables: "??" for a byte that
 * cannot be read (not mapped, hypervisor memory, beyond 4 GiB). */
static void dump_code(void)
{
	uint64_t lin = guest_rip_linear(), gpa = 0;
	int mapped = guest_virt_to_phys(lin, &gpa) == 0;
	char line[16 * 3 + 1];
	for (unsigned i = 0; i < 16; i++) {
		uint8_t b;
		int ok = guest_read(lin + i, &b, 1) == 0;
		line[3 * i] = ' ';
		line[3 * i + 1] = ok ? "0123456789abcdef"[b >> 4] : '?';
		line[3 * i + 2] = ok ? "0123456789abcdef"[b & 15] : '?';
	}
	line[sizeof line - 1] = 0;
	if (mapped)
		kprintf("  code at linear 0x%lx (guest-physical 0x%lx):%s\n", lin, gpa, line);
	else
		kprintf("  code at linear 0x%lx (not mapped):%s\n", lin, line);
}

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
	kprintf("  as the guest sees them: cr0=0x%lx cr4=0x%lx efer=0x%lx (%s); cs=0x%lx "
		"base 0x%lx ar 0x%lx\n",
		cr_guest_cr0(), cr_guest_cr4(),
		(vmx_caps.exit & EXIT_SAVE_EFER) ? vmx_read(VMCS_GUEST_EFER) : 0,
		guest_long_mode() ? "IA-32e mode" : "legacy mode", vmx_read(VMCS_GUEST_CS_SEL),
		vmx_read(VMCS_GUEST_CS_BASE), vmx_read(VMCS_GUEST_CS_AR));
	if (r) {
		kprintf("  rax=0x%lx rbx=0x%lx rcx=0x%lx rdx=0x%lx rsi=0x%lx rdi=0x%lx rbp=0x%lx\n",
			r->rax, r->rbx, r->rcx, r->rdx, r->rsi, r->rdi, r->rbp);
		kprintf("  r8=0x%lx r9=0x%lx r10=0x%lx r11=0x%lx r12=0x%lx r13=0x%lx r14=0x%lx "
			"r15=0x%lx\n",
			r->r8, r->r9, r->r10, r->r11, r->r12, r->r13, r->r14, r->r15);
	}
	dump_code();
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
