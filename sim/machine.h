/* SPDX-License-Identifier: MIT */
/* machine.h - the simulator's internals, shared by its own files only. */
#ifndef SIM_MACHINE_H
#define SIM_MACHINE_H

#include <pthread.h>
#include <semaphore.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <sys/types.h>

#include "nmi_core.h"
#include "sim.h"

#define SIGNMI     SIGUSR1
#define SIGRUNAWAY SIGVTALRM /* a step that never ends (machine.c: turn) */

/* The VMCS fields the core touches, and the guest's view of them. */
struct sim_vmcs {
	uint64_t pin; /* pin-based controls: NMI exiting + virtual NMIs       */
	uint64_t proc; /* processor-based: NMI-window exiting                  */
	uint64_t entry_intr; /* VM-entry interruption information                    */
	uint64_t guest_intr; /* guest interruptibility state (bit 3: NMI blocking)   */
};

enum cpu_cmd { CMD_NONE, CMD_OP, CMD_SERVICE, CMD_RESUME, CMD_ABORT, CMD_FLUSH, CMD_QUIT };

struct sim_cpu {
	struct nmi_cpu core; /* the core's per-CPU state: what plat_this_cpu() returns */
	unsigned id;
	pthread_t thread;
	pid_t tid;

	/* Deterministic token passing. */
	sem_t go;
	volatile int cmd;
	const struct sim_step *step;
	volatile int busy; /* suspended inside a spin (plat_relax)      */
	volatile int halted; /* the core called plat_halt() on this CPU   */
	sigjmp_buf base;

	/* The NMI hardware model. */
	volatile int in_handler; /* inside the vector-2 handler: NMI-blocked       */
	volatile int exit_blocked; /* NMI-blocked since an NMI VM exit, until IRET  */
	volatile int latched; /* an NMI is pending (sent, not yet taken)       */
	volatile unsigned burst; /* NMIs of a burst still to latch after delivery */
	uint64_t sent, delivered, dropped;

	/* The guest model: VMX non-root with NMI exiting and virtual NMIs on. */
	struct sim_vmcs vmcs;
	volatile int in_guest; /* guest mode: an NMI is a VM exit              */
	volatile int exit_pending; /* the NMI exit the handler captured            */
	uint64_t guest_nmis; /* guest NMI handler entries (injections taken) */
	uint64_t nmi_exits, window_exits, entries;
	int guest_in_nmi; /* guest is inside its NMI handler              */
	int fault_armed; /* the next NMI delivery exits midway (OP_FAULT)  */
	uint32_t vectoring; /* IDT-vectoring information of the pending exit */

	/* Trap-flag stepping for the current step. */
	volatile int stepping;
	uint32_t icount; /* core instruction boundaries crossed           */
	unsigned nat, atpos;
	struct sim_at at[SIM_MAX_AT * 4];
	uintptr_t last_rip; /* the core instruction of the previous trap     */

	/* Stress mode. */
	uint64_t ops;
	unsigned rng;
};

struct sim_machine {
	unsigned ncpus;
	int deterministic;
	struct sim_cpu cpu[SIM_MAX_CPUS];
	sem_t ctl;
	int started;
	volatile int failed;
	char what[512];
	unsigned cur_step;
	unsigned flags;
	int fast; /* arrivals at platform calls instead of instruction boundaries */
	/* stress */
	volatile int stop;
};

extern struct sim_machine M;
extern __thread struct sim_cpu *self;

/* platform_sim.c */
void sim_send_nmi(struct sim_cpu *t, unsigned burst);
int sim_hw_blocked(const struct sim_cpu *c);
void sim_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void sim_install_handlers(void);
void sim_vmentry(struct sim_cpu *c);
void sim_process_exits(struct sim_cpu *c);
void sim_hand_back(struct sim_cpu *c);
void sim_wait_turn(struct sim_cpu *c);
void sim_arrivals(struct sim_cpu *c, uintptr_t rip);

/* machine.c */
void sim_check_conservation(int hw_exact);

/* timeline.c */
void tl_reset(void);
void tl_step(unsigned step, unsigned cpu, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void tl_event(unsigned cpu, uintptr_t rip, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void tl_snapshot(void);
int tl_enabled(void);
void tl_enable(int on);
void sim_dump_state(FILE *f);
void sim_describe_delta(const struct nmi_cpu *before, const struct nmi_cpu *after, char *buf,
			size_t len);

static inline void tf_on(void)
{
	__asm__ __volatile__("pushfq; orq $0x100, (%%rsp); popfq" ::: "memory", "cc");
}
static inline void tf_off(void)
{
	__asm__ __volatile__("pushfq; andq $~0x100, (%%rsp); popfq" ::: "memory", "cc");
}

/* Trap-flag stepping covers the core's own instructions only: the simulator sets
 * the flag right before each call into the core and clears it right after, and
 * every platform function suspends it while it runs.  (In the NMI handler the
 * kernel has cleared it already: handlers are never stepped.) */
#define CORE(call)                                                                                 \
	do {                                                                                       \
		if (self->stepping && !M.fast)                                                     \
			tf_on();                                                                   \
		call;                                                                              \
		tf_off();                                                                          \
	} while (0)
#endif /* SIM_MACHINE_H */
