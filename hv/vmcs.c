/* SPDX-License-Identifier: MIT */
/*
 * vmcs.c - the guest's VMCS: execution, exit and entry controls, the host state a
 * VM exit loads, and the guest state of a multiboot v1 hand-over (flat 32-bit
 * protected mode, paging off: unrestricted guest + EPT).  Every field by its name
 * in vmx.h.  With `guest_smp=1` every CPU builds one for the same guest.  The
 * parts whose exits other files handle come from them: the MSR bitmap (msr.c),
 * the I/O bitmaps (io.c), the CR0/CR4 masks and shadows (cr.c).
 *
 * There is no cached VMCS: the VMCS these functions write is the one VMRESUME
 * uses, and the NMI core writes it too (NMI-window control, injection) through
 * plat_vmcs_read/write.
 */
#include <stddef.h>

#include "hv.h"
#include "vmx_insn.h"
#include "x86.h"

/* Guest segments of a multiboot v1 hand-over (the guest's own GDT is not loaded
 * yet: these are the hidden parts only).  Access rights: SDM vol. 3C, 24.4.1 "Guest
 * Register State". */
#define AR_CODE32     0xC09B /* present, execute/read, accessed, D=1, G=1 */
#define AR_DATA32     0xC093 /* present, read/write, accessed, D/B=1, G=1 */
#define AR_UNUSABLE   0x10000
#define AR_TSS32_BUSY 0x8B
#define RFLAGS_FIXED  0x2 /* bit 1 is always 1 */
#define DR7_INIT      0x400
#define MSR_PAT       0x277u
#define PAT_POWER_ON  0x0007040600070406ull /* SDM vol. 3A, 11.12.4 */

extern char vmx_exit_entry[];

/* One exit stack per CPU: every exit starts on an empty one (host RSP).  Apart
 * from struct percpu, as the other stacks are (smp.c, cpu.c). */
static uint8_t exit_stack[MAX_CPUS][STACK_SIZE] __attribute__((aligned(16)));

uint64_t vmx_read(uint32_t field)
{
	uint64_t v;
	if (vmread(field, &v)) {
		panic_begin();
		panic_printf("vmx: VMREAD of field 0x%x failed\nRESULT: FAIL vmx\n", field);
		hv_exit(1);
	}
	return v;
}

/* A failure names the field (the core's plat_vmcs_write only says that some
 * VMWRITE failed). */
void vmx_write(uint32_t field, uint64_t value)
{
	if (vmwrite(field, value)) {
		panic_begin();
		panic_printf("vmx: VMWRITE of field 0x%x = 0x%lx failed\nRESULT: FAIL vmx setup\n",
			     field, value);
		hv_exit(1);
	}
}

static void setup_controls(uint64_t eptp)
{
	const struct vmx_caps *c = &vmx_caps;
	/* The NMI-window bit is the core's: it starts clear. */
	vmx_write(VMCS_PIN_BASED_CTLS, c->pin | watchdog_pin_control());
	watchdog_setup_vmcs();
	vmx_write(VMCS_PROC_BASED_CTLS, c->proc & ~PROC_NMI_WINDOW_EXITING);
	vmx_write(VMCS_PROC_BASED_CTLS2, c->proc2);
	vmx_write(VMCS_EXIT_CTLS, c->exit);
	vmx_write(VMCS_ENTRY_CTLS, c->entry);
	vmx_write(VMCS_EXCEPTION_BITMAP, 0);
	vmx_write(VMCS_PF_ERRCODE_MASK, 0);
	vmx_write(VMCS_PF_ERRCODE_MATCH, 0);
	vmx_write(VMCS_CR3_TARGET_COUNT, 0);
	vmx_write(VMCS_EXIT_MSR_STORE_COUNT, 0);
	vmx_write(VMCS_EXIT_MSR_LOAD_COUNT, 0);
	vmx_write(VMCS_ENTRY_MSR_LOAD_COUNT, 0);
	vmx_write(VMCS_ENTRY_INTR_INFO, 0);
	vmx_write(VMCS_MSR_BITMAP, msr_bitmap_init()); /* msr.c */
	io_setup_vmcs(); /* io.c */
	vmx_write(VMCS_EPT_POINTER, eptp);
	if (c->proc2 & PROC2_XSAVES) /* XSAVES/XRSTORS never exit (24.6.20) */
		vmx_write(VMCS_XSS_EXITING_BITMAP, 0);
	vmx_write(VMCS_LINK_POINTER, ~0ull);
}

/* Host state: what a VM exit loads (SDM vol. 3C, 27.5 "Loading Host State"): this CPU as it runs
 * now. */
static void setup_host(struct percpu *p)
{
	struct {
		uint16_t limit;
		uint64_t base;
	} __attribute__((packed)) gdtr, idtr;
	__asm__ __volatile__("sgdt %0\n\tsidt %1" : "=m"(gdtr), "=m"(idtr));

	vmx_write(VMCS_HOST_CR0, read_cr0());
	vmx_write(VMCS_HOST_CR3, read_cr3());
	vmx_write(VMCS_HOST_CR4, read_cr4());
	vmx_write(VMCS_HOST_ES_SEL, SEL_DATA);
	vmx_write(VMCS_HOST_CS_SEL, SEL_CODE64);
	vmx_write(VMCS_HOST_SS_SEL, SEL_DATA);
	vmx_write(VMCS_HOST_DS_SEL, SEL_DATA);
	vmx_write(VMCS_HOST_FS_SEL, 0);
	vmx_write(VMCS_HOST_GS_SEL, 0);
	vmx_write(VMCS_HOST_TR_SEL, SEL_TSS);
	vmx_write(VMCS_HOST_FS_BASE, rdmsr(MSR_FS_BASE));
	vmx_write(VMCS_HOST_GS_BASE, rdmsr(MSR_GS_BASE)); /* this CPU's struct percpu */
	vmx_write(VMCS_HOST_TR_BASE, (uint64_t)&p->tss);
	vmx_write(VMCS_HOST_GDTR_BASE, gdtr.base);
	vmx_write(VMCS_HOST_IDTR_BASE, idtr.base);
	vmx_write(VMCS_HOST_SYSENTER_CS, 0);
	vmx_write(VMCS_HOST_SYSENTER_ESP, 0);
	vmx_write(VMCS_HOST_SYSENTER_EIP, 0);
	if (vmx_caps.exit & EXIT_LOAD_EFER)
		vmx_write(VMCS_HOST_EFER, rdmsr(MSR_EFER));
	if (vmx_caps.exit & EXIT_LOAD_PAT)
		vmx_write(VMCS_HOST_PAT, rdmsr(MSR_PAT));
	vmx_write(VMCS_HOST_RSP, (uint64_t)&exit_stack[p->index][STACK_SIZE]);
	vmx_write(VMCS_HOST_RIP, (uint64_t)vmx_exit_entry);
}

/* Guest state: the loader's hand-over (guest_image.h: multiboot v1 or Linux's
 * 32-bit boot protocol).  Flat 32-bit segments, protected mode without paging (allowed by
 * unrestricted guest, SDM vol. 3C, 26.3.1.1 "Checks on Guest Control Registers, Debug Registers,
 * and MSRs"). */
static void setup_guest(const struct guest_image *g)
{
	cr_setup_vmcs(CR0_PE | CR0_ET | CR0_NE, 0); /* cr.c: masks, shadows, fixed bits */
	vmx_write(VMCS_GUEST_CR3, 0);
	for (unsigned s = SEG_ES; s <= SEG_GS; s++) {
		vmx_write(VMCS_GUEST_SEL(s), s == SEG_CS ? g->code_sel : g->data_sel);
		vmx_write(VMCS_GUEST_BASE(s), 0);
		vmx_write(VMCS_GUEST_LIMIT(s), 0xFFFFFFFFu);
		vmx_write(VMCS_GUEST_AR(s), s == SEG_CS ? AR_CODE32 : AR_DATA32);
	}
	vmx_write(VMCS_GUEST_LDTR_SEL, 0); /* unusable */
	vmx_write(VMCS_GUEST_LDTR_BASE, 0);
	vmx_write(VMCS_GUEST_LDTR_LIMIT, 0);
	vmx_write(VMCS_GUEST_LDTR_AR, AR_UNUSABLE);
	vmx_write(VMCS_GUEST_TR_SEL, 0); /* a busy 32-bit TSS, as VM entry demands */
	vmx_write(VMCS_GUEST_TR_BASE, 0);
	vmx_write(VMCS_GUEST_TR_LIMIT, 0x67);
	vmx_write(VMCS_GUEST_TR_AR, AR_TSS32_BUSY);
	vmx_write(VMCS_GUEST_GDTR_BASE, g->gdt_base);
	vmx_write(VMCS_GUEST_GDTR_LIMIT, g->gdt_limit);
	vmx_write(VMCS_GUEST_IDTR_BASE, 0);
	vmx_write(VMCS_GUEST_IDTR_LIMIT, 0x3FF);
	vmx_write(VMCS_GUEST_DR7, DR7_INIT);
	vmx_write(VMCS_GUEST_RSP, 0);
	vmx_write(VMCS_GUEST_RIP, g->entry);
	vmx_write(VMCS_GUEST_RFLAGS, RFLAGS_FIXED);
	vmx_write(VMCS_GUEST_INTERRUPTIBILITY, 0);
	vmx_write(VMCS_GUEST_ACTIVITY, ACTIVITY_ACTIVE);
	vmx_write(VMCS_GUEST_PENDING_DBG, 0);
	vmx_write(VMCS_GUEST_DEBUGCTL, 0);
	vmx_write(VMCS_GUEST_SYSENTER_CS, 0);
	vmx_write(VMCS_GUEST_SYSENTER_ESP, 0);
	vmx_write(VMCS_GUEST_SYSENTER_EIP, 0);
	if (vmx_caps.entry & ENTRY_LOAD_EFER)
		vmx_write(VMCS_GUEST_EFER, 0);
	if (vmx_caps.entry & ENTRY_LOAD_PAT)
		vmx_write(VMCS_GUEST_PAT, PAT_POWER_ON);
	for (unsigned i = 0; i < 4; i++) /* PAE paging is off: no PDPTEs yet */
		vmx_write(VMCS_GUEST_PDPTE0 + 2 * i, 0);
}

void vmx_setup_vmcs(const struct guest_image *g, uint64_t eptp)
{
	setup_controls(eptp);
	setup_host(this_percpu());
	setup_guest(g);
}

extern char guest_call_exit[];
_Static_assert(offsetof(struct guest_call, host_rsp) == 128, "guest_call.S offsets");

/* guest_call.S's exit path: the stack's top word is the context it returns into. */
void guest_call_host(struct guest_call *c, void *stack_top)
{
	uint64_t *top = (uint64_t *)stack_top - 2; /* 16-byte aligned, as at a call */
	*top = (uint64_t)c;
	vmx_write(VMCS_HOST_RSP, (uint64_t)top);
	vmx_write(VMCS_HOST_RIP, (uint64_t)guest_call_exit);
}
