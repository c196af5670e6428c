/* SPDX-License-Identifier: MIT */
/*
 * decode.c - the fuzzer's input format.
 *
 *   byte 0          number of CPUs: 1 + b % 3
 *   then per step   a: CPU (a & 3, modulo the CPU count) and operation (a >> 2,
 *                      through the weighted table below)
 *                   b: for nmi, the burst size 1 + (b & 3); for quiesce, flush = b & 1;
 *                      for the others, bit 7 = an NMI lands inside the step, at core
 *                      instruction 1 + (b & 63); bit 6 = a second one, whose index is
 *                      the next byte (1 + (c & 63))
 * A trailing odd byte is ignored.  Indices past the end of a step never fire.
 */
#include <string.h>

#include "decode.h"

/* Weights: the operations that make NMI races (masking, NMIs) come up most. */
static const uint8_t op_table[16] = {
    OP_MASK, OP_UNMASK, OP_CRIT,  OP_DETACH, OP_NMI,     OP_NMI,     OP_NMI, OP_ENTER,
    OP_EXIT, OP_GIRET,  OP_GIRET, OP_BLOCK,  OP_UNBLOCK, OP_QUIESCE, OP_RUN, OP_FAULT,
};

void fuzz_decode(const uint8_t *d, size_t n, int fast, struct sim_schedule *s)
{
	size_t i = 0;
	memset(s, 0, sizeof *s);
	s->fast = (unsigned)fast;
	s->ncpus = n ? 1u + d[i++] % 3u : 1u;
	while (i + 1 < n && s->nsteps < FUZZ_MAX_STEPS) {
		uint8_t a = d[i++], b = d[i++];
		struct sim_step *st = &s->step[s->nsteps++];
		st->cpu = (uint8_t)((a & 3u) % s->ncpus);
		st->op = op_table[(a >> 2) & 15u];
		if (st->op == OP_NMI) {
			st->arg = (uint8_t)(1u + (b & 3u));
		} else if (st->op == OP_QUIESCE) {
			st->arg = b & 1u;
		} else if (st->op != OP_RUN && (b & 0x80u)) {
			st->at[st->nat++] =
			    (struct sim_at){.kind = AT_INDEX, .index = 1u + (b & 63u)};
			if ((b & 0x40u) && i < n)
				st->at[st->nat++] =
				    (struct sim_at){.kind = AT_INDEX, .index = 1u + (d[i++] & 63u)};
		}
	}
}
