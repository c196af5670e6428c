/* SPDX-License-Identifier: MIT */
/*
 * insn_decode.c - decode the few instruction forms a kernel uses for 32-bit
 * memory-mapped register accesses (insn_decode.h).  Encoding rules: Intel SDM
 * vol. 2, chapter 2 ("Instruction Format": legacy prefixes, REX, ModR/M, SIB,
 * displacement, immediate).
 */
#include "insn_decode.h"

#define REX_W 0x8u
#define REX_R 0x4u

static int is_segment_or_lock_prefix(uint8_t p)
{
	return p == 0x26 || p == 0x2E || p == 0x36 || p == 0x3E || p == 0x64 || p == 0x65 ||
	       p == 0xF0;
}

/* Bytes that ModR/M (at b[0]) and what it implies (SIB, displacement) occupy:
 * 1-6, or 0 for a register operand (mod = 3), which is no memory access. */
static unsigned modrm_length(const uint8_t *b, unsigned n)
{
	unsigned mod = b[0] >> 6, rm = b[0] & 7, len = 1;
	if (mod == 3)
		return 0;
	if (rm == 4) { /* SIB follows; base 5 with mod 0 means disp32, no base */
		if (n < 2)
			return 0;
		len++;
		if (mod == 0 && (b[1] & 7) == 5)
			len += 4;
	} else if (mod == 0 && rm == 5) { /* disp32: RIP-relative in 64-bit mode */
		len += 4;
	}
	if (mod == 1)
		len += 1;
	else if (mod == 2)
		len += 4;
	return len;
}

int insn_decode(const uint8_t *b, unsigned n, int long_mode, struct insn *out)
{
	unsigned i = 0, rex = 0;
	while (i < n && is_segment_or_lock_prefix(b[i]))
		i++;
	/* 0x67 in 64-bit mode selects 32-bit addressing, whose ModR/M lengths are the
	 * same; in 32-bit code it selects 16-bit addressing, which this does not do. */
	int addr32 = 0;
	if (i < n && b[i] == 0x67 && long_mode) {
		addr32 = 1;
		i++;
	}
	if (i < n && long_mode && (b[i] & 0xF0) == 0x40) /* REX: last, before the opcode */
		rex = b[i++];
	if (i + 2 > n || (rex & REX_W))
		return -1; /* truncated, or a 64-bit operand */
	uint8_t op = b[i++];
	if (op == 0xA3) { /* MOV moffs32, EAX: an absolute address, 8 bytes in 64-bit code */
		unsigned moffs = long_mode && !addr32 ? 8 : 4;
		if (i + moffs > n)
			return -1;
		*out = (struct insn){.kind = INSN_STORE_REG, .len = i + moffs, .reg = 0};
		return 0;
	}
	unsigned reg = ((b[i] >> 3) & 7) | ((rex & REX_R) ? 8 : 0);
	unsigned mlen = modrm_length(b + i, n - i);
	if (!mlen)
		return -1;
	switch (op) {
	case 0x89: out->kind = INSN_STORE_REG; break;
	case 0x8B: out->kind = INSN_LOAD; break;
	case 0x87: out->kind = INSN_XCHG; break;
	case 0xC7:
		if ((reg & 7) != 0)
			return -1;
		out->kind = INSN_STORE_IMM;
		break;
	default: return -1;
	}
	i += mlen;
	out->imm = 0;
	if (op == 0xC7) {
		if (i + 4 > n)
			return -1;
		out->imm = (uint32_t)b[i] | (uint32_t)b[i + 1] << 8 | (uint32_t)b[i + 2] << 16 |
			   (uint32_t)b[i + 3] << 24;
		i += 4;
	}
	if (i > n)
		return -1;
	out->reg = reg;
	out->len = i;
	return 0;
}
