/* SPDX-License-Identifier: MIT */
/*
 * smp.c - start the application processors listed in the MADT with
 * INIT-SIPI-SIPI, one at a time, through trampoline.S at TRAMPOLINE_PA.
 * CPU indexes are dense: 0 is the BSP, then the APs in MADT order.
 */
#include "hv.h"
#include "vmx.h"
#include "x86.h"

#define ICR_INIT            0x00004500u /* INIT, level assert */
#define ICR_STARTUP         0x00004600u /* start-up IPI, vector in bits 0-7 */
#define AP_START_TIMEOUT_US 200000u

extern char tramp_start[], tramp_end[], tramp_cr3[], tramp_stack[], tramp_arg[], tramp_entry[];
extern uint64_t boot_pml4[];

struct percpu percpu[MAX_CPUS];
unsigned ncpus = 1;
static uint8_t ap_stacks[MAX_CPUS][STACK_SIZE] __attribute__((aligned(16)));

/* Where a trampoline symbol lives once the trampoline has been copied. */
static void *tramp_slot(char *sym)
{
	return phys_ptr(TRAMPOLINE_PA + (uintptr_t)(sym - tramp_start));
}

static _Noreturn void ap_entry(struct percpu *p)
{
	cpu_init(p, p->index, lapic_id());
	lapic_init(0);
	vmx_cpu_init();
	__atomic_store_n(&p->online, 1, __ATOMIC_RELEASE);
	workload_ap();
	cpu_halt_forever();
}

void smp_boot(void)
{
	uint32_t ids[MAX_CPUS];
	unsigned want = (unsigned)cmdline_u64("cpus", MAX_CPUS);
	unsigned found = acpi_find_cpus(ids, MAX_CPUS);
	uint32_t bsp = lapic_id();

	percpu[0].online = 1;
	if (!found)
		kprintf("smp: no MADT, running on the BSP only\n");

	uint8_t *dst = phys_ptr(TRAMPOLINE_PA);
	for (char *s = tramp_start; s < tramp_end; s++)
		*dst++ = (uint8_t)*s;
	*(uint64_t *)tramp_slot(tramp_cr3) = (uint64_t)boot_pml4;
	*(uint64_t *)tramp_slot(tramp_entry) = (uint64_t)ap_entry;

	for (unsigned i = 0; i < found && ncpus < want; i++) {
		if (ids[i] == bsp)
			continue;
		struct percpu *p = &percpu[ncpus];
		p->index = ncpus;
		p->apic_id = ids[i];
		*(uint64_t *)tramp_slot(tramp_stack) = (uint64_t)&ap_stacks[ncpus][STACK_SIZE];
		*(uint64_t *)tramp_slot(tramp_arg) = (uint64_t)p;
		__atomic_thread_fence(__ATOMIC_SEQ_CST);

		lapic_send_ipi(ids[i], ICR_INIT);
		udelay(10000);
		for (int sipi = 0; sipi < 2 && !p->online; sipi++) {
			lapic_send_ipi(ids[i], ICR_STARTUP | (TRAMPOLINE_PA >> 12));
			udelay(200);
		}
		uint64_t deadline = time_us() + AP_START_TIMEOUT_US;
		while (!__atomic_load_n(&p->online, __ATOMIC_ACQUIRE) && time_us() < deadline)
			cpu_pause();
		if (!p->online) {
			kprintf("smp: APIC id %u did not start\n", ids[i]);
			continue;
		}
		ncpus++;
	}
	kprintf("smp: %u CPU(s) online (MADT lists %u)\n", ncpus, found);
}
