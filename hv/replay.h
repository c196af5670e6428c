/* SPDX-License-Identifier: MIT */
/*
 * replay.h - workload=replay: a scenario of the simulator, run by real CPUs under
 * the same schedule (docs/replay.md).  Between the replay's files only:
 *
 *   replay.c        the compact schedule, the controller CPU, cases and verdicts
 *   replay_cpu.c    a scenario CPU: the token, its steps, its NMIs, its halts
 *   replay_step.c   nmi@K: the trap flag counts core instructions, a real NMI lands
 *   replay_guest.c  guest steps: a minimal VMX guest that waits for its token
 *
 * The simulator's vocabulary (sim/sim.h) is kept: a step, its op letters, the token,
 * "busy" (parked in a spin, holding its place in the step), "service" (a CPU takes
 * the NMIs that wait for it), "finish" (spinning CPUs run on at the end).
 */
#ifndef HV_REPLAY_H
#define HV_REPLAY_H

#include <stdint.h>

#include "nmi_books.h"

#define REPLAY_MAX_CPUS  7 /* scenario CPUs; one more runs the controller        */
#define REPLAY_MAX_STEPS 128
#define REPLAY_MAX_AT    4
#define REPLAY_CTL       (-1) /* the token is with the controller               */

/* The simulator's operations (sim.h enum sim_op), by their compact letter. */
enum replay_op {
	R_MASK = 'm',
	R_UNMASK = 'u',
	R_CRIT = 'c',
	R_NMI = 'n',
	R_ENTER = 'e',
	R_EXIT = 'x',
	R_GIRET = 'i',
	R_BLOCK = 'b',
	R_UNBLOCK = 'o',
	R_QUIESCE = 'q',
	R_RUN = 'r',
	R_FAULT = 'f',
	R_DETACH = 'd',
};

enum replay_at_kind { AT_INDEX, AT_ADDR, AT_EVERY };

struct replay_at {
	uint8_t kind;
	uint32_t index; /* AT_INDEX: the index; AT_ADDR: the occurrence (1-based) */
	uintptr_t addr; /* AT_ADDR: a core address                                */
};

struct replay_step {
	uint8_t cpu;
	char op;
	uint8_t arg;
	uint8_t nat;
	struct replay_at at[REPLAY_MAX_AT];
};

/* A schedule (replay_sched.c). */
struct replay_sched {
	unsigned ncpus, nsteps;
	struct replay_step step[REPLAY_MAX_STEPS];
	int wild_step; /* the step with nmi@*, or -1 */
	unsigned wild_at; /* its index in that step's arrivals */
};
const char *replay_sched_parse(struct replay_sched *s);

/* What the controller asks of a scenario CPU with the token. */
enum replay_cmd { CMD_NONE, CMD_OP, CMD_SERVICE, CMD_RESUME, CMD_ABORT, CMD_FLUSH };

/* One scenario CPU as the controller and the CPU itself see it.  Written by the
 * CPU unless marked [ctl]. */
struct replay_cpu {
	volatile int cmd; /* [ctl] what this turn is for                       */
	volatile uint32_t seq; /* [ctl] turns given so far: tells one turn from the next */
	const struct replay_step *volatile step; /* [ctl] the step of a CMD_OP   */
	volatile int busy; /* parked in a spin inside a step (plat_relax)        */
	volatile int halted; /* stopped by a violation until the next case       */
	volatile int nmi_wait; /* an NMI's handler waits for the token            */
	volatile uint32_t in_nmi; /* vector-2 handlers running (0 or 1)             */
	volatile int exit_blocked; /* NMI-blocked since an NMI VM exit, until IRET  */
	volatile uint64_t sent; /* NMIs sent to this CPU (controller, plat_send_nmi) */
	volatile uint64_t arrived; /* ... that reached its handler or its exit path */
	uint64_t jmp[8]; /* replay_setjmp(): the idle loop, where a halt returns   */
	/* replay_step.c: where the running step's NMIs land. */
	struct {
		volatile int on; /* the trap flag follows the core in this step         */
		uint32_t count; /* core instructions crossed                        */
		unsigned nat, next;
		uint32_t hits;
		struct replay_at at[REPLAY_MAX_AT];
		uintptr_t last_rip, tf_return;
		int count_only; /* count every instruction (nmi@*'s first pass)        */
		uint32_t seq; /* the turn the step runs in (rcpu.seq)                  */
		uint32_t counted; /* ... and the count, at the end of that step          */
	} st;
	/* replay_guest.c */
	int in_guest; /* the CPU is in VMX non-root operation between steps      */
	int launched, needs_setup;
	int fault_armed, fault_active; /* `fault`: the next injection meets an EPT violation */
	uint64_t vm_proc, vm_entry_intr; /* the core's last writes of these fields */
	int detached; /* the guest was detached for good                        */
	struct nmi_cpu at_detach;
	struct nmi_books_guest guest;
};

extern struct replay_cpu rcpu[REPLAY_MAX_CPUS];
/* Who holds the token: a CPU or REPLAY_CTL.  It lives in the page the guest shares
 * (RG_MAIL_PA), so a CPU in guest mode can give it back without a VM exit. */
extern volatile int *replay_token;
extern volatile int replay_on; /* the replay workload runs: the hooks below act */
extern unsigned replay_ncpus;
extern volatile int replay_failed;
extern char replay_what[256];
extern volatile int replay_trace_now; /* 1: the traced case, 2: its trace is on */

/* replay.c */
_Noreturn void replay_bsp(void); /* workload=replay on CPU 0 */
void replay_ap(void); /* ... on the other CPUs */
unsigned long replay_spin_limit(void);
void replay_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void replay_fail_assert(unsigned cpu, const char *file, int line, const char *what);
uint64_t replay_turn_deadline(void);

/* replay_cpu.c */
struct replay_cpu *replay_this_cpu(unsigned *me);
void replay_cpu_loop(unsigned me); /* never returns */
void replay_wait_token(unsigned me);
void replay_hand_back(void);
int replay_setjmp(uint64_t *buf) __attribute__((returns_twice));
_Noreturn void replay_longjmp(uint64_t *buf);
void replay_run_op(unsigned me, const struct replay_step *s);
void replay_critical_work(void); /* an intercept handler's edits under the mask */
void replay_service_guest(unsigned me);

/* replay_step.c */
void replay_step_begin(unsigned me, const struct replay_step *s);
void replay_step_end(unsigned me);
void replay_trace_end(void);
void replay_send_self(unsigned me, unsigned n);
/* Call into the core with the trap flag on when the step is being stepped. */
void replay_core_call(void (*fn)(void));
void replay_core_call_int(void (*fn)(int), int arg);

/* replay_guest.c */
void replay_guest_boot(void); /* the shared page, the EPT: before any CPU runs */
void replay_guest_idle(unsigned me); /* in guest mode until a turn comes */
void replay_guest_reset(unsigned me);
void replay_guest_op(unsigned me, const struct replay_step *s);
int replay_guest_available(const char **why);
void replay_guest_books(unsigned me, struct nmi_books_guest *out);

/* Hooks the rest of the hypervisor calls (no-ops unless replay_on). */
int replay_nmi_enter(void); /* vector-2 entry: returns the handler's "waited" state */
void replay_nmi_leave(int waited);
int replay_relax(void); /* plat_relax: 1 when it handed the token back */
int replay_halt(const char *file, int line, const char *what); /* plat_halt */
void replay_nmi_sent(unsigned id); /* plat_send_nmi */
int replay_debug_trap(uint64_t *rip, uint64_t *rflags, uint64_t *rsp); /* #DB */
void replay_vmcs_written(uint32_t field, uint64_t value); /* plat_vmcs_write */
void replay_nmi_iret(void); /* plat_nmi_iret */

#endif /* HV_REPLAY_H */
