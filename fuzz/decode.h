/* SPDX-License-Identifier: MIT */
/* decode.h - any byte string is a valid schedule (fuzz/decode.c). */
#ifndef FUZZ_DECODE_H
#define FUZZ_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include "sim.h"

#define FUZZ_MAX_STEPS 48

/* The first bytes of a format-1 input (fuzz/decode.c): "NMI" and the format's
 * version.  Format 0 gives every byte string a meaning, so no prefix is impossible
 * in an old input; four bytes make one there a 1 in 2^32 chance for random bytes,
 * and no format-0 tool ever wrote or compared against them (the stored inputs are
 * checked: tests/run_tests.py, corpus).  Format 1's mutator (fuzz_nmi.c) keeps
 * them, so a campaign does not drift back to format 0. */
#define FUZZ_MAGIC     "NMI\x01"
#define FUZZ_MAGIC_LEN (sizeof FUZZ_MAGIC - 1)
/* Format 1: this placement byte selects the index form (stepped) explicitly. */
#define FUZZ_INDEX_MARKER 0x3Fu
/* ... and what fuzz_unmark() makes of it: a breakpoint placement, the first time the
 * step reaches boundary x % 64 of its path from its first function (x the byte
 * after), where the index form put the NMI before the step's (1 + x % 64)-th
 * instruction. */
#define FUZZ_UNMARKED 0x40u

/* Decode `data` into `s`.  Total: never fails, every byte string gives a schedule
 * the simulator can run.  `fast` selects what nmi@N counts (sim_schedule.fast). */
void fuzz_decode(const uint8_t *data, size_t size, int fast, struct sim_schedule *s);

/* Whether `data` is a format-1 input (starts with FUZZ_MAGIC). */
int fuzz_format1(const uint8_t *data, size_t size);

/* Rewrite every index marker of a format-1 input (a placement the mutator made in
 * the index form) as a breakpoint placement, FUZZ_UNMARKED; other inputs are left
 * as they are. */
void fuzz_unmark(uint8_t *data, size_t size);

#endif
