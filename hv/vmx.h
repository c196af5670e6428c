/* SPDX-License-Identifier: MIT */
/*
 * vmx.h - Intel VMX: VMX root operation on every CPU, one guest (a multiboot v1
 * kernel passed as a boot module) on the BSP or, with `guest_smp=1`, on every CPU,
 * its NMIs virtualized through the NMI core.  docs/vmx.md describes the exit path and its
 * invariants.
 */
#ifndef HV_VMX_H
#define HV_VMX_H

#include <stdint.h>

/* ---- VMCS field encodings (Intel SDM vol. 3, appendix B) beyond nmi_core.h's ---- */
#define VMCS_GUEST_ES_SEL       0x0800u /* ES, CS, SS, DS, FS, GS, LDTR, TR: +2 each */
#define VMCS_HOST_ES_SEL        0x0C00u /* ES, CS, SS, DS, FS, GS, TR: +2 each */
#define VMCS_MSR_BITMAP         0x2004u
#define VMCS_EPT_POINTER        0x201Au
#define VMCS_GUEST_PHYS_ADDR    0x2400u
#define VMCS_LINK_POINTER       0x2800u
#define VMCS_GUEST_DEBUGCTL     0x2802u
#define VMCS_GUEST_EFER         0x2806u
#define VMCS_HOST_EFER          0x2C02u
#define VMCS_EXCEPTION_BITMAP   0x4004u
#define VMCS_EXIT_CTLS          0x400Cu
#define VMCS_ENTRY_CTLS         0x4012u
#define VMCS_ENTRY_EXC_ERRCODE  0x4018u
#define VMCS_ENTRY_INSTR_LEN    0x401Au
#define VMCS_PROC_BASED_CTLS2   0x401Eu
#define VMCS_INSTR_ERROR        0x4400u
#define VMCS_EXIT_REASON        0x4402u
#define VMCS_EXIT_INTR_INFO     0x4404u
#define VMCS_IDT_VECTORING_INFO 0x4408u
#define VMCS_IDT_VECTORING_ERR  0x440Au
#define VMCS_EXIT_INSTR_LEN     0x440Cu
#define VMCS_GUEST_ES_LIMIT     0x4800u /* ... TR limit 0x480E, GDTR 0x4810, IDTR 0x4812 */
#define VMCS_GUEST_GDTR_LIMIT   0x4810u
#define VMCS_GUEST_IDTR_LIMIT   0x4812u
#define VMCS_GUEST_ES_AR        0x4814u /* ... TR access rights 0x4822 */
#define VMCS_GUEST_ACTIVITY     0x4826u
#define VMCS_GUEST_SYSENTER_CS  0x482Au
#define VMCS_HOST_SYSENTER_CS   0x4C00u
#define VMCS_CR0_MASK           0x6000u
#define VMCS_CR4_MASK           0x6002u
#define VMCS_CR0_SHADOW         0x6004u
#define VMCS_CR4_SHADOW         0x6006u
#define VMCS_EXIT_QUAL          0x6400u
#define VMCS_GUEST_LINEAR_ADDR  0x640Au
#define VMCS_GUEST_CR0          0x6800u
#define VMCS_GUEST_CR3          0x6802u
#define VMCS_GUEST_CR4          0x6804u
#define VMCS_GUEST_ES_BASE      0x6806u /* ... TR base 0x6814, GDTR 0x6816, IDTR 0x6818 */
#define VMCS_GUEST_GDTR_BASE    0x6816u
#define VMCS_GUEST_IDTR_BASE    0x6818u
#define VMCS_GUEST_DR7          0x681Au
#define VMCS_GUEST_RSP          0x681Cu
#define VMCS_GUEST_RIP          0x681Eu
#define VMCS_GUEST_RFLAGS       0x6820u
#define VMCS_GUEST_SYSENTER_ESP 0x6824u
#define VMCS_GUEST_SYSENTER_EIP 0x6826u
#define VMCS_HOST_CR0           0x6C00u
#define VMCS_HOST_CR3           0x6C02u
#define VMCS_HOST_CR4           0x6C04u
#define VMCS_HOST_FS_BASE       0x6C06u
#define VMCS_HOST_GS_BASE       0x6C08u
#define VMCS_HOST_TR_BASE       0x6C0Au
#define VMCS_HOST_GDTR_BASE     0x6C0Cu
#define VMCS_HOST_IDTR_BASE     0x6C0Eu
#define VMCS_HOST_SYSENTER_ESP  0x6C10u
#define VMCS_HOST_SYSENTER_EIP  0x6C12u
#define VMCS_HOST_RSP           0x6C14u
#define VMCS_HOST_RIP           0x6C16u

/* Basic exit reasons used by the exit handler. */
#define EXIT_EXCEPTION_NMI     0u
#define EXIT_TRIPLE_FAULT      2u
#define EXIT_INIT              3u
#define EXIT_SIPI              4u
#define EXIT_NMI_WINDOW        8u
#define EXIT_CPUID             10u
#define EXIT_HLT               12u
#define EXIT_VMCALL            18u
#define EXIT_EPT_VIOLATION     48u
#define EXIT_REASON_ENTRY_FAIL (1u << 31)

/* Guest general-purpose registers as vmx_entry.S saves them on a VM exit (RSP
 * and RIP live in the VMCS).  `pad` keeps the exit stack 16-byte aligned. */
struct guest_regs {
	uint64_t rax, rbx, rcx, rdx, rsi, rdi, rbp, r8, r9, r10, r11, r12, r13, r14, r15, pad;
};

/* A loaded guest: where to enter it and what to hand it. */
struct guest_image {
	uint32_t entry; /* EIP */
	uint32_t mbi; /* EBX: multiboot information (EAX = 0x2BADB002) */
	uint32_t load_lo; /* physical range the image occupies */
	uint32_t load_hi;
	const char *name; /* the module's string */
};

/* ---- vmx.c -------------------------------------------------------------------- */
/* Enter VMX root operation on the calling CPU (every CPU, at start-up).  On the
 * BSP it decides and prints whether VMX is available; APs follow the BSP. */
void vmx_cpu_init(void);
/* NULL when every CPU is in VMX root operation, else why not. */
const char *vmx_unavailable(void);
/* BSP: load the guest module, run it until it ends, report, leave the emulator. */
_Noreturn void vmx_run_guest(void);
/* APs while a guest runs: serve the guest's HC_NMI_JOB requests, or, with
 * `guest_smp=1`, run the guest too (entered waiting for its start-up IPI). */
_Noreturn void vmx_helper_ap(void);
/* For vmx_exp.c: the guest EPT (0 and *why on failure), the current VMCS set up
 * to enter `g` (NMI window off, nothing injected, exits to vmx_exit_entry), and a
 * VMWRITE that reports the field when it fails. */
uint64_t vmx_build_ept(const char **why);
void vmx_setup_vmcs(const struct guest_image *g, uint64_t eptp);
void vmx_write(uint32_t field, uint64_t value);

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
/* INVEPT (all contexts): drop cached guest-physical translations on this CPU. */
void ept_flush(void);

/* ---- guest_load.c --------------------------------------------------------------- */
/* Find the first boot module, load it as a multiboot v1 kernel and build its
 * multiboot information with a memory map that excludes [hv_lo, hv_hi).
 * Returns 0, or -1 after printing why. */
int guest_load(struct guest_image *g, uint64_t hv_lo, uint64_t hv_hi);

#endif /* HV_VMX_H */
