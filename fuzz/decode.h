/* SPDX-License-Identifier: MIT */
/* decode.h - any byte string is a valid schedule (fuzz/decode.c). */
#ifndef FUZZ_DECODE_H
#define FUZZ_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include "sim.h"

#define FUZZ_MAX_STEPS 48

/* The first bytes of a format-1 input (fuzz/decode.c).  Two bytes, neither a value
 * libFuzzer favours (0, 0xFF, small counts) nor one the format-0 seeds, dictionary
 * or decoder use, so a format-0 input starts with them only by chance (1 in 65536
 * for random bytes); none of the stored ones does (tests/run_tests.py, corpus). */
#define FUZZ_MAGIC "\xb1\x7e"
/* Format 1: this placement byte selects the index form (stepped) explicitly. */
#define FUZZ_INDEX_MARKER 0x3Fu

/* Decode `data` into `s`.  Total: never fails, every byte string gives a schedule
 * the simulator can run.  `fast` selects what nmi@N counts (sim_schedule.fast). */
void fuzz_decode(const uint8_t *data, size_t size, int fast, struct sim_schedule *s);

#endif
