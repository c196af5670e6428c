/* SPDX-License-Identifier: MIT */
/*
 * replay_guest.c - the guest steps of workload=replay: enter, exit, giret, block,
 * unblock, detach, and NMIs that arrive in guest mode, as sim/vmx_hw.c and
 * sim/ops.c model them, on a real VMCS (NMI exiting and virtual NMIs on, E1V1).
 *
 * Between steps a CPU the scenario put in guest mode really is in VMX non-root
 * operation, running replay_vm.S's guest: it waits for its token in its main
 * loop or, after an injected NMI, in its NMI handler (virtual-NMI blocked).  So an
 * NMI sent to it is a real NMI VM exit, which waits for the token in root
 * operation, NMI-blocked as the exit left it, until the controller services the CPU
 * (sim/vmx_hw.c's vmx_hw_exits in the simulator).  A turn for a CPU in guest mode
 * starts with the guest's VMCALL and ends in guest mode: the guest itself gives
 * the token back once it waits again, after whatever exits and injections the
 * turn's VM entry brought.
 *
 * What the books' guest model needs is observed where it can be: `received` is
 * what the guest's handler counted, `blocked` is the guest being in its handler;
 * the NMI-window control and the VM-entry interruption field are the core's last
 * writes of them (plat_vmcs_write), with the injection consumed by a successful
 * entry (SDM vol. 3C, 24.8.3: VM entry clears the valid bit).
 */
#include "hv.h"
#include "nmi_platform.h"
#include "replay.h"
#include "vmx.h"
#include "vmx_insn.h"
#include "x86.h"

#define RG_MAIL_PA  0x3000u /* the token, then one mailbox per CPU (replay_vm.S) */
#define RG_IDT_PA   0x6000u /* the guest IDT, a page of its own (`fault` unmaps it) */
#define RG_GDT_PA   0x3800u /* flat code 0x08, data 0x10 */
#define RG_CODE_PA  0x4000u /* the guest code */
#define RG_STACK_PA 0x5000u /* one 256-byte stack per CPU above this */
#define RG_IRET     1u
#define IDT_VECTORS 32u
#define VMCALL_LEN  3u
#define BAD_VECTOR  0xdeadu

struct rg_mail {
	volatile uint32_t cmd, ack, received, in_handler;
	uint32_t pad[12];
};

extern const char rg_guest_start[], rg_guest_end[], rg_main[], rg_nmi[], rg_other[], rg_unblock[];

static struct guest_call ctx[REPLAY_MAX_CPUS];
static uint8_t exit_stack[REPLAY_MAX_CPUS][4096] __attribute__((aligned(16)));
static uint64_t eptp;
static const char *unavailable;
static struct guest_image image = GUEST_IMAGE_FLAT;

static struct rg_mail *mail(unsigned me)
{
	return (struct rg_mail *)phys_ptr(RG_MAIL_PA + 64u * (me + 1));
}

static uint32_t gaddr(const char *sym)
{
	return RG_CODE_PA + (uint32_t)(sym - rg_guest_start);
}

/* ---- Set-up: once per boot, and per CPU at its first guest step of a case --------- */

void replay_guest_boot(void)
{
	replay_token = phys_ptr(RG_MAIL_PA);
	*replay_token = REPLAY_CTL;
	if ((unavailable = vmx_unavailable()))
		return;
	if (!(eptp = vmx_build_ept(&unavailable)))
		return;
	uint8_t *code = phys_ptr(RG_CODE_PA);
	for (const char *s = rg_guest_start; s < rg_guest_end; s++)
		*code++ = (uint8_t)*s;
	uint64_t *idt = phys_ptr(RG_IDT_PA);
	for (unsigned v = 0; v < IDT_VECTORS; v++) {
		uint32_t h = gaddr(v == 2 ? rg_nmi : rg_other);
		idt[v] = (h & 0xFFFF) | (0x08ull << 16) | (0x8E00ull << 32) |
			 ((uint64_t)(h >> 16) << 48);
	}
	uint64_t *gdt = phys_ptr(RG_GDT_PA);
	gdt[0] = 0;
	gdt[1] = 0x00CF9A000000FFFFull;
	gdt[2] = 0x00CF92000000FFFFull;
}

int replay_guest_available(const char **why)
{
	*why = unavailable;
	return unavailable == 0;
}

/* Enter the guest until its next VM exit; 0, or the failed entry's RFLAGS. */
static uint64_t run(unsigned me)
{
	struct replay_cpu *r = &rcpu[me];
	/* `fault`: this entry's NMI injection is to meet an EPT violation on the
	 * guest's IDT (SDM vol. 3C, 27.2.4: the exit reports the NMI in the
	 * IDT-vectoring information; it was not delivered). */
	if (r->fault_armed && (r->vm_entry_intr & INTR_INFO_VALID)) {
		r->fault_armed = 0;
		r->fault_active = 1;
		ept_set_page(RG_IDT_PA, 0);
		ept_flush();
	}
	/* A successful entry consumes the injection; the guest may give the token back
	 * (and the controller look at the books) before this CPU sees the next exit. */
	uint64_t queued = r->vm_entry_intr;
	r->vm_entry_intr &= ~(uint64_t)INTR_INFO_VALID;
	uint64_t rf = guest_call(r->launched, &ctx[me]);
	if (rf)
		r->vm_entry_intr = queued;
	else
		r->launched = 1;
	return rf;
}

/* A fresh VMCS on this CPU, the guest at its main loop, no virtual-NMI blocking. */
static void setup(unsigned me)
{
	struct replay_cpu *r = &rcpu[me];
	uint64_t pa = this_percpu()->vmx.vmcs_pa;
	if (vmclear(pa) || vmptrld(pa)) {
		replay_fail("cpu%u: VMCLEAR/VMPTRLD failed", me);
		return;
	}
	vmx_setup_vmcs(&image, eptp);
	guest_call_host(&ctx[me], exit_stack[me] + sizeof exit_stack[me]);
	vmx_write(VMCS_GUEST_IDTR_BASE, RG_IDT_PA);
	vmx_write(VMCS_GUEST_IDTR_LIMIT, IDT_VECTORS * 8 - 1);
	vmx_write(VMCS_GUEST_GDTR_BASE, RG_GDT_PA);
	vmx_write(VMCS_GUEST_GDTR_LIMIT, 3 * 8 - 1);
	vmx_write(VMCS_GUEST_RSP, RG_STACK_PA + 256u * (me + 1));
	ctx[me].regs = (struct guest_regs){.rbx = me, .rsi = RG_MAIL_PA + 64u * (me + 1)};
	*mail(me) = (struct rg_mail){0};
	r->launched = 0;
	r->vm_proc = vmx_read(VMCS_PROC_BASED_CTLS);
	r->vm_entry_intr = 0;
	/* Bochs 2.7 keeps virtual-NMI blocking across a VM entry that writes bit 3 =
	 * 0 (docs/emulator-deviations.md); a guest IRET ends it everywhere.  So every
	 * case's guest starts from an IRET with blocking set, then a VMCALL. */
	vmx_write(VMCS_GUEST_RIP, gaddr(rg_unblock));
	vmx_write(VMCS_GUEST_INTERRUPTIBILITY, GUEST_INTR_BLOCK_NMI);
	if (run(me) || (vmx_read(VMCS_EXIT_REASON) & 0xFFFF) != EXIT_VMCALL)
		replay_fail("cpu%u: the replay guest did not start", me);
	vmx_write(VMCS_GUEST_RIP, gaddr(rg_main));
	r->needs_setup = 0;
}

void replay_guest_reset(unsigned me)
{
	struct replay_cpu *r = &rcpu[me];
	r->in_guest = r->detached = 0;
	r->fault_armed = 0;
	if (r->fault_active) { /* a case that ended between the fault and its exit */
		r->fault_active = 0;
		ept_set_page(RG_IDT_PA, 1);
	}
	r->guest = (struct nmi_books_guest){0};
	r->needs_setup = 1;
	if (!unavailable)
		*mail(me) = (struct rg_mail){0};
}

/* ---- Exits: sim/vmx_hw.c's EXIT(), on the real one ----------------------------------- */

/* nmi_vmexit_vectoring() with the exit's IDT-vectoring information, as a plain
 * core call: the wrapper is not the core's, so the stepping counts the core's
 * instructions only, as in the simulator. */
static uint32_t vectoring_info[REPLAY_MAX_CPUS];
static void vectoring_exit(void)
{
	(void)nmi_vmexit_vectoring(vectoring_info[this_percpu()->index]);
}

static void exit_through_core(unsigned me, void (*handler)(void), uint32_t vectoring)
{
	struct replay_cpu *r = &rcpu[me];
	r->in_guest = 0;
	vectoring_info[me] = vectoring;
	replay_core_call(nmi_mask);
	replay_core_call(vectoring ? vectoring_exit : handler);
	replay_core_call(nmi_unmask);
	r->in_guest = 1;
}

/* An NMI VM exit that came while another CPU held the token: wait for it, NMI-blocked
 * as the exit left this CPU.  Returns 0 when the NMI is to be discarded. */
static int wait_turn(unsigned me)
{
	struct replay_cpu *r = &rcpu[me];
	if (__atomic_load_n(replay_token, __ATOMIC_ACQUIRE) == (int)me)
		return 1;
	r->nmi_wait = 1;
	replay_wait_token(me);
	r->nmi_wait = 0;
	if (r->cmd == CMD_ABORT)
		replay_longjmp(r->jmp);
	if (r->cmd == CMD_FLUSH) {
		hv_nmi_iret();
		replay_hand_back();
		return 0;
	}
	return 1;
}

/* In guest mode until the guest takes a turn (its VMCALL, the token its own). */
void replay_guest_idle(unsigned me)
{
	struct replay_cpu *r = &rcpu[me];
	for (;;) {
		uint64_t rf = run(me);
		if (rf) {
			r->in_guest = 0;
			replay_fail("cpu%u: VM entry failed: NMI injected while the guest is "
				    "virtual-NMI blocked",
				    me);
			return;
		}
		/* The step that entered the guest is over once its turn is. */
		if (r->st.on && (r->seq != r->st.seq ||
				 __atomic_load_n(replay_token, __ATOMIC_ACQUIRE) != (int)me))
			replay_step_end(me);
		uint32_t reason = (uint32_t)vmx_read(VMCS_EXIT_REASON) & 0xFFFF;
		uint32_t vectoring = (uint32_t)vmx_read(VMCS_IDT_VECTORING_INFO);
		if (reason == EXIT_EXCEPTION_NMI && ((uint32_t)vmx_read(VMCS_EXIT_INTR_INFO) &
						     INTR_INFO_TYPE_MASK) == INTR_INFO_TYPE_NMI) {
			r->arrived++;
			r->exit_blocked = 1;
			if (wait_turn(me)) {
				exit_through_core(me, nmi_vmexit_nmi, 0);
				replay_service_guest(me); /* the guest ends this turn */
			}
		} else if (reason == EXIT_NMI_WINDOW) {
			exit_through_core(me, nmi_vmexit_nmi_window, 0);
		} else if (reason == EXIT_EPT_VIOLATION && r->fault_active &&
			   (vectoring & INTR_INFO_VALID)) {
			r->fault_active = 0;
			ept_set_page(RG_IDT_PA, 1);
			ept_flush();
			exit_through_core(me, 0, vectoring);
		} else if (reason == EXIT_VMCALL && ctx[me].regs.rax != BAD_VECTOR) {
			vmx_write(VMCS_GUEST_RIP, vmx_read(VMCS_GUEST_RIP) + VMCALL_LEN);
			return; /* the guest saw the token: the turn is the CPU loop's */
		} else {
			kprintf(
			    "RESULT: FAIL replay: cpu%u: unexpected VM exit %u at guest rip 0x%lx "
			    "(interruptibility 0x%lx, IDT-vectoring 0x%x)\n",
			    me, reason, vmx_read(VMCS_GUEST_RIP),
			    vmx_read(VMCS_GUEST_INTERRUPTIBILITY), vectoring);
			hv_exit(1);
		}
	}
}

/* sim/ops.c's needs for the guest operations; an unmet one ignores the step. */
static int guest_op_runs(unsigned me, const struct replay_step *s)
{
	struct replay_cpu *r = &rcpu[me];
	const struct nmi_cpu *c = &percpu[me].nmi;
	switch (s->op) {
	case R_ENTER: return !r->in_guest && !c->masked && !r->detached;
	case R_EXIT:
	case R_GIRET: return r->in_guest;
	case R_BLOCK:
	case R_UNBLOCK: return !r->in_guest && !c->masked && c->guest_present;
	case R_DETACH: return !c->masked && c->guest_present;
	default: return 0;
	}
}

void replay_guest_op(unsigned me, const struct replay_step *s)
{
	struct replay_cpu *r = &rcpu[me];
	if (s->op == R_FAULT) {
		r->fault_armed = 1; /* any mode: the next injection of this CPU meets it */
		return;
	}
	if (!guest_op_runs(me, s))
		return;
	if (r->needs_setup)
		setup(me);
	switch (s->op) {
	case R_ENTER:
		if (!percpu[me].nmi.guest_present) {
			replay_core_call(nmi_mask);
			replay_core_call(nmi_guest_attach);
			replay_core_call(nmi_unmask);
		}
		r->in_guest = 1; /* the entry is the turn's end (replay_cpu.c) */
		break;
	case R_EXIT:
		r->in_guest = 0;
		replay_core_call(nmi_mask);
		replay_critical_work();
		replay_core_call(nmi_unmask);
		break;
	case R_GIRET:
		if (mail(me)->in_handler) {
			nmi_books_guest_iret(&r->guest, &percpu[me].nmi);
			mail(me)->cmd = RG_IRET;
		}
		break;
	case R_BLOCK:
	case R_UNBLOCK:
		replay_core_call(nmi_mask);
		replay_core_call(s->op == R_BLOCK ? nmi_guest_block : nmi_guest_unblock);
		replay_core_call(nmi_unmask);
		break;
	case R_DETACH:
		r->in_guest = 0;
		replay_core_call(nmi_mask);
		replay_core_call(nmi_guest_detach);
		r->detached = 1;
		r->at_detach = percpu[me].nmi;
		replay_core_call(nmi_unmask);
		break;
	}
}

/* A turn ends in guest mode: the guest gives the token back when it waits again. */
void replay_service_guest(unsigned me)
{
	rcpu[me].busy = 0; /* a turn that spun (a park) is over all the same */
	mail(me)->ack = 1;
}

void replay_guest_books(unsigned me, struct nmi_books_guest *out)
{
	struct replay_cpu *r = &rcpu[me];
	nmi_books_guest_sync(&r->guest, &percpu[me].nmi);
	if (!unavailable) {
		r->guest.received = mail(me)->received;
		r->guest.blocked = mail(me)->in_handler;
	}
	r->guest.queued = (r->vm_entry_intr & INTR_INFO_VALID) != 0;
	r->guest.window = (r->vm_proc & PROC_NMI_WINDOW_EXITING) != 0;
	*out = r->guest;
}

/* ---- Hooks from the platform ------------------------------------------------------------ */

void replay_vmcs_written(uint32_t field, uint64_t value)
{
	unsigned me = this_percpu()->index;
	if (!replay_on || me >= replay_ncpus)
		return;
	if (field == VMCS_PROC_BASED_CTLS)
		rcpu[me].vm_proc = value;
	else if (field == VMCS_ENTRY_INTR_INFO)
		rcpu[me].vm_entry_intr = value;
}

void replay_nmi_iret(void)
{
	unsigned me = this_percpu()->index;
	if (replay_on && me < replay_ncpus)
		rcpu[me].exit_blocked = 0;
}
