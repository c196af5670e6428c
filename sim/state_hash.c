/* SPDX-License-Identifier: MIT */
/*
 * state_hash.c - the whole simulated machine as one 128-bit hash, taken on entry
 * to a single-step trap: what the explorer's pruning keys a subtree by (explore.c,
 * "Pruning", says what is covered and why what is left out cannot change the
 * future).  The running CPU's registers, signal mask and stack; every other CPU's
 * state and, when it waits at a spin, its saved registers and stack; the core's one
 * global; the machine's own fields.  And the table of keys already explored.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>

#include "machine.h"
#include "state_hash.h"

#define STACK_MAX (256u << 10)

__attribute__((no_sanitize_address)) void hbytes(struct h128 *h, const void *p, size_t n)
{
	const unsigned char *q = p;
	hw(h, n);
	for (; n >= 8; n -= 8, q += 8) {
		uint64_t w;
		memcpy(&w, q, 8);
		hw(h, w);
	}
	if (n) {
		uint64_t w = 0;
		memcpy(&w, q, n);
		hw(h, w);
	}
}

uint64_t fmix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	return x ^ (x >> 33);
}

static void cpu_hash(struct h128 *h, const struct sim_cpu *o)
{
	hbytes(h, &o->core, sizeof o->core);
	hw(h, o->id);
	hw(h, (uint64_t)o->busy);
	hw(h, (uint64_t)o->halted);
	hw(h, o->spins);
	hw(h, (uint64_t)o->nmi.in_handler);
	hw(h, (uint64_t)o->nmi.exit_blocked);
	hw(h, (uint64_t)o->nmi.latched);
	hw(h, o->nmi.burst);
	hw(h, o->nmi.sent);
	hw(h, o->nmi.delivered);
	hw(h, o->nmi.dropped);
	hbytes(h, &o->vmx.vmcs, sizeof o->vmx.vmcs);
	hw(h, (uint64_t)o->vmx.in_guest);
	hw(h, (uint64_t)o->vmx.exit_pending);
	hw(h, (uint64_t)o->vmx.fault_armed);
	hw(h, o->vmx.vectoring);
	hw(h, (uint64_t)o->vmx.detached);
	hbytes(h, &o->vmx.at_detach, sizeof o->vmx.at_detach);
	hbytes(h, &o->vmx.guest, sizeof o->vmx.guest);
	hw(h, o->step.count);
	for (unsigned j = o->step.next; j < o->step.nat && j < SIM_MAX_AT; j++) {
		hw(h, o->step.at[j].kind);
		hw(h, o->step.at[j].index);
		hw(h, o->step.at[j].addr);
	}
	hw(h, o->budget.insns);
	hw(h, o->budget.calls);
	hw(h, (uint64_t)o->th.cmd);
	hw(h, (uintptr_t)o->th.step);
}

__attribute__((no_sanitize_address)) int state_hash(const ucontext_t *uc, const struct sim_cpu *c,
						    struct h128 *out)
{
	const greg_t *g = uc->uc_mcontext.gregs;
	uintptr_t rsp = (uintptr_t)g[REG_RSP];
	if (rsp > c->th.stack_hi || c->th.stack_hi - rsp > STACK_MAX)
		return -1;
	struct h128 h = {0x243f6a8885a308d3ull, 0x13198a2e03707344ull};
	for (int i = REG_R8; i <= REG_RIP; i++)
		hw(&h, (uint64_t)g[i]);
	hw(&h, (uint64_t)g[REG_EFL]);
	hw(&h, (uint64_t)sigismember(&uc->uc_sigmask, SIGNMI));
	hbytes(&h, (const void *)rsp, c->th.stack_hi - rsp);
	hbytes(&h, &nmi_quiesce_state, sizeof nmi_quiesce_state);
	hw(&h, M.ncpus);
	hw(&h, (uint64_t)M.failed);
	if (M.failed)
		hbytes(&h, M.what, strnlen(M.what, sizeof M.what));
	hw(&h, M.cur_step);
	hw(&h, (uint64_t)M.fast);
	for (unsigned i = 0; i < M.ncpus; i++) {
		const struct sim_cpu *o = &M.cpu[i];
		cpu_hash(&h, o);
		if (o == c || !o->busy)
			continue;
		/* Suspended at a spin: its callee-saved registers as controller_relax()
		 * saved them, and its stack from there up. */
		static const int saved[] = {REG_RBX, REG_RBP, REG_R12, REG_R13,
					    REG_R14, REG_R15, REG_RSP, REG_RIP};
		const greg_t *pg = o->th.parked.uc_mcontext.gregs;
		for (unsigned k = 0; k < sizeof saved / sizeof saved[0]; k++)
			hw(&h, (uint64_t)pg[saved[k]]);
		uintptr_t psp = (uintptr_t)pg[REG_RSP];
		if (psp > o->th.stack_hi || o->th.stack_hi - psp > STACK_MAX)
			return -1;
		hbytes(&h, (const void *)psp, o->th.stack_hi - psp);
	}
	*out = h;
	return 0;
}

/* ---- The memo: open addressing, linear probing, a == 0 marks an empty slot ---- */

static struct {
	struct memo *t;
	size_t cap, n;
} T;

void memo_clear(void)
{
	if (T.t)
		memset(T.t, 0, T.cap * sizeof *T.t);
	T.n = 0;
}

static struct memo *memo_slot(uint64_t a, uint64_t b)
{
	size_t i = (size_t)fmix(a ^ b) & (T.cap - 1);
	while (T.t[i].a && (T.t[i].a != a || T.t[i].b != b))
		i = (i + 1) & (T.cap - 1);
	return &T.t[i];
}

struct memo *memo_find(uint64_t a, uint64_t b)
{
	if (!T.cap)
		return NULL;
	struct memo *m = memo_slot(a, b);
	return m->a ? m : NULL;
}

void memo_put(const struct memo *v)
{
	if (2 * (T.n + 1) > T.cap) {
		struct memo *old = T.t;
		size_t oldcap = T.cap;
		T.cap = T.cap ? 2 * T.cap : 4096;
		T.t = calloc(T.cap, sizeof *T.t);
		if (!T.t) {
			T.t = old;
			T.cap = oldcap;
			return; /* not remembered: never pruned */
		}
		T.n = 0;
		for (size_t i = 0; i < oldcap; i++)
			if (old[i].a) {
				*memo_slot(old[i].a, old[i].b) = old[i];
				T.n++;
			}
		free(old);
	}
	struct memo *m = memo_slot(v->a, v->b);
	if (!m->a)
		T.n++;
	*m = *v;
}

/* A verdict, for comparing twins.  A turn stopped by its CPU time (runaway.c) is
 * reported where the loop happened to be after 0.1 s, and how far it got: the
 * host's timing, not the schedule's, so only "runaway: still running" counts. */
uint64_t verdict_hash(const char *s)
{
	struct h128 h = {1, 2};
	size_t n = strlen(s);
	const char *tail = strstr(s, "still running in ");
	if (tail && strstr(s, "of CPU time"))
		n = (size_t)(tail - s);
	hbytes(&h, s, n);
	return fmix(h.a);
}
