/* SPDX-License-Identifier: MIT */
/*
 * insn_decode.h - just enough of the x86 instruction decoder to emulate a guest's
 * 32-bit memory-mapped register access that the EPT stopped (the LAPIC's ICR).
 *
 * An EPT violation is fault-like and reports the guest-physical address, but not
 * the data written nor the instruction's length (SDM vol. 3, "Exit Qualification
 * for EPT Violations"; the VM-exit instruction-length field is undefined for this
 * exit).  So the hypervisor reads the instruction at the guest's RIP and decodes
 * it here.  Pure functions over bytes: no hypervisor state, unit-tested on the host.
 */
#ifndef HV_INSN_DECODE_H
#define HV_INSN_DECODE_H

#include <stdint.h>

enum insn_kind {
	INSN_STORE_REG, /* MOV r/m32, r32 (89 /r) or moffs32, EAX (A3): memory <- `reg` */
	INSN_STORE_IMM, /* MOV r/m32, imm32 (C7 /0): memory <- `imm`               */
	INSN_LOAD, /* MOV r32, r/m32 (8B /r): register `reg` <- memory (zero-extended) */
	INSN_XCHG, /* XCHG r/m32, r32 (87 /r): both                                */
};

struct insn {
	enum insn_kind kind;
	unsigned len; /* bytes, prefixes included                               */
	unsigned reg; /* register number 0-15 (rax rcx rdx rbx rsp rbp rsi rdi r8-r15) */
	uint32_t imm; /* INSN_STORE_IMM only                                         */
};

/*
 * Decode the instruction in `b` (`n` valid bytes; 15 is the architectural
 * maximum) as a 32-bit-operand memory access.  `long_mode` selects 64-bit code
 * (REX prefixes, RIP-relative addressing) over 32-bit protected-mode code.
 * Returns 0, or -1 for anything else (another opcode or operand size, a register
 * operand, a prefix this decoder does not accept): the caller reports it.
 */
int insn_decode(const uint8_t *b, unsigned n, int long_mode, struct insn *out);

#endif /* HV_INSN_DECODE_H */
