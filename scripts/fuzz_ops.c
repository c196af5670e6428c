/* SPDX-License-Identifier: MIT */
/*
 * fuzz_ops.c - the fuzz decoder's operation table, read back from the decoder
 * itself: one "<a >> 2> <operation>" line for each value of a step's first byte
 * (CPU bits 0), decoded by fuzz_decode() (fuzz/decode.c) and named by
 * sched_op_name().  scripts/mkseeds.py encodes the seed corpus with it, so the
 * table is written once, in decode.c.
 */
#include <stdio.h>

#include "decode.h"

int main(void)
{
	static struct sim_schedule s;
	for (unsigned v = 0; v < 64; v++) {
		const uint8_t input[3] = {0, (uint8_t)(v << 2), 0};
		fuzz_decode(input, sizeof input, 0, &s);
		if (s.nsteps != 1)
			return 1;
		printf("%u %s\n", v, sched_op_name(s.step[0].op));
	}
	return 0;
}
