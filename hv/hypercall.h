/* SPDX-License-Identifier: MIT */
/*
 * hypercall.h - the guest <-> hypervisor interface (docs/vmx.md, "Hypercalls").
 * Shared by the hypervisor (hv/hypercall.c) and the test guest (tests/guest/).
 *
 * Detection: CPUID leaf 0x40000000 returns EAX = highest hypervisor leaf and
 * EBX:ECX:EDX = "NMIWORKBENCH".  A guest that does not see the signature must not
 * execute VMCALL (on bare metal or under another hypervisor it faults).
 *
 * Call: VMCALL with EAX = number, EBX/ECX = arguments; the result is in EAX
 * (and EBX where noted).  Unknown numbers return HC_ERROR and change nothing.
 */
#ifndef HV_HYPERCALL_H
#define HV_HYPERCALL_H

#define HV_CPUID_LEAF 0x40000000u
#define HV_CPUID_EBX  0x574D494Eu /* "NMIW" */
#define HV_CPUID_ECX  0x424B524Fu /* "ORKB" */
#define HV_CPUID_EDX  0x48434E45u /* "ENCH" */

/* -> EAX = HC_PING_MAGIC */
#define HC_PING 0u
/* EBX = passed, ECX = failed, EDX = NMIs the guest's handler counted: the guest's
 * verdict.  Does not return: the guest stops and the run is judged. */
#define HC_DONE 1u
/* -> EAX = first, EBX = last+1 physical byte of the hypervisor */
#define HC_HV_RANGE 2u
/* EBX = HC_JOB_*, ECX = count: another CPU starts the job.
 * -> EAX = 0, or HC_ERROR (no other CPU, a job already runs, unknown kind) */
#define HC_NMI_JOB 3u
/* -> EAX = work items of the current job still to do (0: done) */
#define HC_NMI_POLL 4u
/* EBX = guest-physical address: its 4 KiB page becomes not-present in the EPT
 * until the guest's next access to it, which the hypervisor resolves by mapping it
 * again and resuming (re-injecting an event whose delivery that exit interrupted).
 * -> EAX = 0, or HC_ERROR (hypervisor memory, a page already out, or a second
 * guest CPU already started: its cached translations would not be flushed) */
#define HC_EPT_LAZY 5u
/* ECX = count: run `count` stop-the-world rounds from the calling CPU now (an EPT
 * flush on every other one) while the other guest CPUs run; returns when done.
 * -> EAX = 0, or HC_ERROR (a CPU that cannot be parked: one still waiting for
 * its start-up IPI) */
#define HC_QUIESCE 6u

/* Send `count` NMIs to the caller's CPU, each only after the previous one was
 * injected into the guest. */
#define HC_JOB_NMIS 0u
/* Run `count` stop-the-world rounds while the guest runs (it must see none). */
#define HC_JOB_QUIESCE 1u

#define HC_PING_MAGIC 0x4E4D4921u /* "!IMN" */
#define HC_ERROR      0xFFFFFFFFu /* -1 in EAX */

/* The hypervisor's image always starts here (documented fixed address). */
#define HV_LOAD_ADDR 0x100000u

#endif /* HV_HYPERCALL_H */
