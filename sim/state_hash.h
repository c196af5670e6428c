/* SPDX-License-Identifier: MIT */
/* state_hash.h - the simulated machine's state as a 128-bit hash (state_hash.c). */
#ifndef SIM_STATE_HASH_H
#define SIM_STATE_HASH_H

#include <stddef.h>
#include <stdint.h>
#include <ucontext.h>

#include "sim.h"

struct sim_cpu;

/* Two independent 64-bit hashes. */
struct h128 {
	uint64_t a, b;
};

static inline uint64_t rotl64(uint64_t x, int r)
{
	return (x << r) | (x >> (64 - r));
}

/* Mix one word into `h` (inline: the hot path hashes whole stacks). */
static inline void hw(struct h128 *h, uint64_t w)
{
	h->a = (h->a ^ w) * 0x9e3779b97f4a7c15ull;
	h->a ^= h->a >> 31;
	h->b = rotl64(h->b + w * 0xc2b2ae3d27d4eb4full, 31) * 0x165667b19e3779f9ull;
}

/* Mix `n` bytes into `h`; finish a 64-bit value. */
void hbytes(struct h128 *h, const void *p, size_t n);
uint64_t fmix(uint64_t x);

/* The machine's state at the trap `uc` taken by CPU `c`: 0 and *out, or -1 when a
 * stack is not where a CPU thread's stack can be (not hashable). */
int state_hash(const ucontext_t *uc, const struct sim_cpu *c, struct h128 *out);

/* ---- A node's run, boundary by boundary (explore.c, "Pruning", "Placing by address") */

/* One core instruction boundary of a stepped step. */
struct rec {
	unsigned step;
	uint32_t idx;
	int ok; /* keyed: see explore.c for when a boundary is not */
	uintptr_t rip; /* the instruction there: where a child's NMI is placed by address */
	struct h128 h;
};

#define REC_MAX (1u << 16)

struct run_log {
	int on;
	int hash; /* key the boundaries (pruning), not only their addresses */
	unsigned from; /* record steps from this one on */
	uintptr_t steps; /* the schedule being run: its step array */
	unsigned nsteps;
	struct rec v[REC_MAX];
	unsigned n;
	/* A node whose last NMI is by address: its step runs on the breakpoint up to
	 * there, then stepped. */
	int sw_pending; /* not switched to stepping yet */
	unsigned sw_step;
	uint32_t sw_idx; /* the boundary of that NMI */
};
extern struct run_log run_log;

/* The address of each boundary 1..n of step sj in a copy of the log (0: unknown);
 * malloc'ed, NULL when out of memory. */
uintptr_t *rec_step_rips(const struct rec *recs, unsigned nrec, unsigned sj, uint32_t n);
/* An NMI before boundary c of a step whose previous arrival landed at boundary `from`
 * (1 when none): by address when every boundary from there on is known
 * (rips: rec_step_rips()'s), else by index. */
struct sim_at rec_place(const uintptr_t *rips, uint32_t from, uint32_t c);

/* Wrap stepper.c's SIGTRAP handler (once) so that run_log records while it is on.
 * 1 when it does. */
int run_log_install(void);

/* ---- The explorer's memo (explore.c, "Pruning"): a key -> what its subtree held --- */
struct memo {
	uint64_t a, b; /* a == 0: empty slot */
	unsigned long schedules, failures;
	int root_failed;
	uint64_t root_what;
	char what[120]; /* the first schedule's verdict, for the check's report */
};

void memo_clear(void);
/* The entry of key (a, b), a != 0; NULL when there is none. */
struct memo *memo_find(uint64_t a, uint64_t b);
/* Remember v (when memory runs out, it is not remembered: never pruned). */
void memo_put(const struct memo *v);
/* A verdict, for comparing twins (the host's timing left out). */
uint64_t verdict_hash(const char *s);

#endif /* SIM_STATE_HASH_H */
