/* SPDX-License-Identifier: MIT */
/*
 * stepper.c - NMIs that land at chosen points inside the core.
 *
 * Precise mode: the simulator sets the trap flag right before it calls into the
 * core (CORE() in machine.h); the SIGTRAP handler counts the core's instruction
 * boundaries and, at a chosen one, sends SIGNMI to its own thread with the signal
 * blocked: it is delivered the moment the trap handler returns, exactly before that
 * instruction.  Fast mode: every call from the core into the platform is such a
 * point instead, and nothing is stepped.
 */
#define _GNU_SOURCE
#include <string.h>
#include <ucontext.h>

#include "machine.h"

/* Arm the step's arrivals on CPU c.  AT_INDEX arrivals are sorted, so the trap
 * handler only looks at the next one. */
void stepper_begin(struct sim_cpu *c, const struct sim_step *s)
{
	struct sim_stepper *st = &c->step;
	st->nat = st->next = 0;
	st->count = 0;
	for (unsigned i = 0; i < s->nat && i < SIM_MAX_AT; i++)
		st->at[st->nat++] = s->at[i];
	for (unsigned i = 1; i < st->nat; i++)
		for (unsigned j = i;
		     j > 0 && st->at[j - 1].kind == AT_INDEX && st->at[j].kind == AT_INDEX &&
		     st->at[j - 1].index > st->at[j].index;
		     j--) {
			struct sim_at t = st->at[j];
			st->at[j] = st->at[j - 1];
			st->at[j - 1] = t;
		}
	st->on = st->nat != 0 || (M.flags & SIM_STEP_ALL);
	st->last_rip = 0;
}

void stepper_end(struct sim_cpu *c)
{
	c->step.on = 0;
}

/* A core instruction boundary (precise mode) or platform call (fast mode) of the
 * running step: place the NMIs scheduled here. */
static void arrivals(struct sim_cpu *c, uintptr_t rip)
{
	struct sim_stepper *st = &c->step;
	unsigned n = 0;
	st->count++;
	while (st->next < st->nat) {
		struct sim_at *a = &st->at[st->next];
		int hit = (a->kind == AT_INDEX && a->index == st->count) ||
			  (a->kind == AT_ADDR && a->addr == rip);
		if (!hit)
			break;
		n++;
		st->next++;
	}
	if (!n)
		return;
	if (tl_enabled())
		tl_event(c->id, rip, "NMI arrives%s (%s %u)", n > 1 ? " (burst)" : "",
			 M.fast ? "platform call" : "core instruction", st->count);
	sim_send_nmi(c, n);
}

/* Fast mode: every call from the core into the platform is a point where an NMI
 * may land (the handler and guest mode excepted). */
void stepper_platform_call(uintptr_t rip)
{
	struct sim_cpu *c = self;
	if (!M.fast || !c->step.on || c->nmi.in_handler || c->vmx.in_guest)
		return;
	arrivals(c, rip);
}

/* Stepping stops at the core's edge.  When the core calls out (to a platform
 * function), the trap handler parks the return address here, runs the callee at
 * full speed, and sends it back through sim_tf_trampoline, which sets the trap
 * flag again and returns into the core: every core instruction is stepped, no
 * simulator instruction is. */
static __thread uintptr_t tf_return;
uintptr_t sim_tf_return(void);
uintptr_t sim_tf_return(void)
{
	return tf_return;
}
extern char sim_tf_trampoline[];
__asm__(".text\n"
	".globl sim_tf_trampoline\n"
	"sim_tf_trampoline:\n"
	"	subq $8, %rsp\n" /* the return address goes here */
	"	pushq %rax\n"
	"	pushq %rdx\n"
	"	pushq %rcx\n"
	"	pushq %rsi\n"
	"	pushq %rdi\n"
	"	pushq %r8\n"
	"	pushq %r9\n"
	"	pushq %r10\n"
	"	pushq %r11\n"
	"	call sim_tf_return\n"
	"	movq %rax, 72(%rsp)\n"
	"	popq %r11\n"
	"	popq %r10\n"
	"	popq %r9\n"
	"	popq %r8\n"
	"	popq %rdi\n"
	"	popq %rsi\n"
	"	popq %rcx\n"
	"	popq %rdx\n"
	"	popq %rax\n"
	"	pushfq\n"
	"	orq $0x100, (%rsp)\n"
	"	popfq\n"
	"	ret\n");

/* The word at the top of the interrupted code's stack.  Right after the core
 * calls out it is the return address into the core; right after the core returns
 * it is whatever lies just below the caller's frame, which an AddressSanitizer build
 * of the simulator poisons as a redzone (a stack-buffer-underflow report, though
 * nothing is wrong).  Reading it is legitimate: it is mapped stack of the thread the
 * trap interrupted, and only its value is compared with the core's bounds.  So this
 * one read is not instrumented (never inlined into on_trap, which is). */
__attribute__((no_sanitize_address, noinline)) static uintptr_t stack_top(const uintptr_t *sp)
{
	return sp[0];
}

/* Single-step trap: one per instruction while the trap flag is set. */
static void on_trap(int sig, siginfo_t *si, void *ucv)
{
	(void)sig;
	(void)si;
	ucontext_t *uc = ucv;
	struct sim_cpu *c = self;
	greg_t *g = uc->uc_mcontext.gregs;
	uintptr_t rip = (uintptr_t)g[REG_RIP];

	if (!c || !c->step.on) {
		g[REG_EFL] &= ~0x100;
		return;
	}
	if (!sim_in_core(rip)) {
		if (!c->step.last_rip)
			return; /* not in the core yet: the call into it is a few steps on */
		/* Left the core.  Right after a call from it, [rsp] is the return address
		 * just past the last core instruction: step again from there.  Anything
		 * else is the core returning to the simulator. */
		uintptr_t *sp = (uintptr_t *)g[REG_RSP];
		uintptr_t top = stack_top(sp);
		if (top > c->step.last_rip && top <= c->step.last_rip + 15 && sim_in_core(top)) {
			tf_return = top;
			sp[0] =
			    (uintptr_t)sim_tf_trampoline; /* a return address: never a redzone */
		}
		c->step.last_rip = 0;
		g[REG_EFL] &= ~0x100;
		return;
	}
	c->step.last_rip = rip;
	runaway_count_insn(c, rip);
	arrivals(c, rip);
	/* Step lazily: once the last arrival is placed, stop unless counting. */
	if (c->step.next >= c->step.nat && !(M.flags & SIM_STEP_ALL)) {
		c->step.on = 0;
		g[REG_EFL] &= ~0x100;
	}
}

void stepper_install(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = on_trap;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaddset(&sa.sa_mask, SIGNMI); /* an NMI sent here lands after the trap returns */
	sigaction(SIGTRAP, &sa, NULL);
}
