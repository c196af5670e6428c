/* SPDX-License-Identifier: MIT */
/*
 * sim.h - the userspace machine that runs nmi_core.c.
 *
 * A simulated CPU is a POSIX thread; an NMI is SIGUSR1 sent to that thread.  The
 * kernel's rules for a standard signal are the hardware's rules for NMIs: blocked
 * while its handler runs, unblocked by the handler's return (= IRET), at most one
 * more held pending (= the NMI latch), the rest dropped.
 *
 * Two ways to run it:
 *  - deterministic (sim_run): a schedule of steps is replayed with exactly one CPU
 *    thread running at a time, handing a token at every step and every spin, and
 *    NMIs land at chosen machine-instruction boundaries inside the core (trap-flag
 *    single stepping).  Same schedule, same run, same timeline.  Used by scenario
 *    files, the fuzzer and the exhaustive explorer.
 *  - free-running (sim_stress): CPU threads and NMI-source threads run truly in
 *    parallel; the oracle checks the core's accounting at the end.
 */
#ifndef SIM_H
#define SIM_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Limits of what a schedule can ask for. */
#define SIM_MAX_CPUS     8 /* CPUs of one machine                            */
#define SIM_MAX_STEPS    256 /* steps of one schedule                         */
#define SIM_MAX_AT       4 /* nmi@ arrivals in one step                         */
#define SIM_MAX_AT_INDEX 1000000 /* the largest N of nmi@N                      */
#define SIM_MAX_BURST    16 /* NMIs of one `nmi xN` step                        */
#define SIM_MAX_SOURCES  16 /* NMI-source threads of a stress run               */

/* Limits of the machinery: what a deterministic run takes for a runaway. */
#define SIM_SPIN_LIMIT             1000 /* plat_spin_limit(): iterations of one spin          */
#define SIM_STRESS_SPIN            400000000ul /* ... in free-running stress                 */
#define SIM_MAX_TURN_CALLS         10000 /* platform calls in one turn of a CPU              */
#define SIM_MAX_TURN_INSNS         5000 /* core instructions in one stepped turn            */
#define SIM_RUNAWAY_SECONDS        0.1 /* CPU time of one turn, when nothing else counts it */
#define SIM_STRESS_RUNAWAY_SECONDS 10.0 /* free-running: CPU time without finishing an op */
#define SIM_MAX_EXITS              64 /* VM exits in a row without guest progress          */
#define SIM_MAX_SERVICE            64 /* rounds of delivering latched NMIs after a step    */
#define SIM_MAX_FINISH             (4 * SIM_SPIN_LIMIT) /* rounds of letting spinning CPUs end */

/* Operations a step can ask of a CPU.  Every op is total: one that makes no sense
 * in the CPU's current mode is recorded as ignored, never an error at run time. */
enum sim_op {
	OP_MASK, /* nmi_mask()                                                  */
	OP_UNMASK, /* nmi_unmask()                                                */
	OP_CRIT, /* an intercept handler: mask, edit per-CPU state, unmask       */
	OP_NMI, /* an external NMI arrives at the CPU now (arg: burst size)     */
	OP_ENTER, /* VM entry (attaches the guest the first time)                 */
	OP_EXIT, /* VM exit for another reason (CPUID...), handled under the mask */
	OP_GIRET, /* the guest executes IRET                                      */
	OP_BLOCK, /* a hypervisor extension blocks guest NMIs (under the mask)    */
	OP_UNBLOCK, /* ... and unblocks them                                        */
	OP_QUIESCE, /* stop-the-world round (arg 1: parked CPUs flush their TLB)    */
	OP_RUN, /* let a CPU that is spinning run on                            */
	OP_FAULT, /* the next NMI injection here is interrupted by a VM exit (an EPT
		   * violation on the guest's IDT) and must be queued again     */
	OP_DETACH, /* the guest is gone for good: VM exit, nmi_guest_detach()     */
	OP__COUNT
};

/* Where an NMI lands inside a step's own execution of the core. */
enum sim_at_kind {
	AT_INDEX, /* before the index-th core instruction this step executes (1-based);
		   * in fast mode, at the index-th call the core makes to the platform */
	AT_ADDR, /* before the index-th execution (0 or 1: the first) of the instruction
		  * at `addr` since the step's previous arrival; a step whose arrivals
		  * are all AT_ADDR runs unstepped, on a hardware breakpoint          */
	AT_EVERY, /* scenario wildcard: every boundary, one run each (explore)          */
};

struct sim_at {
	uint8_t kind;
	uint32_t index;
	uintptr_t addr;
};

struct sim_step {
	uint8_t cpu;
	uint8_t op;
	uint8_t arg;
	uint8_t nat;
	struct sim_at at[SIM_MAX_AT];
	int line; /* source line in a scenario file, 0 otherwise */
};

struct sim_schedule {
	unsigned ncpus;
	unsigned fast; /* nmi@N counts the core's platform calls, not its instructions */
	unsigned nsteps;
	struct sim_step step[SIM_MAX_STEPS];
};

/* What a run found. */
struct sim_result {
	int failed;
	char what[512]; /* first violation, one line                          */
	unsigned flags; /* the run's SIM_* flags: a replay uses them too        */
	uint32_t step_insns[SIM_MAX_STEPS]; /* core instructions of each step (SIM_STEP_ALL) */
	uint8_t step_flags[SIM_MAX_STEPS]; /* SIM_STEP_RESUMED, SIM_STEP_IGNORED          */
};
#define SIM_STEP_RESUMED 1u /* the step resumed its CPU, spinning since a step before */
#define SIM_STEP_IGNORED                                                                           \
	2u /* the step did nothing: not in its CPU's mode, or a run                                \
	    * with nothing spinning                                   */

/* Flags for sim_run(). */
#define SIM_TIMELINE 1u /* record a timeline (sim_timeline_*)                      */
#define SIM_STEP_ALL 2u /* single-step every step, to count instructions          */
#define SIM_RAW                                                                                    \
	4u /* steps reach the core whatever the software mask (`mask` twice):                      \
	    * for tests of the core's own assertions                   */

/* SIM_STEP_ALL steps only the schedule's steps from..to (default: all): explore.c
 * needs the counts and states of the steps where NMIs may still land, no others. */
extern unsigned sim_step_all_from, sim_step_all_to;

/* One simulated machine: threads are created once and reused across runs. */
int sim_init(void);
void sim_fini(void);
int sim_run(const struct sim_schedule *s, unsigned flags, struct sim_result *r);
/* Whether AT_ADDR arrivals use hardware breakpoints in this process (else they are
 * single-stepped, said once on stderr; NMI_NO_HWBP=1 forces that).  Call from a
 * thread with no CPU role only to ask: the answer is per process. */
int sim_hwbp_available(void);

/* Called at every NMI delivery with the interrupted address, the core's state of
 * that CPU and the machine's around it (SIM_HW_* bits); the fuzzer turns them into
 * coverage of the uninstrumented core. */
#define SIM_HW_IN_GUEST   1u /* guest mode: the NMI is a VM exit                    */
#define SIM_HW_GUEST_VBLK 2u /* the guest is virtual-NMI blocked (in its handler)   */
#define SIM_HW_QUEUED     4u /* an NMI injection is queued for the next VM entry    */
#define SIM_HW_DELIVERY   8u /* an exit interrupted an NMI's delivery, or one will  */
#define SIM_HW_QUIESCE    16u /* a stop-the-world round is open                      */
#define SIM_HW_EXIT_BLOCK 32u /* host NMI-blocked since an NMI exit, before its IRET */
struct nmi_cpu;
extern void (*sim_nmi_hook)(uintptr_t rip, const struct nmi_cpu *state, unsigned hw);

/* ---- Timeline of the last sim_run(SIM_TIMELINE) ------------------------------- */
void sim_timeline_print(FILE *f);
int sim_timeline_svg(const char *path);
/* The books (nmi_books.c's format) of every CPU of the last run. */
void sim_books_table(FILE *f);

/* ---- Schedules as text (scenario files) --------------------------------------- */
/* Parse a scenario.  On error returns -1 with "line N: message" in err; nothing runs. */
int sched_parse(const char *text, struct sim_schedule *s, char *err, size_t errlen);
int sched_parse_file(const char *path, struct sim_schedule *s, char *err, size_t errlen);
void sched_print(FILE *f, const struct sim_schedule *s);
const char *sched_op_name(unsigned op);

/* ---- Exploring nmi@* wildcards (explore.c) ------------------------------------- */
/* Explore every placement of the AT_EVERY wildcards in s (at most SIM_MAX_AT), or
 * with k_max > 0 every schedule of 0..k_max arrivals among the steps that carry
 * nmi@* (make explore's NMIS), each run once, pruning those whose state at the new
 * arrival was already explored.  Stops at the first failing schedule unless
 * `all`.  Returns the number of runs; counts failures; copies the first failing
 * schedule and its result to *fail_out and *fail_res (when non-NULL). */
unsigned long sched_explore(const struct sim_schedule *s, unsigned k_max, int all,
			    unsigned long *failures, struct sim_schedule *fail_out,
			    struct sim_result *fail_res);
int sched_has_wildcard(const struct sim_schedule *s);
/* Schedules the last sched_explore() did not run: their state at the new NMI was one
 * already explored (explore.c, "Pruning"); its failures count all the same. */
unsigned long sched_explore_pruned(void);
/* With NMISIM_PRUNE_CHECK=N: how many pruned subtrees were explored anyway and how
 * many differed from their twin; with NMISIM_ADDR_CHECK=N: how many schedules placed
 * by address were run by index as well and how many differed.  Returns 1 if any did. */
int explore_check_report(FILE *f);
/* When set and it returns 1, sched_explore() stops where it is (the time budget of
 * explore_corpus.c); what it counted so far stands. */
extern int (*sched_explore_stop)(void);

/* ---- Free-running stress ------------------------------------------------------ */
struct stress_config {
	unsigned cpus; /* CPU threads                         */
	unsigned sources; /* NMI-source threads                  */
	double seconds; /* stop after this long (0: no limit)  */
	uint64_t nmis; /* or after this many delivered NMIs   */
	unsigned seed;
	int quiet; /* no progress line                    */
};
struct stress_totals {
	uint64_t sent, delivered, handled, lost, violations;
	double seconds;
};
int sim_stress(const struct stress_config *cfg, struct stress_totals *t);

/* ---- Symbols of this executable ----------------------------------------------- */
int sym_load(void);
/* "name+0xoff" for addr (static buffer). */
const char *sym_describe(uintptr_t addr);
uintptr_t sym_lookup(const char *name);
/* "nmi_core.c:123" via addr2line (static buffer, "?" when unknown). */
const char *sym_source_line(uintptr_t addr);

/* The core's code: the nmi_core_text section, bracketed by the linker.  The one
 * definition of "inside the core" (stepping, timelines, fuzzer coverage). */
extern const char __start_nmi_core_text[], __stop_nmi_core_text[];
static inline int sim_in_core(uintptr_t a)
{
	return a >= (uintptr_t)__start_nmi_core_text && a < (uintptr_t)__stop_nmi_core_text;
}
/* Offset of a core address from the start of the core's code. */
static inline uintptr_t sim_core_offset(uintptr_t a)
{
	return a - (uintptr_t)__start_nmi_core_text;
}

#endif /* SIM_H */
