/* SPDX-License-Identifier: MIT */
/*
 * machine.h - the simulator's internals, shared by its own files only.
 *
 * A simulated CPU (struct sim_cpu) is the core's per-CPU state plus one part per
 * piece of the simulated machine.  One file per concept:
 *
 *   machine.c       the machine's state and its one reset
 *   mode.c          everything that differs between deterministic and free-running runs
 *   controller.c    CPU threads and the token of a deterministic run; sim_run()
 *   ops.c           the operations a step asks of a CPU
 *   nmi_hw.c        the NMI line: latch, blocking, delivery
 *   vmx_hw.c        VMX non-root operation: the VMCS, VM entries and exits, the guest
 *   stepper.c       trap-flag stepping: NMIs land at chosen points inside the core
 *   runaway.c       the bounds on one turn of a CPU
 *   failure.c       recording a violation, stopping a CPU
 *   oracle.c        the checks: nmi_books.c's laws, and the hardware model's own
 *   platform_sim.c  nmi_platform.h, delegating to the above
 *   coverage.c      where NMIs land, for make coverage (NMI_COVERAGE=file)
 */
#ifndef SIM_MACHINE_H
#define SIM_MACHINE_H

#include <pthread.h>
#include <semaphore.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <sys/types.h>
#include <ucontext.h>

#include "nmi_books.h"
#include "nmi_core.h"
#include "sim.h"

#define SIGNMI     SIGUSR1
#define SIGRUNAWAY SIGVTALRM /* a turn that never ends (runaway.c) */

struct sim_cpu;

/* ---- mode.c: deterministic or free-running -------------------------------------------- */

struct sim_mode {
	const char *name;
	unsigned long spin_limit; /* plat_spin_limit()                                */
	int exact_latch; /* the latch model counts every NMI one by one           */
	int scheduled; /* a schedule's operations drive the CPUs (ops.c's model)    */
	unsigned max_exits; /* VM exits in a row without guest progress (0: any)    */
	unsigned max_turn_calls; /* platform calls in one turn of a CPU (0: any)      */
	void (*send)(struct sim_cpu *t, unsigned burst); /* NMIs arrive at t         */
	void (*delivered)(struct sim_cpu *c); /* the latch, as one NMI is taken      */
	void (*relax)(struct sim_cpu *c); /* one iteration of a spin (plat_relax)     */
	void (*halt)(struct sim_cpu *c, const char *what); /* plat_halt: never returns */
};
extern const struct sim_mode sim_deterministic, sim_free_running;

/* ---- The parts of a simulated CPU ----------------------------------------------------- */

/* controller.c: the CPU's thread and its share of the token. */
enum cpu_cmd { CMD_NONE, CMD_OP, CMD_SERVICE, CMD_RESUME, CMD_ABORT, CMD_FLUSH, CMD_QUIT };
struct sim_thread {
	pthread_t thread;
	pid_t tid;
	sem_t go;
	volatile int cmd;
	const struct sim_step *step;
	sigjmp_buf base; /* back to the idle loop when a run is over */
	uintptr_t stack_hi; /* cpu_main's frame: the top of what a step's stack holds */
	ucontext_t parked; /* the registers where it last handed the token back at a spin */
	volatile int resume_own; /* the resuming `run` step counts its own turn    */
	volatile int ignored; /* its last step was ignored (ops_run)              */
};

/* nmi_hw.c: the NMI line. */
struct sim_nmi_hw {
	volatile int in_handler; /* inside the vector-2 handler: NMI-blocked       */
	volatile int exit_blocked; /* NMI-blocked since an NMI VM exit, until IRET  */
	volatile int latched; /* an NMI is pending (sent, not yet taken)       */
	volatile unsigned burst; /* NMIs of a burst still to latch after delivery */
	uint64_t sent, delivered, dropped;
};

/* vmx_hw.c: VMX non-root operation with NMI exiting and virtual NMIs on. */
struct sim_vmcs {
	uint64_t pin; /* pin-based controls: NMI exiting + virtual NMIs       */
	uint64_t proc; /* processor-based: NMI-window exiting                  */
	uint64_t entry_intr; /* VM-entry interruption information                    */
	uint64_t guest_intr; /* guest interruptibility state (bit 3: NMI blocking)   */
	uint64_t idt_vectoring; /* IDT-vectoring information of the last VM exit    */
};
struct sim_vmx {
	struct sim_vmcs vmcs;
	volatile int in_guest; /* guest mode: an NMI is a VM exit                  */
	volatile int exit_pending; /* an NMI exit the handler captured              */
	int fault_armed; /* the next NMI delivery exits midway (OP_FAULT)    */
	uint32_t vectoring; /* IDT-vectoring information of the pending exit   */
	int detached; /* the guest was detached for good (OP_DETACH)      */
	struct nmi_cpu at_detach; /* the core's books at that moment             */
	struct nmi_books_guest guest; /* what the guest took, what hardware would give */
};

/* stepper.c: where the running step's NMIs land. */
struct sim_stepper {
	volatile int on; /* the trap flag follows the core in this step     */
	uint32_t count; /* core instructions (fast: platform calls) crossed */
	unsigned nat, next;
	uint32_t hits; /* AT_ADDR: times the next arrival's address was reached */
	int bp; /* this step's arrivals are placed by a hardware breakpoint  */
	int bp_unarmed; /* ... not armed yet: the step has not entered the core  */
	struct sim_at at[SIM_MAX_AT];
	uintptr_t last_rip; /* the core instruction of the previous trap    */
	int in_handler_traced; /* the NMI handler is stepped for coverage.c  */
};

/* platform_sim.c: what the core asked of the platform on this CPU, counted by the
 * platform as it does it (laws `flushed`, `injections`, `iret`, `ipis` compare it
 * with the core's own books).  Written by the CPU's own thread only, in normal and
 * NMI context alike: each count is one atomic add, so an NMI cannot split it. */
#define SIM_VMCS_FIELDS (sizeof(struct sim_vmcs) / sizeof(uint64_t))
struct sim_asked {
	uint64_t tlb_flushes; /* plat_tlb_flush()                                */
	uint64_t irets; /* plat_nmi_iret()                                         */
	uint64_t injections; /* VMWRITEs of an NMI to the VM-entry interruption field */
	uint64_t vmcs_writes[SIM_VMCS_FIELDS]; /* VMWRITEs per field, in sim_vmcs's order */
	uint64_t sent_to[SIM_MAX_CPUS]; /* plat_send_nmi() per target                 */
};

/* runaway.c: what the current turn has used. */
struct sim_budget {
	uint32_t insns; /* core instructions stepped  */
	uint32_t calls; /* calls into the platform    */
};

struct sim_cpu {
	struct nmi_cpu core; /* the core's per-CPU state: what plat_this_cpu() returns */
	unsigned id;
	volatile int busy; /* suspended inside a spin (plat_relax)              */
	volatile int halted; /* stopped by a violation                          */
	uint64_t spins; /* plat_relax calls                                  */
	struct sim_thread th;
	struct sim_nmi_hw nmi;
	struct sim_vmx vmx;
	struct sim_stepper step;
	struct sim_budget budget;
	struct sim_asked asked;
	/* ops.c: what the schedule's operations that completed on this CPU leave the
	 * core's state at (laws `mask`, `attached`), derived from the calls alone. */
	struct nmi_books_expect expect;
};

struct sim_machine {
	const struct sim_mode *mode;
	unsigned ncpus;
	struct sim_cpu cpu[SIM_MAX_CPUS];
	volatile int failed;
	char what[512]; /* the first violation                                   */
	unsigned cur_step; /* the schedule step running (timeline rows)          */
	unsigned flags; /* sim_run()'s SIM_* flags                                */
	int fast; /* NMIs land at platform calls, not instruction boundaries */
};

extern struct sim_machine M;
extern __thread struct sim_cpu *self;

/* machine.c: the one reset, for both modes.  No CPU may be running. */
void machine_reset(unsigned ncpus, const struct sim_mode *mode);

/* controller.c */
void controller_hand_back(void);
void controller_wait_turn(struct sim_cpu *c);
void controller_relax(struct sim_cpu *c);

/* ops.c: run step s on the calling CPU's thread; 1: ignored (not in this mode). */
int ops_run(struct sim_cpu *c, const struct sim_step *s);

/* nmi_hw.c */
void nmi_hw_install(void);
void nmi_hw_block(sigset_t *old);
int nmi_hw_blocked(const struct sim_cpu *c);
void sim_send_nmi(struct sim_cpu *t, unsigned burst);
void nmi_hw_send_exact(struct sim_cpu *t, unsigned burst);
void nmi_hw_send_free(struct sim_cpu *t, unsigned burst);
void nmi_hw_delivered_exact(struct sim_cpu *c);
void nmi_hw_delivered_free(struct sim_cpu *c);
void nmi_hw_iret(struct sim_cpu *c);
void nmi_hw_discard(void);

/* vmx_hw.c */
void vmx_hw_reset(struct sim_cpu *c);
uint64_t *vmx_hw_field(struct sim_cpu *c, uint32_t field);
int vmx_hw_nmi_exit(struct sim_cpu *c);
void vmx_hw_entry(struct sim_cpu *c);
void vmx_hw_exits(struct sim_cpu *c);
void vmx_hw_leave(struct sim_cpu *c);
void vmx_hw_guest_iret(struct sim_cpu *c);
void vmx_hw_arm_fault(struct sim_cpu *c);
void vmx_hw_detached(struct sim_cpu *c);

/* stepper.c */
void stepper_install(void);
void stepper_begin(struct sim_cpu *c, const struct sim_step *s);
void stepper_end(struct sim_cpu *c);
void stepper_core_call(struct sim_cpu *c);
void stepper_platform_call(uintptr_t rip);
void stepper_resume(struct sim_cpu *c, const struct sim_step *s);
void stepper_handler(struct sim_cpu *c, void (*entry)(void));

/* runaway.c */
void runaway_install(void);
void runaway_turn_begins(struct sim_cpu *c);
void runaway_count_call(struct sim_cpu *c, uintptr_t rip);
void runaway_count_insn(struct sim_cpu *c, uintptr_t rip);
void runaway_watch(struct sim_cpu *c, sem_t *back);
double runaway_cpu_seconds(const struct sim_cpu *c);

/* failure.c */
void sim_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
_Noreturn void failure_stop_cpu(struct sim_cpu *c, uintptr_t rip, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
_Noreturn void failure_halt_deterministic(struct sim_cpu *c, const char *what);
_Noreturn void failure_halt_free(struct sim_cpu *c, const char *what);

/* oracle.c */
void oracle_step(void);
void oracle_end(void);
void oracle_entry_failed(struct sim_cpu *c);
void oracle_world_stopped(struct sim_cpu *requester);
void oracle_cannot_run(struct sim_cpu *c, const struct sim_step *s, const char *law);
void oracle_table(FILE *f);
unsigned oracle_report(FILE *f);

/* timeline.c */
void tl_reset(void);
void tl_step(unsigned step, unsigned cpu, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void tl_event(unsigned cpu, uintptr_t rip, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void tl_schedule_step(unsigned idx, const struct sim_step *s, int resume);
void tl_snapshot(void);
int tl_enabled(void);
void tl_enable(int on);
void tl_describe_delta(const struct nmi_cpu *before, const struct nmi_cpu *after, char *buf,
		       size_t len);

/* coverage.c: off unless NMI_COVERAGE names a file. */
void coverage_run_begins(void);
void coverage_nmi_lands(const struct sim_cpu *c, uintptr_t rip);
void coverage_boundary(const struct sim_cpu *c, uintptr_t rip);
int coverage_traces_handler(void);

/* Trap-flag stepping covers the core's own instructions only: the simulator sets
 * the flag right before each call into the core and clears it right after, and
 * the trap handler steps over every call out of the core.  (In the NMI handler the
 * kernel has cleared it already: handlers are never stepped.) */
static inline void tf_on(void)
{
	__asm__ __volatile__("pushfq; orq $0x100, (%%rsp); popfq" ::: "memory", "cc");
}
static inline void tf_off(void)
{
	__asm__ __volatile__("pushfq; andq $~0x100, (%%rsp); popfq" ::: "memory", "cc");
}
#define CORE(call)                                                                                 \
	do {                                                                                       \
		if (self->step.bp_unarmed)                                                         \
			stepper_core_call(self);                                                   \
		if (self->step.on && !M.fast)                                                      \
			tf_on();                                                                   \
		call;                                                                              \
		tf_off();                                                                          \
	} while (0)

#endif /* SIM_MACHINE_H */
