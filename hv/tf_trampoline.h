/* SPDX-License-Identifier: MIT */
/*
 * tf_trampoline.h - the way back into single-stepped code after a call out of it,
 * for both places that step the core with the trap flag: the simulator
 * (sim/stepper.c) and the hypervisor's replay (hv/replay_step.c).
 *
 * The trap handler finds a call out of the core at the callee's first instruction,
 * clears TF, and replaces the return address on the stack with the trampoline.  The
 * callee runs at full speed and returns into the trampoline, which asks `lookup`
 * (a C function of this CPU's state) for the real return address, sets TF with a
 * POPF, and returns there: the RET is the instruction after the POPF, so the next
 * single-step trap comes at the return address (Intel SDM vol. 3A, 17.3.1.4), the
 * first core instruction after the call.  Caller-saved registers are preserved: the
 * callee's return value is still in RAX when the core sees it.
 */
#ifndef TF_TRAMPOLINE_H
#define TF_TRAMPOLINE_H

#define TF_TRAMPOLINE(name, lookup)                                                                \
	__asm__(".text\n"                                                                          \
		".globl " #name "\n" #name ":\n"                                                   \
		"	subq $8, %rsp\n" /* the return address goes here */                        \
		"	pushq %rax\n"                                                                    \
		"	pushq %rdx\n"                                                                    \
		"	pushq %rcx\n"                                                                    \
		"	pushq %rsi\n"                                                                    \
		"	pushq %rdi\n"                                                                    \
		"	pushq %r8\n"                                                                     \
		"	pushq %r9\n"                                                                     \
		"	pushq %r10\n"                                                                    \
		"	pushq %r11\n"                                                                    \
		"	call " #lookup "\n"                                                        \
		"	movq %rax, 72(%rsp)\n"                                                           \
		"	popq %r11\n"                                                                     \
		"	popq %r10\n"                                                                     \
		"	popq %r9\n"                                                                      \
		"	popq %r8\n"                                                                      \
		"	popq %rdi\n"                                                                     \
		"	popq %rsi\n"                                                                     \
		"	popq %rcx\n"                                                                     \
		"	popq %rdx\n"                                                                     \
		"	popq %rax\n"                                                                     \
		"	pushfq\n"                                                                        \
		"	orq $0x100, (%rsp)\n"                                                            \
		"	popfq\n"                                                                         \
		"	ret\n")

#endif /* TF_TRAMPOLINE_H */
