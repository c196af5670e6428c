/* SPDX-License-Identifier: MIT */
/*
 * platform_sim.c - nmi_platform.h for userspace, and the simulated NMI hardware.
 *
 * Hardware model and where it is faithful:
 *  - NMI delivery: SIGNMI (SIGUSR1) to the CPU's thread.  The kernel blocks it while
 *    the handler runs and unblocks it on the handler's return, exactly like NMI
 *    blocking and IRET; a second signal stays pending (the latch), further ones are
 *    dropped.  The model's own counters (sent/latched/dropped) mirror the kernel's.
 *  - NMI exiting + virtual NMIs (E=1, V=1): an NMI that lands while the CPU is in
 *    guest mode becomes a VM exit; the handler leaves SIGNMI blocked on return
 *    (uc_sigmask), because a real NMI exit leaves the host NMI-blocked until an
 *    IRET; plat_nmi_iret() unblocks it.
 *  - The guest: virtual-NMI blocking is set by an injected NMI and cleared by the
 *    guest's IRET; an NMI-window exit happens as soon as the control is set and the
 *    guest is not blocked; VM entry fails if an NMI is injected while it is.
 * Not modelled: MOV-SS/STI blocking, the activity state (HLT), injection of other
 * event types, interrupt-window exits.  The guest never executes code of its own.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include "machine.h"
#include "nmi_platform.h"

struct sim_machine M;
__thread struct sim_cpu *self;

/* ---- nmi_platform.h ---------------------------------------------------------------- */

static void preempt_at(uintptr_t rip);
#define preempt_point() preempt_at((uintptr_t)__builtin_return_address(0))

struct nmi_cpu *plat_this_cpu(void)
{
	preempt_point();
	return &self->core;
}
unsigned plat_ncpus(void)
{
	return M.ncpus;
}

static uint64_t *vmcs_field(struct sim_cpu *c, uint32_t field)
{
	switch (field) {
	case VMCS_PIN_BASED_CTLS: return &c->vmcs.pin;
	case VMCS_PROC_BASED_CTLS: return &c->vmcs.proc;
	case VMCS_ENTRY_INTR_INFO: return &c->vmcs.entry_intr;
	case VMCS_GUEST_INTERRUPTIBILITY: return &c->vmcs.guest_intr;
	}
	return NULL;
}

uint64_t plat_vmcs_read(uint32_t field)
{
	preempt_point();
	uint64_t *f = vmcs_field(self, field);
	if (!f)
		plat_halt(__FILE__, __LINE__, "VMREAD of a field the simulated VMCS lacks");
	return *f;
}

void plat_vmcs_write(uint32_t field, uint64_t value)
{
	preempt_point();
	uint64_t *f = vmcs_field(self, field);
	if (!f)
		plat_halt(__FILE__, __LINE__, "VMWRITE of a field the simulated VMCS lacks");
	*f = value;
	if (field == VMCS_PROC_BASED_CTLS && tl_enabled())
		tl_event(self->id, 0, "VMWRITE proc-based controls: NMI-window exiting %s",
			 (value & PROC_NMI_WINDOW_EXITING) ? "on" : "off");
}

void plat_send_nmi(unsigned id)
{
	preempt_point();
	if (id >= M.ncpus || &M.cpu[id] == self)
		plat_halt(__FILE__, __LINE__, "NMI IPI to self or to a missing CPU");
	if (tl_enabled())
		tl_event(self->id, 0, "sends NMI IPI to cpu%u", id);
	sim_send_nmi(&M.cpu[id], 1);
}

void plat_nmi_iret(void)
{
	struct sim_cpu *c = self;
	if (!c->exit_blocked)
		return; /* an IRET with nothing blocked changes nothing */
	c->exit_blocked = 0;
	if (tl_enabled())
		tl_event(c->id, 0, "IRET: host NMI blocking from the VM exit cleared");
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, SIGNMI);
	pthread_sigmask(SIG_UNBLOCK, &s, NULL); /* a latched NMI is taken right here */
}

void plat_relax(void)
{
	struct sim_cpu *c = self;
	if (!M.deterministic) {
		__builtin_ia32_pause();
		if ((++c->ops & 63) == 0)
			sched_yield(); /* more CPU threads than host cores */
		return;
	}
	/* A scheduling point: the schedule decides who runs next. */
	preempt_point();
	c->busy = 1;
	sim_hand_back(c);
	sim_wait_turn(c);
}

/* Small in deterministic runs, where a spin is a handful of scheduled turns; large
 * in free-running stress, where it is real time on a loaded host. */
unsigned long plat_spin_limit(void)
{
	return M.deterministic ? 1000 : 400000000ul;
}

void plat_world_lock(void) {}
void plat_world_unlock(void) {}

/* Nothing is cached: the core counts the flush (tlb_flushes). */
void plat_tlb_flush(void) {}

/* Record a violation and take this CPU out of the run: it hands the token back
 * and, when the controller ends the run, returns to its idle loop. */
static _Noreturn void stop_cpu(struct sim_cpu *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static _Noreturn void stop_cpu(struct sim_cpu *c, const char *fmt, ...)
{
	char what[sizeof M.what];
	va_list ap;
	tf_off();
	c->stepping = 0;
	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	sim_fail("%s", what);
	c->halted = 1;
	sim_hand_back(c);
	for (;;) {
		sim_wait_turn(c);
		siglongjmp(c->base, 1);
	}
}

_Noreturn void plat_halt(const char *file, int line, const char *what)
{
	struct sim_cpu *c = self;
	const char *base = strrchr(file, '/');
	base = base ? base + 1 : file;
	if (!M.deterministic) {
		fprintf(stderr, "\nNMI core assertion failed on cpu%u at %s:%d: %s\n", c->id, base,
			line, what);
		sim_dump_state(stderr);
		fflush(stderr);
		_exit(3);
	}
	stop_cpu(c, "cpu%u: NMI core assertion failed at %s:%d: %s", c->id, base, line, what);
}

/* ---- The NMI hardware ---------------------------------------------------------------- */

int sim_hw_blocked(const struct sim_cpu *c)
{
	return c->in_handler || c->exit_blocked;
}

static void kill_thread(struct sim_cpu *t)
{
	if (syscall(SYS_tgkill, getpid(), t->tid, SIGNMI) != 0) {
		fprintf(stderr, "tgkill: %s\n", strerror(errno));
		abort();
	}
}

/* `burst` NMIs arrive at CPU t at once.  Deterministic mode keeps the latch model
 * exact: the first one latches (it is delivered when t next runs, immediately if t
 * is not blocked), the next one latches behind it only if the first is delivered
 * into an unblocked CPU, the rest are dropped as hardware drops them. */
void sim_send_nmi(struct sim_cpu *t, unsigned burst)
{
	if (!M.deterministic) {
		__atomic_fetch_add(&t->sent, 1, __ATOMIC_RELAXED);
		kill_thread(t);
		return;
	}
	for (unsigned i = 0; i < burst; i++) {
		t->sent++;
		if (!t->latched) {
			t->latched = 1;
			kill_thread(t);
		} else if (!sim_hw_blocked(t) && t->burst == 0) {
			t->burst = 1; /* the first is taken at once; this one latches behind it */
		} else {
			t->dropped++; /* the latch is full: hardware drops it too */
		}
	}
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

	if (M.deterministic) {
		c->latched = 0;
		c->delivered++;
		if (c->burst) {
			c->burst = 0;
			c->latched = 1;
			kill_thread(c); /* blocked now: it waits for our IRET */
		}
	} else {
		__atomic_fetch_add(&c->delivered, 1, __ATOMIC_RELAXED);
	}
	if (sim_nmi_hook)
		sim_nmi_hook(rip, &c->core, c->in_guest);
	if (c->in_guest) {
		c->exit_pending = 1;
		c->exit_blocked = 1;
		sigaddset(&uc->uc_sigmask, SIGNMI); /* blocked until plat_nmi_iret() */
		if (tl_enabled())
			tl_event(c->id, 0,
				 "NMI in guest mode: VM exit (NMI), host now NMI-blocked");
		errno = saved_errno;
		return;
	}
	struct nmi_cpu before = c->core;
	c->in_handler = 1;
	nmi_host_entry();
	c->in_handler = 0;
	if (tl_enabled()) {
		char d[256];
		sim_describe_delta(&before, &c->core, d, sizeof d);
		tl_event(c->id, rip, "NMI -> handler: %s", d);
	}
	errno = saved_errno;
}

/* A core instruction boundary (precise mode) or platform call (fast mode) of the
 * running step: place the NMIs scheduled here.  Sent to ourselves with SIGNMI
 * blocked (we are in the trap handler, or about to return to the core), they are
 * delivered exactly at this boundary. */
void sim_arrivals(struct sim_cpu *c, uintptr_t rip)
{
	unsigned n = 0;
	c->icount++;
	while (c->atpos < c->nat) {
		struct sim_at *a = &c->at[c->atpos];
		int hit = (a->kind == AT_INDEX && a->index == c->icount) ||
			  (a->kind == AT_ADDR && a->addr == rip);
		if (!hit)
			break;
		n++;
		c->atpos++;
	}
	if (!n)
		return;
	if (tl_enabled())
		tl_event(c->id, rip, "NMI arrives%s (%s %u)", n > 1 ? " (burst)" : "",
			 M.fast ? "platform call" : "core instruction", c->icount);
	sim_send_nmi(c, n);
}

/* Fast mode: every call from the core into the platform is a preemption point. */
static void preempt_at(uintptr_t rip)
{
	struct sim_cpu *c = self;
	if (!M.fast || !c->stepping || c->in_handler || c->in_guest)
		return;
	sim_arrivals(c, rip);
}

/* Stepping stops at the core's edge.  When the core calls out (to a platform
 * function or a callback), the trap handler parks the return address here, runs
 * the callee at full speed, and sends it back through sim_tf_trampoline, which
 * sets the trap flag again and returns into the core: every core instruction is
 * stepped, no simulator instruction is. */
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

/* Single-step trap: one per instruction while the trap flag is set. */
static void on_trap(int sig, siginfo_t *si, void *ucv)
{
	(void)sig;
	(void)si;
	ucontext_t *uc = ucv;
	struct sim_cpu *c = self;
	greg_t *g = uc->uc_mcontext.gregs;
	uintptr_t rip = (uintptr_t)g[REG_RIP];

	if (!c || !c->stepping) {
		g[REG_EFL] &= ~0x100;
		return;
	}
	if (!sim_in_core(rip)) {
		if (!c->last_rip)
			return; /* not in the core yet: the call into it is a few steps on */
		/* Left the core.  Right after a call from it, [rsp] is the return address
		 * just past the last core instruction: step again from there.  Anything
		 * else is the core returning to the simulator. */
		uintptr_t *sp = (uintptr_t *)g[REG_RSP];
		if (c->last_rip && sp[0] > c->last_rip && sp[0] <= c->last_rip + 15 &&
		    sim_in_core(sp[0])) {
			tf_return = sp[0];
			sp[0] = (uintptr_t)sim_tf_trampoline;
		}
		c->last_rip = 0;
		g[REG_EFL] &= ~0x100;
		return;
	}
	c->last_rip = rip;
	sim_arrivals(c, rip);
	/* Step lazily: once the last arrival is placed, stop unless counting. */
	if (c->atpos >= c->nat && !(M.flags & SIM_STEP_ALL)) {
		c->stepping = 0;
		g[REG_EFL] &= ~0x100;
	}
}

/* The controller saw this CPU burn its step's CPU budget: report where it loops
 * and stop it as plat_halt() would. */
static void on_runaway(int sig, siginfo_t *si, void *ucv)
{
	(void)sig;
	(void)si;
	ucontext_t *uc = ucv;
	struct sim_cpu *c = self;
	uintptr_t rip = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
	stop_cpu(c,
		 "cpu%u: unbounded loop: still running at %s after 0.1 s of CPU time "
		 "(visited = %#x, drained %llu)",
		 c->id, sym_describe(rip), c->core.visited, (unsigned long long)c->core.drained);
}

void sim_install_handlers(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = on_nmi;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigemptyset(&sa.sa_mask); /* SIGNMI itself is blocked while it runs (no SA_NODEFER) */
	sigaction(SIGNMI, &sa, NULL);

	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = on_trap;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaddset(&sa.sa_mask, SIGNMI); /* an NMI sent here lands after the trap returns */
	sigaction(SIGTRAP, &sa, NULL);

	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = on_runaway;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	sigaddset(&sa.sa_mask, SIGNMI);
	sigaddset(&sa.sa_mask, SIGTRAP);
	sigaction(SIGRUNAWAY, &sa, NULL);
}

/* ---- The guest ------------------------------------------------------------------------- */

/* VM entry: deliver a queued injection, then take an NMI-window exit if one is due.
 * Priority as in the SDM: the injected event first, then the NMI-window exit. */
void sim_vmentry(struct sim_cpu *c)
{
	c->entries++;
	if (c->vmcs.entry_intr & INTR_INFO_VALID) {
		if (c->vmcs.guest_intr & GUEST_INTR_BLOCK_NMI) {
			sim_fail("cpu%u: VM entry failed: NMI injected while the guest is "
				 "virtual-NMI blocked",
				 c->id);
			c->vmcs.entry_intr = 0;
			return;
		}
		c->vmcs.entry_intr &= ~(uint64_t)INTR_INFO_VALID; /* consumed by the entry */
		if (c->fault_armed) {
			/* Delivery starts and faults (EPT violation on the guest's IDT):
			 * a VM exit with the NMI in the IDT-vectoring information, and no
			 * virtual-NMI blocking, since nothing was delivered. */
			c->fault_armed = 0;
			c->vectoring = INTR_INFO_NMI;
			c->in_guest = 1;
			if (tl_enabled())
				tl_event(c->id, 0,
					 "VM entry injects NMI: its delivery faults, VM "
					 "exit (EPT violation), IDT-vectoring = NMI");
			return;
		}
		c->vmcs.guest_intr |= GUEST_INTR_BLOCK_NMI;
		c->guest_nmis++;
		c->guest_in_nmi = 1;
		if (tl_enabled())
			tl_event(c->id, 0,
				 "VM entry injects NMI: guest NMI handler runs (guest "
				 "NMI #%llu), virtual-NMI blocked",
				 (unsigned long long)c->guest_nmis);
	}
	c->in_guest = 1;
}

static void exit_begin(struct sim_cpu *c)
{
	c->in_guest = 0;
}

/* Run the hypervisor's exit handlers for every exit that is due, re-entering the
 * guest after each, until the guest runs undisturbed.  Bounded: an exit storm is a
 * finding, not a hang. */
void sim_process_exits(struct sim_cpu *c)
{
	for (unsigned n = 0; c->in_guest && !M.failed; n++) {
		if (n > 64 && M.deterministic) {
			sim_fail("cpu%u: VM exit storm (64 exits without guest progress)", c->id);
			return;
		}
		if (c->vectoring) {
			uint32_t info = c->vectoring;
			c->vectoring = 0;
			exit_begin(c);
			CORE(nmi_mask());
			CORE(nmi_vmexit_vectoring(info));
			CORE(nmi_unmask());
			sim_vmentry(c);
			continue;
		}
		if (c->exit_pending) {
			c->exit_pending = 0;
			exit_begin(c);
			c->nmi_exits++;
			CORE(nmi_mask());
			CORE(nmi_vmexit_nmi());
			CORE(nmi_unmask());
			sim_vmentry(c);
			continue;
		}
		if ((c->vmcs.proc & PROC_NMI_WINDOW_EXITING) &&
		    !(c->vmcs.guest_intr & GUEST_INTR_BLOCK_NMI)) {
			exit_begin(c);
			c->window_exits++;
			if (tl_enabled())
				tl_event(c->id, 0, "VM exit: NMI window open");
			CORE(nmi_mask());
			CORE(nmi_vmexit_nmi_window());
			CORE(nmi_unmask());
			sim_vmentry(c);
			continue;
		}
		return;
	}
}

/* ---- Failure reporting ------------------------------------------------------------------ */

void sim_fail(const char *fmt, ...)
{
	if (M.failed)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(M.what, sizeof M.what, fmt, ap);
	va_end(ap);
	M.failed = 1;
	if (tl_enabled())
		tl_event(self ? self->id : 0, 0, "VIOLATION: %s", M.what);
}
