/* SPDX-License-Identifier: MIT */
/*
 * vmx.h - Intel VMX as the hypervisor uses it: every VMCS field, control bit, exit
 * reason and capability MSR by name (Intel SDM vol. 3D, appendix A "VMX Capability
 * Reporting Facility", appendix B "Field Encoding in VMCS", appendix C "VMX Basic
 * Exit Reasons"), then the interfaces of the files that run a guest.
 * docs/vmx.md describes the exit path and its invariants.
 *
 * SDM citations in hv/ give section numbers of the Intel 64 and IA-32 Architectures
 * Software Developer's Manual as published in 2016 (vol. 3C: chapter 24 "Virtual
 * Machine Control Structures", 25 "VMX Non-Root Operation", 26 "VM Entries", 27
 * "VM Exits", 28 "VMX Support for Address Translation", 30 "VMX Instruction
 * Reference", 31 "Virtual-Machine Monitor Programming Considerations"; vol. 3D:
 * appendices A-C); later editions number these chapters one higher.  Each
 * citation also names the section, which is stable.
 *
 * Included by assembly too (vmx_entry.S): the numbers carry no integer suffix and
 * the C part is fenced off.  nmi_core.h names the few fields and bits the NMI core
 * uses (pin-based and processor-based controls, VM-entry interruption information,
 * guest interruptibility); they are not repeated here.
 */
#ifndef HV_VMX_H
#define HV_VMX_H

/* ---- VMCS fields (SDM vol. 3D, appendix B) ----------------------------------------- */

/* 16-bit guest-state fields (B.1.2): the selectors.  The encodings of one kind of
 * segment field are consecutive in ES, CS, SS, DS, FS, GS, LDTR, TR order (+2
 * each): VMCS_GUEST_SEL(SEG_CS) etc. */
#define VMCS_GUEST_ES_SEL   0x0800
#define VMCS_GUEST_CS_SEL   0x0802
#define VMCS_GUEST_SS_SEL   0x0804
#define VMCS_GUEST_DS_SEL   0x0806
#define VMCS_GUEST_FS_SEL   0x0808
#define VMCS_GUEST_GS_SEL   0x080A
#define VMCS_GUEST_LDTR_SEL 0x080C
#define VMCS_GUEST_TR_SEL   0x080E
/* 16-bit host-state fields (B.1.3): ES, CS, SS, DS, FS, GS, TR. */
#define VMCS_HOST_ES_SEL 0x0C00
#define VMCS_HOST_CS_SEL 0x0C02
#define VMCS_HOST_SS_SEL 0x0C04
#define VMCS_HOST_DS_SEL 0x0C06
#define VMCS_HOST_FS_SEL 0x0C08
#define VMCS_HOST_GS_SEL 0x0C0A
#define VMCS_HOST_TR_SEL 0x0C0C

/* 64-bit control fields (B.2.1). */
#define VMCS_IO_BITMAP_A         0x2000
#define VMCS_IO_BITMAP_B         0x2002
#define VMCS_MSR_BITMAP          0x2004
#define VMCS_EXIT_MSR_STORE_ADDR 0x2006
#define VMCS_EXIT_MSR_LOAD_ADDR  0x2008
#define VMCS_ENTRY_MSR_LOAD_ADDR 0x200A
#define VMCS_TSC_OFFSET          0x2010
#define VMCS_EPT_POINTER         0x201A
#define VMCS_XSS_EXITING_BITMAP  0x202C
/* 64-bit read-only data field (B.2.2). */
#define VMCS_GUEST_PHYS_ADDR 0x2400
/* 64-bit guest-state fields (B.2.3). */
#define VMCS_LINK_POINTER   0x2800
#define VMCS_GUEST_DEBUGCTL 0x2802
#define VMCS_GUEST_PAT      0x2804
#define VMCS_GUEST_EFER     0x2806
#define VMCS_GUEST_PDPTE0   0x280A /* PDPTE1..3: +2 each */
/* 64-bit host-state fields (B.2.4). */
#define VMCS_HOST_PAT  0x2C00
#define VMCS_HOST_EFER 0x2C02

/* 32-bit control fields (B.3.1); VMCS_PIN_BASED_CTLS, VMCS_PROC_BASED_CTLS and
 * VMCS_ENTRY_INTR_INFO are in nmi_core.h. */
#define VMCS_EXCEPTION_BITMAP     0x4004
#define VMCS_PF_ERRCODE_MASK      0x4006
#define VMCS_PF_ERRCODE_MATCH     0x4008
#define VMCS_CR3_TARGET_COUNT     0x400A
#define VMCS_EXIT_CTLS            0x400C
#define VMCS_EXIT_MSR_STORE_COUNT 0x400E
#define VMCS_EXIT_MSR_LOAD_COUNT  0x4010
#define VMCS_ENTRY_CTLS           0x4012
#define VMCS_ENTRY_MSR_LOAD_COUNT 0x4014
#define VMCS_ENTRY_EXC_ERRCODE    0x4018
#define VMCS_ENTRY_INSTR_LEN      0x401A
#define VMCS_TPR_THRESHOLD        0x401C
#define VMCS_PROC_BASED_CTLS2     0x401E
/* 32-bit read-only data fields (B.3.2). */
#define VMCS_INSTR_ERROR       0x4400
#define VMCS_EXIT_REASON       0x4402
#define VMCS_EXIT_INTR_INFO    0x4404
#define VMCS_EXIT_INTR_ERRCODE 0x4406
#define VMCS_IDT_VECTORING_ERR 0x440A
#define VMCS_EXIT_INSTR_LEN    0x440C
#define VMCS_EXIT_INSTR_INFO   0x440E
/* 32-bit guest-state fields (B.3.3); VMCS_GUEST_INTERRUPTIBILITY is in nmi_core.h. */
#define VMCS_GUEST_ES_LIMIT    0x4800 /* ES..TR: +2 each, as the selectors */
#define VMCS_GUEST_CS_LIMIT    0x4802
#define VMCS_GUEST_SS_LIMIT    0x4804
#define VMCS_GUEST_DS_LIMIT    0x4806
#define VMCS_GUEST_FS_LIMIT    0x4808
#define VMCS_GUEST_GS_LIMIT    0x480A
#define VMCS_GUEST_LDTR_LIMIT  0x480C
#define VMCS_GUEST_TR_LIMIT    0x480E
#define VMCS_GUEST_GDTR_LIMIT  0x4810
#define VMCS_GUEST_IDTR_LIMIT  0x4812
#define VMCS_GUEST_ES_AR       0x4814 /* access rights, ES..TR: +2 each */
#define VMCS_GUEST_CS_AR       0x4816
#define VMCS_GUEST_SS_AR       0x4818
#define VMCS_GUEST_DS_AR       0x481A
#define VMCS_GUEST_FS_AR       0x481C
#define VMCS_GUEST_GS_AR       0x481E
#define VMCS_GUEST_LDTR_AR     0x4820
#define VMCS_GUEST_TR_AR       0x4822
#define VMCS_GUEST_ACTIVITY    0x4826
#define VMCS_GUEST_SMBASE      0x4828
#define VMCS_GUEST_SYSENTER_CS 0x482A
#define VMCS_PREEMPT_TIMER     0x482E /* VMX-preemption timer value */
/* 32-bit host-state field (B.3.4). */
#define VMCS_HOST_SYSENTER_CS 0x4C00

/* Natural-width control fields (B.4.1). */
#define VMCS_CR0_MASK   0x6000
#define VMCS_CR4_MASK   0x6002
#define VMCS_CR0_SHADOW 0x6004
#define VMCS_CR4_SHADOW 0x6006
/* Natural-width read-only data fields (B.4.2). */
#define VMCS_EXIT_QUAL         0x6400
#define VMCS_GUEST_LINEAR_ADDR 0x640A
/* Natural-width guest-state fields (B.4.3). */
#define VMCS_GUEST_CR0          0x6800
#define VMCS_GUEST_CR3          0x6802
#define VMCS_GUEST_CR4          0x6804
#define VMCS_GUEST_ES_BASE      0x6806 /* ES..TR: +2 each, as the selectors */
#define VMCS_GUEST_CS_BASE      0x6808
#define VMCS_GUEST_SS_BASE      0x680A
#define VMCS_GUEST_DS_BASE      0x680C
#define VMCS_GUEST_FS_BASE      0x680E
#define VMCS_GUEST_GS_BASE      0x6810
#define VMCS_GUEST_LDTR_BASE    0x6812
#define VMCS_GUEST_TR_BASE      0x6814
#define VMCS_GUEST_GDTR_BASE    0x6816
#define VMCS_GUEST_IDTR_BASE    0x6818
#define VMCS_GUEST_DR7          0x681A
#define VMCS_GUEST_RSP          0x681C
#define VMCS_GUEST_RIP          0x681E
#define VMCS_GUEST_RFLAGS       0x6820
#define VMCS_GUEST_PENDING_DBG  0x6822
#define VMCS_GUEST_SYSENTER_ESP 0x6824
#define VMCS_GUEST_SYSENTER_EIP 0x6826
/* Natural-width host-state fields (B.4.4). */
#define VMCS_HOST_CR0          0x6C00
#define VMCS_HOST_CR3          0x6C02
#define VMCS_HOST_CR4          0x6C04
#define VMCS_HOST_FS_BASE      0x6C06
#define VMCS_HOST_GS_BASE      0x6C08
#define VMCS_HOST_TR_BASE      0x6C0A
#define VMCS_HOST_GDTR_BASE    0x6C0C
#define VMCS_HOST_IDTR_BASE    0x6C0E
#define VMCS_HOST_SYSENTER_ESP 0x6C10
#define VMCS_HOST_SYSENTER_EIP 0x6C12
#define VMCS_HOST_RSP          0x6C14
#define VMCS_HOST_RIP          0x6C16

/* Segment registers in VMCS encoding order. */
#define SEG_ES                0
#define SEG_CS                1
#define SEG_SS                2
#define SEG_DS                3
#define SEG_FS                4
#define SEG_GS                5
#define SEG_LDTR              6
#define SEG_TR                7
#define VMCS_GUEST_SEL(seg)   (VMCS_GUEST_ES_SEL + 2 * (seg))
#define VMCS_GUEST_BASE(seg)  (VMCS_GUEST_ES_BASE + 2 * (seg))
#define VMCS_GUEST_LIMIT(seg) (VMCS_GUEST_ES_LIMIT + 2 * (seg))
#define VMCS_GUEST_AR(seg)    (VMCS_GUEST_ES_AR + 2 * (seg))

/* ---- Capability MSRs (appendix A) --------------------------------------------------- */
#define MSR_VMX_BASIC          0x480
#define MSR_VMX_PINBASED       0x481
#define MSR_VMX_PROCBASED      0x482
#define MSR_VMX_EXIT           0x483
#define MSR_VMX_ENTRY          0x484
#define MSR_VMX_MISC           0x485
#define MSR_VMX_CR0_FIXED0     0x486
#define MSR_VMX_CR0_FIXED1     0x487
#define MSR_VMX_CR4_FIXED0     0x488
#define MSR_VMX_CR4_FIXED1     0x489
#define MSR_VMX_VMCS_ENUM      0x48A
#define MSR_VMX_PROCBASED2     0x48B
#define MSR_VMX_EPT_VPID_CAP   0x48C
#define MSR_VMX_TRUE_PINBASED  0x48D
#define MSR_VMX_TRUE_PROCBASED 0x48E
#define MSR_VMX_TRUE_EXIT      0x48F
#define MSR_VMX_TRUE_ENTRY     0x490
#define MSR_VMX_VMFUNC         0x491

#define VMX_BASIC_TRUE_CTLS    (1ull << 55) /* A.1: the TRUE_* MSRs exist */
#define VMX_MISC_WAIT_FOR_SIPI (1ull << 8) /* A.6: activity state 3 allowed */
#define FC_LOCK                (1ull << 0) /* IA32_FEATURE_CONTROL */
#define FC_VMXON_OUTSIDE_SMX   (1ull << 2)

/* ---- Control bits (SDM vol. 3C, 24.6 "VM-Execution Control Fields", 24.7, 24.8) ----- */
/* Pin-based: PIN_NMI_EXITING, PIN_VIRTUAL_NMIS (nmi_core.h). */
/* Pin-based (24.6.1, table 24-5). */
#define PIN_PREEMPT_TIMER (1u << 6) /* activate VMX-preemption timer */
/* Primary processor-based (24.6.2, table 24-6); PROC_NMI_WINDOW_EXITING in nmi_core.h. */
#define PROC_HLT_EXITING       (1u << 7)
#define PROC_CR3_LOAD_EXITING  (1u << 15)
#define PROC_CR3_STORE_EXITING (1u << 16)
#define PROC_USE_IO_BITMAPS    (1u << 25)
#define PROC_USE_MSR_BITMAPS   (1u << 28)
#define PROC_SECONDARY         (1u << 31)
/* Secondary processor-based (table 24-7). */
#define PROC2_EPT          (1u << 1)
#define PROC2_RDTSCP       (1u << 3)
#define PROC2_UNRESTRICTED (1u << 7)
#define PROC2_INVPCID      (1u << 12)
#define PROC2_XSAVES       (1u << 20)
/* VM-exit controls (24.7.1). */
#define EXIT_HOST_64   (1u << 9)
#define EXIT_SAVE_PAT  (1u << 18)
#define EXIT_LOAD_PAT  (1u << 19)
#define EXIT_SAVE_EFER (1u << 20)
#define EXIT_LOAD_EFER (1u << 21)
/* VM-entry controls (24.8.1). */
#define ENTRY_IA32E_GUEST (1u << 9)
#define ENTRY_LOAD_PAT    (1u << 14)
#define ENTRY_LOAD_EFER   (1u << 15)

/* ---- Event information (24.8.3 VM-entry, 24.9.2 VM-exit, 24.9.3 IDT-vectoring) ------- */
/* INTR_INFO_VALID, INTR_INFO_NMI, INTR_INFO_TYPE_* are in nmi_core.h. */
#define INTR_INFO_VECTOR(info)  ((info)&0xFFu)
#define INTR_INFO_TYPE(info)    (((info) >> 8) & 7u)
#define INTR_TYPE_EXT_INT       0u
#define INTR_TYPE_NMI           2u
#define INTR_TYPE_HW_EXC        3u
#define INTR_TYPE_SOFT_INT      4u /* INT n */
#define INTR_TYPE_PRIV_SOFT_EXC 5u /* INT1 */
#define INTR_TYPE_SOFT_EXC      6u /* INT3, INTO */
#define INTR_INFO_ERRCODE       (1u << 11)
#define INTR_INFO_ENTRY_BITS    0x80000FFFu /* what VM-entry interruption info may hold */

/* Guest interruptibility (24.4.2, table 24-3); blocking by NMI is in nmi_core.h. */
#define GUEST_INTR_BLOCK_STI_MOVSS 3u
#define GUEST_INTR_BLOCK_SMI       (1u << 2)
/* Guest activity states (24.4.2). */
#define ACTIVITY_ACTIVE        0u
#define ACTIVITY_HLT           1u
#define ACTIVITY_SHUTDOWN      2u
#define ACTIVITY_WAIT_FOR_SIPI 3u

/* Exit qualification of an EPT violation (27.2.1, table 27-7). */
#define EPT_QUAL_READ          (1ull << 0)
#define EPT_QUAL_WRITE         (1ull << 1)
#define EPT_QUAL_FETCH         (1ull << 2)
#define EPT_QUAL_NMI_UNBLOCKED (1ull << 12) /* the faulting IRET had unblocked NMIs */

/* ---- Basic exit reasons (appendix C) ------------------------------------------------ */
#define EXIT_EXCEPTION_NMI     0
#define EXIT_EXTERNAL_INT      1
#define EXIT_TRIPLE_FAULT      2
#define EXIT_INIT              3
#define EXIT_SIPI              4
#define EXIT_NMI_WINDOW        8
#define EXIT_CPUID             10
#define EXIT_GETSEC            11
#define EXIT_HLT               12
#define EXIT_INVD              13
#define EXIT_VMCALL            18
#define EXIT_VMCLEAR           19
#define EXIT_VMLAUNCH          20
#define EXIT_VMPTRLD           21
#define EXIT_VMPTRST           22
#define EXIT_VMREAD            23
#define EXIT_VMRESUME          24
#define EXIT_VMWRITE           25
#define EXIT_VMXOFF            26
#define EXIT_VMXON             27
#define EXIT_CR_ACCESS         28
#define EXIT_IO                30
#define EXIT_RDMSR             31
#define EXIT_WRMSR             32
#define EXIT_INVALID_GUEST     33 /* VM-entry failure */
#define EXIT_MSR_LOADING       34 /* VM-entry failure */
#define EXIT_EPT_VIOLATION     48
#define EXIT_EPT_MISCONFIG     49
#define EXIT_INVEPT            50
#define EXIT_PREEMPT_TIMER     52
#define EXIT_INVVPID           53
#define EXIT_WBINVD            54
#define EXIT_XSETBV            55
#define EXIT_VMFUNC            59
#define EXIT_REASONS           66 /* the exit handlers' table: basic reasons 0..65 */
#define EXIT_REASON_ENTRY_FAIL (1u << 31)

#ifndef __ASSEMBLER__

#include <stdint.h>

#include "guest_image.h"

/* Guest general-purpose registers as vmx_entry.S saves them on a VM exit (RSP
 * and RIP live in the VMCS).  `pad` keeps the exit stack 16-byte aligned. */
struct guest_regs {
	uint64_t rax, rbx, rcx, rdx, rsi, rdi, rbp, r8, r9, r10, r11, r12, r13, r14, r15, pad;
};

/* Per-CPU VMX state, in struct percpu (hv.h).  Each CPU writes only its own, except
 * where a field says otherwise. */
struct vmx_cpu {
	uint64_t vmcs_pa; /* this CPU's VMCS, current since vmx_cpu_init(): 0 = none */
	/* Nonzero while this CPU has a guest VMCS attached to the NMI core. */
	volatile uint32_t in_guest;
	/* guest_smp=1: the guest CPU is in wait-for-SIPI, where it takes no NMI (only a
	 * SIPI ends that state; Bochs 2.7 holds NMIs there), so stop-the-world could
	 * never park it.  Set by the BSP before it publishes the EPT pointer, cleared
	 * by this CPU's SIPI exit (set again by an INIT exit). */
	volatile uint32_t waiting_for_sipi;
	/* This CPU's guest was started by a SIPI exit (Bochs 2.7 leaves it SMI-masked). */
	uint32_t started_by_sipi;
	/* HC_QUIESCE rounds to run after this exit, before VMRESUME. */
	uint32_t quiesce_owed;
	/* Non-NMI events delivered again after an exit interrupted their delivery. */
	uint64_t reinjected;
	/* VM exits by basic reason ([EXIT_REASONS]: any reason beyond the table), and
	 * all of them. */
	uint64_t exits[EXIT_REASONS + 1];
	uint64_t exits_total;
	/* lapic_guard.c: the guest's LAPIC writes, and the ICR's destination half
	 * as the guest last wrote it (xAPIC: ICR high is written first). */
	struct {
		uint64_t writes, ipis_sent, inits_taken;
		uint32_t icr_high;
	} apic;
	/* testport.c: this CPU's latch (command, arguments; then the result). */
	uint8_t testport[4];
	/* Work an exit handler left for after its nmi_unmask() (vmx_owe()). */
	void (*owed)(void);
};

/* ---- vmx_root.c: VMX root operation and the CPU's capabilities ----------------------- */
/* The control words and capabilities the BSP settled on (read-only afterwards). */
struct vmx_caps {
	uint32_t revision; /* VMCS revision identifier */
	uint32_t pin, proc, proc2, exit, entry; /* the control words every VMCS gets */
	uint32_t pin_may; /* pin-based controls allowed to be 1 (watchdog.c) */
	uint64_t ept_cap, misc; /* IA32_VMX_EPT_VPID_CAP, IA32_VMX_MISC */
};
extern struct vmx_caps vmx_caps;
/* Enter VMX root operation on the calling CPU (every CPU, at start-up), with its
 * own VMCS current.  On the BSP it decides and prints whether VMX is available;
 * APs follow the BSP. */
void vmx_cpu_init(void);
/* NULL when every CPU is in VMX root operation, else why not. */
const char *vmx_unavailable(void);

/* ---- vmcs.c: the guest's VMCS ----------------------------------------------------- */
/* The current VMCS set up to enter `g` (NMI window off, nothing injected, exits to
 * vmx_exit_entry on this CPU's exit stack). */
void vmx_setup_vmcs(const struct guest_image *g, uint64_t eptp);
/* guest_call.S: enter the current VMCS's guest as a call that returns at its next VM
 * exit (0), or at once with the RFLAGS of a failed entry.  guest_call_host() points
 * the VMCS's host RIP and RSP at it, with `stack_top` (16-byte aligned, this CPU's
 * alone) as the exit stack that finds `c`. */
struct guest_call {
	struct guest_regs regs;
	uint64_t host_rsp; /* offset 128: guest_call.S */
};
uint64_t guest_call(int resume, struct guest_call *c);
void guest_call_host(struct guest_call *c, void *stack_top);
/* VMREAD / VMWRITE of the current VMCS.  A failure is a hypervisor bug: it is
 * reported with the field's encoding and the run ends (hv.h, "Errors"). */
uint64_t vmx_read(uint32_t field);
void vmx_write(uint32_t field, uint64_t value);

/* ---- vmx_guest.c: bringing the guest up on every CPU ----------------------------------- */
/* What every guest CPU shares, fixed before the first VM entry. */
struct vmx_guest {
	uint64_t hv_lo, hv_hi; /* the hypervisor's image, out of the guest's EPT */
	int smp; /* guest_smp=1: every CPU runs the guest */
	volatile uint64_t eptp; /* guest_smp=1: published once the guest is loaded */
};
extern struct vmx_guest vmx_guest;
/* BSP: load the guest module, run it until it ends, report, leave the emulator. */
_Noreturn void vmx_run_guest(void);
/* APs while a guest runs: with `guest_smp=1` run the guest too (entered waiting
 * for its start-up IPI), else serve the test jobs (guest_jobs.c). */
_Noreturn void vmx_helper_ap(void);
/* The guest EPT (0 and *why on failure); also for vmx_exp.c. */
uint64_t vmx_build_ept(const char **why);
/* Every CPU could be parked by a stop-the-world NMI: none waits for its SIPI. */
int vmx_all_parkable(void);
/* Some CPU other than the BSP has entered its guest (left wait-for-SIPI). */
int vmx_other_guest_cpu_started(void);

/* ---- vmexit.c: exit dispatch ------------------------------------------------------ */
/* One VM exit, as the handlers see it. */
struct vmexit {
	struct guest_regs *r; /* the guest's GPRs: a handler may change them */
	uint32_t reason; /* basic exit reason (bits 15:0) */
	uint32_t vectoring; /* IDT-vectoring information (already re-delivered) */
};
/* A handler of one basic exit reason, in vmexit.c's table.  Runs in masked context
 * (nmi_mask() held); returning resumes the guest; guest_fail() stops it. */
typedef void vmexit_handler(struct vmexit *x);
/* Every VM exit (vmx_entry.S), on this CPU's exit stack.  Returning resumes. */
void vmx_exit_handler(struct guest_regs *r);
/* The handlers in other files (the table is in vmexit.c). */
vmexit_handler exit_cpuid; /* cpuid.c */
vmexit_handler exit_rdmsr, exit_wrmsr; /* msr.c */
vmexit_handler exit_cr_access; /* cr.c */
vmexit_handler exit_io; /* io.c */
vmexit_handler exit_xsetbv, exit_wbinvd, exit_ud; /* insn_exits.c */
/* Past the instruction that exited (VM-exit instruction length), ending STI/MOV-SS
 * blocking as the instruction's retirement does; NMI blocking stays. */
void vmx_skip_instruction(void);
/* The same for an instruction of `len` bytes that the hypervisor decoded itself
 * (exits whose instruction-length field is undefined, as EPT violations). */
void vmx_skip(uint64_t len);
/* Run `fn` on this CPU after this exit's nmi_unmask(), before the VM entry: for
 * work that waits for other CPUs, which must be able to park this one meanwhile. */
void vmx_owe(void (*fn)(void));
/* HC_QUIESCE: run `count` stop-the-world rounds after this exit, unmasked, before
 * the VM entry. */
void vmx_owe_quiesce_rounds(uint32_t count);

/* ---- inject.c: events into the guest ------------------------------------------------ */
/* The exit interrupted the delivery of an event (IDT-vectoring information valid,
 * SDM vol. 3C, 27.2.3): the event did not happen and the guest state is as before
 * it; deliver it again at the next VM entry (an NMI through the core). */
void vmx_redeliver(uint32_t vectoring);
/* Inject hardware exception `vector` (type 3) at the next VM entry, with an error
 * code when `has_error` (dropped in real mode, where VM entry forbids one).  For
 * faults: the caller does not skip the instruction.  When an event is already
 * queued (a re-delivery), the SDM's double-fault rules decide: contributory on
 * contributory, or page fault on either, becomes #DF; a fault during #DF stops the
 * guest (triple fault); otherwise the queued event goes first and the instruction
 * faults again when it runs again. */
void vmx_inject_exception(unsigned vector, int has_error, uint32_t error);

/* ---- msr.c: RDMSR/WRMSR (exit reasons 31, 32) --------------------------------------- */
/* A handler returns 0, or -1 for #GP.  A read handler fills *val. */
typedef int msr_read_fn(uint32_t msr, uint64_t *val);
typedef int msr_write_fn(uint32_t msr, uint64_t val);
/* Make reads and/or writes of `msr` exit (1) or pass through (0).  Before the
 * guest starts (the bitmap is shared by every guest CPU).  An intercepted MSR
 * without a handler stops the guest when it is accessed; MSRs outside
 * 0-0x1FFF and 0xC0000000-0xC0001FFF always exit (and get #GP unless
 * msr_register()ed). */
void msr_intercept(uint32_t msr, int read, int write);
/* Intercept and handle [first, last]: a NULL function lets that direction pass
 * through.  The first matching registration wins. */
void msr_register(uint32_t first, uint32_t last, msr_read_fn *read, msr_write_fn *write);
/* The bitmap with the built-in rules (the table in msr.c), for the VMCS. */
uint64_t msr_bitmap_init(void);
/* The guest's writes of the x2APIC ICR (MSR 0x830) in x2APIC mode (lapic_guard.c).
 * Returns 0, or -1 for #GP. */
int apic_icr_write(uint64_t icr);

/* ---- io.c: port I/O (exit reason 30) -------------------------------------------------- */
/* Handle an intercepted access of `size` bytes (1, 2, 4) to `port`: for IN fill
 * *val, for OUT *val holds the value.  Returns 0, or nonzero when the access
 * cannot be handled (the guest stops with a report). */
typedef int io_handler(uint16_t port, unsigned size, int in, uint32_t *val);
/* Make accesses to [port, port + len) exit.  Before the guest starts. */
void io_intercept(uint16_t port, unsigned len);
/* Intercept [port, port + count) and handle it with `fn`. */
void io_register(uint16_t port, unsigned count, io_handler *fn);
void io_setup_vmcs(void);

/* ---- cr.c: control registers (exit reason 28) -------------------------------------- */
/* The guest/host masks, read shadows and real CR0/CR4 for a guest that should
 * see `cr0` and `cr4`. */
void cr_setup_vmcs(uint64_t cr0, uint64_t cr4);
/* CR0/CR4 as the guest sees them (shadowed bits from the read shadows). */
uint64_t cr_guest_cr0(void);
uint64_t cr_guest_cr4(void);

/* ---- guest_mem.c: the guest's registers and memory ---------------------------------- */
/* Translate a guest-linear address through the guest's page tables (none when
 * CR0.PG = 0; 32-bit, PAE, 4-level and 5-level paging, large pages).  Returns 0,
 * or -1 when a paging-structure entry is not present or unreadable.  Presence
 * only: access rights are not checked. */
int guest_virt_to_phys(uint64_t gva, uint64_t *gpa);
/* Copy n bytes from guest-linear gva (translated page by page).  Returns 0, or -1
 * when a page is not mapped, lies beyond the guest's 4 GiB or in the hypervisor
 * (buf then holds the bytes before that page). */
int guest_read(uint64_t gva, void *buf, unsigned n);
/* Copy n bytes from guest-physical gpa; 0 or -1 as above. */
int guest_read_phys(uint64_t gpa, void *buf, unsigned n);
/* The linear address of the guest's RIP (CS base + RIP outside 64-bit mode). */
uint64_t guest_rip_linear(void);
/* The guest is in IA-32e mode (EFER.LMA). */
int guest_long_mode(void);
/* General-purpose register `n` as numbered in exit qualifications (0 RAX, 1 RCX,
 * 2 RDX, 3 RBX, 4 RSP from the VMCS, 5 RBP, 6 RSI, 7 RDI, 8-15 R8-R15). */
uint64_t guest_gpr(struct guest_regs *r, unsigned n);
void guest_set_gpr(struct guest_regs *r, unsigned n, uint64_t v);

/* ---- hypercall.c: VMCALL (exit reason 18) ------------------------------------------- */
vmexit_handler exit_vmcall;
/* Hypercalls with an unknown number so far (all CPUs). */
uint64_t hypercalls_bad(void);

/* ---- guest_stop.c: the one way a guest CPU stops ---------------------------------- */
/* Print the guest's state (exit information, registers; `r` may be NULL where the
 * GPRs are not at hand). */
void vmx_dump_guest(const struct guest_regs *r);
/* Leave the guest on this CPU for good, in masked context (an exit handler):
 * detach it from the NMI core, drop the mask, and judge the run (guest_run.c).
 * guest_fail() first dumps the guest's state: the guest did something the
 * hypervisor stops it for, or a VM entry failed. */
_Noreturn void guest_stop(const char *why);
_Noreturn void guest_fail(const char *why, const struct guest_regs *r);
/* An exit on a CPU whose run another CPU ends (guest_run.c): detach and idle. */
_Noreturn void guest_leave_idle(void);

/* ---- guest_run.c: the run's verdict -------------------------------------------------- */
/* What the guest reported (HC_DONE) or did that the verdict looks at. */
void guest_run_done(uint32_t passed, uint32_t failed, uint32_t nmis);
void guest_run_ept_violation(uint64_t gpa);
/* Nonzero once a CPU is ending the run: every other guest CPU leaves at its next exit. */
int guest_run_stopping(void);
/* The guest is gone from this CPU: stop it everywhere, check, judge, leave. */
_Noreturn void guest_run_finish(const char *why);
/* The guest_expect= value is one the verdict knows; else why not. */
const char *guest_run_check_expect(void);

/* ---- guest_jobs.c: the test guest's jobs (hypercalls 3-5) and the helper AP ---------- */
uint32_t guest_jobs_start(uint32_t kind, uint32_t count); /* HC_NMI_JOB */
uint32_t guest_jobs_poll(void); /* HC_NMI_POLL */
uint32_t guest_jobs_ept_lazy(uint64_t gpa); /* HC_EPT_LAZY */
uint32_t guest_jobs_quiesce(uint32_t count); /* HC_QUIESCE */
/* An EPT violation on the page HC_EPT_LAZY took out: map it again; nonzero when
 * the exit was that (then the guest resumes). */
int guest_jobs_lazy_fault(uint64_t gpa, uint64_t qual, uint32_t vectoring);
/* CPU 1 without guest_smp: serve HC_NMI_JOB requests forever. */
_Noreturn void guest_jobs_helper(void);
/* For the verdict: wait for a job in flight to end, and what the jobs did. */
struct guest_jobs_stats {
	uint64_t nmis_sent, nmis_lost, rounds, lazy_restored;
};
void guest_jobs_wait_idle(void);
struct guest_jobs_stats guest_jobs_stats(void);

/* ---- vmx_exp.c ------------------------------------------------------------------ */
/* workload=vmx-exp: measure VMX NMI corner cases (docs/emulator-deviations.md). */
_Noreturn void vmx_experiments(void);

/* ---- ept.c -------------------------------------------------------------------- */
/* Build the identity EPT of the first 4 GiB minus [hv_lo, hv_hi) (page-aligned);
 * returns the EPT pointer, or 0 with *why set. */
uint64_t ept_build(uint64_t hv_lo, uint64_t hv_hi, uint64_t ept_cap, const char **why);
/* Make the 4 KiB guest-physical page at `gpa` (below 4 GiB) present (identity,
 * read/write/execute) or not present, splitting its 2 MiB page on first use.
 * The caller keeps the hypervisor's hole closed and flushes the EPT TLBs.
 * Returns 0, or -1 when out of range or out of page tables. */
int ept_set_page(uint64_t gpa, int present);
/* The same with the access bits given (EPT_READ | EPT_WRITE | EPT_EXEC; 0: not
 * present), the page's memory type kept as ept_build() chose it. */
#define EPT_READ  1u
#define EPT_WRITE 2u
#define EPT_EXEC  4u
int ept_set_page_access(uint64_t gpa, unsigned access);
/* INVEPT (all contexts): drop cached guest-physical translations on this CPU. */
void ept_flush(void);

/* ---- lapic_guard.c: the guest's LAPIC writes, ICR through an INIT filter ----------- */
/* BSP, before the first VM entry: the APIC page read-only in the EPT. */
const char *lapic_guard_setup(void);
/* An EPT violation at `gpa`: 1 when it was the guest's APIC page (the write was
 * emulated, or *why says why it could not be), else 0. */
int lapic_guard_ept_violation(struct guest_regs *r, uint64_t gpa, uint64_t qual, const char **why);
/* The run's totals, one line. */
void lapic_guard_report(void);

/* ---- watchdog.c: `watchdog_ms=N`, a state line per guest CPU every N ms --------- */
uint32_t watchdog_pin_control(void);
void watchdog_setup_vmcs(void);
vmexit_handler exit_preemption_timer;

/* ---- testport.c: ports 0xCE0-0xCE3, the Linux guest's test commands --------------- */
void testport_setup(void);

/* ---- guest_console.c: the guest's COM1 output, each line prefixed "guest: " ------- */
void guest_console_setup(void);

/* ---- guest_load.c --------------------------------------------------------------- */
/* Find the first boot module, load it as a multiboot v1 kernel and build its
 * multiboot information with a memory map that excludes [hv_lo, hv_hi).
 * Returns NULL, or why not (hv.h, "Errors"). */
const char *guest_load(struct guest_image *g, uint64_t hv_lo, uint64_t hv_hi);

#endif /* __ASSEMBLER__ */
#endif /* HV_VMX_H */
