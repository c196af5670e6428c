/* SPDX-License-Identifier: MIT */
/*
 * lapic_guard.c - the guest's writes to its local APIC, seen by the hypervisor.
 *
 * The guest drives its LAPIC directly (pass-through), with one exception: the
 * interrupt command register.  Bochs 2.7 never consumes an INIT that reaches a
 * CPU in VMX non-root operation (docs/emulator-deviations.md): the CPU would
 * exit for it at every later VM entry and never run the guest again.  Linux
 * starts each AP with INIT, INIT de-assert, SIPI, SIPI, and every guest AP here
 * already waits for its SIPI (it is entered in the wait-for-SIPI activity
 * state).  So the hypervisor absorbs:
 *   - an INIT de-assert (level-triggered INIT with level 0): no-op on every CPU
 *     since the Pentium 4 (SDM vol. 3, "Interrupt Command Register", delivery
 *     mode 101 with level de-assert);
 *   - an INIT to guest CPUs that all wait for their SIPI: on a real CPU it would
 *     cause an INIT VM exit whose handling (vmexit: INIT) puts the CPU back into
 *     wait-for-SIPI, where it already is (SDM vol. 3, "INIT signals" under
 *     VM exits unconditionally caused).
 * Every other ICR write is sent as written.  On real CPUs the result is the
 * same as with a pass-through ICR; under Bochs, SMP guests start.
 *
 * Mechanism: xAPIC mode - the APIC page is mapped read-only in the EPT, so reads
 * go to the LAPIC and each write is an EPT violation; the hypervisor decodes the
 * instruction (insn_decode.c), performs the write itself (ICR through the filter
 * above) and skips the instruction.  x2APIC mode - the MSR bitmap intercepts
 * writes to the ICR MSR (0x830) alone.
 */
#include "hv.h"
#include "insn_decode.h"
#include "x86.h"

#define APIC_PAGE        0xFEE00000ull
#define REG_ICR_LO       0x300u
#define REG_ICR_HI       0x310u
#define ICR_MODE(v)      (((v) >> 8) & 7u)
#define ICR_LOGICAL      (1u << 11)
#define ICR_ASSERT       (1u << 14)
#define ICR_LEVEL        (1u << 15)
#define ICR_SHORTHAND(v) (((v) >> 18) & 3u)
#define MODE_INIT        5u
#define CS_AR_L          (1u << 13) /* the code segment is 64-bit */
#define INSN_MAX         15u

const char *lapic_guard_setup(void)
{
	if (ept_set_page_access(APIC_PAGE, EPT_READ) != 0)
		return "cannot make the APIC page read-only in the EPT";
	ept_flush();
	return NULL;
}

/* The CPU index of APIC ID `id`, or -1. */
static int cpu_of_apic(uint32_t id)
{
	for (unsigned i = 0; i < ncpus; i++)
		if (percpu[i].apic_id == id)
			return (int)i;
	return -1;
}

/* Does an INIT with this ICR reach only guest CPUs waiting for their SIPI? */
static int init_reaches_only_waiting_cpus(uint32_t lo, uint32_t dest, unsigned me)
{
	switch (ICR_SHORTHAND(lo)) {
	case 0: {
		if (lo & ICR_LOGICAL)
			return 0; /* a logical destination: send it as written */
		int cpu = cpu_of_apic(dest);
		return cpu >= 0 && percpu[cpu].vmx.waiting_for_sipi;
	}
	case 3: /* all excluding self */
		for (unsigned i = 0; i < ncpus; i++)
			if (i != me && !percpu[i].vmx.waiting_for_sipi)
				return 0;
		return 1;
	default: return 0; /* self, or all including self: this CPU runs */
	}
}

/* The guest wrote `lo` to ICR low: the IPI leaves now, unless absorbed. */
static void icr_write(uint32_t lo, uint32_t dest)
{
	struct percpu *p = this_percpu();
	struct vmx_cpu *v = &p->vmx;
	if (ICR_MODE(lo) == MODE_INIT && (lo & ICR_LEVEL) && !(lo & ICR_ASSERT)) {
		v->apic.deasserts_absorbed++;
		return;
	}
	if (ICR_MODE(lo) == MODE_INIT && init_reaches_only_waiting_cpus(lo, dest, p->index)) {
		v->apic.inits_absorbed++;
		return;
	}
	lapic_send_ipi(dest, lo);
	v->apic.ipis_sent++;
}

/* x2APIC mode: the MSR bitmap intercepts writes of the ICR (msr.c), one 64-bit
 * write with the destination in bits 63:32. */
int apic_icr_write(uint64_t icr)
{
	icr_write((uint32_t)icr, (uint32_t)(icr >> 32));
	return 0;
}

/* The instruction at the guest's RIP: as many of its up to 15 bytes as lie in
 * readable guest memory. */
static unsigned fetch(uint8_t *buf)
{
	uint64_t at = guest_rip_linear();
	unsigned n = INSN_MAX;
	while (n && guest_read(at, buf, n) != 0)
		n--;
	return n;
}

int lapic_guard_ept_violation(struct guest_regs *r, uint64_t gpa, uint64_t qual, const char **why)
{
	if ((gpa & ~0xFFFull) != APIC_PAGE)
		return 0;
	*why = NULL;
	if (!(qual & EPT_QUAL_WRITE)) {
		*why = "a non-write access to the read-only APIC page";
		return 1;
	}
	uint8_t bytes[INSN_MAX];
	unsigned n = fetch(bytes);
	int code64 = guest_long_mode() && (vmx_read(VMCS_GUEST_CS_AR) & CS_AR_L);
	struct insn in;
	if (insn_decode(bytes, n, code64, &in) != 0 || in.kind == INSN_LOAD) {
		*why = "an APIC write by an instruction the decoder does not know";
		return 1;
	}
	struct vmx_cpu *v = &this_percpu()->vmx;
	unsigned off = (unsigned)(gpa & 0xFFF);
	uint32_t value = in.kind == INSN_STORE_IMM ? in.imm : (uint32_t)guest_gpr(r, in.reg);
	if (in.kind == INSN_XCHG) /* a 32-bit destination register is zero-extended */
		guest_set_gpr(r, in.reg, mmio_read32((uintptr_t)gpa));
	v->apic.writes++;
	if (off == REG_ICR_HI)
		v->apic.icr_high = value;
	if (off == REG_ICR_LO)
		icr_write(value, v->apic.icr_high >> 24);
	else
		mmio_write32((uintptr_t)gpa, value);
	vmx_skip(in.len);
	return 1;
}

void lapic_guard_report(void)
{
	uint64_t w = 0, i = 0, d = 0, s = 0;
	for (unsigned k = 0; k < ncpus; k++) {
		const struct vmx_cpu *v = &percpu[k].vmx;
		w += v->apic.writes;
		i += v->apic.inits_absorbed;
		d += v->apic.deasserts_absorbed;
		s += v->apic.ipis_sent;
	}
	kprintf("vmx: guest LAPIC writes %lu (ICR: IPIs sent %lu, INITs absorbed %lu, INIT "
		"de-asserts absorbed %lu)\n",
		w, s, i, d);
}
