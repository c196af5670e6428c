/* SPDX-License-Identifier: MIT */
/*
 * cpu.c - per-CPU descriptor tables and fatal exceptions.
 *
 * Every CPU gets its own GDT (its TSS descriptor differs) and TSS with three IST
 * stacks: NMI, #DF and #MC never run on the interrupted stack, so an NMI on the
 * first instruction of another handler, or a double fault on a broken stack,
 * still has a good one.  The IDT is shared.
 */
#include "hv.h"
#include "replay.h"
#include "x86.h"

struct idt_gate {
	uint16_t off0;
	uint16_t sel;
	uint8_t ist;
	uint8_t type; /* 0x8E: present, DPL 0, 64-bit interrupt gate */
	uint16_t off1;
	uint32_t off2;
	uint32_t reserved;
} __attribute__((packed));

struct desc_ptr {
	uint16_t limit;
	uint64_t base;
} __attribute__((packed));

/* What entry.S's exc_common pushes, lowest address first. */
struct exc_frame {
	uint64_t r15, r14, r13, r12, r11, r10, r9, r8, rbp, rdi, rsi, rdx, rcx, rbx, rax;
	uint64_t vector, error;
	uint64_t rip, cs, rflags, rsp, ss;
};

extern const uint64_t exc_stubs[32]; /* entry.S; [2] is nmi_entry */
extern char spurious_entry[];

static struct idt_gate idt[256] __attribute__((aligned(16)));
static uint8_t ist_stacks[MAX_CPUS][3][IST_STACK_SIZE] __attribute__((aligned(16)));

static void set_gate(unsigned vec, const void *handler, unsigned ist)
{
	uint64_t a = (uint64_t)handler;
	idt[vec] = (struct idt_gate){
	    .off0 = (uint16_t)a,
	    .sel = SEL_CODE64,
	    .ist = (uint8_t)ist,
	    .type = 0x8E,
	    .off1 = (uint16_t)(a >> 16),
	    .off2 = (uint32_t)(a >> 32),
	};
}

void idt_init(void)
{
	for (unsigned v = 0; v < 32; v++) {
		unsigned ist = v == 2 ? IST_NMI : v == 8 ? IST_DF : v == 18 ? IST_MC : 0;
		set_gate(v, (const void *)exc_stubs[v], ist);
	}
	set_gate(0xFF, spurious_entry, 0);
}

/*
 * From now on every CPU drops NMIs (vector 2 becomes a bare iretq).  Failure
 * reports call this first: an NMI landing in the middle of a report would run the
 * NMI core on state that is known to be broken (with the seed's underflowed
 * counter, a drain of ~4 billion iterations inside the handler) and the report
 * would never finish.  Both entry points live in the first 4 GiB, so only the
 * gate's low quadword changes: one atomic store, never a torn gate.
 */
void idt_silence_nmis(void)
{
	struct idt_gate g = idt[2];
	uint64_t a = (uint64_t)spurious_entry, low;
	g.off0 = (uint16_t)a;
	g.off1 = (uint16_t)(a >> 16);
	__builtin_memcpy(&low, &g, sizeof low);
	__atomic_store_n((uint64_t *)&idt[2], low, __ATOMIC_SEQ_CST);
}

void cpu_init(struct percpu *p, unsigned index, uint32_t apic_id)
{
	p->self = p;
	p->index = index;
	p->apic_id = apic_id;

	for (unsigned i = 0; i < 3; i++)
		p->tss.ist[i] = (uint64_t)&ist_stacks[index][i][IST_STACK_SIZE];
	p->tss.iomap_base = sizeof p->tss; /* no I/O bitmap */

	uint64_t base = (uint64_t)&p->tss, limit = sizeof p->tss - 1;
	p->gdt[0] = 0;
	p->gdt[SEL_CODE64 / 8] = GDT_DESC_CODE64;
	p->gdt[SEL_DATA / 8] = GDT_DESC_DATA;
	p->gdt[SEL_CODE32 / 8] = GDT_DESC_CODE32;
	/* SEL_TSS: a 64-bit available TSS (type 9), SDM vol. 3A, 7.2.3 "TSS Descriptor in 64-bit
	 * mode". */
	p->gdt[SEL_TSS / 8] = (limit & 0xFFFF) | ((base & 0xFFFFFF) << 16) | (0x89ull << 40) |
			      (((limit >> 16) & 0xF) << 48) | (((base >> 24) & 0xFF) << 56);
	p->gdt[SEL_TSS / 8 + 1] = base >> 32;

	struct desc_ptr gdtr = {sizeof p->gdt - 1, (uint64_t)p->gdt};
	struct desc_ptr idtr = {sizeof idt - 1, (uint64_t)idt};
	__asm__ __volatile__("lgdt %0\n\t"
			     "pushq %1\n\t"
			     "leaq 1f(%%rip), %%rax\n\t"
			     "pushq %%rax\n\t"
			     "lretq\n"
			     "1:\n\t"
			     "movw %w2, %%ax\n\t"
			     "movw %%ax, %%ds\n\t"
			     "movw %%ax, %%es\n\t"
			     "movw %%ax, %%ss\n\t"
			     "ltr %w3\n\t"
			     "lidt %4"
			     :
			     : "m"(gdtr), "i"(SEL_CODE64), "r"(SEL_DATA), "r"(SEL_TSS), "m"(idtr)
			     : "rax", "memory");
	wrmsr(MSR_GS_BASE, (uint64_t)p);

	/* XSETBV needs CR4.OSXSAVE (else #UD): the guest's XSETBV exits and is executed
	 * here (insn_exits.c).  The hypervisor itself uses no extended state. */
	uint32_t a, b, c, d;
	cpuid(1, &a, &b, &c, &d);
	if (c & CPUID1_ECX_XSAVE)
		write_cr4(read_cr4() | CR4_OSXSAVE);
}

static const char *const exc_names[32] = {
    "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "CSO", "#TS",
    "#NP", "#SS", "#GP", "#PF", "?15", "#MF", "#AC", "#MC", "#XM", "#VE", "#CP",
};

_Noreturn void exception_handler(struct exc_frame *f);

/* entry.S's #DB stub: a trap workload=replay placed returns, anything else is fatal. */
void debug_trap(struct exc_frame *f);
void debug_trap(struct exc_frame *f)
{
	if (!replay_debug_trap(&f->rip, &f->rflags, &f->rsp))
		exception_handler(f);
}

/* Called by entry.S for every exception: report and stop the emulator. */
_Noreturn void exception_handler(struct exc_frame *f);
_Noreturn void exception_handler(struct exc_frame *f)
{
	const char *name = exc_names[f->vector & 31] ? exc_names[f->vector & 31] : "?";
	panic_begin();
	panic_printf("\nEXCEPTION %s vector=%lu error=0x%lx cpu-apic=%u\n", name, f->vector,
		     f->error, (unsigned)(mmio_read32(0xFEE00020) >> 24));
	panic_printf("  rip=%016lx cs=%lx rflags=%016lx\n", f->rip, f->cs, f->rflags);
	panic_printf("  rsp=%016lx ss=%lx cr2=%016lx\n", f->rsp, f->ss, read_cr2());
	panic_printf("  rax=%016lx rbx=%016lx rcx=%016lx rdx=%016lx\n", f->rax, f->rbx, f->rcx,
		     f->rdx);
	panic_printf("  rsi=%016lx rdi=%016lx rbp=%016lx r8 =%016lx\n", f->rsi, f->rdi, f->rbp,
		     f->r8);
	panic_printf("  r9 =%016lx r10=%016lx r11=%016lx r12=%016lx\n", f->r9, f->r10, f->r11,
		     f->r12);
	panic_printf("  r13=%016lx r14=%016lx r15=%016lx\n", f->r13, f->r14, f->r15);
	panic_printf("RESULT: FAIL exception %lu\n", f->vector);
	hv_exit(1);
}
