/* SPDX-License-Identifier: MIT */
/*
 * replay_vm.S - workload=replay's guest code (replay_guest.c drives it through
 * guest_call.S).
 */
#include "hv.h"

#define RG_MAIL_PA 0x3000	/* replay_guest.c: the token, then one mailbox per CPU */
#define RG_IRET    1		/* mailbox cmd: end the NMI handler with IRET */

/*
 * The guest: 32-bit flat protected mode, copied to a low page, so only relative
 * jumps and calls.  EBX = its CPU, ESI = its mailbox (cmd, ack, received,
 * in_handler), [RG_MAIL_PA] = the replay's token (who holds it, -1: the
 * controller).  It only ever waits:
 *   - holding the token with `ack` set, it hands the token back (the hypervisor's
 *     turn ended with a VM entry: this is the end of it, from guest mode, so an
 *     NMI after it is an NMI exit, never a host NMI);
 *   - holding the token otherwise, VMCALL: the hypervisor takes its turn;
 *   - in its NMI handler (virtual-NMI blocked), cmd RG_IRET ends the handler with
 *     IRET, which ends the blocking; outside it, RG_IRET is dropped, as the
 *     simulator drops an IRET with no NMI in service.
 */
	.section .rodata
	.code32
	.globl rg_guest_start, rg_guest_end, rg_main, rg_nmi, rg_other, rg_unblock
rg_guest_start:
rg_main:
	cmpl $RG_IRET, (%esi)
	jne 1f
	movl $0, (%esi)
1:	call rg_poll
	jmp rg_main

rg_nmi:					/* vector 2 */
	incl 8(%esi)			/* received */
	movl $1, 12(%esi)		/* in_handler */
1:	cmpl $RG_IRET, (%esi)
	jne 2f
	movl $0, 12(%esi)
	movl $0, (%esi)
	iret
2:	call rg_poll
	jmp 1b

rg_poll:
	cmpl %ebx, RG_MAIL_PA
	jne 9f
	cmpl $0, 4(%esi)
	je 8f
	movl $0, 4(%esi)		/* the turn's end: hand the token back */
	movl $-1, RG_MAIL_PA
	jmp 9f
8:	vmcall				/* a turn for this CPU: the hypervisor's */
9:	pause
	ret

rg_other:				/* every other vector: report it */
	movl $0xdead, %eax
	vmcall
	jmp rg_other

rg_unblock:				/* end any virtual-NMI blocking, then VMCALL */
	pushfl
	pushl $0x08
	call 1f
1:	addl $(2f - 1b), (%esp)
	iret
2:	vmcall
	jmp 2b
rg_guest_end:

	.section .note.GNU-stack, "", @progbits
