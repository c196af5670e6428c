/* SPDX-License-Identifier: MIT */
/*
 * platform_hv.c - nmi_platform.h on bare metal.
 *
 * Every function is callable from NMI context: none takes a lock that normal
 * context may hold (plat_halt uses the console's bounded failure path).
 *
 * The plat_* functions are the core's door alone, and each counts what the core
 * asked for as it does it (struct nmi_books_platform: the laws hold the core's own
 * counters to these).  The hypervisor's own NMI IPIs and IRETs (a workload's, the
 * IRET after a SIPI exit) go through hv_send_nmi() and hv_nmi_iret(), uncounted.
 */
#include "hv.h"
#include "nmi_books.h"
#include "nmi_platform.h"
#include "replay.h"
#include "vmx.h"
#include "vmx_insn.h"
#include "x86.h"

#define ICR_NMI 0x00004400u /* delivery mode NMI, physical destination, assert */

/* Long enough for a stop-the-world round under Bochs; short enough to report a
 * hang within seconds under QEMU. */
#define SPIN_LIMIT 200000000ul

/* Per CPU, written by that CPU only, in normal and NMI context: one atomic add
 * each, so an NMI cannot split a count. */
static struct {
	uint64_t tlb_flushes, injections, irets;
	uint64_t sent_to[MAX_CPUS];
} asked[MAX_CPUS];

static void count(uint64_t *n)
{
	__atomic_fetch_add(n, 1, __ATOMIC_RELAXED);
}

void plat_hv_asked(unsigned cpu, struct nmi_books_platform *out)
{
	out->tlb_flushes = asked[cpu].tlb_flushes;
	out->injections = asked[cpu].injections;
	out->irets = asked[cpu].irets;
	out->sent_to = asked[cpu].sent_to;
}

/* No CPU may be running the core. */
void plat_hv_asked_reset(unsigned cpu)
{
	asked[cpu].tlb_flushes = asked[cpu].injections = asked[cpu].irets = 0;
	for (unsigned i = 0; i < MAX_CPUS; i++)
		asked[cpu].sent_to[i] = 0;
}

struct nmi_cpu *plat_this_cpu(void)
{
	return &this_percpu()->nmi;
}

/* workload=replay: the scenario's CPUs (its controller is not one of them). */
unsigned plat_ncpus(void)
{
	return replay_on ? replay_ncpus : ncpus;
}

/* VMREAD/VMWRITE report failure in CF (no current VMCS) or ZF (bad field). */
uint64_t plat_vmcs_read(uint32_t field)
{
	uint64_t v;
	if (vmread(field, &v))
		plat_halt(__FILE__, __LINE__, "VMREAD failed");
	return v;
}

void plat_vmcs_write(uint32_t field, uint64_t value)
{
	if (vmwrite(field, value))
		plat_halt(__FILE__, __LINE__, "VMWRITE failed");
	if (field == VMCS_ENTRY_INTR_INFO && (value & INTR_INFO_VALID) &&
	    (value & INTR_INFO_TYPE_MASK) == INTR_INFO_TYPE_NMI)
		count(&asked[this_percpu()->index].injections);
	replay_vmcs_written(field, value);
}

void hv_send_nmi(unsigned id)
{
	if (id >= ncpus || id == this_percpu()->index)
		plat_halt(__FILE__, __LINE__, "plat_send_nmi: bad destination");
	replay_nmi_sent(id);
	lapic_send_ipi(percpu[id].apic_id, ICR_NMI);
}

void plat_send_nmi(unsigned id)
{
	if (id < MAX_CPUS)
		count(&asked[this_percpu()->index].sent_to[id]);
	hv_send_nmi(id);
}

/* Counted first: a latched NMI is taken inside the IRET. */
void plat_nmi_iret(void)
{
	count(&asked[this_percpu()->index].irets);
	hv_nmi_iret();
}

/* An IRET to the next instruction, on the current stack, ends NMI blocking. */
void hv_nmi_iret(void)
{
	replay_nmi_iret();
	__asm__ __volatile__("movq %%rsp, %%rax\n\t"
			     "pushq %0\n\t" /* SS */
			     "pushq %%rax\n\t" /* RSP */
			     "pushfq\n\t"
			     "pushq %1\n\t" /* CS */
			     "leaq 1f(%%rip), %%rax\n\t"
			     "pushq %%rax\n\t" /* RIP */
			     "iretq\n"
			     "1:"
			     :
			     : "i"(SEL_DATA), "i"(SEL_CODE64)
			     : "rax", "memory");
}

/* workload=replay: a spin is a scheduling point, as in the deterministic simulator. */
void plat_relax(void)
{
	if (!replay_relax())
		cpu_pause();
}

unsigned long plat_spin_limit(void)
{
	return replay_on ? replay_spin_limit() : SPIN_LIMIT;
}

/* The console lock is the only lock a parked CPU could hold.  Under workload=replay
 * only the controller prints, and it prints while the requester waits with the
 * token handed back: the scenario's CPUs never take it, so there is none to hold. */
void plat_world_lock(void)
{
	if (!replay_on)
		console_lock();
}
void plat_world_unlock(void)
{
	if (!replay_on)
		console_unlock();
}

/* EPT translations are the only cached ones a round may have changed.  Without a
 * guest's EPT (no VMX, or none built yet), ept_flush() does nothing. */
void plat_tlb_flush(void)
{
	ept_flush();
	count(&asked[this_percpu()->index].tlb_flushes);
}

/* workload=replay records the assertion as the case's verdict and goes on. */
_Noreturn void plat_halt(const char *file, int line, const char *what)
{
	replay_halt(file, line, what);
	panic_begin();
	panic_printf("\nNMI core assertion failed at %s:%d: %s\n", file, line, what);
	panic_printf("  on cpu %u at t=%lu us; variant %s\n", this_percpu()->index, time_us(),
		     nmi_variant_name);
	books_panic_table();
	const struct nmi_quiesce *q = &nmi_quiesce_state;
	panic_printf("  quiesce: lock=%u active=%u resume=%u round=%u owner=%u checked_in=%u "
		     "resumed=%u\n",
		     q->lock, q->active, q->resume, q->round, q->owner, q->checked_in, q->resumed);
	panic_printf("RESULT: FAIL assertion\n");
	hv_exit(1);
}
