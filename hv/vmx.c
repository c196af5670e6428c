/* SPDX-License-Identifier: MIT */
/*
 * vmx.c - VMX root operation on every CPU and one guest on the BSP, or with
 * `guest_smp=1` on every CPU.
 *
 * The guest is a multiboot v1 kernel (guest_load.c), entered in flat 32-bit
 * protected mode with paging off (unrestricted guest + EPT, ept.c).  With
 * `guest_smp=1` every AP gets its own VMCS for the same guest, entered in the
 * wait-for-SIPI activity state: the guest's own SIPI starts it (a SIPI exit puts
 * it in real mode at the vector's page; an INIT exit sends it back to waiting).
 * I/O ports, the LAPIC and every MSR read pass through; MSR writes, CR0/CR4
 * changes to the bits VMX fixes, and every exit this file does not know stop the
 * guest with a state dump.  The hypervisor then says why, proves it still runs (one
 * stop-the-world round), checks the NMI core's conservation laws, and ends the
 * run with a RESULT line.
 *
 * NMIs (docs/vmx.md): pin-based NMI exiting + virtual NMIs.  Every exit handler
 * runs between nmi_mask() and nmi_unmask(), so an NMI that hits the hypervisor
 * while it edits the VMCS is only counted and handled at the unmask.  The core
 * owns the NMI-window control and the VM-entry injection field: an NMI exit goes
 * to nmi_vmexit_nmi() (which leaves the exit's NMI blocking with an IRET), an
 * NMI-window exit to nmi_vmexit_nmi_window() (which injects one pending NMI).
 * There is no cached VMCS: the VMCS the core writes is the one VMRESUME uses.
 * An exit that interrupted the delivery of an event delivers it again at the next
 * entry: the core re-queues its own NMI injections, this file re-injects the rest.
 */
#include "hv.h"
#include "hypercall.h"
#include "nmi_platform.h"
#include "vmx.h"
#include "x86.h"

#define MSR_FEATURE_CONTROL   0x03Au
#define MSR_VMX_BASIC         0x480u
#define MSR_VMX_PINBASED      0x481u
#define MSR_VMX_PROCBASED     0x482u
#define MSR_VMX_EXIT          0x483u
#define MSR_VMX_ENTRY         0x484u
#define MSR_VMX_MISC          0x485u
#define MSR_VMX_CR0_FIXED0    0x486u
#define MSR_VMX_CR0_FIXED1    0x487u
#define MSR_VMX_CR4_FIXED0    0x488u
#define MSR_VMX_CR4_FIXED1    0x489u
#define MSR_VMX_PROCBASED2    0x48Bu
#define MSR_VMX_EPT_VPID_CAP  0x48Cu
#define MSR_VMX_TRUE_PINBASED 0x48Du /* TRUE_PROCBASED, TRUE_EXIT, TRUE_ENTRY follow */
#define MSR_FS_BASE           0xC0000100u

#define FC_LOCK              (1ull << 0)
#define FC_VMXON_OUTSIDE_SMX (1ull << 2)
#define BASIC_TRUE_CTLS      (1ull << 55)
#define CR0_PE               (1ull << 0)
#define CR0_ET               (1ull << 4)
#define CR0_PG               (1ull << 31)
#define CR4_VMXE             (1ull << 13)

#define PROC_USE_MSR_BITMAPS (1u << 28)
#define PROC_SECONDARY       (1u << 31)
#define PROC2_EPT            (1u << 1)
#define PROC2_UNRESTRICTED   (1u << 7)
#define EXIT_HOST_64         (1u << 9)
#define EXIT_LOAD_EFER       (1u << 21)
#define ENTRY_LOAD_EFER      (1u << 15)

#define INTR_TYPE(info)            (((info) >> 8) & 7u)
#define INTR_TYPE_NMI              2u
#define INTR_TYPE_SOFT_INT         4u /* INT n */
#define INTR_TYPE_PRIV_SOFT_EXC    5u /* INT1 */
#define INTR_TYPE_SOFT_EXC         6u /* INT3, INTO */
#define INTR_INFO_ERRCODE          (1u << 11)
#define INTR_INFO_ENTRY_BITS       0x80000FFFu /* what VM-entry interruption info may hold */
#define EPT_QUAL_NMI_UNBLOCKED     (1ull << 12) /* the faulting IRET had unblocked NMIs */
#define MISC_WAIT_FOR_SIPI         (1ull << 8) /* IA32_VMX_MISC: activity state 3 allowed */
#define ACTIVITY_WAIT_FOR_SIPI     3u
#define INTERRUPTIBILITY_STI_MOVSS 3u
#define INTERRUPTIBILITY_SMI       (1u << 2)
#define JOB_NMI_TIMEOUT_US         1000000u
#define SETTLE_US                  20000u

extern char __load_start[], __bss_end[];
extern char vmx_exit_entry[];
uint64_t vmx_launch(uint64_t rax, uint64_t rbx);
void vmx_exit_handler(struct guest_regs *r);
_Noreturn void vmx_entry_failed(uint64_t rflags);

static uint8_t vmxon_region[MAX_CPUS][4096] __attribute__((aligned(4096)));
static uint8_t vmcs_region[MAX_CPUS][4096] __attribute__((aligned(4096)));
static uint8_t msr_bitmap[4096] __attribute__((aligned(4096)));
static uint8_t exit_stack[MAX_CPUS][STACK_SIZE] __attribute__((aligned(16)));

/* Decided on the BSP by vmx_cpu_init(), read-only afterwards. */
static const char *unavailable_why;
static uint32_t vmx_cpus; /* CPUs in VMX root operation */
static uint32_t revision;
static uint32_t pin_ctls, proc_ctls, proc2_ctls, exit_ctls, entry_ctls;
static uint64_t ept_cap, vmx_misc;

/* The guest run.  Each CPU writes only its own row of the per-CPU arrays. */
static uint64_t hv_lo, hv_hi;
static uint64_t exits[MAX_CPUS][64]; /* [62]: reasons >= 62; [63]: every exit */
static uint64_t reinjected[MAX_CPUS]; /* non-NMI events delivered again */
static uint32_t quiesce_owed[MAX_CPUS]; /* HC_QUIESCE rounds to run before VMRESUME */
static uint64_t bad_hypercalls;
/* guest_smp=1: the BSP publishes the EPT pointer once the guest is loaded; the
 * APs wait for it.  0 until then (and for good without guest_smp). */
static int guest_smp;
static volatile uint64_t guest_eptp;
/* A guest CPU in wait-for-SIPI takes no NMI (only a SIPI ends that state; Bochs
 * 2.7 holds NMIs there), so stop-the-world could never park it.  Set by the BSP for
 * every AP before it publishes guest_eptp, cleared by that AP's SIPI exit. */
static volatile uint32_t waiting_for_sipi[MAX_CPUS];
/* This CPU's guest was started by a SIPI exit (Bochs 2.7 leaves it SMI-masked). */
static uint32_t started_by_sipi[MAX_CPUS];
/* Nonzero while this CPU has a guest VMCS attached to the core. */
static volatile uint32_t in_guest[MAX_CPUS];
/* The run is ending: every other guest CPU detaches at its next exit. */
static volatile uint32_t guest_stopping;
static volatile uint32_t finishing; /* one CPU judges the run */
/* HC_EPT_LAZY: the page now out of the EPT (0: none), and pages put back. */
static uint64_t lazy_page, lazy_restored;
static struct {
	int done; /* the guest called HC_DONE */
	uint32_t passed, failed, nmis; /* what it reported */
	int ept_violation; /* stopped by an EPT violation ... */
	uint64_t ept_gpa; /* ... at this guest-physical address */
} outcome;

/* The job another CPU runs for the guest (HC_NMI_JOB).  Written by the BSP's exit
 * handler while `active` is 0, then owned by CPU 1 until it clears `active`. */
static struct {
	volatile uint32_t active;
	volatile uint32_t kind, remaining;
	volatile uint64_t nmis_sent, nmis_lost, rounds;
} job;

/* ---- VMX instructions ----------------------------------------------------------- */

/* VMXON, VMCLEAR, VMPTRLD with a physical-address operand.  They report failure
 * in CF (VMfailInvalid) or ZF (VMfailValid): returns nonzero then. */
#define VMX_PA_INSN(insn)                                                                          \
	static int insn(uint64_t pa)                                                               \
	{                                                                                          \
		uint8_t failed;                                                                    \
		__asm__ __volatile__(#insn " %1\n\tsetbe %0"                                       \
				     : "=qm"(failed)                                               \
				     : "m"(pa)                                                     \
				     : "cc", "memory");                                            \
		return failed;                                                                     \
	}
VMX_PA_INSN(vmxon)
VMX_PA_INSN(vmclear)
VMX_PA_INSN(vmptrld)

static uint64_t vmr(uint32_t field)
{
	return plat_vmcs_read(field);
}

/* Setup-time VMWRITE: a failure names the field (the core's plat_vmcs_write only
 * says that some VMWRITE failed). */
void vmx_write(uint32_t field, uint64_t value)
{
	uint8_t failed;
	__asm__ __volatile__("vmwrite %1, %2\n\tsetbe %0"
			     : "=qm"(failed)
			     : "r"(value), "r"((uint64_t)field)
			     : "cc", "memory");
	if (failed) {
		panic_begin();
		panic_printf("vmx: VMWRITE of field 0x%x = 0x%lx failed\nRESULT: FAIL vmx setup\n",
			     field, value);
		hv_exit(1);
	}
}

static uint64_t read_cr(int n)
{
	uint64_t v;
	if (n == 0)
		__asm__ __volatile__("mov %%cr0, %0" : "=r"(v));
	else if (n == 3)
		__asm__ __volatile__("mov %%cr3, %0" : "=r"(v));
	else
		__asm__ __volatile__("mov %%cr4, %0" : "=r"(v));
	return v;
}

static void cpuid_sub(uint32_t leaf, uint32_t sub, uint32_t *a, uint32_t *b, uint32_t *c,
		      uint32_t *d)
{
	__asm__ __volatile__("cpuid"
			     : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d)
			     : "a"(leaf), "c"(sub));
}

/* ---- VMX root operation on every CPU ----------------------------------------------- */

/* A control word: `want` must be allowed-1, the CPU's must-be-1 bits are added.
 * (Allowed-0 settings are in the low half of the capability MSR, allowed-1 in the
 * high half.)  Returns NULL, or `what` when a wanted bit is not allowed. */
static const char *control(uint32_t msr, uint32_t want, uint32_t optional, uint32_t *out,
			   const char *what)
{
	uint64_t cap = rdmsr(msr);
	uint32_t must = (uint32_t)cap, may = (uint32_t)(cap >> 32);
	if (want & ~may)
		return what;
	*out = want | (optional & may) | must;
	return NULL;
}

/* BSP: can this CPU run our guest at all?  Fills in the control words. */
static const char *check_capabilities(void)
{
	uint64_t basic = rdmsr(MSR_VMX_BASIC);
	uint32_t true_off =
	    (basic & BASIC_TRUE_CTLS) ? MSR_VMX_TRUE_PINBASED - MSR_VMX_PINBASED : 0;
	const char *why;
	revision = (uint32_t)basic & 0x7FFFFFFFu;
	if (((basic >> 32) & 0x1FFF) > 4096)
		return "VMCS region larger than 4 KiB";
	if ((why = control(MSR_VMX_PINBASED + true_off, PIN_NMI_EXITING | PIN_VIRTUAL_NMIS, 0,
			   &pin_ctls, "pin-based controls lack NMI exiting or virtual NMIs")))
		return why;
	/* NMI-window exiting must be allowed-1, but starts at 0: the core sets it. */
	if ((why = control(MSR_VMX_PROCBASED + true_off, PROC_NMI_WINDOW_EXITING, 0, &proc_ctls,
			   "processor-based controls lack NMI-window exiting")))
		return why;
	if ((why = control(MSR_VMX_PROCBASED + true_off, PROC_SECONDARY | PROC_USE_MSR_BITMAPS, 0,
			   &proc_ctls,
			   "processor-based controls lack secondary controls or MSR bitmaps")))
		return why;
	if ((why = control(MSR_VMX_PROCBASED2, PROC2_EPT | PROC2_UNRESTRICTED, 0, &proc2_ctls,
			   "secondary controls lack EPT or unrestricted guest")))
		return why;
	if ((why = control(MSR_VMX_EXIT + true_off, EXIT_HOST_64, EXIT_LOAD_EFER, &exit_ctls,
			   "exit controls lack a 64-bit host")))
		return why;
	if ((why = control(MSR_VMX_ENTRY + true_off, 0, ENTRY_LOAD_EFER, &entry_ctls,
			   "entry controls")))
		return why;
	ept_cap = rdmsr(MSR_VMX_EPT_VPID_CAP);
	vmx_misc = rdmsr(MSR_VMX_MISC);
	return NULL;
}

/* This CPU into VMX root operation with its own VMCS current. */
static const char *enter_root(struct percpu *p)
{
	uint32_t a, b, c, d;
	cpuid_sub(1, 0, &a, &b, &c, &d);
	if (!(c & (1u << 5)))
		return "CPUID.1:ECX.VMX is 0";
	uint64_t fc = rdmsr(MSR_FEATURE_CONTROL);
	if (!(fc & FC_LOCK))
		wrmsr(MSR_FEATURE_CONTROL, fc | FC_LOCK | FC_VMXON_OUTSIDE_SMX);
	else if (!(fc & FC_VMXON_OUTSIDE_SMX))
		return "IA32_FEATURE_CONTROL is locked with VMXON disabled";
	if (p->index == 0) {
		const char *why = check_capabilities();
		if (why)
			return why;
	}
	/* CR0.NE and CR4.VMXE among others: the bits VMX operation fixes. */
	uint64_t cr0 = (read_cr(0) | rdmsr(MSR_VMX_CR0_FIXED0)) & rdmsr(MSR_VMX_CR0_FIXED1);
	uint64_t cr4 =
	    (read_cr(4) | rdmsr(MSR_VMX_CR4_FIXED0) | CR4_VMXE) & rdmsr(MSR_VMX_CR4_FIXED1);
	__asm__ __volatile__("mov %0, %%cr0" ::"r"(cr0) : "memory");
	__asm__ __volatile__("mov %0, %%cr4" ::"r"(cr4) : "memory");

	*(uint32_t *)vmxon_region[p->index] = revision;
	*(uint32_t *)vmcs_region[p->index] = revision;
	if (vmxon((uint64_t)vmxon_region[p->index]))
		return "VMXON failed";
	uint64_t vmcs = (uint64_t)vmcs_region[p->index];
	if (vmclear(vmcs) || vmptrld(vmcs))
		return "VMCLEAR/VMPTRLD failed";
	p->vmcs_pa = vmcs;
	return NULL;
}

void vmx_cpu_init(void)
{
	struct percpu *p = this_percpu();
	if (p->index != 0 && unavailable_why)
		return; /* the BSP already said why */
	const char *why = enter_root(p);
	if (why) {
		if (p->index == 0) {
			unavailable_why = why;
			kprintf("VMX unavailable: %s\n", why);
		} else {
			kprintf("vmx: cpu %u: %s\n", p->index, why);
		}
		return;
	}
	__atomic_fetch_add(&vmx_cpus, 1, __ATOMIC_SEQ_CST);
	if (p->index == 0)
		kprintf(
		    "vmx: VMX root operation (VMCS revision 0x%x; pin 0x%x proc 0x%x proc2 0x%x "
		    "exit 0x%x entry 0x%x misc 0x%lx)\n",
		    revision, pin_ctls, proc_ctls, proc2_ctls, exit_ctls, entry_ctls, vmx_misc);
}

const char *vmx_unavailable(void)
{
	if (unavailable_why)
		return unavailable_why;
	if (__atomic_load_n(&vmx_cpus, __ATOMIC_ACQUIRE) != ncpus)
		return "not every CPU entered VMX root operation";
	return NULL;
}

/* ---- The guest's VMCS ---------------------------------------------------------- */

void vmx_setup_vmcs(const struct guest_image *g, uint64_t eptp)
{
	struct percpu *p = this_percpu();
	struct {
		uint16_t limit;
		uint64_t base;
	} __attribute__((packed)) gdtr, idtr;
	__asm__ __volatile__("sgdt %0\n\tsidt %1" : "=m"(gdtr), "=m"(idtr));

	/* Controls.  The NMI-window bit is the core's: it starts clear. */
	vmx_write(VMCS_PIN_BASED_CTLS, pin_ctls);
	vmx_write(VMCS_PROC_BASED_CTLS, proc_ctls & ~PROC_NMI_WINDOW_EXITING);
	vmx_write(VMCS_PROC_BASED_CTLS2, proc2_ctls);
	vmx_write(VMCS_EXIT_CTLS, exit_ctls);
	vmx_write(VMCS_ENTRY_CTLS, entry_ctls);
	vmx_write(VMCS_EXCEPTION_BITMAP, 0);
	vmx_write(0x4006, 0); /* page-fault error-code mask */
	vmx_write(0x4008, 0); /* page-fault error-code match */
	vmx_write(0x400A, 0); /* CR3-target count */
	vmx_write(0x400E, 0); /* VM-exit MSR-store count */
	vmx_write(0x4010, 0); /* VM-exit MSR-load count */
	vmx_write(0x4014, 0); /* VM-entry MSR-load count */
	vmx_write(VMCS_ENTRY_INTR_INFO, 0);
	/* MSR bitmap: reads pass through, every write exits (and stops the guest). */
	for (unsigned i = 2048; i < 4096; i++)
		msr_bitmap[i] = 0xFF;
	vmx_write(VMCS_MSR_BITMAP, (uint64_t)msr_bitmap);
	vmx_write(VMCS_EPT_POINTER, eptp);
	vmx_write(VMCS_LINK_POINTER, ~0ull);

	/* Host state: what a VM exit loads. */
	vmx_write(VMCS_HOST_CR0, read_cr(0));
	vmx_write(VMCS_HOST_CR3, read_cr(3));
	vmx_write(VMCS_HOST_CR4, read_cr(4));
	for (unsigned i = 0; i < 4; i++) /* ES, CS, SS, DS */
		vmx_write(VMCS_HOST_ES_SEL + 2 * i, i == 1 ? SEL_CODE64 : SEL_DATA);
	vmx_write(VMCS_HOST_ES_SEL + 8, 0); /* FS */
	vmx_write(VMCS_HOST_ES_SEL + 10, 0); /* GS */
	vmx_write(VMCS_HOST_ES_SEL + 12, SEL_TSS);
	vmx_write(VMCS_HOST_FS_BASE, rdmsr(MSR_FS_BASE));
	vmx_write(VMCS_HOST_GS_BASE, rdmsr(MSR_GS_BASE)); /* this CPU's struct percpu */
	vmx_write(VMCS_HOST_TR_BASE, (uint64_t)&p->tss);
	vmx_write(VMCS_HOST_GDTR_BASE, gdtr.base);
	vmx_write(VMCS_HOST_IDTR_BASE, idtr.base);
	vmx_write(VMCS_HOST_SYSENTER_CS, 0);
	vmx_write(VMCS_HOST_SYSENTER_ESP, 0);
	vmx_write(VMCS_HOST_SYSENTER_EIP, 0);
	if (exit_ctls & EXIT_LOAD_EFER)
		vmx_write(VMCS_HOST_EFER, rdmsr(MSR_EFER));
	vmx_write(VMCS_HOST_RSP, (uint64_t)&exit_stack[p->index][STACK_SIZE]);
	vmx_write(VMCS_HOST_RIP, (uint64_t)vmx_exit_entry);

	/* Guest state: a multiboot v1 hand-over.  Flat 32-bit segments, protected
	 * mode without paging (allowed by unrestricted guest). */
	uint64_t fixed0 = rdmsr(MSR_VMX_CR0_FIXED0) & ~(CR0_PE | CR0_PG);
	uint64_t cr0 = (fixed0 | CR0_PE | CR0_ET) & rdmsr(MSR_VMX_CR0_FIXED1);
	uint64_t cr4_fixed = rdmsr(MSR_VMX_CR4_FIXED0);
	vmx_write(VMCS_GUEST_CR0, cr0);
	vmx_write(VMCS_CR0_MASK, fixed0); /* a write changing them exits */
	vmx_write(VMCS_CR0_SHADOW, cr0);
	vmx_write(VMCS_GUEST_CR3, 0);
	vmx_write(VMCS_GUEST_CR4, cr4_fixed & rdmsr(MSR_VMX_CR4_FIXED1));
	vmx_write(VMCS_CR4_MASK, cr4_fixed); /* the guest reads CR4.VMXE as 0 */
	vmx_write(VMCS_CR4_SHADOW, 0);
	for (unsigned i = 0; i < 6; i++) { /* ES CS SS DS FS GS */
		vmx_write(VMCS_GUEST_ES_SEL + 2 * i, i == 1 ? 0x08 : 0x10);
		vmx_write(VMCS_GUEST_ES_BASE + 2 * i, 0);
		vmx_write(VMCS_GUEST_ES_LIMIT + 2 * i, 0xFFFFFFFFu);
		vmx_write(VMCS_GUEST_ES_AR + 2 * i, i == 1 ? 0xC09B : 0xC093);
	}
	vmx_write(VMCS_GUEST_ES_SEL + 12, 0); /* LDTR: unusable */
	vmx_write(VMCS_GUEST_ES_BASE + 12, 0);
	vmx_write(VMCS_GUEST_ES_LIMIT + 12, 0);
	vmx_write(VMCS_GUEST_ES_AR + 12, 0x10000);
	vmx_write(VMCS_GUEST_ES_SEL + 14, 0); /* TR: a busy 32-bit TSS, as VM entry demands */
	vmx_write(VMCS_GUEST_ES_BASE + 14, 0);
	vmx_write(VMCS_GUEST_ES_LIMIT + 14, 0x67);
	vmx_write(VMCS_GUEST_ES_AR + 14, 0x8B);
	vmx_write(VMCS_GUEST_GDTR_BASE, 0);
	vmx_write(VMCS_GUEST_GDTR_LIMIT, 0xFFFF);
	vmx_write(VMCS_GUEST_IDTR_BASE, 0);
	vmx_write(VMCS_GUEST_IDTR_LIMIT, 0x3FF);
	vmx_write(VMCS_GUEST_DR7, 0x400);
	vmx_write(VMCS_GUEST_RSP, 0);
	vmx_write(VMCS_GUEST_RIP, g->entry);
	vmx_write(VMCS_GUEST_RFLAGS, 0x2);
	vmx_write(VMCS_GUEST_INTERRUPTIBILITY, 0);
	vmx_write(VMCS_GUEST_ACTIVITY, 0);
	vmx_write(0x6822, 0); /* pending debug exceptions */
	vmx_write(VMCS_GUEST_DEBUGCTL, 0);
	vmx_write(VMCS_GUEST_SYSENTER_CS, 0);
	vmx_write(VMCS_GUEST_SYSENTER_ESP, 0);
	vmx_write(VMCS_GUEST_SYSENTER_EIP, 0);
	if (entry_ctls & ENTRY_LOAD_EFER)
		vmx_write(VMCS_GUEST_EFER, 0);
}

/* ---- Ending the run ---------------------------------------------------------------- */

static void dump_guest(const struct guest_regs *r)
{
	kprintf("  exit reason 0x%lx qualification 0x%lx intr-info 0x%lx idt-vectoring 0x%lx\n",
		vmr(VMCS_EXIT_REASON), vmr(VMCS_EXIT_QUAL), vmr(VMCS_EXIT_INTR_INFO),
		vmr(VMCS_IDT_VECTORING_INFO));
	kprintf("  guest rip=0x%lx rsp=0x%lx rflags=0x%lx cr0=0x%lx cr3=0x%lx cr4=0x%lx\n",
		vmr(VMCS_GUEST_RIP), vmr(VMCS_GUEST_RSP), vmr(VMCS_GUEST_RFLAGS),
		vmr(VMCS_GUEST_CR0), vmr(VMCS_GUEST_CR3), vmr(VMCS_GUEST_CR4));
	kprintf("  interruptibility 0x%lx activity %lu guest-physical 0x%lx linear 0x%lx\n",
		vmr(VMCS_GUEST_INTERRUPTIBILITY), vmr(VMCS_GUEST_ACTIVITY),
		vmr(VMCS_GUEST_PHYS_ADDR), vmr(VMCS_GUEST_LINEAR_ADDR));
	if (r)
		kprintf("  eax=0x%lx ebx=0x%lx ecx=0x%lx edx=0x%lx esi=0x%lx edi=0x%lx ebp=0x%lx\n",
			r->rax, r->rbx, r->rcx, r->rdx, r->rsi, r->rdi, r->rbp);
}

/* The NMI core's books and laws (books.c prints and checks them). */
static void check_core(void)
{
	books_check_core();
}

/* Every CPU can be parked by a stop-the-world NMI: none waits for its SIPI. */
static int all_parkable(void)
{
	for (unsigned i = 0; i < ncpus; i++)
		if (__atomic_load_n(&waiting_for_sipi[i], __ATOMIC_ACQUIRE))
			return 0;
	return 1;
}

/* guest_smp=1: make every other CPU that runs the guest leave it (an NMI forces
 * an exit; its handler sees guest_stopping, detaches and idles unmasked), so the
 * books are still when check_core() reads them.  A CPU in wait-for-SIPI cannot
 * be forced out (NMIs blocked), but it makes no exits either: its books are still. */
static void stop_other_guest_cpus(unsigned me)
{
	__atomic_store_n(&guest_stopping, 1, __ATOMIC_SEQ_CST);
	for (unsigned i = 0; i < ncpus; i++) {
		if (i == me || waiting_for_sipi[i])
			continue;
		uint64_t deadline = time_us() + JOB_NMI_TIMEOUT_US;
		while (__atomic_load_n(&in_guest[i], __ATOMIC_ACQUIRE) && time_us() < deadline) {
			plat_send_nmi(i);
			udelay(1000);
		}
		if (in_guest[i]) {
			books_failures++;
			kprintf("check FAILED: guest cpu %u did not leave the guest\n", i);
		}
	}
}

/* The guest is gone from this CPU (detached, mask dropped).  Stop it on the other
 * CPUs, show that the hypervisor still works, check the books, judge the run
 * against `guest_expect=` and leave.  The first CPU here judges; any other one
 * idles unmasked (parkable). */
static _Noreturn void finish(const char *why)
{
	unsigned me = this_percpu()->index;
	if (__atomic_exchange_n(&finishing, 1, __ATOMIC_SEQ_CST))
		for (;;)
			cpu_pause();
	kprintf("vmx: guest stopped on cpu %u: %s; the hypervisor keeps running\n", me, why);
	while (__atomic_load_n(&job.active, __ATOMIC_ACQUIRE))
		cpu_pause(); /* a job in flight ends on its own (bounded waits) */
	stop_other_guest_cpus(me);
	if (ncpus > 1 && all_parkable()) {
		nmi_quiesce_begin();
		nmi_quiesce_end(1);
		kprintf("vmx: host stop-the-world round after the guest stopped: ok\n");
	} else if (ncpus > 1) {
		kprintf("vmx: no stop-the-world round: a guest CPU still waits for its SIPI\n");
	}
	udelay(SETTLE_US);
	uint64_t sum[64] = {0}, redelivered = 0, nmis_requeued = 0;
	for (unsigned i = 0; i < ncpus; i++) {
		for (unsigned k = 0; k < 64; k++)
			sum[k] += exits[i][k];
		redelivered += reinjected[i];
		nmis_requeued += percpu[i].nmi.guest_reinjected;
	}
	kprintf(
	    "vmx: exits: nmi %lu nmi-window %lu cpuid %lu vmcall %lu (bad %lu) ept %lu init %lu "
	    "sipi %lu total %lu\n",
	    sum[EXIT_EXCEPTION_NMI], sum[EXIT_NMI_WINDOW], sum[EXIT_CPUID], sum[EXIT_VMCALL],
	    bad_hypercalls, sum[EXIT_EPT_VIOLATION], sum[EXIT_INIT], sum[EXIT_SIPI], sum[63]);
	kprintf("vmx: interrupted event delivery: NMIs re-queued by the core %lu, other events "
		"re-injected %lu; lazy EPT pages mapped again %lu\n",
		nmis_requeued, redelivered, lazy_restored);
	kprintf("vmx: helper jobs: nmis_sent=%lu nmis_lost=%lu quiesce_rounds=%lu\n", job.nmis_sent,
		job.nmis_lost, job.rounds);
	check_core();
	books_check(job.nmis_lost == 0, "helper NMIs all injected", 1, job.nmis_lost, 0);

	unsigned guest_cpus = 0;
	for (unsigned i = 0; i < ncpus; i++)
		guest_cpus += (i == 0 || guest_smp) && !waiting_for_sipi[i];
	const char *expect = cmdline_str("guest_expect", "done");
	int ok;
	if (expect[0] == 'e') { /* ept: the isolation test */
		ok = outcome.ept_violation && outcome.ept_gpa >= hv_lo && outcome.ept_gpa < hv_hi;
		kprintf("vmx: isolation: %s\n",
			ok ? "the guest's access to hypervisor memory was stopped"
			   : "NO EPT violation in hypervisor memory");
	} else {
		ok = outcome.done && outcome.failed == 0 && outcome.passed > 0;
		if (outcome.done) {
			/* Every NMI the guest counted came through an injection by the core. */
			books_check(outcome.nmis == percpu[0].nmi.guest_injected,
				    "guest-counted NMIs == guest_injected", 0, outcome.nmis,
				    percpu[0].nmi.guest_injected);
		}
	}
	if (!ok || books_failures) {
		kprintf("RESULT: FAIL vmx-guest: %s (guest passed=%u failed=%u, %d check(s))\n",
			why, outcome.passed, outcome.failed, books_failures);
		hv_exit(1);
	}
	kprintf("RESULT: PASS vmx-guest cpus=%u guest_cpus=%u guest passed=%u failed=%u nmis=%u "
		"injected=%lu exits=%lu\n",
		ncpus, guest_cpus, outcome.passed, outcome.failed, outcome.nmis,
		percpu[0].nmi.guest_injected, sum[63]);
	hv_exit(0);
}

/* Stop the guest from the exit handler (masked): detach it from the core, so
 * NMIs from now on are host-consumed, then drop the mask and finish. */
static _Noreturn void stop(const char *why)
{
	nmi_guest_detach();
	__atomic_store_n(&in_guest[this_percpu()->index], 0, __ATOMIC_RELEASE);
	nmi_unmask();
	finish(why);
}

_Noreturn void vmx_entry_failed(uint64_t rflags)
{
	kprintf("vmx: cpu %u: VMRESUME failed (rflags 0x%lx, VM-instruction error %lu)\n",
		this_percpu()->index, rflags, (rflags & 0x40) ? vmr(VMCS_INSTR_ERROR) : 0);
	dump_guest(0);
	nmi_mask();
	stop("VM entry failed");
}

/* ---- Exit handlers ---------------------------------------------------------------- */

static void skip_instruction(void)
{
	vmx_write(VMCS_GUEST_RIP, vmr(VMCS_GUEST_RIP) + vmr(VMCS_EXIT_INSTR_LEN));
	/* The skipped instruction ends STI/MOV-SS blocking; NMI blocking stays. */
	uint64_t intr = vmr(VMCS_GUEST_INTERRUPTIBILITY);
	if (intr & INTERRUPTIBILITY_STI_MOVSS)
		vmx_write(VMCS_GUEST_INTERRUPTIBILITY,
			  intr & ~(uint64_t)INTERRUPTIBILITY_STI_MOVSS);
}

/* The exit interrupted the delivery of an event (IDT-vectoring information valid,
 * SDM vol. 3, "Information for VM Exits During Event Delivery"): the event did not
 * happen, the guest state is as before it.  Deliver it again at the next VM entry.
 * An NMI is the core's (it injected it): the core queues it again.  Anything else
 * is re-injected here, the one write to the injection field outside the core; it
 * is free, since the VM entry before this exit consumed any earlier injection. */
static void redeliver(uint32_t vectoring)
{
	if (nmi_vmexit_vectoring(vectoring))
		return;
	uint32_t type = INTR_TYPE(vectoring);
	vmx_write(VMCS_ENTRY_INTR_INFO, vectoring & INTR_INFO_ENTRY_BITS);
	if (vectoring & INTR_INFO_ERRCODE)
		vmx_write(VMCS_ENTRY_EXC_ERRCODE, vmr(VMCS_IDT_VECTORING_ERR));
	/* INT n, INT1, INT3, INTO: the entry pushes RIP + length as the return address. */
	if (type == INTR_TYPE_SOFT_INT || type == INTR_TYPE_PRIV_SOFT_EXC ||
	    type == INTR_TYPE_SOFT_EXC)
		vmx_write(VMCS_ENTRY_INSTR_LEN, vmr(VMCS_EXIT_INSTR_LEN));
	reinjected[this_percpu()->index]++;
}

static void exit_cpuid(struct guest_regs *r)
{
	uint32_t leaf = (uint32_t)r->rax, a, b, c, d;
	if ((leaf & 0xFFFFFF00u) == HV_CPUID_LEAF) {
		int sig = leaf == HV_CPUID_LEAF;
		a = sig ? HV_CPUID_LEAF : 0;
		b = sig ? HV_CPUID_EBX : 0;
		c = sig ? HV_CPUID_ECX : 0;
		d = sig ? HV_CPUID_EDX : 0;
	} else {
		cpuid_sub(leaf, (uint32_t)r->rcx, &a, &b, &c, &d);
		if (leaf == 1) {
			c &= ~(1u << 5); /* no VMX for the guest */
			c |= 1u << 31; /* "running under a hypervisor" */
		}
	}
	r->rax = a;
	r->rbx = b;
	r->rcx = c;
	r->rdx = d;
}

/* Start a job on CPU 1 (masked context: only plain stores, CPU 1 polls).  With
 * guest_smp=1 CPU 1 runs the guest: there is no helper. */
static uint32_t start_job(uint32_t kind, uint32_t count)
{
	if (ncpus < 2 || guest_smp || job.active || (kind != HC_JOB_NMIS && kind != HC_JOB_QUIESCE))
		return HC_ERROR;
	job.kind = kind;
	job.remaining = count;
	__atomic_store_n(&job.active, 1, __ATOMIC_RELEASE);
	return 0;
}

/* HC_EPT_LAZY: take one guest page out of the EPT until the guest touches it.
 * Only while no other guest CPU has run: this CPU's INVEPT is the only flush. */
static uint32_t ept_lazy(uint64_t gpa)
{
	uint64_t page = gpa & ~0xFFFull;
	for (unsigned i = 1; i < ncpus; i++)
		if (guest_smp && !waiting_for_sipi[i])
			return HC_ERROR;
	if (lazy_page || !page || (page < hv_hi && page + 0x1000 > hv_lo) ||
	    ept_set_page(page, 0) != 0)
		return HC_ERROR;
	ept_flush();
	lazy_page = page;
	return 0;
}

/* HC_QUIESCE: the rounds run after this exit's nmi_unmask() (run_owed_rounds);
 * refused while a CPU could not be parked. */
static uint32_t owe_rounds(uint32_t count)
{
	if (!all_parkable())
		return HC_ERROR;
	quiesce_owed[this_percpu()->index] = count;
	return 0;
}

static void exit_vmcall(struct guest_regs *r)
{
	uint32_t nr = (uint32_t)r->rax, ret;
	switch (nr) {
	case HC_PING: ret = HC_PING_MAGIC; break;
	case HC_DONE:
		outcome.done = 1;
		outcome.passed = (uint32_t)r->rbx;
		outcome.failed = (uint32_t)r->rcx;
		outcome.nmis = (uint32_t)r->rdx;
		stop("HC_DONE");
	case HC_HV_RANGE:
		ret = (uint32_t)hv_lo;
		r->rbx = (uint32_t)hv_hi;
		break;
	case HC_NMI_JOB: ret = start_job((uint32_t)r->rbx, (uint32_t)r->rcx); break;
	case HC_NMI_POLL:
		ret = __atomic_load_n(&job.active, __ATOMIC_ACQUIRE) ? job.remaining + 1 : 0;
		break;
	case HC_EPT_LAZY: ret = ept_lazy((uint32_t)r->rbx); break;
	case HC_QUIESCE: ret = owe_rounds((uint32_t)r->rcx); break;
	default: bad_hypercalls++; ret = HC_ERROR;
	}
	r->rax = ret;
}

static void exit_ept_violation(struct guest_regs *r, uint32_t vectoring)
{
	uint64_t q = vmr(VMCS_EXIT_QUAL), gpa = vmr(VMCS_GUEST_PHYS_ADDR);
	if (lazy_page && (gpa & ~0xFFFull) == lazy_page) {
		ept_set_page(lazy_page, 1);
		ept_flush();
		kprintf("vmx: lazy EPT page 0x%lx mapped again (guest rip 0x%lx, idt-vectoring "
			"0x%x)\n",
			lazy_page, vmr(VMCS_GUEST_RIP), vectoring);
		lazy_page = 0;
		lazy_restored++;
		/* An IRET that faulted after it had unblocked virtual NMIs runs again:
		 * its blocking must be back (SDM vol. 3, "Exit Qualification for EPT
		 * Violations", bit 12). */
		if ((q & EPT_QUAL_NMI_UNBLOCKED) && !(vectoring & INTR_INFO_VALID))
			vmx_write(VMCS_GUEST_INTERRUPTIBILITY,
				  vmr(VMCS_GUEST_INTERRUPTIBILITY) | GUEST_INTR_BLOCK_NMI);
		return;
	}
	outcome.ept_violation = 1;
	outcome.ept_gpa = gpa;
	kprintf("vmx: EPT violation: guest-physical 0x%lx (%s%s%s), guest rip 0x%lx%s\n", gpa,
		(q & 1) ? "read" : "", (q & 2) ? "write" : "", (q & 4) ? "fetch" : "",
		vmr(VMCS_GUEST_RIP), gpa >= hv_lo && gpa < hv_hi ? " (hypervisor memory)" : "");
	dump_guest(r);
	stop("EPT violation");
}

/* INIT (reason 3): the guest CPU goes back to wait-for-SIPI, as a bare AP does on
 * INIT (the SIPI that starts it sets its registers).  Interruptibility is cleared:
 * an INIT ends every blocking, and Bochs 2.7 reports blocking by SMI here, which
 * would fail the next VM entry.  Under Bochs 2.7 an INIT to a guest CPU is never
 * consumed: every later entry in the active state exits again for it
 * (docs/emulator-deviations.md); the test guest therefore starts its APs with
 * SIPIs alone, which the wait-for-SIPI state they are entered in allows. */
static void exit_init(void)
{
	vmx_write(VMCS_GUEST_INTERRUPTIBILITY, 0);
	vmx_write(VMCS_GUEST_ACTIVITY, ACTIVITY_WAIT_FOR_SIPI);
	__atomic_store_n(&waiting_for_sipi[this_percpu()->index], 1, __ATOMIC_RELEASE);
}

/* SIPI (reason 4): the guest CPU leaves wait-for-SIPI as a bare CPU does after
 * INIT-SIPI: real mode, CS = vector << 8 (base vector << 12), IP = 0, interrupts
 * off.  Unrestricted guest lets it run real mode natively. */
static void exit_sipi(void)
{
	unsigned me = this_percpu()->index;
	uint64_t vector = vmr(VMCS_EXIT_QUAL) & 0xFF;
	uint64_t fixed0 = rdmsr(MSR_VMX_CR0_FIXED0) & ~(CR0_PE | CR0_PG);
	uint64_t cr0 = (fixed0 | CR0_ET) & rdmsr(MSR_VMX_CR0_FIXED1);
	vmx_write(VMCS_GUEST_CR0, cr0);
	vmx_write(VMCS_CR0_SHADOW, cr0);
	for (unsigned i = 0; i < 6; i++) { /* ES CS SS DS FS GS: 16-bit, 64 KiB */
		uint64_t sel = i == 1 ? vector << 8 : 0;
		vmx_write(VMCS_GUEST_ES_SEL + 2 * i, sel);
		vmx_write(VMCS_GUEST_ES_BASE + 2 * i, sel << 4);
		vmx_write(VMCS_GUEST_ES_LIMIT + 2 * i, 0xFFFF);
		vmx_write(VMCS_GUEST_ES_AR + 2 * i, i == 1 ? 0x9B : 0x93);
	}
	vmx_write(VMCS_GUEST_GDTR_BASE, 0);
	vmx_write(VMCS_GUEST_GDTR_LIMIT, 0xFFFF);
	vmx_write(VMCS_GUEST_IDTR_BASE, 0);
	vmx_write(VMCS_GUEST_IDTR_LIMIT, 0x3FF);
	vmx_write(VMCS_GUEST_RIP, 0);
	vmx_write(VMCS_GUEST_RSP, 0);
	vmx_write(VMCS_GUEST_RFLAGS, 0x2);
	vmx_write(VMCS_GUEST_INTERRUPTIBILITY, 0);
	vmx_write(VMCS_GUEST_ACTIVITY, 0);
	/* Bochs 2.7 masks NMIs (and INIT, SMI) when it enters wait-for-SIPI and
	 * a SIPI exit does not unmask them; a host IRET ends the NMI mask.  On a
	 * CPU that follows the SDM this IRET changes nothing: no NMI blocking is
	 * left after a SIPI exit.  The SMI mask: vmx_exit_handler(). */
	plat_nmi_iret();
	started_by_sipi[me] = 1;
	__atomic_store_n(&waiting_for_sipi[me], 0, __ATOMIC_RELEASE);
	kprintf("vmx: cpu %u: SIPI vector 0x%lx: guest CPU starts in real mode at 0x%lx\n", me,
		vector, vector << 12);
}

/* Run the stop-the-world rounds an HC_QUIESCE asked for.  Unmasked, as
 * nmi_quiesce_begin() wants; the other guest CPUs keep running their guest until
 * an NMI exit parks them. */
static void run_owed_rounds(unsigned me)
{
	for (; quiesce_owed[me]; quiesce_owed[me]--) {
		nmi_quiesce_begin();
		nmi_quiesce_end((int)(quiesce_owed[me] & 1)); /* INVEPT every other round */
	}
}

/* Every VM exit, on this CPU's exit stack, with the guest's registers in `r`.
 * Returning resumes the guest. */
void vmx_exit_handler(struct guest_regs *r)
{
	nmi_mask();
	unsigned me = this_percpu()->index;
	uint32_t reason = (uint32_t)vmr(VMCS_EXIT_REASON);
	uint32_t basic = reason & 0xFFFF;
	exits[me][basic < 63 ? basic : 62]++;
	exits[me][63]++;
	if (reason & EXIT_REASON_ENTRY_FAIL) {
		kprintf(
		    "vmx: cpu %u: VM entry failed, exit reason 0x%x (33: invalid guest state)\n",
		    me, reason);
		dump_guest(r);
		stop("VM entry failure");
	}
	if (started_by_sipi[me]) {
		/* Bochs 2.7 reports the SMI mask it kept from wait-for-SIPI as
		 * blocking by SMI, which VM entry rejects outside SMM (reason 33). */
		uint64_t intr = vmr(VMCS_GUEST_INTERRUPTIBILITY);
		if (intr & INTERRUPTIBILITY_SMI)
			vmx_write(VMCS_GUEST_INTERRUPTIBILITY,
				  intr & ~(uint64_t)INTERRUPTIBILITY_SMI);
	}
	uint32_t vectoring = (uint32_t)vmr(VMCS_IDT_VECTORING_INFO);
	if ((vectoring & INTR_INFO_VALID) && basic != EXIT_TRIPLE_FAULT)
		redeliver(vectoring);
	switch (basic) {
	case EXIT_EXCEPTION_NMI:
		if (INTR_TYPE(vmr(VMCS_EXIT_INTR_INFO)) != INTR_TYPE_NMI) {
			kprintf("vmx: unexpected exception exit\n");
			dump_guest(r);
			stop("unexpected exception exit");
		}
		nmi_vmexit_nmi();
		break;
	case EXIT_NMI_WINDOW:
		nmi_vmexit_nmi_window();
		/* Tracing one guest NMI: it ends in the guest's handler, so no more
		 * exit breaks once the injection is queued. */
		if (this_percpu()->trace_nmi && (vmr(VMCS_ENTRY_INTR_INFO) & INTR_INFO_VALID))
			this_percpu()->trace_nmi = 0;
		break;
	case EXIT_CPUID:
		exit_cpuid(r);
		skip_instruction();
		break;
	case EXIT_VMCALL:
		exit_vmcall(r);
		skip_instruction();
		break;
	case EXIT_EPT_VIOLATION: exit_ept_violation(r, vectoring); break;
	case EXIT_INIT: exit_init(); break;
	case EXIT_SIPI: exit_sipi(); break;
	case EXIT_TRIPLE_FAULT:
		kprintf("vmx: guest triple fault (shutdown)\n");
		dump_guest(r);
		stop("guest triple fault");
	default:
		kprintf("vmx: unhandled exit reason %u\n", basic);
		dump_guest(r);
		stop("unhandled exit");
	}
	if (__atomic_load_n(&guest_stopping, __ATOMIC_ACQUIRE)) {
		/* Another CPU ends the run (finish()): leave the guest for good. */
		nmi_guest_detach();
		__atomic_store_n(&in_guest[me], 0, __ATOMIC_RELEASE);
		nmi_unmask();
		for (;;)
			cpu_pause(); /* unmasked: parkable */
	}
	nmi_unmask();
	run_owed_rounds(me);
}

/* ---- Running the guest -------------------------------------------------------------- */

uint64_t vmx_build_ept(const char **why)
{
	hv_lo = (uint64_t)__load_start & ~0xFFFull;
	hv_hi = ((uint64_t)__bss_end + 0xFFF) & ~0xFFFull;
	return ept_build(hv_lo, hv_hi, ept_cap, why);
}

/* The current VMCS is set up: attach it to the core and enter the guest. */
static _Noreturn void launch(uint64_t rax, uint64_t rbx)
{
	unsigned me = this_percpu()->index;
	ept_flush();
	/* From here the core reads and writes this VMCS (NMI window, injection). */
	nmi_mask();
	nmi_guest_attach();
	__atomic_store_n(&in_guest[me], 1, __ATOMIC_RELEASE);
	nmi_unmask();
	uint64_t rflags = vmx_launch(rax, rbx);
	kprintf("vmx: cpu %u: VMLAUNCH failed (rflags 0x%lx, VM-instruction error %lu)\n", me,
		rflags, (rflags & 0x40) ? vmr(VMCS_INSTR_ERROR) : 0);
	dump_guest(0);
	nmi_mask();
	stop("VMLAUNCH failed");
}

_Noreturn void vmx_run_guest(void)
{
	struct guest_image g;
	const char *why = NULL;
	uint64_t eptp = vmx_build_ept(&why);
	if (guest_load(&g, hv_lo, hv_hi) != 0) {
		kprintf("RESULT: FAIL vmx-guest: no guest to run\n");
		hv_exit(1);
	}
	if (!eptp) {
		kprintf("RESULT: FAIL vmx-guest: %s\n", why);
		hv_exit(1);
	}
	guest_smp = cmdline_u64("guest_smp", 0) != 0;
	if (guest_smp && !(vmx_misc & MISC_WAIT_FOR_SIPI)) {
		kprintf("RESULT: FAIL vmx-guest: guest_smp=1 needs the wait-for-SIPI activity "
			"state, IA32_VMX_MISC 0x%lx lacks it (bit 8)\n",
			vmx_misc);
		hv_exit(1);
	}
	vmx_setup_vmcs(&g, eptp);
	/* trace_nmi=1: the first NMI exit starts a `make trace TRACE=guest-nmi` region. */
	this_percpu()->trace_nmi = (uint32_t)cmdline_u64("trace_nmi", 0);
	if (guest_smp) {
		for (unsigned i = 1; i < ncpus; i++)
			waiting_for_sipi[i] = 1;
		__atomic_store_n(&guest_eptp, eptp, __ATOMIC_RELEASE);
		/* A SIPI that finds its CPU still in VMX root operation is lost: let
		 * every AP reach its VMLAUNCH before the guest can send one. */
		uint64_t deadline = time_us() + JOB_NMI_TIMEOUT_US;
		for (unsigned i = 1; i < ncpus; i++)
			while (!__atomic_load_n(&in_guest[i], __ATOMIC_ACQUIRE)) {
				if (time_us() > deadline) {
					kprintf("RESULT: FAIL vmx-guest: cpu %u never entered its "
						"guest\n",
						i);
					hv_exit(1);
				}
				cpu_pause();
			}
	}
	kprintf("vmx: entering the guest at 0x%x (EPT pointer 0x%lx) on CPU 0; %s\n", g.entry, eptp,
		guest_smp ? "the other CPUs wait for the guest's SIPI"
			  : "the other CPUs stay the hypervisor's");
	launch(0x2BADB002u, g.mbi);
}

/* guest_smp=1, an AP: its own VMCS for the guest, entered in wait-for-SIPI. */
static _Noreturn void run_guest_ap(void)
{
	uint64_t eptp;
	while (!(eptp = __atomic_load_n(&guest_eptp, __ATOMIC_ACQUIRE)))
		cpu_pause(); /* unmasked: parkable */
	const struct guest_image none = {0};
	vmx_setup_vmcs(&none, eptp);
	vmx_write(VMCS_GUEST_ACTIVITY, ACTIVITY_WAIT_FOR_SIPI);
	launch(0, 0);
}

/* One NMI to CPU 0, then wait until the core injected it into the guest: the
 * next one may only come once this one is in service, or hardware-like capping
 * would rightly drop it. */
static void send_paced_nmi(void)
{
	const uint64_t *injected = &percpu[0].nmi.guest_injected;
	uint64_t before = __atomic_load_n(injected, __ATOMIC_ACQUIRE);
	uint64_t deadline = time_us() + JOB_NMI_TIMEOUT_US;
	plat_send_nmi(0);
	job.nmis_sent++;
	while (__atomic_load_n(injected, __ATOMIC_ACQUIRE) == before) {
		if (time_us() > deadline) {
			job.nmis_lost++;
			return;
		}
		cpu_pause();
	}
}

_Noreturn void vmx_helper_ap(void)
{
	if (cmdline_u64("guest_smp", 0))
		run_guest_ap();
	if (this_percpu()->index != 1)
		for (;;)
			cpu_pause(); /* idle, NMIs unmasked: parkable */
	for (;;) {
		while (!__atomic_load_n(&job.active, __ATOMIC_ACQUIRE))
			cpu_pause();
		for (; job.remaining; job.remaining--) {
			if (job.kind == HC_JOB_NMIS) {
				send_paced_nmi();
			} else {
				nmi_quiesce_begin();
				nmi_quiesce_end(
				    (int)(job.remaining & 1)); /* INVEPT every other round */
				job.rounds++;
			}
		}
		__atomic_store_n(&job.active, 0, __ATOMIC_RELEASE);
	}
}
