/* SPDX-License-Identifier: MIT */
/*
 * test_core.c - table-driven unit tests of every nmi_core.c entry point, run on
 * the deterministic simulator against the shipped object (VARIANT=final); then
 * the laws themselves (test_books.c).
 *
 * Each case is a scenario and what must hold afterwards: the run's verdict (and a
 * piece of its message when it must fail) and counters of one CPU.  A counter
 * expectation of -1 is not checked.  An arrival nmi@[function#n] lands on the
 * function's first instruction the nth time its step runs it (resolve_entry()).
 */
#define _GNU_SOURCE
/* E() gives every expectation a default of NONE, then overrides some. */
#pragma GCC diagnostic ignored "-Woverride-init"
#include <stdio.h>
#include <string.h>

#include "machine.h"

struct expect {
	int cpu;
	long long deferred, drained, direct, exit_nmis, parks, injected, pending, coalesced, host,
	    flushes, dropped, guest_nmis, window;
};

struct tcase {
	const char *name;
	const char *scenario;
	unsigned flags;
	const char *fails_with; /* NULL: must pass */
	struct expect e;
};

#define NONE -1
#define E(...)                                                                                     \
	{                                                                                          \
		.cpu = 0, .deferred = NONE, .drained = NONE, .direct = NONE, .exit_nmis = NONE,    \
		.parks = NONE, .injected = NONE, .pending = NONE, .coalesced = NONE, .host = NONE, \
		.flushes = NONE, .dropped = NONE, .guest_nmis = NONE, .window = NONE, __VA_ARGS__  \
	}

static const struct tcase cases[] = {
    {"mask/unmask with no NMI counts nothing", "cpu0 mask\ncpu0 unmask\n", 0, NULL,
     E(.deferred = 0, .drained = 0, .direct = 0, .host = 0)},
    {"NMI while unmasked is handled directly", "cpu0 nmi\n", 0, NULL,
     E(.deferred = 0, .direct = 1, .host = 1)},
    {"NMI while masked is deferred, then drained by unmask", "cpu0 mask\ncpu0 nmi\ncpu0 unmask\n",
     0, NULL, E(.deferred = 1, .drained = 1, .direct = 0, .host = 1)},
    {"NMI inside nmi_mask, before the store, is handled directly", "cpu0 crit nmi@1\n", 0, NULL,
     E(.direct = 1, .deferred = 0)},
    {"three NMIs at once: one taken, one latched, one dropped", "cpu0 nmi x3\n", 0, NULL,
     E(.direct = 2, .dropped = 1)},
    {"three NMIs while masked: two deferred, two drained", "cpu0 mask\ncpu0 nmi x3\ncpu0 unmask\n",
     0, NULL, E(.deferred = 2, .drained = 2, .dropped = 1)},
    {"double mask is an assertion", "cpu0 mask\ncpu0 mask\n", SIM_RAW, "!c->masked", E()},
    {"unmask while unmasked is an assertion", "cpu0 unmask\n", SIM_RAW, "c->masked", E()},
    {"guest NMI: VM exit, window exit, injection", "cpu0 enter\ncpu0 nmi\n", 0, NULL,
     E(.exit_nmis = 1, .injected = 1, .pending = 0, .guest_nmis = 1, .window = 0)},
    {"guest NMIs while the guest is in its handler: one waits, the rest coalesce",
     "cpu0 enter\ncpu0 nmi\ncpu0 nmi\ncpu0 nmi\n", 0, NULL,
     E(.exit_nmis = 3, .injected = 1, .pending = 1, .coalesced = 1, .window = 1)},
    {"guest IRET opens the window: the waiting NMI is injected",
     "cpu0 enter\ncpu0 nmi\ncpu0 nmi\ncpu0 giret\n", 0, NULL,
     E(.injected = 2, .pending = 0, .guest_nmis = 2, .window = 0)},
    {"software block keeps guest NMIs pending with the window closed",
     "cpu0 enter\ncpu0 exit\ncpu0 block\ncpu0 enter\ncpu0 nmi\n", 0, NULL,
     E(.injected = 0, .pending = 1, .window = 0)},
    {"unblock reopens the window and the NMI is injected",
     "cpu0 enter\ncpu0 exit\ncpu0 block\ncpu0 enter\ncpu0 nmi\ncpu0 exit\ncpu0 unblock\ncpu0 "
     "enter\n",
     0, NULL, E(.injected = 1, .pending = 0, .guest_nmis = 1, .window = 0)},
    {"an exit during NMI delivery: the NMI is queued again and taken once",
     "cpu0 enter\ncpu0 fault\ncpu0 nmi\n", 0, NULL,
     E(.injected = 1, .guest_nmis = 1, .pending = 0, .window = 0)},
    /* The giret step runs nmi_mask() twice: in the NMI-window exit that injects the
     * pending NMI, then in the exit that follows its faulted delivery.  Both NMIs
     * land on the first instruction of the second one: direct = 2 says both landed
     * before the mask, while the interrupted NMI was in service but not yet queued
     * again. */
    {"NMIs before an interrupted NMI delivery is queued again: one waits, one is dropped",
     "cpu0 enter\ncpu0 nmi\ncpu0 nmi\ncpu0 fault\ncpu0 giret nmi@[nmi_mask#2] nmi@[nmi_mask#2]\n",
     0, NULL, E(.direct = 2, .pending = 1, .coalesced = 1, .injected = 2, .guest_nmis = 2)},
    {"stop-the-world parks the other CPU once",
     "cpus 2\ncpu0 quiesce\ncpu1 run\ncpu0 run\ncpu1 run\n", 0, NULL,
     E(.cpu = 1, .parks = 1, .direct = 1, .host = 0)},
    {"stop-the-world with flush: every CPU flushes",
     "cpus 3\ncpu0 quiesce flush\ncpu1 run\ncpu2 run\ncpu0 run\n", 0, NULL,
     E(.cpu = 2, .parks = 1, .flushes = 1)},
    {"stop-the-world reaches a masked CPU when it unmasks",
     "cpus 2\ncpu1 mask\ncpu0 quiesce\ncpu1 unmask\ncpu0 run\ncpu1 run\n", 0, NULL,
     E(.cpu = 1, .deferred = 1, .drained = 1, .parks = 1)},
    {"stop-the-world reaches a CPU in guest mode through an NMI exit",
     "cpus 2\ncpu1 enter\ncpu0 quiesce\ncpu1 run\ncpu0 run\n", 0, NULL,
     E(.cpu = 1, .exit_nmis = 1, .parks = 1, .injected = 0)},
    {"two requesters: both rounds complete",
     "cpus 2\ncpu0 quiesce\ncpu1 quiesce\ncpu0 run\n"
     "cpu1 run\ncpu0 run\ncpu1 run\n",
     0, NULL, E(.cpu = 1, .parks = 1)},
    {"an NMI inside the drain is counted and drained once",
     "cpu0 mask\ncpu0 nmi\ncpu0 unmask nmi@9\n", 0, NULL, E(.deferred = 2, .drained = 2)},
    {"after the guest is detached, its NMIs are the host's",
     "cpu0 enter\ncpu0 nmi\ncpu0 detach\ncpu0 nmi\ncpu0 nmi\n", 0, NULL,
     E(.injected = 1, .guest_nmis = 1, .host = 2, .pending = 0)},
    {"a detached guest is not entered again", "cpu0 enter\ncpu0 detach\ncpu0 enter\ncpu0 nmi\n", 0,
     NULL, E(.exit_nmis = 0, .direct = 1, .host = 1, .injected = 0)},
    {"a guest detached with an NMI pending keeps it booked, never injected",
     "cpu0 enter\ncpu0 exit\ncpu0 block\ncpu0 enter\ncpu0 nmi\ncpu0 detach\ncpu0 nmi\n", 0, NULL,
     E(.pending = 1, .injected = 0, .host = 1)},
};

void test_books(unsigned *passed, unsigned *failed);

/* Where the first NMI that landed inside the core landed (sim_nmi_hook). */
static volatile uintptr_t landed;
static void record_landing(uintptr_t rip, const struct nmi_cpu *state, unsigned hw)
{
	(void)state, (void)hw;
	if (!landed && sim_in_core(rip))
		landed = rip;
}

/* Copy scenario to out with every occurrence of mark replaced by rep (or removed). */
static void replace(const char *scenario, const char *mark, const char *rep, char *out,
		    size_t outlen)
{
	size_t o = 0, m = strlen(mark), r = strlen(rep);
	for (const char *p = scenario; *p && o + r + 1 < outlen;)
		if (strncmp(p, mark, m) == 0) {
			memcpy(out + o, rep, r);
			o += r;
			p += m;
		} else
			out[o++] = *p++;
	out[o] = 0;
}

/* Resolve a scenario's nmi@[function#n] arrivals (all alike, in one step) into
 * nmi@<index>: the core instruction index, within the step, of the nth execution of
 * the function's first instruction.  An index depends on the compiler that built the
 * core (gcc -O2 and clang -O2 emit different instructions), so it is found at run
 * time, on the core this test links: the step, without those NMIs, is run once
 * counting its instructions, then once per instruction boundary with one NMI there,
 * and where each NMI lands (sim_nmi_hook) is compared with the function's address in
 * the symbol table (sym_lookup).  Everything before an NMI runs exactly as it does
 * without it, so the nth boundary at that address is the nth execution.  No other
 * arrival of the scenario may land inside the core (the probe's must be the first).
 * Writes the scenario to out and, when it placed something, what to note; returns
 * 0, or -1 with why. */
static int resolve_entry(const char *scenario, unsigned flags, char *out, size_t outlen, char *why,
			 size_t wlen, char *note, size_t nlen)
{
	const char *at = strstr(scenario, "nmi@["), *end = at ? strchr(at, ']') : NULL;
	char mark[96], fn[64], err[256];
	unsigned nth = 0, line = 1;
	if (!at) {
		snprintf(out, outlen, "%s", scenario);
		return 0;
	}
	if (!end || (size_t)(end + 1 - at) >= sizeof mark ||
	    sscanf(at, "nmi@[%63[^#]#%u]", fn, &nth) != 2 || nth == 0) {
		snprintf(why, wlen, "bad nmi@[function#n] in the scenario");
		return -1;
	}
	memcpy(mark, at, (size_t)(end + 1 - at));
	mark[end + 1 - at] = 0;
	for (const char *q = scenario; q < at; q++)
		line += *q == '\n';

	struct sim_schedule s;
	struct sim_result r;
	replace(scenario, mark, "", out, outlen);
	if (strstr(out, "nmi@[")) {
		snprintf(why, wlen, "more than one kind of nmi@[function#n] in the scenario");
		return -1;
	}
	if (sched_parse(out, &s, err, sizeof err) != 0) {
		snprintf(why, wlen, "scenario does not parse: %s", err);
		return -1;
	}
	unsigned si = 0;
	while (si < s.nsteps && s.step[si].line != (int)line)
		si++;
	uintptr_t entry = sym_lookup(fn);
	if (si == s.nsteps || !entry || !sim_in_core(entry)) {
		snprintf(why, wlen, "%s: no such core function, or no step", fn);
		return -1;
	}
	/* The probe's NMI must be the first to land inside the core. */
	sim_nmi_hook = record_landing;
	landed = 0;
	sim_run(&s, flags | SIM_STEP_ALL, &r);
	if (landed) {
		sim_nmi_hook = NULL;
		snprintf(why, wlen, "other NMIs of the scenario land inside the core");
		return -1;
	}
	uint32_t n = r.step_insns[si], found = 0, index = 0;
	struct sim_step *st = &s.step[si];
	unsigned nat = st->nat;
	for (uint32_t k = 1; k <= n && !index; k++) {
		st->at[nat] = (struct sim_at){.kind = AT_INDEX, .index = k};
		st->nat = nat + 1;
		landed = 0;
		sim_run(&s, flags, &r);
		if (landed == entry && ++found == nth)
			index = k;
	}
	sim_nmi_hook = NULL;
	if (!index) {
		snprintf(why, wlen,
			 "%s starts %u time(s) in its step's %u core instructions, not %u", fn,
			 found, n, nth);
		return -1;
	}
	char rep[32];
	snprintf(rep, sizeof rep, "nmi@%u", index);
	replace(scenario, mark, rep, out, outlen);
	snprintf(note, nlen, " (%s is %s on this core)", mark, rep);
	return 0;
}

int main(void)
{
	unsigned passed = 0, failed = 0;
	test_books(&passed, &failed);
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const struct tcase *t = &cases[i];
		struct sim_schedule s;
		struct sim_result r;
		char err[256], why[1024] = "", text[1024], note[192] = "";
		if (resolve_entry(t->scenario, t->flags, text, sizeof text, why, sizeof why, note,
				  sizeof note) != 0) {
			/* why says what could not be placed */
		} else if (sched_parse(text, &s, err, sizeof err) != 0) {
			snprintf(why, sizeof why, "scenario does not parse: %s", err);
		} else {
			sim_run(&s, t->flags, &r);
			if (t->fails_with && !r.failed)
				snprintf(why, sizeof why, "passed, expected a failure '%s'",
					 t->fails_with);
			else if (t->fails_with && !strstr(r.what, t->fails_with))
				snprintf(why, sizeof why, "failed with '%s', expected '%s'", r.what,
					 t->fails_with);
			else if (!t->fails_with && r.failed)
				snprintf(why, sizeof why, "failed: %s", r.what);
			else {
				const struct sim_cpu *c = &M.cpu[t->e.cpu];
				const struct nmi_cpu *n = &c->core;
				const struct expect *e = &t->e;
				const struct {
					const char *what;
					long long want;
					unsigned long long got;
				} checks[] = {
				    {"deferred", e->deferred, n->deferred},
				    {"drained", e->drained, n->drained},
				    {"handled_direct", e->direct, n->handled_direct},
				    {"exit_nmis", e->exit_nmis, n->exit_nmis},
				    {"quiesce_parks", e->parks, n->quiesce_parks},
				    {"guest_injected", e->injected, n->guest_injected},
				    {"guest_pending", e->pending, n->guest_pending},
				    {"guest_coalesced", e->coalesced, n->guest_coalesced},
				    {"host_consumed", e->host, n->host_consumed},
				    {"tlb_flushes", e->flushes, n->tlb_flushes},
				    {"latch drops", e->dropped, c->nmi.dropped},
				    {"guest NMIs taken", e->guest_nmis, c->vmx.guest.received},
				    {"NMI-window control", e->window,
				     (c->vmx.vmcs.proc & PROC_NMI_WINDOW_EXITING) != 0},
				};
				for (size_t k = 0; k < sizeof checks / sizeof checks[0] && !why[0];
				     k++)
					if (checks[k].want != NONE &&
					    (unsigned long long)checks[k].want != checks[k].got)
						snprintf(why, sizeof why,
							 "%s = %llu, expected %lld", checks[k].what,
							 checks[k].got, checks[k].want);
			}
		}
		if (why[0]) {
			printf("FAIL unit: %s: %s\n", t->name, why);
			failed++;
		} else {
			printf("PASS unit: %s%s\n", t->name, note);
			passed++;
		}
	}
	sim_fini();
	printf("%u passed, %u failed\n", passed, failed);
	return failed != 0;
}
