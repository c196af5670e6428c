/* SPDX-License-Identifier: MIT */
/*
 * vmx_exp.h - between the experiment harness (vmx_exp.c: the guest, the VMCS
 * reset, entering and observing, host NMIs, the verdict lines) and the catalogue
 * of experiments that uses it (vmx_exp_catalogue.c).
 */
#ifndef HV_VMX_EXP_H
#define HV_VMX_EXP_H

#include <stdint.h>

#define INSN_VMCALL_LEN 3u

#define DELIVERY_US 1000u /* ample for a self-NMI to arrive */

#define INJECT_NMI INTR_INFO_NMI /* 0x80000202 */

#define INJECT_EXT_21 0x80000021u /* valid, type 0 (external interrupt), vector 0x21 */

extern const char exp_guest_start[], exp_guest_end[], g_vmcall[], g_loop[], g_iret[],
    g_iret_after[], g_selfnmi[], g_selfnmi2[], g_nmi_iret[], g_hlt[], g_after_hlt[], g_handler[],
    g_h21[], g_count[];

enum cfg { E0V0, E1V0, E1V1 };

struct obs {
	uint32_t reason; /* basic exit reason; EXIT_NONE: the entry failed */
	uint32_t rip;
	int blocked; /* interruptibility bit 3 after the exit */
	unsigned frames; /* 32-bit interrupt frames on the guest stack (RSP below its top) */
	uint32_t ret; /* then the EIP the innermost one returns to */
	uint64_t error; /* EXIT_NONE: the VM-instruction error */
};

/* One experiment of the catalogue: its number, configuration and text, and the
 * function that runs it (nonzero when it came out as the SDM says). */
struct experiment {
	unsigned n;
	enum cfg cfg;
	int (*fn)(void);
	int needs_watchdog;
	const char *setup;
	const char *expected;
};
extern const struct experiment exp_catalogue[];
extern const unsigned exp_catalogue_n;

/* ---- The harness (vmx_exp.c) --------------------------------------------------- */
/* The guest-physical address of a symbol of the guest code (vmx_exp_guest.S). */
uint32_t exp_gaddr(const char *sym);
/* Does `rip` lie in [from, to) of the guest code? */
int exp_rip_in(uint32_t rip, const char *from, const char *to);
/* Append one observed exit / one named value to the experiment's line. */
void exp_ostep(const char *label, struct obs o);
void exp_onote(const char *label, uint64_t v);
/* Host NMIs: taken so far, after `n` self-NMIs, after an IRET. */
uint64_t exp_host_nmis(void);
uint64_t exp_host_self_nmi(unsigned n);
uint64_t exp_host_iret(void);
/* The guest's IDT entry for `vector` -> symbol `sym`; its NMI counter. */
void exp_set_gate(unsigned vector, const char *sym);
volatile uint32_t *exp_guest_count(void);
/* Set up configuration `c`, enter at `entry` with B=`b`, NMI-window exiting `w`,
 * `inject` in the VM-entry interruption field; then enter/resume and observe. */
void exp_prepare(enum cfg c, const char *entry, int b, int w, uint32_t inject);
struct obs exp_observe(void);
/* Past the guest's VMCALL, to resume it. */
void exp_skip_vmcall(void);
/* Make the host NMI-blocked with `pend` NMIs sent behind (1: one latched). */
int exp_host_blocked(unsigned pend);

#endif /* HV_VMX_EXP_H */
