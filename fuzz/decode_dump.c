/* SPDX-License-Identifier: MIT */
/*
 * decode_dump.c - every field of the schedule a fuzz input decodes to, in precise
 * and in fast mode: one line per input and mode, then one per step.
 *
 *   decode_dump FILE...
 *
 * Not part of any build: tests/run_tests.py (suite corpus) compiles it twice, with
 * the decoder of this tree and with the decoder as it was before format 1 (from
 * git), and compares the two dumps of every stored input.  Fields, not bytes: the
 * padding of struct sim_at is whatever a compound literal left there.  An address
 * is printed as its offset in the core, which both programs link at one place.
 */
#include <stdio.h>
#include <stdlib.h>

#include "decode.h"

static size_t slurp(const char *path, uint8_t *buf, size_t cap)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		perror(path);
		exit(2);
	}
	size_t n = fread(buf, 1, cap, f);
	fclose(f);
	return n;
}

int main(int argc, char **argv)
{
	static uint8_t buf[1 << 16];
	static struct sim_schedule s;
	for (int i = 1; i < argc; i++) {
		size_t n = slurp(argv[i], buf, sizeof buf);
		for (int fast = 0; fast < 2; fast++) {
			fuzz_decode(buf, n, fast, &s);
			printf("%s %s: cpus %u fast %u steps %u\n", argv[i],
			       fast ? "fast" : "precise", s.ncpus, s.fast, s.nsteps);
			for (unsigned k = 0; k < s.nsteps; k++) {
				const struct sim_step *st = &s.step[k];
				printf("  cpu %u op %u arg %u line %d nat %u", st->cpu, st->op,
				       st->arg, st->line, st->nat);
				for (unsigned a = 0; a < st->nat; a++)
					printf(" [kind %u index %u core+%#lx]", st->at[a].kind,
					       st->at[a].index,
					       st->at[a].addr
						   ? (unsigned long)sim_core_offset(st->at[a].addr)
						   : 0ul);
				printf("\n");
			}
		}
	}
	return 0;
}
