/* SPDX-License-Identifier: MIT */
/*
 * time.c - microseconds from the TSC, calibrated once against PIT channel 2.
 * Under emulation this is the emulator's notion of time (Bochs with clock
 * sync=none: instruction-driven), which is what deadlines inside the guest need.
 *
 * Under QEMU the PIT follows the host's clock and so does the TSC, but the vCPU
 * thread can be descheduled at any instruction for as long as the host likes.  A
 * calibration that trusts the moment it programs the PIT, or the moment it sees
 * the count run out, absorbs such a pause into the rate (on a busy host, TSC
 * rates 1.5 to 6 times too high were measured: every deadline that many times
 * too long).  So both ends of the measurement are PIT counts latched between two
 * TSC reads, each the tightest of several tries: a pause inside the bracket shows
 * as a wide bracket and is not used, a pause outside it does not matter.
 */
#include "hv.h"
#include "x86.h"

#define PIT_HZ          1193182u
#define CALIBRATE_MS    10u
#define PIT_TICKS       (PIT_HZ * CALIBRATE_MS / 1000)
#define LATCH_TRIES     8
#define CALIBRATE_RUNS  3
#define CALIBRATE_TRIES 20

static uint64_t tsc_per_us = 1000; /* until time_init(): assume 1 GHz */
static uint64_t tsc_base;

/* Channel 2's count, and the TSC at the moment it was latched (to within
 * `spread` cycles). */
struct pit_sample {
	uint64_t tsc, spread;
	uint16_t count;
};

static uint16_t pit_read_latched(void)
{
	uint8_t lo = inb(0x42);
	return (uint16_t)(lo | (unsigned)inb(0x42) << 8);
}

static struct pit_sample pit_sample(void)
{
	struct pit_sample best = {.spread = ~0ull};
	for (unsigned i = 0; i < LATCH_TRIES; i++) {
		uint64_t t0 = rdtsc();
		outb(0x43, 0x80); /* counter latch, channel 2 */
		uint64_t t1 = rdtsc();
		uint16_t count = pit_read_latched();
		if (t1 - t0 < best.spread)
			best = (struct pit_sample){t0 + (t1 - t0) / 2, t1 - t0, count};
	}
	return best;
}

/* One measurement: TSC cycles per microsecond over CALIBRATE_MS of PIT time, or
 * 0 when the counter ran out first (the vCPU was away for 55 ms). */
static uint64_t calibrate_once(void)
{
	/* Gate channel 2 on, speaker off; mode 0 from 0xFFFF: it counts down for
	 * 55 ms and raises OUT2 (port 0x61 bit 5) when it reaches 0. */
	outb(0x61, (uint8_t)((inb(0x61) & ~0x02) | 0x01));
	outb(0x43, 0xB0);
	outb(0x42, 0xFF);
	outb(0x42, 0xFF);
	struct pit_sample a = pit_sample();
	for (;;) {
		outb(0x43, 0x80);
		if ((uint16_t)(a.count - pit_read_latched()) >= PIT_TICKS || (inb(0x61) & 0x20))
			break;
		cpu_pause();
	}
	struct pit_sample b = pit_sample();
	if (inb(0x61) & 0x20)
		return 0;
	uint64_t ticks = (uint16_t)(a.count - b.count);
	return ticks ? (b.tsc - a.tsc) * PIT_HZ / (ticks * 1000000ull) : 0;
}

/* The median of a few measurements: one spoiled by a pause in both of an end's
 * brackets does not decide the rate.  A measurement the PIT outran is taken again. */
void time_init(void)
{
	uint64_t r[CALIBRATE_RUNS];
	unsigned n = 0, tries = 0;
	while (n < CALIBRATE_RUNS && tries++ < CALIBRATE_TRIES) {
		uint64_t v = calibrate_once();
		if (!v)
			continue;
		unsigned j = n++;
		for (; j > 0 && r[j - 1] > v; j--)
			r[j] = r[j - 1];
		r[j] = v;
	}
	tsc_per_us = n ? r[n / 2] : 1000;
	tsc_base = rdtsc();
	kprintf("time: TSC %lu MHz, the median of %u measurement(s) against the PIT in %u "
		"tries\n",
		tsc_per_us, n, tries);
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
