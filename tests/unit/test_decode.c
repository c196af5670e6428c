/* SPDX-License-Identifier: MIT */
/*
 * test_decode.c - the hypervisor's instruction decoder (hv/insn_decode.c), compiled
 * for the host: each row is an encoding a kernel uses (or must not be taken for
 * one) and what the decoder must make of it.  Prints one PASS/FAIL line per row.
 */
#include <stdio.h>
#include <string.h>

#include "insn_decode.h"

struct row {
	const char *name;
	int long_mode;
	unsigned n;
	unsigned char bytes[15];
	int ok; /* 0: decoded as below; -1: rejected */
	enum insn_kind kind;
	unsigned len, reg;
	unsigned imm;
};

static const struct row rows[] = {
    {"mov %eax,abs32 (Linux native_apic_mem_write)",
     1,
     7,
     {0x89, 0x04, 0x25, 0x00, 0xd3, 0x5f, 0xff},
     0,
     INSN_STORE_REG,
     7,
     0,
     0},
    {"mov %edx,rip+disp32", 1, 6, {0x89, 0x15, 1, 2, 3, 4}, 0, INSN_STORE_REG, 6, 2, 0},
    {"mov %r8d,(%rax)", 1, 3, {0x44, 0x89, 0x00}, 0, INSN_STORE_REG, 3, 8, 0},
    {"mov %eax,0x10(%rbp)", 1, 3, {0x89, 0x45, 0x10}, 0, INSN_STORE_REG, 3, 0, 0},
    {"mov %eax,0x100(%rsp)",
     1,
     7,
     {0x89, 0x84, 0x24, 0x00, 0x01, 0, 0},
     0,
     INSN_STORE_REG,
     7,
     0,
     0},
    {"mov %ecx,(%rbx,%rsi,4)", 1, 3, {0x89, 0x0c, 0xb3}, 0, INSN_STORE_REG, 3, 1, 0},
    {"movl $imm32,rip+disp32",
     1,
     10,
     {0xc7, 0x05, 1, 2, 3, 4, 0x78, 0x56, 0x34, 0x12},
     0,
     INSN_STORE_IMM,
     10,
     0,
     0x12345678},
    {"xchg %eax,(%rdx)", 1, 2, {0x87, 0x02}, 0, INSN_XCHG, 2, 0, 0},
    {"mov (%rdi),%esi (load)", 1, 2, {0x8b, 0x37}, 0, INSN_LOAD, 2, 6, 0},
    {"ds: mov %eax,(%rcx)", 1, 3, {0x3e, 0x89, 0x01}, 0, INSN_STORE_REG, 3, 0, 0},
    {"32-bit: mov %eax,abs32",
     0,
     6,
     {0x89, 0x05, 0x00, 0x03, 0xe0, 0xfe},
     0,
     INSN_STORE_REG,
     6,
     0,
     0},
    {"32-bit: mov %eax,moffs32 (A3)",
     0,
     5,
     {0xa3, 0x00, 0x03, 0xe0, 0xfe},
     0,
     INSN_STORE_REG,
     5,
     0,
     0},
    {"mov %eax,moffs64 (A3)",
     1,
     9,
     {0xa3, 0, 3, 0xe0, 0xfe, 0, 0, 0, 0},
     0,
     INSN_STORE_REG,
     9,
     0,
     0},
    {"addr32 mov %eax,moffs32 (67 A3)",
     1,
     6,
     {0x67, 0xa3, 0, 3, 0xe0, 0xfe},
     0,
     INSN_STORE_REG,
     6,
     0,
     0},
    {"32-bit: 0x44 is inc %esp, not REX", 0, 3, {0x44, 0x89, 0x00}, -1, 0, 0, 0, 0},
    {"mov %rax,(%rdx): 64-bit operand", 1, 3, {0x48, 0x89, 0x02}, -1, 0, 0, 0, 0},
    {"mov %eax,%eax: no memory operand", 1, 2, {0x89, 0xc0}, -1, 0, 0, 0, 0},
    {"mov %ax,(%rdx): 16-bit operand", 1, 3, {0x66, 0x89, 0x02}, -1, 0, 0, 0, 0},
    {"c7 /1 is not MOV", 1, 6, {0xc7, 0x08, 1, 2, 3, 4}, -1, 0, 0, 0, 0},
    {"truncated disp32", 1, 4, {0x89, 0x05, 1, 2}, -1, 0, 0, 0, 0},
    {"add %eax,(%rdx): another opcode", 1, 2, {0x01, 0x02}, -1, 0, 0, 0, 0},
};

int main(void)
{
	unsigned failed = 0, n = sizeof rows / sizeof rows[0];
	for (unsigned i = 0; i < n; i++) {
		const struct row *w = &rows[i];
		struct insn in;
		memset(&in, 0xAA, sizeof in);
		int rc = insn_decode(w->bytes, w->n, w->long_mode, &in);
		int good = rc == w->ok;
		if (good && rc == 0)
			good = in.kind == w->kind && in.len == w->len && in.reg == w->reg &&
			       (w->kind != INSN_STORE_IMM || in.imm == w->imm);
		if (!good) {
			failed++;
			printf("FAIL decode: %s (rc %d kind %d len %u reg %u imm 0x%x)\n", w->name,
			       rc, (int)in.kind, in.len, in.reg, in.imm);
		} else {
			printf("PASS decode: %s\n", w->name);
		}
	}
	return failed ? 1 : 0;
}
