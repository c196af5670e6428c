/* SPDX-License-Identifier: MIT */
/*
 * fuzz_nmi.c - libFuzzer target: bytes -> schedule -> deterministic simulator run.
 *
 * The simulator is instrumented (clang -fsanitize=fuzzer); nmi_core.o is not: it is
 * the object the hypervisor links, compiled by gcc with the hypervisor's flags.
 * Coverage of the core comes from __libfuzzer_extra_counters, bumped at every NMI
 * delivery and keyed on where in the core it landed and the NMI state there.
 *
 * Environment:
 *   NMI_FUZZ_MODE=fast     nmi@N counts platform calls instead of instructions
 *   NMI_TIMELINE=PREFIX    (replay) write PREFIX.txt, PREFIX.svg and PREFIX.nmi
 *   NMI_FUZZ_RECHECK=1     run every input twice and abort if the two runs differ:
 *                          the simulator must carry nothing from one run to the next
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decode.h"
#include "nmi_core.h"
#include "sim.h"

#define NCOUNTERS (1u << 14)
__attribute__((section("__libfuzzer_extra_counters"))) static uint8_t counters[NCOUNTERS];

static int fast = -1, recheck;

static void on_nmi(uintptr_t rip, const struct nmi_cpu *c, int in_guest)
{
	uint32_t where = sim_in_core(rip) ? (uint32_t)sim_core_offset(rip) + 1 : 0;
	uint32_t state = (c->masked ? 1u : 0) | (c->visited ? 2u : 0) | (c->visited > 1 ? 4u : 0) |
			 (c->guest_pending ? 8u : 0) | (in_guest ? 16u : 0) |
			 (c->guest_sw_blocked ? 32u : 0);
	uint32_t h = (where * 2654435761u) ^ (state * 40503u);
	uint8_t *k = &counters[h % NCOUNTERS];
	if (*k != 255)
		(*k)++;
}

static void report(const struct sim_schedule *s, const char *prefix)
{
	char path[4096];
	struct sim_result r;
	sim_run(s, SIM_TIMELINE, &r);
	snprintf(path, sizeof path, "%s.nmi", prefix);
	FILE *f = fopen(path, "w");
	if (f) {
		fprintf(f, "# decoded fuzz input [%s]: %s\n", nmi_variant_name,
			r.failed ? r.what : "passes");
		sched_print(f, s);
		fclose(f);
	}
	snprintf(path, sizeof path, "%s.txt", prefix);
	f = fopen(path, "w");
	if (f) {
		sched_print(f, s);
		fprintf(f, "\n");
		sim_timeline_print(f);
		fclose(f);
	}
	snprintf(path, sizeof path, "%s.svg", prefix);
	sim_timeline_svg(path);
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
	if (sim_run(&s, 0, &r) != 0) {
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
	const char *tl = getenv("NMI_TIMELINE");
	if (tl)
		report(&s, tl);
	if (r.failed) {
		fprintf(stderr, "\nNMI VIOLATION [%s]: %s\n", nmi_variant_name, r.what);
		if (!tl)
			sched_print(stderr, &s);
		fflush(stderr);
		abort(); /* libFuzzer saves the input */
	}
	return 0;
}
