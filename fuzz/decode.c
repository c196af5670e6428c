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
 *                      (index form).  Bit 7 clear and bit 6 set (b = 01rooppp,
 *                      bits the index form never reads): the breakpoint form, an
 *                      NMI at a core instruction boundary, the (1 + oo)-th time the
 *                      step reaches it: boundary fuzz_core_bounds[(ppp << 8 | c) %
 *                      count] with c the next byte; r = a second one, from the next
 *                      two bytes x, y: occurrence 1 + (x >> 3 & 3), boundary
 *                      (x & 7) << 8 | y.  Without the table (fuzz_ops) or with no
 *                      byte left, no NMI, as before.
 * A trailing odd byte is ignored.  Indices past the end of a step never fire.
 * The breakpoint form needs no single-stepping (sim/stepper.c): precise mode at the
 * cost of one trap per NMI.  Every input decodes as it did before that form
 * existed unless some placement step's b had bit 7 clear and bit 6 set.
 */
#include <string.h>

#include "decode.h"

/* Weights: the operations that make NMI races (masking, NMIs) come up most. */
static const uint8_t op_table[16] = {
    OP_MASK, OP_UNMASK, OP_CRIT,  OP_DETACH, OP_NMI,     OP_NMI,     OP_NMI, OP_ENTER,
    OP_EXIT, OP_GIRET,  OP_GIRET, OP_BLOCK,  OP_UNBLOCK, OP_QUIESCE, OP_RUN, OP_FAULT,
};

/* The core's instruction boundaries (build/<variant>/fuzz/core_bounds.c, from the
 * disassembly of nmi_core.o); absent (weak, 0) where the decoder is linked without. */
extern const uint32_t fuzz_core_bounds[] __attribute__((weak));
extern const unsigned fuzz_core_nbounds __attribute__((weak));
extern const char *const fuzz_core_text __attribute__((weak)); /* __start_nmi_core_text */

static unsigned nbounds(void)
{
	return &fuzz_core_nbounds ? fuzz_core_nbounds : 0;
}

/* An NMI the occ-th time the step reaches boundary (hi << 8 | lo) % count. */
static struct sim_at bp_at(unsigned hi, unsigned lo, unsigned occ)
{
	uintptr_t off = fuzz_core_bounds[(hi << 8 | lo) % nbounds()];
	return (struct sim_at){
	    .kind = AT_ADDR, .index = occ, .addr = (uintptr_t)fuzz_core_text + off};
}

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
		} else if (st->op != OP_RUN && (b & 0xC0u) == 0x40u && i < n && nbounds()) {
			st->at[st->nat++] = bp_at(b & 7u, d[i], 1u + (b >> 3 & 3u));
			i++;
			if ((b & 0x20u) && i + 1 < n) {
				st->at[st->nat++] =
				    bp_at(d[i] & 7u, d[i + 1], 1u + (d[i] >> 3 & 3u));
				i += 2;
			}
		}
	}
}
