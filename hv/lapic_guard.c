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
 * state).  So every ICR write the guest makes goes through guest_init.c first,
 * which absorbs an INIT de-assert (a no-op since the Pentium 4) and an INIT to
 * CPUs that all wait for their SIPI (their INIT exit would leave them where they
 * are), and emulates an INIT to CPUs that run; every other ICR write is sent as
 * written.  On real CPUs the result is the same as with a pass-through ICR;
 * under Bochs, SMP guests start.
 *
 * Mechanism: xAPIC mode - the APIC page is mapped read-only in the EPT, so reads
 * go to the LAPIC and each write is an EPT violation; the hypervisor decodes the
 * instruction (insn_decode.c), performs the write itself (ICR through the filter
 * above) and skips the instruction.  x2APIC mode - the MSR bitmap intercepts
 * writes to the ICR MSR (0x830) alone.
 */
#include "foreign.h"
#include "hv.h"
#include "insn_decode.h"
#include "x86.h"

#define APIC_PAGE  0xFEE00000ull
#define REG_ICR_LO 0x300u
#define REG_ICR_HI 0x310u
#define CS_AR_L    (1u << 13) /* the code segment is 64-bit */
#define INSN_MAX   15u

const char *lapic_guard_setup(void)
{
	if (ept_set_page_access(APIC_PAGE, EPT_READ) != 0)
		return "cannot make the APIC page read-only in the EPT";
	ept_flush();
	return NULL;
}

/* The guest wrote `lo` to ICR low: the IPI leaves now, unless guest_init.c takes
 * it (an INIT that must not reach a CPU in VMX non-root operation under Bochs). */
static void icr_write(uint32_t lo, uint32_t dest)
{
	struct vmx_cpu *v = &this_percpu()->vmx;
	if (guest_init_emulate(lo, dest)) {
		v->apic.inits_taken++;
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
	uint64_t w = 0, i = 0, s = 0;
	for (unsigned k = 0; k < ncpus; k++) {
		const struct vmx_cpu *v = &percpu[k].vmx;
		w += v->apic.writes;
		i += v->apic.inits_taken;
		s += v->apic.ipis_sent;
	}
	kprintf("vmx: guest LAPIC writes %lu (ICR: IPIs sent %lu, INITs kept from the CPU "
		"%lu)\n",
		w, s, i);
}
