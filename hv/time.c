/* SPDX-License-Identifier: MIT */
/*
 * time.c - microseconds from the TSC, calibrated once against PIT channel 2.
 * Under emulation this is the emulator's notion of time (Bochs with clock
 * sync=none: instruction-driven), which is what deadlines inside the guest need.
 */
#include "hv.h"
#include "x86.h"

#define PIT_HZ       1193182u
#define CALIBRATE_MS 10u

static uint64_t tsc_per_us = 1000; /* until time_init(): assume 1 GHz */
static uint64_t tsc_base;

void time_init(void)
{
	uint16_t count = (uint16_t)(PIT_HZ * CALIBRATE_MS / 1000);
	/* Gate channel 2 on, speaker off; mode 0 (interrupt on terminal count). */
	outb(0x61, (uint8_t)((inb(0x61) & ~0x02) | 0x01));
	outb(0x43, 0xB0);
	outb(0x42, (uint8_t)count);
	outb(0x42, (uint8_t)(count >> 8));
	uint64_t start = rdtsc();
	while (!(inb(0x61) & 0x20))
		cpu_pause();
	uint64_t per_us = (rdtsc() - start) / (CALIBRATE_MS * 1000);
	tsc_per_us = per_us ? per_us : 1;
	tsc_base = rdtsc();
}

uint64_t time_tsc_per_us(void)
{
	return tsc_per_us;
}

uint64_t time_us(void)
{
	return (rdtsc() - tsc_base) / tsc_per_us;
}

void udelay(uint64_t us)
{
	uint64_t end = time_us() + us;
	while (time_us() < end)
		cpu_pause();
}
