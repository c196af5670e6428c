/* SPDX-License-Identifier: MIT */
/*
 * nmi_hw.c - the NMI line of a simulated CPU.
 *
 * An NMI is SIGNMI (SIGUSR1) sent to the CPU's thread.  The kernel blocks it while
 * the handler runs and unblocks it on the handler's return, exactly like NMI
 * blocking and IRET; one more signal stays pending (the latch), further ones are
 * dropped.  The model's own counters (sent, delivered, dropped) mirror the kernel's;
 * in a deterministic run they are exact, one NMI at a time.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include "machine.h"

void (*sim_nmi_hook)(uintptr_t rip, const struct nmi_cpu *state, unsigned hw);

/* The machine around the core where an NMI lands (sim.h's SIM_HW_* bits). */
static unsigned hw_state(const struct sim_cpu *c)
{
	const struct sim_vmcs *v = &c->vmx.vmcs;
	return (c->vmx.in_guest ? SIM_HW_IN_GUEST : 0) |
	       ((v->guest_intr & GUEST_INTR_BLOCK_NMI) ? SIM_HW_GUEST_VBLK : 0) |
	       ((v->entry_intr & INTR_INFO_VALID) ? SIM_HW_QUEUED : 0) |
	       (c->vmx.vectoring || c->vmx.fault_armed ? SIM_HW_DELIVERY : 0) |
	       (nmi_quiesce_state.active ? SIM_HW_QUIESCE : 0) |
	       (c->nmi.exit_blocked ? SIM_HW_EXIT_BLOCK : 0);
}

int nmi_hw_blocked(const struct sim_cpu *c)
{
	return c->nmi.in_handler || c->nmi.exit_blocked;
}

void nmi_hw_block(sigset_t *old)
{
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, SIGNMI);
	pthread_sigmask(SIG_BLOCK, &s, old);
}

static void kill_thread(struct sim_cpu *t)
{
	if (syscall(SYS_tgkill, getpid(), t->th.tid, SIGNMI) != 0) {
		fprintf(stderr, "tgkill: %s\n", strerror(errno));
		abort();
	}
}

void sim_send_nmi(struct sim_cpu *t, unsigned burst)
{
	M.mode->send(t, burst);
}

/* `burst` NMIs arrive at CPU t at once.  The first one latches (it is delivered
 * when t next runs, immediately if t is not blocked), the next one latches behind it
 * only if the first is delivered into an unblocked CPU, the rest are dropped as
 * hardware drops them. */
void nmi_hw_send_exact(struct sim_cpu *t, unsigned burst)
{
	for (unsigned i = 0; i < burst; i++) {
		t->nmi.sent++;
		if (!t->nmi.latched) {
			t->nmi.latched = 1;
			kill_thread(t);
		} else if (!nmi_hw_blocked(t) && t->nmi.burst == 0) {
			t->nmi.burst =
			    1; /* the first is taken at once; this one latches behind it */
		} else {
			t->nmi.dropped++; /* the latch is full: hardware drops it too */
		}
	}
}

/* Free-running: the kernel's latch decides; only what was sent is counted here. */
void nmi_hw_send_free(struct sim_cpu *t, unsigned burst)
{
	for (unsigned i = 0; i < burst; i++) {
		__atomic_fetch_add(&t->nmi.sent, 1, __ATOMIC_RELAXED);
		kill_thread(t);
	}
}

void nmi_hw_delivered_exact(struct sim_cpu *c)
{
	c->nmi.latched = 0;
	c->nmi.delivered++;
	if (c->nmi.burst) {
		c->nmi.burst = 0;
		c->nmi.latched = 1;
		kill_thread(c); /* blocked now: it waits for our IRET */
	}
}

void nmi_hw_delivered_free(struct sim_cpu *c)
{
	__atomic_fetch_add(&c->nmi.delivered, 1, __ATOMIC_RELAXED);
}

/* An IRET after an NMI VM exit: the host's NMI blocking ends. */
void nmi_hw_iret(struct sim_cpu *c)
{
	if (!c->nmi.exit_blocked)
		return; /* an IRET with nothing blocked changes nothing */
	c->nmi.exit_blocked = 0;
	if (tl_enabled())
		tl_event(c->id, 0, "IRET: host NMI blocking from the VM exit cleared");
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, SIGNMI);
	pthread_sigmask(SIG_UNBLOCK, &s, NULL); /* a latched NMI is taken right here */
}

/* Consume a pending SIGNMI without taking it: it belongs to a run that is over. */
void nmi_hw_discard(void)
{
	sigset_t s;
	struct timespec zero = {0, 0};
	sigemptyset(&s);
	sigaddset(&s, SIGNMI);
	while (sigtimedwait(&s, NULL, &zero) > 0)
		;
}

/* The vector-2 handler, or the NMI VM exit when the CPU is in guest mode. */
static void on_nmi(int sig, siginfo_t *si, void *ucv)
{
	(void)sig;
	(void)si;
	ucontext_t *uc = ucv;
	struct sim_cpu *c = self;
	uintptr_t rip = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
	int saved_errno = errno;

	M.mode->delivered(c);
	coverage_nmi_lands(c, rip); /* make coverage (sim/coverage.c) */
	if (sim_nmi_hook)
		sim_nmi_hook(rip, &c->core, hw_state(c));
	if (vmx_hw_nmi_exit(c)) {
		/* A real NMI exit leaves the host NMI-blocked until an IRET: so does the
		 * signal mask this handler returns with, until plat_nmi_iret(). */
		c->nmi.exit_blocked = 1;
		sigaddset(&uc->uc_sigmask, SIGNMI);
		errno = saved_errno;
		return;
	}
	struct nmi_cpu before = c->core;
	c->nmi.in_handler = 1;
	stepper_handler(c, nmi_host_entry);
	c->nmi.in_handler = 0;
	if (tl_enabled()) {
		char d[256];
		tl_describe_delta(&before, &c->core, d, sizeof d);
		tl_event(c->id, rip, "NMI -> handler: %s", d);
	}
	errno = saved_errno;
}

void nmi_hw_install(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = on_nmi;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigemptyset(&sa.sa_mask); /* SIGNMI itself is blocked while it runs (no SA_NODEFER) */
	sigaction(SIGNMI, &sa, NULL);
}
