/* SPDX-License-Identifier: MIT */
/*
 * fuzz_nmi.c - libFuzzer target: bytes -> schedule -> deterministic simulator run.
 *
 * The simulator is instrumented (clang -fsanitize=fuzzer); nmi_core.o is not: it is
 * the object the hypervisor links, compiled by gcc with the hypervisor's flags.
 * Coverage of the core comes from __libfuzzer_extra_counters, bumped at every NMI
 * delivery and keyed on where in the core it landed and the NMI state there.
 *
 * New inputs are format 1 (fuzz/decode.c): LLVMFuzzerCustomMutator below mutates
 * what follows the format's magic and keeps the magic, and turns an input of the
 * format before (an old seed, a reproducer, a corpus grown before) into one.  The
 * inputs themselves still run as they are: only their mutants change format.
 *
 * Environment:
 *   NMI_FUZZ_MODE=fast     nmi@N counts platform calls instead of instructions
 *   NMI_TIMELINE=PREFIX    (replay) write PREFIX.txt, PREFIX.svg and PREFIX.nmi; a
 *                          run that has not ended after 5 s is a finding, its timeline
 *                          what ran until then
 *   NMI_FUZZ_RECHECK=1     run every input twice and abort if the two runs differ:
 *                          the simulator must carry nothing from one run to the next
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "decode.h"
#include "nmi_core.h"
#include "sim.h"

#define NCOUNTERS (1u << 16)
__attribute__((section("__libfuzzer_extra_counters"))) static uint8_t counters[NCOUNTERS];

static int fast = -1, recheck;

/* One feature per (instruction the NMI landed before, NMI state there): the core's
 * software state (mask, deferred count, guest NMIs pending, blocked by an extension,
 * attached) and the machine's (sim.h's SIM_HW_*: guest mode, virtual-NMI blocking, a
 * queued injection, a delivery interrupted, a stop-the-world round, host blocking
 * after an NMI exit).  A bug of the core shows where an NMI lands in a state no
 * earlier input had it land in, so each such pair is worth keeping.  How many NMIs
 * landed there in one run is not counted: libFuzzer makes each power of two of a
 * counter a feature of its own, and would keep (and run again before every
 * campaign) an input for each; the deferred and pending counts in the state tell
 * one NMI from several where it matters.  Measured over 60 s campaigns: counts kept
 * grew a corpus of 1,900 to 4,400 inputs, this one of about 350. */
static void on_nmi(uintptr_t rip, const struct nmi_cpu *c, unsigned hw)
{
	uint32_t where = sim_in_core(rip) ? (uint32_t)sim_core_offset(rip) + 1 : 0;
	uint32_t state = (c->masked ? 1u : 0) | (c->visited ? 2u : 0) | (c->visited > 1 ? 4u : 0) |
			 (c->guest_pending ? 8u : 0) | (c->guest_pending > 1 ? 16u : 0) |
			 (c->guest_sw_blocked ? 32u : 0) | (c->guest_present ? 64u : 0) | hw << 7;
	uint32_t h = (where * 2654435761u) ^ (state * 40503u);
	counters[h % NCOUNTERS] = 1;
}

/* The timeline of a replay, PREFIX.txt: the schedule, then what ran. */
static void write_timeline(const struct sim_schedule *s, const char *prefix, const char *tail)
{
	char path[4096];
	snprintf(path, sizeof path, "%s.txt", prefix);
	FILE *f = fopen(path, "w");
	if (f) {
		sched_print(f, s);
		fprintf(f, "\n");
		sim_timeline_print(f);
		if (tail)
			fprintf(f, "\n%s\n", tail);
		fclose(f);
	}
	snprintf(path, sizeof path, "%s.svg", prefix);
	sim_timeline_svg(path);
}

/* A replay that does not end (a hang the simulator's own runaway bounds did not
 * catch, which would be a bug of the harness) still leaves its timeline: what ran up
 * to now, written from this thread while the CPUs are stuck, then the process ends
 * with the verdict, before libFuzzer's -timeout would end it without one. */
#define REPLAY_LIMIT_SECONDS 5
static const struct sim_schedule *replay_sched;
static const char *replay_prefix;
static pthread_mutex_t replay_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t replay_done_cv = PTHREAD_COND_INITIALIZER;
static int replay_done;

static void *replay_watchdog(void *arg)
{
	(void)arg;
	struct timespec dl;
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += REPLAY_LIMIT_SECONDS;
	pthread_mutex_lock(&replay_lock);
	int rc = 0;
	while (!replay_done && rc != ETIMEDOUT)
		rc = pthread_cond_timedwait(&replay_done_cv, &replay_lock, &dl);
	pthread_mutex_unlock(&replay_lock);
	if (replay_done)
		return NULL;
	char what[128];
	snprintf(what, sizeof what, "VIOLATION: the run did not end within %d s (a hang)",
		 REPLAY_LIMIT_SECONDS);
	write_timeline(replay_sched, replay_prefix, what);
	fprintf(stderr, "\nNMI VIOLATION [%s]: %s\n", nmi_variant_name, what + 11);
	_exit(1);
}

/* Run s with the timeline on and write PREFIX.nmi (the input as a scenario, written
 * first), PREFIX.txt and PREFIX.svg. */
static void report(const struct sim_schedule *s, const char *prefix, struct sim_result *r)
{
	char path[4096];
	snprintf(path, sizeof path, "%s.nmi", prefix);
	FILE *f = fopen(path, "w");
	if (f) {
		fprintf(f, "# decoded fuzz input [%s]\n", nmi_variant_name);
		sched_print(f, s);
		fclose(f);
	}
	pthread_t wd;
	replay_sched = s;
	replay_prefix = prefix;
	replay_done = 0;
	int watched = pthread_create(&wd, NULL, replay_watchdog, NULL) == 0;
	int rc = sim_run(s, SIM_TIMELINE, r);
	pthread_mutex_lock(&replay_lock);
	replay_done = 1;
	pthread_cond_signal(&replay_done_cv);
	pthread_mutex_unlock(&replay_lock);
	if (watched)
		pthread_join(wd, NULL);
	if (rc != 0) {
		fprintf(stderr, "fuzz_nmi: the simulator could not start\n");
		abort();
	}
	f = fopen(path, "w");
	if (f) {
		fprintf(f, "# decoded fuzz input [%s]: %s\n", nmi_variant_name,
			r->failed ? r->what : "passes");
		sched_print(f, s);
		fclose(f);
	}
	write_timeline(s, prefix, NULL);
}

/* libFuzzer's own mutations (FuzzerInterface.h), called by the mutator below. */
size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max_size);
size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned seed);

/* Every mutant is format 1, and its NMIs are breakpoint placements: precise mode
 * places each with one hardware breakpoint trap, no single-stepping.
 *  - libFuzzer's mutations on the whole input would break the magic in a fraction
 *    of mutants (any that insert, erase or change the first bytes), each a format-0
 *    input whose placements are mostly stepped; so they work on the body alone.  A
 *    format-0 input gets the magic in front of its bytes, which format 1 reads as
 *    another schedule: that is its mutation too.
 *  - An index marker a mutation makes (or keeps, from a seed) is rewritten as a
 *    breakpoint placement.  The index form is stepped, and stepping pays libFuzzer
 *    in coverage: the simulator's trap handler is instrumented, and the more
 *    instructions a run steps the higher the hit-count buckets of its edges, each a
 *    new feature.  Left alone, a campaign breeds placements past the end of their
 *    step (measured: 4% of steps, 45 instructions each, most of precise mode's time).
 *    Written on purpose (a seed, a converted reproducer), the form runs as written. */
size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned seed)
{
	(void)seed; /* libFuzzer's mutations draw from its own generator, seeded by -seed */
	if (max_size <= FUZZ_MAGIC_LEN)
		return LLVMFuzzerMutate(data, size, max_size);
	if (!fuzz_format1(data, size)) {
		size = size < max_size - FUZZ_MAGIC_LEN ? size : max_size - FUZZ_MAGIC_LEN;
		memmove(data + FUZZ_MAGIC_LEN, data, size);
		memcpy(data, FUZZ_MAGIC, FUZZ_MAGIC_LEN);
		size += FUZZ_MAGIC_LEN;
	}
	size = FUZZ_MAGIC_LEN + LLVMFuzzerMutate(data + FUZZ_MAGIC_LEN, size - FUZZ_MAGIC_LEN,
						 max_size - FUZZ_MAGIC_LEN);
	fuzz_unmark(data, size);
	return size;
}

/* libFuzzer turns its length control (-len_control, the gradual growth of inputs)
 * off by default when a target has a custom mutator, since such a mutator's sizes
 * may mean nothing to it.  This one is libFuzzer's own byte mutations behind the
 * magic, so the default stays as it was before the mutator, unless the command line
 * sets one: without it inputs averaged about 40 steps after 20 s, and every run
 * cost more in either mode.  libFuzzer parses the flags after this returns. */
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const char flag[] = "-len_control=";
	for (int i = 1; i < *argc; i++)
		if (strncmp((*argv)[i], flag, sizeof flag - 1) == 0)
			return 0;
	char **args = calloc((size_t)*argc + 2, sizeof *args);
	if (!args)
		return 0;
	memcpy(args, *argv, (size_t)*argc * sizeof *args);
	args[(*argc)++] = (char *)"-len_control=100";
	*argv = args;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (fast < 0) {
		const char *m = getenv("NMI_FUZZ_MODE");
		fast = m && strcmp(m, "fast") == 0;
		sim_nmi_hook = on_nmi;
		recheck = getenv("NMI_FUZZ_RECHECK") != NULL;
	}
	struct sim_schedule s;
	struct sim_result r;
	fuzz_decode(data, size, fast, &s);
	const char *tl = getenv("NMI_TIMELINE");
	if (tl) {
		report(&s, tl, &r);
	} else if (sim_run(&s, 0, &r) != 0) {
		fprintf(stderr, "fuzz_nmi: the simulator could not start\n");
		abort();
	}
	if (recheck) {
		struct sim_result again;
		sim_run(&s, 0, &again);
		if (again.failed != r.failed || strcmp(again.what, r.what) != 0) {
			fprintf(stderr, "fuzz_nmi: nondeterministic: first run '%s', second '%s'\n",
				r.what, again.what);
			sched_print(stderr, &s);
			abort();
		}
	}
	if (r.failed) {
		fprintf(stderr, "\nNMI VIOLATION [%s]: %s\n", nmi_variant_name, r.what);
		if (!tl)
			sched_print(stderr, &s);
		fflush(stderr);
		abort(); /* libFuzzer saves the input */
	}
	return 0;
}
