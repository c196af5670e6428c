/* SPDX-License-Identifier: MIT */
/*
 * testport.c - the hypervisor's test port: how a guest that cannot execute VMCALL
 * where it wants to (a shell script in Linux) asks the hypervisor to act on its
 * NMI path, and reads its books (docs/linux-guest.md, "Test port").
 *
 * Four byte-wide I/O ports, TESTPORT..TESTPORT+3, one latch per guest CPU (a
 * command acts on the CPU that issues it).  The guest writes the command, its two
 * arguments and then TESTPORT_GO to the last port, which runs the command; the
 * four ports then read back a 32-bit little-endian result.  Without the
 * hypervisor nothing answers there and the ports read 0xFF.
 *
 * Commands that send NMIs or stop the world run after this exit's nmi_unmask()
 * (vmx_owe()): they wait for other CPUs, which must be able to park this one.
 */
#include "hv.h"
#include "nmi_platform.h"
#include "x86.h"

#define TESTPORT        0xCE0u
#define TESTPORT_GO     0xA5u
#define PING_MAGIC      0x564D484Eu /* "NHMV" */
#define ALL_OTHERS      0xFFu
#define WAIT_US         1000000u /* one NMI's way to the guest, at most */
#define FLOOD_SETTLE_US 200000u
#define FLOOD_QUIET_US  5000u
#define NO_PARKING      2u

enum {
	CMD_PING = 1,
	CMD_NMIS, /* arg1: CPU (ALL_OTHERS), arg2: count; paced -> delivered */
	CMD_FLOOD, /* arg1: CPU, arg2: count; back to back -> accepted for the guest */
	CMD_QUIESCE, /* arg1: rounds, arg2: flush -> 0 when every round parked everyone */
	CMD_REPORT, /* arg1: passed, arg2: failed: the guest's verdict */
	CMD_INJECTED, /* arg1: CPU -> NMIs the core injected there (low 32 bits) */
	CMD_HV_RANGE, /* -> the hypervisor's first page frame */
	CMD_HV_RANGE_END, /* -> the page frame after its last */
};

static int guest_cpu_running(unsigned cpu)
{
	const struct vmx_cpu *v = &percpu[cpu].vmx;
	return __atomic_load_n(&v->in_guest, __ATOMIC_ACQUIRE) && !v->waiting_for_sipi;
}

/* One NMI to `cpu`, then wait until the core injected it into the guest: the next
 * one can then never legally merge with it. */
static int paced_nmi(unsigned cpu)
{
	const uint64_t *injected = &percpu[cpu].nmi.guest_injected;
	uint64_t before = __atomic_load_n(injected, __ATOMIC_ACQUIRE);
	uint64_t deadline = time_us() + WAIT_US;
	hv_send_nmi(cpu);
	while (__atomic_load_n(injected, __ATOMIC_ACQUIRE) == before) {
		if (time_us() > deadline)
			return 0;
		cpu_pause();
	}
	return 1;
}

static uint32_t send_paced(unsigned me, unsigned target, unsigned count)
{
	uint32_t delivered = 0;
	for (unsigned cpu = 0; cpu < ncpus; cpu++) {
		if (cpu == me || (target != ALL_OTHERS && cpu != target) || !guest_cpu_running(cpu))
			continue;
		for (unsigned k = 0; k < count; k++)
			delivered += (uint32_t)paced_nmi(cpu);
	}
	return delivered;
}

static uint32_t send_flood(unsigned me, unsigned target, unsigned count)
{
	if (target >= ncpus || target == me || !guest_cpu_running(target))
		return 0;
	const struct nmi_cpu *c = &percpu[target].nmi;
	uint64_t before = __atomic_load_n(&c->guest_accepted, __ATOMIC_ACQUIRE);
	for (unsigned k = 0; k < count; k++)
		hv_send_nmi(target);
	/* Hardware drops what it cannot latch, so the sender cannot count what
	 * arrived: wait until the target has taken no NMI for a while and has nothing
	 * pending for its guest (or the guest stays NMI-blocked past the deadline). */
	uint64_t deadline = time_us() + FLOOD_SETTLE_US, quiet_since = time_us(), seen = 0;
	while (time_us() < deadline) {
		uint64_t taken = __atomic_load_n(&c->nmi_entries, __ATOMIC_ACQUIRE) +
				 __atomic_load_n(&c->exit_nmis, __ATOMIC_ACQUIRE);
		if (taken != seen) {
			seen = taken;
			quiet_since = time_us();
		} else if (time_us() - quiet_since > FLOOD_QUIET_US &&
			   !__atomic_load_n(&c->guest_pending, __ATOMIC_ACQUIRE)) {
			break;
		}
		cpu_pause();
	}
	return (uint32_t)(__atomic_load_n(&c->guest_accepted, __ATOMIC_ACQUIRE) - before);
}

/* Rounds of stop-the-world while the other guest CPUs run: 0 when each round
 * parked every other CPU exactly once. */
static uint32_t quiesce(unsigned me, unsigned rounds, int flush)
{
	if (!vmx_all_parkable())
		return NO_PARKING;
	uint64_t parks = 0, rounds0 = percpu[me].nmi.quiesce_rounds;
	for (unsigned i = 0; i < ncpus; i++)
		parks += percpu[i].nmi.quiesce_parks;
	for (unsigned k = 0; k < rounds; k++) {
		nmi_quiesce_begin();
		nmi_quiesce_end(flush);
	}
	for (unsigned i = 0; i < ncpus; i++)
		parks -= percpu[i].nmi.quiesce_parks;
	uint64_t done = percpu[me].nmi.quiesce_rounds - rounds0;
	return done == rounds && -parks == (uint64_t)rounds * (ncpus - 1) ? 0 : 1;
}

static void set_result(struct vmx_cpu *v, uint32_t result)
{
	for (unsigned i = 0; i < 4; i++)
		v->testport[i] = (uint8_t)(result >> (8 * i));
}

/* The commands that wait for other CPUs: after nmi_unmask(). */
static void run_owed(void)
{
	struct percpu *p = this_percpu();
	struct vmx_cpu *v = &p->vmx;
	unsigned cmd = v->testport[0], a1 = v->testport[1], a2 = v->testport[2];
	uint32_t result;
	switch (cmd) {
	case CMD_NMIS: result = send_paced(p->index, a1, a2); break;
	case CMD_FLOOD: result = send_flood(p->index, a1, a2); break;
	default: result = quiesce(p->index, a1, a2 != 0); break;
	}
	set_result(v, result);
	kprintf("testport: cpu %u: %s %u %u -> %u\n", p->index,
		cmd == CMD_NMIS    ? "NMIS"
		: cmd == CMD_FLOOD ? "FLOOD"
				   : "QUIESCE",
		a1, a2, result);
}

static void run(struct vmx_cpu *v)
{
	unsigned cmd = v->testport[0], a1 = v->testport[1], a2 = v->testport[2];
	switch (cmd) {
	case CMD_PING: set_result(v, PING_MAGIC); break;
	case CMD_NMIS:
	case CMD_FLOOD:
	case CMD_QUIESCE: vmx_owe(run_owed); break;
	case CMD_REPORT:
		guest_run_done(a1, a2, 0);
		set_result(v, 0);
		break;
	case CMD_INJECTED:
		set_result(v, a1 < ncpus ? (uint32_t)percpu[a1].nmi.guest_injected : ~0u);
		break;
	case CMD_HV_RANGE: set_result(v, (uint32_t)(vmx_guest.hv_lo >> 12)); break;
	case CMD_HV_RANGE_END: set_result(v, (uint32_t)(vmx_guest.hv_hi >> 12)); break;
	default: set_result(v, ~0u);
	}
}

static int testport_io(uint16_t port, unsigned size, int in, uint32_t *val)
{
	struct vmx_cpu *v = &this_percpu()->vmx;
	if (in) {
		*val = 0;
		for (unsigned i = 0; i < size; i++) {
			unsigned at = port - TESTPORT + i;
			*val |= (uint32_t)(at < 4 ? v->testport[at] : 0xFF) << (8 * i);
		}
		return 0;
	}
	for (unsigned i = 0; i < size; i++) {
		unsigned at = port - TESTPORT + i;
		uint8_t b = (uint8_t)(*val >> (8 * i));
		if (at == 3 && b == TESTPORT_GO)
			run(v);
		else if (at < 4)
			v->testport[at] = b;
	}
	return 0;
}

void testport_setup(void)
{
	io_register(TESTPORT, 4, testport_io);
}
