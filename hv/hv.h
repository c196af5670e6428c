/* SPDX-License-Identifier: MIT */
/* hv.h - the bare-metal hypervisor's internal interfaces (everything but the NMI core). */
#ifndef HV_H
#define HV_H

/* Offsets into struct percpu that assembly code uses through %gs. */
#define PERCPU_SELF      0
#define PERCPU_TRACE_NMI 8

#include "gdt.h" /* GDT selectors, the same in every GDT */

/* Physical address the AP start-up trampoline is copied to (SIPI vector 0x08). */
#define TRAMPOLINE_PA 0x8000

#ifndef __ASSEMBLER__

#include <stddef.h>
#include <stdint.h>

#include "nmi_core.h"
#include "vmx.h"

#define MAX_CPUS       16
#define STACK_SIZE     16384
#define IST_STACK_SIZE 8192

/* 64-bit TSS (Intel SDM vol. 3A, 7.7 "Task Management in 64-bit Mode"). */
struct tss {
	uint32_t reserved0;
	uint64_t rsp[3];
	uint64_t reserved1;
	uint64_t ist[7];
	uint64_t reserved2;
	uint16_t reserved3;
	uint16_t iomap_base;
} __attribute__((packed));

/* IST slots (1-based as in the IDT gate). */
enum { IST_NMI = 1, IST_DF = 2, IST_MC = 3 };

/*
 * Per-CPU data.  %gs base points at the owning CPU's struct (set once at CPU
 * start-up and never changed: no user mode, no SWAPGS), so `mov %gs:0` finds it
 * from any context, the NMI handler included.
 */
struct percpu {
	struct percpu *self; /* PERCPU_SELF */
	volatile uint32_t trace_nmi; /* PERCPU_TRACE_NMI: NMI stub hits magic breaks */
	unsigned index; /* dense CPU number = nmi_cpu.id                   */
	uint32_t apic_id;
	volatile uint32_t online;
	struct nmi_cpu nmi;
	struct vmx_cpu vmx; /* VMCS, guest state, exit counters (vmx.h) */
	struct tss tss;
	uint64_t gdt[7]; /* null, code64, data, code32, TSS (2 slots), pad */
} __attribute__((aligned(64)));

_Static_assert(offsetof(struct percpu, self) == PERCPU_SELF, "percpu layout");
_Static_assert(offsetof(struct percpu, trace_nmi) == PERCPU_TRACE_NMI, "percpu layout");

extern struct percpu percpu[MAX_CPUS];
extern unsigned ncpus; /* CPUs online; fixed after smp_boot() */

/* Not volatile: the value never changes on a given CPU, so the compiler may reuse it. */
static inline struct percpu *this_percpu(void)
{
	struct percpu *p;
	__asm__("mov %%gs:0, %0" : "=r"(p));
	return p;
}

/* console.c: COM1 mirrored to port 0xE9, serialized by one spinlock. */
void console_init(void);
void kprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* kprintf's format into a buffer (replay.c's verdicts); any context. */
void kvsnprintf(char *buf, size_t len, const char *fmt, __builtin_va_list ap);
void ksnprintf(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void console_lock(void);
void console_unlock(void);
/* One byte of a guest's console output: each guest line starts with "guest: ",
 * and a hypervisor line never lands inside one (guest_console.c). */
void console_guest_putc(char c);
/* Failure paths: silence NMIs, take the console without waiting forever (the
 * lock holder may be this CPU, interrupted, or a CPU that will never run again),
 * print, stop. */
void panic_begin(void);
void panic_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int serial_poll_byte(void); /* -1 when COM1 has no input */

/* cpu.c: descriptor tables, exceptions. */
void cpu_init(struct percpu *p, unsigned index, uint32_t apic_id);
void idt_init(void);
void idt_silence_nmis(void);

/* time.c: TSC calibrated against the PIT. */
void time_init(void);
uint64_t time_us(void);
uint64_t time_tsc_per_us(void);
void udelay(uint64_t us);

/* lapic.c: xAPIC. */
void lapic_init(int bsp);
uint32_t lapic_id(void);
void lapic_send_ipi(uint32_t apic_id, uint32_t icr_low);
int lapic_x2apic(void); /* the LAPICs run in x2APIC mode */

/* acpi.c: CPUs from the MADT. */
unsigned acpi_find_cpus(uint32_t *apic_ids, unsigned max);

/* smp.c */
void smp_boot(void);

/* books.c: end-of-run checks; the NMI laws and table come from nmi_books.c. */
extern int books_failures;
void books_check(int ok, const char *what, unsigned cpu, uint64_t a, uint64_t b);
void books_check_core(void); /* every CPU's books and the laws' verdict, on the console */
void books_panic_table(void); /* the books only, on the panic console (plat_halt) */

/* platform_hv.c: the hypervisor's own NMI IPI and IRET-to-self, beside the core's
 * (plat_send_nmi, plat_nmi_iret: those are counted as the core's requests); what
 * the core asked of the platform on CPU `cpu` (nmi_books.h), and forgetting it (a
 * replay case starts from nothing). */
void hv_send_nmi(unsigned id);
void hv_nmi_iret(void);
struct nmi_books_platform;
void plat_hv_asked(unsigned cpu, struct nmi_books_platform *out);
void plat_hv_asked_reset(unsigned cpu);

/* cmdline.c: `key=value` words of the boot command line. */
void cmdline_init(uint32_t magic, uint64_t info);
const char *cmdline_raw(void);
const char *cmdline_str(const char *key, const char *def);
uint64_t cmdline_u64(const char *key, uint64_t def);

/*
 * Errors: one convention for the whole hypervisor.
 *
 *  1. Setup failures (the job cannot start: no VMX, no guest module, an EPT that
 *     does not fit, a bad command-line value) are returned as `const char *why`
 *     (NULL: success) up to the job's top level, which calls hv_fail(job, why):
 *     exactly one `RESULT: FAIL <job>: <why>` line, then the emulator exits.
 *     Lower levels print no RESULT line of their own.
 *  2. A guest stopped at run time (an exit the hypervisor does not handle, a
 *     failed VM entry, a triple fault, an EPT violation in its memory) goes
 *     through the one stop path, guest_fail() (guest_stop.c): a `vmx: ...` line
 *     saying what happened, the guest's state dump, then the run's verdict
 *     (guest_run.c), which prints the RESULT line.  The hypervisor keeps running.
 *  3. Hypervisor bugs (an exception in root operation, an NMI core assertion, a
 *     VMREAD/VMWRITE the CPU rejects) stop everything at once: panic_begin(),
 *     panic_printf() of the state, `RESULT: FAIL <what>`, hv_exit(1).
 *
 * A verdict (`RESULT: PASS <job> ...` or `RESULT: FAIL ...`) is printed once per
 * run, by the job that ran.
 */
/* main.c */
_Noreturn void hv_exit(int failed);
_Noreturn void hv_fail(const char *job, const char *why);

/* workload.c */
_Noreturn void workload_main(void);
void workload_ap(void);

#else /* __ASSEMBLER__ */
/* Assembly shared by the .S files, written once.  clang-format keeps out. */
/* clang-format off */

/* 32-bit protected mode -> long mode (boot.S for the BSP, trampoline.S for the
 * APs), once CR3 holds the PML4 and a GDT with SEL_CODE64 is loaded: PAE, EFER.LME,
 * then paging (PE is set again, harmlessly where it already is).  The far jump to
 * 64-bit code stays the caller's.  Clobbers EAX, ECX, EDX. */
	.macro LONG_MODE_ON
	movl %cr4, %eax
	orl $(1 << 5), %eax		/* PAE */
	movl %eax, %cr4
	movl $0xC0000080, %ecx		/* EFER.LME */
	rdmsr
	orl $(1 << 8), %eax
	wrmsr
	movl %cr0, %eax
	orl $0x80000001, %eax		/* PG | PE */
	movl %eax, %cr0
	.endm

/* The System V ABI's callee-saved registers, for a routine that enters a guest
 * from C and returns to its caller (vmx_entry.S vmx_launch, vmx_exp_guest.S
 * exp_run). */
	.macro PUSH_CALLEE_SAVED
	pushq %rbx
	pushq %rbp
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
	.endm
	.macro POP_CALLEE_SAVED
	popq %r15
	popq %r14
	popq %r13
	popq %r12
	popq %rbp
	popq %rbx
	.endm
/* clang-format on */
#endif /* __ASSEMBLER__ */
#endif /* HV_H */
