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
#include <errno.h>
#include <linux/hw_breakpoint.h>
#include <linux/perf_event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include "machine.h"
#include "tf_trampoline.h"

#ifndef TRAP_PERF
#define TRAP_PERF 6 /* si_code of a perf event's SIGTRAP (sigtrap=1, Linux 5.13) */
#endif

/* ---- Hardware breakpoints --------------------------------------------------------
 * A step whose arrivals are all AT_ADDR (an address and an occurrence count) needs
 * no stepping: one debug register per CPU thread, a perf event (PERF_TYPE_BREAKPOINT,
 * HW_BREAKPOINT_X, sigtrap=1) opened on the thread itself, traps before the armed
 * address executes, and only there.  The trap is the same SIGTRAP, si_code TRAP_PERF,
 * and the same arrivals() logic places the NMI, so both paths land it before the same
 * instruction.  Where perf_event_open fails (perf_event_paranoid, a container,
 * seccomp) or NMI_NO_HWBP is set, such steps are single-stepped instead, said once. */
static int hwbp_state; /* 0: not tried yet, 1: available, -1: stepping instead */
static __thread int bp_fd = -1; /* this CPU thread's breakpoint event */

static void bp_attr(struct perf_event_attr *pa, uintptr_t addr, int disabled)
{
	memset(pa, 0, sizeof *pa);
	pa->type = PERF_TYPE_BREAKPOINT;
	pa->size = sizeof *pa;
	pa->bp_type = HW_BREAKPOINT_X;
	pa->bp_addr = addr;
	pa->bp_len = sizeof(long);
	pa->sample_period = 1;
	pa->disabled = disabled ? 1u : 0u;
	pa->sigtrap = 1;
	pa->remove_on_exec = 1;
	pa->exclude_kernel = 1;
	pa->exclude_hv = 1;
}

static void hwbp_unavailable(const char *why)
{
	if (__atomic_exchange_n(&hwbp_state, -1, __ATOMIC_SEQ_CST) != -1)
		fprintf(stderr,
			"nmisim: hardware breakpoints unavailable (%s): "
			"NMIs at core addresses are placed by single-stepping\n",
			why);
}

/* This thread's breakpoint event, opened disabled on first use; -1: none. */
static int bp_event(void)
{
	if (hwbp_state < 0)
		return -1;
	if (bp_fd >= 0)
		return bp_fd;
	if (hwbp_state == 0 && getenv("NMI_NO_HWBP")) {
		hwbp_unavailable("NMI_NO_HWBP is set");
		return -1;
	}
	struct perf_event_attr pa;
	bp_attr(&pa, (uintptr_t)__start_nmi_core_text, 1);
	int fd = (int)syscall(SYS_perf_event_open, &pa, 0, -1, -1, PERF_FLAG_FD_CLOEXEC);
	if (fd < 0) {
		char why[96];
		snprintf(why, sizeof why, "perf_event_open: %s", strerror(errno));
		hwbp_unavailable(why);
		return -1;
	}
	hwbp_state = 1;
	return bp_fd = fd;
}

/* Arm this thread's breakpoint at addr (0: disarm).  0 on success. */
static int bp_arm(uintptr_t addr)
{
	struct perf_event_attr pa;
	bp_attr(&pa, addr ? addr : (uintptr_t)__start_nmi_core_text, !addr);
	return ioctl(bp_fd, PERF_EVENT_IOC_MODIFY_ATTRIBUTES, &pa);
}

/* Can this step's arrivals be placed by breakpoints alone? */
static int bp_step(const struct sim_stepper *st)
{
	if (M.fast || (M.flags & SIM_STEP_ALL) || st->nat == 0)
		return 0;
	for (unsigned i = 0; i < st->nat; i++)
		if (st->at[i].kind != AT_ADDR)
			return 0;
	return bp_event() >= 0;
}

int sim_hwbp_available(void)
{
	return bp_event() >= 0;
}

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
	st->hits = 0;
	st->last_rip = 0;
	st->bp = st->bp_unarmed = 0;
	if (bp_step(st)) {
		/* Armed at the step's first call into the core (stepper_core_call): a
		 * step whose operation is ignored never calls it, and costs no ioctl. */
		st->bp = st->bp_unarmed = 1;
		st->on = 0;
		return;
	}
	st->on = st->nat != 0 || (M.flags & SIM_STEP_ALL);
}

/* The step calls into the core for the first time: arm its breakpoint, or step it
 * from here where the breakpoint cannot be armed. */
void stepper_core_call(struct sim_cpu *c)
{
	struct sim_stepper *st = &c->step;
	st->bp_unarmed = 0;
	if (bp_arm(st->at[st->next].addr) != 0) {
		st->bp = 0;
		st->on = 1;
	}
}

void stepper_end(struct sim_cpu *c)
{
	c->step.on = 0;
	if (c->step.bp) {
		c->step.bp = 0;
		if (!c->step.bp_unarmed)
			bp_arm(0);
	}
	c->step.bp_unarmed = 0;
}

/* A core instruction boundary (precise mode) or platform call (fast mode) of the
 * running step: place the NMIs scheduled here. */
static void arrivals(struct sim_cpu *c, uintptr_t rip)
{
	struct sim_stepper *st = &c->step;
	unsigned n = 0, by_addr = 0;
	st->count++;
	while (st->next < st->nat) {
		struct sim_at *a = &st->at[st->next];
		/* AT_ADDR: the occurrence-th time rip reaches addr since the previous
		 * arrival of the step (the boundary where that one landed counts). */
		int hit = (a->kind == AT_INDEX && a->index == st->count) ||
			  (a->kind == AT_ADDR && a->addr == rip &&
			   ++st->hits >= (a->index ? a->index : 1u));
		if (!hit)
			break;
		n++;
		by_addr = a->kind == AT_ADDR;
		st->next++;
		st->hits = 0;
	}
	if (!n)
		return;
	/* The same line whether a breakpoint or the trap flag found the address. */
	if (tl_enabled() && by_addr)
		tl_event(c->id, rip, "NMI arrives%s (core address)", n > 1 ? " (burst)" : "");
	else if (tl_enabled())
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
TF_TRAMPOLINE(sim_tf_trampoline, sim_tf_return);

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
	ucontext_t *uc = ucv;
	struct sim_cpu *c = self;
	greg_t *g = uc->uc_mcontext.gregs;
	uintptr_t rip = (uintptr_t)g[REG_RIP];

	if (si && si->si_code == TRAP_PERF) {
		/* A breakpoint hit.  The NMI handler's own pass over the address is not
		 * part of the step (stepping never sees it either). */
		if (!c || !c->step.bp || c->nmi.in_handler)
			return;
		arrivals(c, rip);
		if (c->step.next >= c->step.nat) {
			c->step.bp = 0;
			bp_arm(0);
		} else if (c->step.at[c->step.next].addr != rip) {
			bp_arm(c->step.at[c->step.next].addr);
		}
		return;
	}
	/* The NMI handler, stepped only to record what it executes (coverage.c). */
	int traced = c && c->nmi.in_handler && c->step.in_handler_traced;
	if (!c || (!c->step.on && !traced)) {
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
	coverage_boundary(c, rip);
	if (traced)
		return; /* counted nowhere: no step's boundary */
	runaway_count_insn(c, rip);
	arrivals(c, rip);
	/* Step lazily: once the last arrival is placed, stop unless counting. */
	if (c->step.next >= c->step.nat && !(M.flags & SIM_STEP_ALL)) {
		c->step.on = 0;
		g[REG_EFL] &= ~0x100;
	}
}

/* A resumed spin's turn on CPU c (its thread, back from controller_wait_turn): a
 * `run` step with arrivals of its own, or stepped throughout, counts the turn's core
 * instructions from 1 and places its own arrivals there (controller.c).  Stepped,
 * never on a breakpoint: the trap flag goes on here, and the few instructions back
 * into the core are not counted. */
void stepper_resume(struct sim_cpu *c, const struct sim_step *s)
{
	struct sim_stepper *st = &c->step;
	if (st->bp && !st->bp_unarmed)
		bp_arm(0);
	st->bp = st->bp_unarmed = 0;
	st->nat = st->next = 0;
	st->count = st->hits = 0;
	for (unsigned i = 0; i < s->nat && i < SIM_MAX_AT; i++)
		st->at[st->nat++] = s->at[i];
	st->on = 1;
	st->last_rip = 0;
	if (!M.fast)
		tf_on();
}

/* With coverage_traces_handler(): the NMI handler's core instructions are stepped
 * and recorded as executed with NMIs blocked (coverage.c), counted in no step.  The
 * interrupted flow's stepping state (its pending return through the trampoline, its
 * last core instruction) is kept aside meanwhile. */
void stepper_handler(struct sim_cpu *c, void (*entry)(void))
{
	/* Only in runs stepped throughout (explore's nodes), not in every leaf. */
	if (M.fast || !(M.flags & SIM_STEP_ALL) || !coverage_traces_handler()) {
		entry();
		return;
	}
	uintptr_t ret = tf_return, last = c->step.last_rip;
	c->step.last_rip = 0;
	c->step.in_handler_traced = 1;
	tf_on();
	entry();
	tf_off();
	c->step.in_handler_traced = 0;
	c->step.last_rip = last;
	tf_return = ret;
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
