/* SPDX-License-Identifier: MIT */
/*
 * vmexit.c - every VM exit: the common path, then one handler per basic exit
 * reason, found in a table indexed by that reason.  Adding a handler means adding
 * a function and its table entry; a reason without one stops the guest with a
 * report (exit_unhandled).
 *
 * NMIs (docs/vmx.md): pin-based NMI exiting + virtual NMIs.  Every handler runs
 * between nmi_mask() and nmi_unmask(), so an NMI that hits the hypervisor while
 * it edits the VMCS is only counted and handled at the unmask.  The core owns the
 * NMI-window control and the VM-entry injection field: an NMI exit goes to
 * nmi_vmexit_nmi() (which leaves the exit's NMI blocking with an IRET), an
 * NMI-window exit to nmi_vmexit_nmi_window() (which injects one pending NMI).  An
 * exit that interrupted the delivery of an event delivers it again at the next
 * entry: the core re-queues its own NMI injections, vmx_redeliver() the rest
 * (inject.c).
 */
#include "foreign.h"
#include "hv.h"
#include "nmi_platform.h"
#include "x86.h"

static void exit_exception_nmi(struct vmexit *x)
{
	if (INTR_INFO_TYPE(vmx_read(VMCS_EXIT_INTR_INFO)) != INTR_TYPE_NMI) {
		kprintf("vmx: unexpected exception exit\n");
		guest_fail("unexpected exception exit", x->r);
	}
	nmi_vmexit_nmi();
}

static void exit_nmi_window(struct vmexit *x)
{
	(void)x;
	nmi_vmexit_nmi_window();
	/* Tracing one guest NMI: it ends in the guest's handler, so no more exit
	 * breaks once the injection is queued. */
	if (this_percpu()->trace_nmi && (vmx_read(VMCS_ENTRY_INTR_INFO) & INTR_INFO_VALID))
		this_percpu()->trace_nmi = 0;
}

static void exit_triple_fault(struct vmexit *x)
{
	kprintf("vmx: guest triple fault (shutdown)\n");
	guest_fail("guest triple fault", x->r);
}

/* INIT (reason 3): the guest CPU goes back to wait-for-SIPI, as a bare AP does on
 * INIT (the SIPI that starts it sets its registers).  Interruptibility is cleared:
 * an INIT ends every blocking, and Bochs 2.7 reports blocking by SMI here, which
 * would fail the next VM entry.  Under Bochs 2.7 an INIT to a guest CPU is never
 * consumed: every later entry in the active state exits again for it
 * (docs/emulator-deviations.md); the test guest therefore starts its APs with
 * SIPIs alone, which the wait-for-SIPI state they are entered in allows. */
static void exit_init(struct vmexit *x)
{
	(void)x;
	vmx_write(VMCS_GUEST_INTERRUPTIBILITY, 0);
	vmx_write(VMCS_GUEST_ACTIVITY, ACTIVITY_WAIT_FOR_SIPI);
	__atomic_store_n(&this_percpu()->vmx.waiting_for_sipi, 1, __ATOMIC_RELEASE);
}

/* SIPI (reason 4): the guest CPU leaves wait-for-SIPI as a bare CPU does after
 * INIT-SIPI: real mode, CS = vector << 8 (base vector << 12), IP = 0, interrupts
 * off.  Unrestricted guest lets it run real mode natively. */
static void exit_sipi(struct vmexit *x)
{
	(void)x;
	struct percpu *p = this_percpu();
	uint64_t vector = vmx_read(VMCS_EXIT_QUAL) & 0xFF;
	/* The INIT state (SDM vol. 3A, 9.1.1, table 9-1), paging and IA-32e mode off,
	 * except CR0.CD/NW (left clear: the guest runs cached) and CR0.NE (what the
	 * guest saw before, as VMX forces it anyway). */
	cr_setup_vmcs(CR0_ET | CR0_NE, 0);
	vmx_write(VMCS_GUEST_CR3, 0);
	if (vmx_caps.entry & ENTRY_LOAD_EFER)
		vmx_write(VMCS_GUEST_EFER, 0);
	vmx_write(VMCS_ENTRY_CTLS, vmx_read(VMCS_ENTRY_CTLS) & ~(uint64_t)ENTRY_IA32E_GUEST);
	vmx_write(VMCS_GUEST_DR7, 0x400);
	for (unsigned s = SEG_ES; s <= SEG_GS; s++) { /* 16-bit, 64 KiB */
		uint64_t sel = s == SEG_CS ? vector << 8 : 0;
		vmx_write(VMCS_GUEST_SEL(s), sel);
		vmx_write(VMCS_GUEST_BASE(s), sel << 4);
		vmx_write(VMCS_GUEST_LIMIT(s), 0xFFFF);
		vmx_write(VMCS_GUEST_AR(s), s == SEG_CS ? 0x9B : 0x93);
	}
	vmx_write(VMCS_GUEST_GDTR_BASE, 0);
	vmx_write(VMCS_GUEST_GDTR_LIMIT, 0xFFFF);
	vmx_write(VMCS_GUEST_IDTR_BASE, 0);
	vmx_write(VMCS_GUEST_IDTR_LIMIT, 0x3FF);
	vmx_write(VMCS_GUEST_RIP, 0);
	vmx_write(VMCS_GUEST_RSP, 0);
	vmx_write(VMCS_GUEST_RFLAGS, 0x2);
	vmx_write(VMCS_GUEST_INTERRUPTIBILITY, 0);
	vmx_write(VMCS_GUEST_ACTIVITY, ACTIVITY_ACTIVE);
	/* Bochs 2.7 masks NMIs (and INIT, SMI) when it enters wait-for-SIPI and
	 * a SIPI exit does not unmask them; a host IRET ends the NMI mask.  On a
	 * CPU that follows the SDM this IRET changes nothing: no NMI blocking is
	 * left after a SIPI exit.  The SMI mask: vmx_exit_handler(). */
	hv_nmi_iret();
	p->vmx.started_by_sipi = 1;
	__atomic_store_n(&p->vmx.waiting_for_sipi, 0, __ATOMIC_RELEASE);
	kprintf("vmx: cpu %u: SIPI vector 0x%lx: guest CPU starts in real mode at 0x%lx\n",
		p->index, vector, vector << 12);
}

static void exit_ept_violation(struct vmexit *x)
{
	uint64_t q = vmx_read(VMCS_EXIT_QUAL), gpa = vmx_read(VMCS_GUEST_PHYS_ADDR);
	const char *why;
	if (guest_jobs_lazy_fault(gpa, q, x->vectoring))
		return;
	if (lapic_guard_ept_violation(x->r, gpa, q, &why)) {
		if (why) {
			kprintf("vmx: guest LAPIC access at 0x%lx not emulated: %s\n", gpa, why);
			guest_fail("unemulated LAPIC access", x->r);
		}
		return;
	}
	guest_run_ept_violation(gpa);
	kprintf("vmx: EPT violation: guest-physical 0x%lx (%s%s%s), guest rip 0x%lx%s\n", gpa,
		(q & EPT_QUAL_READ) ? "read" : "", (q & EPT_QUAL_WRITE) ? "write" : "",
		(q & EPT_QUAL_FETCH) ? "fetch" : "", vmx_read(VMCS_GUEST_RIP),
		gpa >= vmx_guest.hv_lo && gpa < vmx_guest.hv_hi ? " (hypervisor memory)" : "");
	guest_fail("EPT violation", x->r);
}

static _Noreturn void exit_unhandled(struct vmexit *x)
{
	kprintf("vmx: unhandled exit reason %u\n", x->reason);
	guest_fail("unhandled exit", x->r);
}

/* The handlers, by basic exit reason (vmx.h, SDM vol. 3D appendix C); docs/vmx.md
 * has the table with the rule each one follows.  A reason without an entry is
 * reported and stops the guest (exit_unhandled). */
static vmexit_handler *const handlers[EXIT_REASONS] = {
    [EXIT_EXCEPTION_NMI] = exit_exception_nmi,
    [EXIT_TRIPLE_FAULT] = exit_triple_fault,
    [EXIT_INIT] = exit_init,
    [EXIT_SIPI] = exit_sipi,
    [EXIT_NMI_WINDOW] = exit_nmi_window,
    [EXIT_CPUID] = exit_cpuid,
    [EXIT_GETSEC] = exit_ud,
    [EXIT_INVD] = exit_wbinvd,
    [EXIT_VMCALL] = exit_vmcall,
    [EXIT_VMCLEAR] = exit_ud,
    [EXIT_VMLAUNCH] = exit_ud,
    [EXIT_VMPTRLD] = exit_ud,
    [EXIT_VMPTRST] = exit_ud,
    [EXIT_VMREAD] = exit_ud,
    [EXIT_VMRESUME] = exit_ud,
    [EXIT_VMWRITE] = exit_ud,
    [EXIT_VMXOFF] = exit_ud,
    [EXIT_VMXON] = exit_ud,
    [EXIT_CR_ACCESS] = exit_cr_access,
    [EXIT_IO] = exit_io,
    [EXIT_RDMSR] = exit_rdmsr,
    [EXIT_WRMSR] = exit_wrmsr,
    [EXIT_EPT_VIOLATION] = exit_ept_violation,
    [EXIT_INVEPT] = exit_ud,
    [EXIT_INVVPID] = exit_ud,
    [EXIT_WBINVD] = exit_wbinvd,
    [EXIT_XSETBV] = exit_xsetbv,
    [EXIT_PREEMPT_TIMER] = exit_preemption_timer,
    [EXIT_VMFUNC] = exit_ud,
};

void vmx_skip_instruction(void)
{
	vmx_skip(vmx_read(VMCS_EXIT_INSTR_LEN));
}

void vmx_skip(uint64_t len)
{
	vmx_write(VMCS_GUEST_RIP, vmx_read(VMCS_GUEST_RIP) + len);
	/* The skipped instruction ends STI/MOV-SS blocking; NMI blocking stays. */
	uint64_t intr = vmx_read(VMCS_GUEST_INTERRUPTIBILITY);
	if (intr & GUEST_INTR_BLOCK_STI_MOVSS)
		vmx_write(VMCS_GUEST_INTERRUPTIBILITY,
			  intr & ~(uint64_t)GUEST_INTR_BLOCK_STI_MOVSS);
}

void vmx_owe(void (*fn)(void))
{
	this_percpu()->vmx.owed = fn;
}

void vmx_owe_quiesce_rounds(uint32_t count)
{
	this_percpu()->vmx.quiesce_owed = count;
}

/* Run the stop-the-world rounds an HC_QUIESCE asked for.  Unmasked, as
 * nmi_quiesce_begin() wants; the other guest CPUs keep running their guest until
 * an NMI exit parks them. */
static void run_owed_rounds(struct vmx_cpu *v)
{
	for (; v->quiesce_owed; v->quiesce_owed--) {
		nmi_quiesce_begin();
		nmi_quiesce_end((int)(v->quiesce_owed & 1)); /* INVEPT every other round */
	}
}

void vmx_exit_handler(struct guest_regs *r)
{
	nmi_mask();
	struct vmx_cpu *v = &this_percpu()->vmx;
	struct vmexit x = {.r = r, .reason = (uint32_t)vmx_read(VMCS_EXIT_REASON)};
	uint32_t basic = x.reason & 0xFFFF;
	v->exits[basic < EXIT_REASONS ? basic : EXIT_REASONS]++;
	v->exits_total++;
	if (x.reason & EXIT_REASON_ENTRY_FAIL) {
		kprintf(
		    "vmx: cpu %u: VM entry failed, exit reason 0x%x (33: invalid guest state)\n",
		    this_percpu()->index, x.reason);
		guest_fail("VM entry failure", r);
	}
	x.reason = basic;
	if (v->started_by_sipi) {
		/* Bochs 2.7 reports the SMI mask it kept from wait-for-SIPI as
		 * blocking by SMI, which VM entry rejects outside SMM (reason 33). */
		uint64_t intr = vmx_read(VMCS_GUEST_INTERRUPTIBILITY);
		if (intr & GUEST_INTR_BLOCK_SMI)
			vmx_write(VMCS_GUEST_INTERRUPTIBILITY,
				  intr & ~(uint64_t)GUEST_INTR_BLOCK_SMI);
	}
	x.vectoring = (uint32_t)vmx_read(VMCS_IDT_VECTORING_INFO);
	if ((x.vectoring & INTR_INFO_VALID) && basic != EXIT_TRIPLE_FAULT)
		vmx_redeliver(x.vectoring);
	vmexit_handler *h = basic < EXIT_REASONS ? handlers[basic] : 0;
	if (!h)
		exit_unhandled(&x);
	h(&x);
	guest_init_take(); /* an INIT another CPU emulated for this one (guest_init.c) */
	if (guest_run_stopping())
		guest_leave_idle(); /* another CPU ends the run: leave the guest for good */
	nmi_unmask();
	run_owed_rounds(v);
	guest_init_finish(); /* an INIT this CPU's guest sent to running CPUs (guest_init.c) */
	if (v->owed) {
		void (*fn)(void) = v->owed;
		v->owed = 0;
		fn();
	}
}
