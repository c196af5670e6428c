/* SPDX-License-Identifier: MIT */
/*
 * replay_cpu.c - a scenario CPU of workload=replay: it runs only while it holds the
 * token, as a CPU thread of the simulator's deterministic run does
 * (sim/controller.c).
 *
 * A CPU holds the token for one turn: a step (CMD_OP), taking the NMIs that wait
 * for it (CMD_SERVICE), or going on from a spin (CMD_RESUME).  It gives it back at
 * the end of the turn, or at a spin: the core's plat_relax() is replay_relax()
 * here, which parks the CPU "busy" inside its step until the controller resumes it.
 *
 * NMIs are real, so they cannot be held the way the simulator holds a signal to a
 * thread that waits for the token.  Instead, an NMI's handler that finds the token
 * elsewhere waits for it at its entry (replay_nmi_enter), before the core sees the
 * NMI: the CPU is then NMI-blocked, so further NMIs latch or are dropped exactly as
 * hardware does, and the controller's next "service" turn lets the handler run,
 * which is where the simulator delivers a latched signal.  For a CPU parked in a
 * spin, the handler runs when the CPU is resumed, right inside the spin, as the
 * simulator's latched signal does.
 */
#include "hv.h"
#include "nmi_platform.h"
#include "replay.h"
#include "x86.h"

struct replay_cpu rcpu[REPLAY_MAX_CPUS];
volatile int *replay_token; /* in the guest's shared page: replay_guest.c */

/* How an NMI handler found the token (replay_nmi_enter's answer). */
enum { NMI_OWN_TURN, NMI_WAITED_IDLE, NMI_WAITED_BUSY, NMI_DISCARD };

/* This CPU's replay state while replaying and in the scenario, else NULL; its index
 * in *me. */
struct replay_cpu *replay_this_cpu(unsigned *me)
{
	unsigned i = this_percpu()->index;
	*me = i;
	return replay_on && i < replay_ncpus ? &rcpu[i] : 0;
}

void replay_wait_token(unsigned me)
{
	while (__atomic_load_n(replay_token, __ATOMIC_ACQUIRE) != (int)me)
		cpu_pause();
}

void replay_hand_back(void)
{
	__atomic_store_n(replay_token, REPLAY_CTL, __ATOMIC_RELEASE);
}

/* ---- setjmp / longjmp: a halted or aborted CPU goes back to its idle loop ----------- */
__asm__(".text\n"
	".globl replay_setjmp\n"
	"replay_setjmp:\n"
	"	movq %rbx, 0(%rdi)\n"
	"	movq %rbp, 8(%rdi)\n"
	"	movq %r12, 16(%rdi)\n"
	"	movq %r13, 24(%rdi)\n"
	"	movq %r14, 32(%rdi)\n"
	"	movq %r15, 40(%rdi)\n"
	"	leaq 8(%rsp), %rax\n"
	"	movq %rax, 48(%rdi)\n"
	"	movq (%rsp), %rax\n"
	"	movq %rax, 56(%rdi)\n"
	"	xorl %eax, %eax\n"
	"	ret\n"
	".globl replay_longjmp\n"
	"replay_longjmp:\n"
	"	movq 0(%rdi), %rbx\n"
	"	movq 8(%rdi), %rbp\n"
	"	movq 16(%rdi), %r12\n"
	"	movq 24(%rdi), %r13\n"
	"	movq 32(%rdi), %r14\n"
	"	movq 40(%rdi), %r15\n"
	"	movq 48(%rdi), %rsp\n"
	"	movl $1, %eax\n"
	"	jmpq *56(%rdi)\n");

/* ---- Hooks: the rest of the hypervisor calls these, no-ops unless replaying ------- */

int replay_nmi_enter(void)
{
	unsigned me;
	struct replay_cpu *r = replay_this_cpu(&me);
	if (!r)
		return NMI_OWN_TURN;
	r->arrived++;
	r->in_nmi = 1;
	if (__atomic_load_n(replay_token, __ATOMIC_ACQUIRE) == (int)me)
		return NMI_OWN_TURN; /* landed in this CPU's own turn (nmi@K, its IPIs) */
	int idle = !r->busy;
	r->nmi_wait = 1;
	replay_wait_token(me);
	r->nmi_wait = 0;
	if (r->cmd == CMD_FLUSH)
		return NMI_DISCARD; /* it belongs to a case that is over */
	return idle ? NMI_WAITED_IDLE : NMI_WAITED_BUSY;
}

void replay_nmi_leave(int how)
{
	unsigned me;
	struct replay_cpu *r = replay_this_cpu(&me);
	if (!r)
		return;
	r->in_nmi = 0;
	/* It interrupted the idle loop, which does not hold the token: this turn ends
	 * here.  (Interrupting a spin, the resumed spin goes on with the token.) */
	if (how == NMI_WAITED_IDLE || how == NMI_DISCARD) {
		r->busy = 0;
		replay_hand_back();
	}
}

/* The vector-2 handler's body (entry.S). */
void nmi_handler_body(void);
void nmi_handler_body(void)
{
	int how = replay_on ? replay_nmi_enter() : NMI_OWN_TURN;
	if (how != NMI_DISCARD)
		nmi_host_entry();
	if (replay_on)
		replay_nmi_leave(how);
}

int replay_relax(void)
{
	unsigned me;
	struct replay_cpu *r = replay_this_cpu(&me);
	if (!r)
		return 0;
	r->busy = 1;
	replay_hand_back();
	replay_wait_token(me);
	if (r->cmd == CMD_ABORT)
		replay_longjmp(r->jmp);
	return 1;
}

/* An assertion of the core: the case's verdict (worded as the simulator words it). */
int replay_halt(const char *file, int line, const char *what)
{
	unsigned me;
	struct replay_cpu *r = replay_this_cpu(&me);
	if (!r)
		return 0;
	replay_fail_assert(me, file, line, what);
	r->halted = 1;
	replay_longjmp(r->jmp);
}

void replay_nmi_sent(unsigned id)
{
	if (replay_on && id < replay_ncpus)
		__atomic_fetch_add(&rcpu[id].sent, 1, __ATOMIC_RELAXED);
}

/* ---- The scenario CPU ---------------------------------------------------------------- */

/* Stands for an intercept handler's edits of per-CPU state under the mask (the
 * simulator's critical_work(), sim/ops.c). */
void replay_critical_work(void)
{
	for (volatile int i = 0; i < 4; i++)
		;
}

/* Every world check the simulator's op_quiesce makes (oracle_world_stopped). */
static void world_stopped(unsigned me)
{
	uint32_t round = nmi_quiesce_state.round;
	for (unsigned i = 0; i < replay_ncpus; i++)
		if (i != me && (percpu[i].nmi.quiesce_seen != round || !rcpu[i].busy))
			replay_fail("stop-the-world round %u began while cpu%u was not parked",
				    round, i);
}

/* The host-side operations; guest ones are replay_guest.c's.  Each is total, as
 * in the simulator: one that makes no sense now is ignored (sim/ops.c's needs). */
void replay_run_op(unsigned me, const struct replay_step *s)
{
	struct replay_cpu *r = &rcpu[me];
	const struct nmi_cpu *c = &percpu[me].nmi;
	switch (s->op) {
	case R_MASK:
		if (!r->in_guest && !c->masked)
			replay_core_call(nmi_mask);
		break;
	case R_UNMASK:
		if (c->masked)
			replay_core_call(nmi_unmask);
		break;
	case R_CRIT:
		if (!r->in_guest && !c->masked) {
			replay_core_call(nmi_mask);
			replay_critical_work();
			replay_core_call(nmi_unmask);
		}
		break;
	case R_QUIESCE:
		if (!r->in_guest && !c->masked) {
			replay_core_call(nmi_quiesce_begin);
			world_stopped(me);
			replay_core_call_int(nmi_quiesce_end, s->arg);
		}
		break;
	default: replay_guest_op(me, s); break;
	}
}

/* CPU `me` of the scenario: wait for the token, run the turn, give it back. */
void replay_cpu_loop(unsigned me)
{
	struct replay_cpu *r = &rcpu[me];
	if (replay_setjmp(r->jmp)) {
		/* Back from a halt or an abort, perhaps out of an NMI handler or an NMI
		 * exit's blocking: an IRET ends any NMI blocking, and the turn is over. */
		__asm__ __volatile__("pushfq; andq $~0x100, (%%rsp); popfq" ::: "memory", "cc");
		r->st.on = 0;
		replay_trace_end();
		hv_nmi_iret();
		r->in_nmi = 0;
		r->exit_blocked = 0;
		r->busy = 0;
		r->in_guest = 0;
		replay_hand_back();
	}
	for (;;) {
		/* In guest mode, the turn starts with the guest's VMCALL; NMI exits that
		 * come first are serviced in there (replay_guest.c). */
		if (r->in_guest)
			replay_guest_idle(me);
		else
			replay_wait_token(me);
		switch (r->in_guest || !replay_failed ? r->cmd : CMD_NONE) {
		case CMD_OP:
			replay_step_begin(me, r->step);
			replay_run_op(me, r->step);
			/* A step that leaves the CPU in guest mode goes on there: its VM
			 * entry's exits are the step's (replay_guest.c ends it). */
			if (!r->in_guest)
				replay_step_end(me);
			break;
		case CMD_ABORT: r->in_guest = 0; break; /* a new case: out of the guest */
		default: break;
		}
		r->busy = 0;
		if (r->in_guest)
			replay_service_guest(me); /* the guest gives the token back */
		else
			replay_hand_back();
	}
}
