/* SPDX-License-Identifier: MIT */
/* main.c - BSP start-up in long mode, and the way out of the emulator. */
#include "hv.h"
#include "vmx.h"
#include "x86.h"

#define MB2_BOOT_MAGIC 0x36D76289u

_Noreturn void kmain(uint32_t magic, uint32_t info);
_Noreturn void kmain(uint32_t magic, uint32_t info)
{
	console_init();
	cmdline_init(magic, info);
	kprintf("hv: booted via %s, NMI core variant %s, cmdline \"%s\"\n",
		magic == MB2_BOOT_MAGIC ? "multiboot2" : "multiboot", nmi_variant_name,
		cmdline_raw());

	idt_init();
	cpu_init(&percpu[0], 0, lapic_id());
	time_init();
	/* NMI state exists before LINT1 (lapic_init) or any AP can deliver an NMI. */
	nmi_core_init();
	for (unsigned i = 0; i < MAX_CPUS; i++)
		nmi_cpu_init(&percpu[i].nmi, i);
	lapic_init(1);
	vmx_cpu_init(); /* before the APs: they follow the BSP's verdict */
	smp_boot();
	workload_main();
}

/* A setup failure (hv.h, "Errors"): the run's one RESULT line. */
_Noreturn void hv_fail(const char *job, const char *why)
{
	kprintf("RESULT: FAIL %s: %s\n", job, why);
	hv_exit(1);
}

/*
 * Leave the emulator: QEMU's isa-debug-exit (port 0xf4; status (v << 1) | 1),
 * then Bochs' magic breakpoint (the runner's debugger script says `quit`), then
 * the Bochs shutdown port as a last resort.  Judge runs by the RESULT line.
 */
_Noreturn void hv_exit(int failed)
{
	for (unsigned i = 0; i < 1000000 && !(inb(0x3f8 + 5) & 0x40); i++)
		cpu_pause(); /* let COM1 drain */
	outl(0xf4, failed ? 1 : 0);
	magic_break();
	for (const char *s = "Shutdown"; *s; s++)
		outb(0x8900, (uint8_t)*s);
	cpu_halt_forever();
}
