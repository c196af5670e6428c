/* SPDX-License-Identifier: MIT */
/* decode.h - any byte string is a valid schedule (fuzz/decode.c). */
#ifndef FUZZ_DECODE_H
#define FUZZ_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include "sim.h"

#define FUZZ_MAX_STEPS 48

/* Decode `data` into `s`.  Total: never fails, every byte string gives a schedule
 * the simulator can run.  `fast` selects what nmi@N counts (sim_schedule.fast). */
void fuzz_decode(const uint8_t *data, size_t size, int fast, struct sim_schedule *s);

#endif
