/* SPDX-License-Identifier: MIT */
/*
 * decode.c - the fuzzer's input format: two formats, told apart by the first four
 * bytes (docs/fuzzing.md, "What an input is").
 *
 * Format 1 (inputs that start with FUZZ_MAGIC, what new seeds and the dictionary
 * use): an NMI's place is a core instruction boundary by default, so precise mode
 * places it with one hardware breakpoint instead of one trap per stepped
 * instruction.
 *
 *   bytes 0 to 3    FUZZ_MAGIC ("NMI", version 1)
 *   byte 4          number of CPUs: 1 + b % 3
 *   then per step   a: CPU and operation, as in format 0
 *                   b: for nmi and quiesce, as in format 0; for the others
 *                      (run excepted) b = kk oo ss hh:
 *                      kk 00: no NMI, but b == 0x3F (FUZZ_INDEX_MARKER) is the
 *                             index form: the next byte x gives an NMI before core
 *                             instruction 1 + (x & 63) of the step, x bit 6 a second
 *                             one at 1 + (y & 63), y the byte after (format 0's
 *                             index form, without its bit 7);
 *                      kk 01, 10: one NMI at a core instruction boundary: with c
 *                             the next byte, the (hh << 8 | c) % 64-th boundary of
 *                             the step's path from function ss (below), reached
 *                             for the first time (oo 0 to 2) or the second (oo 3);
 *                      kk 11: that one and a second, from the two bytes after,
 *                             x = .. oo hhhh and y: on the same path,
 *                             (hhhh << 8 | y) % 64 boundaries after the first (0:
 *                             the same boundary, both NMIs at once), reached the
 *                             first or second time after the first NMI, as above.
 *   A step's path: the core functions its operation runs, in the order it runs
 *   them (op_funcs below), each in address order; ss 0 and 1 start it at the first,
 *   ss 2 at the second, ss 3 at the third (modulo their number), and a placement
 *   counts at most 64 boundaries on, into the functions after (% 64 is modulo the
 *   boundaries left where the path has fewer).  An operation with
 *   none of them in this build counts in the whole core instead (hh << 8 | c,
 *   modulo its boundaries).  In fast mode (no instruction boundaries) a placement
 *   is the (1 + (c & 63))-th platform call of the step instead, and a second one
 *   (y & 63) calls after it.
 *
 * Format 0 (every other input: the seeds and reproducers written before format 1,
 * and anything a campaign grew from them; decoded exactly as before format 1):
 *
 *   byte 0          number of CPUs: 1 + b % 3
 *   then per step   a: CPU (a & 3, modulo the CPU count) and operation (a >> 2,
 *                      through the weighted table below)
 *                   b: for nmi, the burst size 1 + (b & 3); for quiesce, flush = b & 1;
 *                      for the others, bit 7 = an NMI lands inside the step, at core
 *                      instruction 1 + (b & 63); bit 6 = a second one, whose index is
 *                      the next byte (1 + (c & 63))
 *                      (index form).  Bit 7 clear and bit 6 set (b = 01rooppp,
 *                      bits the index form never reads): the breakpoint form, an
 *                      NMI at a core instruction boundary, the (1 + oo)-th time the
 *                      step reaches it: boundary fuzz_core_bounds[(ppp << 8 | c) %
 *                      count] with c the next byte; r = a second one, from the next
 *                      two bytes x, y: occurrence 1 + (x >> 3 & 3), boundary
 *                      (x & 7) << 8 | y.  Without the table (fuzz_ops) or with no
 *                      byte left, no NMI, as before.
 *
 * In both, a trailing odd byte is ignored, a placement whose bytes the input ends
 * before is no NMI, and indices past the end of a step never fire.  Without the
 * boundary table (fuzz_ops links none) a format-1 breakpoint placement is no NMI,
 * its bytes consumed all the same.
 */
#include <string.h>

#include "decode.h"

/* Weights: the operations that make NMI races (masking, NMIs) come up most. */
static const uint8_t op_table[16] = {
    OP_MASK, OP_UNMASK, OP_CRIT,  OP_DETACH, OP_NMI,     OP_NMI,     OP_NMI, OP_ENTER,
    OP_EXIT, OP_GIRET,  OP_GIRET, OP_BLOCK,  OP_UNBLOCK, OP_QUIESCE, OP_RUN, OP_FAULT,
};

/* The core's instruction boundaries (build/<variant>/fuzz/core_bounds.c, from the
 * disassembly of nmi_core.o); absent (weak, 0) where the decoder is linked without. */
extern const uint32_t fuzz_core_bounds[] __attribute__((weak));
extern const unsigned fuzz_core_nbounds __attribute__((weak));
extern const char *const fuzz_core_text __attribute__((weak)); /* __start_nmi_core_text */

static unsigned nbounds(void)
{
	return &fuzz_core_nbounds ? fuzz_core_nbounds : 0;
}

/* An NMI the occ-th time the step reaches core boundary k. */
static struct sim_at bound_at(unsigned k, unsigned occ)
{
	return (struct sim_at){
	    .kind = AT_ADDR, .index = occ, .addr = (uintptr_t)fuzz_core_text + fuzz_core_bounds[k]};
}

/* ---- Format 0 ------------------------------------------------------------------ */

/* An NMI the occ-th time the step reaches boundary (hi << 8 | lo) % count. */
static struct sim_at bp_at(unsigned hi, unsigned lo, unsigned occ)
{
	return bound_at((hi << 8 | lo) % nbounds(), occ);
}

/* What both formats read alike: a step's CPU and operation from its first byte, an
 * NMI burst's size or a stop-the-world's flush from its second. */
static struct sim_step *step_head(struct sim_schedule *s, uint8_t a, uint8_t b)
{
	struct sim_step *st = &s->step[s->nsteps++];
	st->cpu = (uint8_t)((a & 3u) % s->ncpus);
	st->op = op_table[(a >> 2) & 15u];
	if (st->op == OP_NMI)
		st->arg = (uint8_t)(1u + (b & 3u));
	else if (st->op == OP_QUIESCE)
		st->arg = b & 1u;
	return st;
}

/* The index form: nmi@(1 + x's low 6 bits), and with x's bit 6 a second one from the
 * next byte (if there is one).  Returns where decoding goes on. */
static size_t index_pair(struct sim_step *st, uint8_t x, const uint8_t *d, size_t i, size_t n)
{
	st->at[st->nat++] = (struct sim_at){.kind = AT_INDEX, .index = 1u + (x & 63u)};
	if ((x & 0x40u) && i < n)
		st->at[st->nat++] = (struct sim_at){.kind = AT_INDEX, .index = 1u + (d[i++] & 63u)};
	return i;
}

static void decode_v0(const uint8_t *d, size_t n, int fast, struct sim_schedule *s)
{
	size_t i = 0;
	memset(s, 0, sizeof *s);
	s->fast = (unsigned)fast;
	s->ncpus = n ? 1u + d[i++] % 3u : 1u;
	while (i + 1 < n && s->nsteps < FUZZ_MAX_STEPS) {
		uint8_t a = d[i++], b = d[i++];
		struct sim_step *st = step_head(s, a, b);
		if (st->op == OP_NMI || st->op == OP_QUIESCE || st->op == OP_RUN)
			continue;
		if (b & 0x80u) {
			i = index_pair(st, b, d, i, n);
		} else if ((b & 0xC0u) == 0x40u && i < n && nbounds()) {
			st->at[st->nat++] = bp_at(b & 7u, d[i], 1u + (b >> 3 & 3u));
			i++;
			if ((b & 0x20u) && i + 1 < n) {
				st->at[st->nat++] =
				    bp_at(d[i] & 7u, d[i + 1], 1u + (d[i] >> 3 & 3u));
				i += 2;
			}
		}
	}
}

/* ---- Format 1 ------------------------------------------------------------------ */

/* The core functions each operation runs on its CPU, in the order it runs them
 * (sim/ops.c, and the VM exits of sim/vmx_hw.c that an operation in or into guest
 * mode handles under the mask).  A placement starts at one of them and counts on
 * through the ones after, address order within each: for short straight-line
 * functions that is the order the step executes their boundaries, so the first 64
 * of such a path are about as dense in what the step runs as the index form's
 * 1 to 64 were, without stepping.  Only a density: a placement may name any
 * boundary, and one the step never reaches is no NMI; a function missing from a
 * build (inlined by its compiler) is left out of the path. */
#define OP_NFUNCS 4
#define PATH_SPAN 64
static const char *const op_funcs[OP__COUNT][OP_NFUNCS] = {
    [OP_MASK] = {"nmi_mask"},
    [OP_UNMASK] = {"nmi_unmask", "handle_one"},
    [OP_CRIT] = {"nmi_mask", "nmi_unmask", "handle_one"},
    [OP_ENTER] = {"nmi_mask", "nmi_guest_attach", "nmi_unmask", "nmi_vmexit_nmi"},
    [OP_EXIT] = {"nmi_mask", "nmi_vmexit_nmi", "nmi_unmask", "handle_one"},
    [OP_GIRET] = {"nmi_mask", "nmi_vmexit_nmi_window", "nmi_unmask", "handle_one"},
    [OP_BLOCK] = {"nmi_mask", "nmi_guest_block", "nmi_unmask", "handle_one"},
    [OP_UNBLOCK] = {"nmi_mask", "nmi_guest_unblock", "nmi_unmask", "handle_one"},
    [OP_FAULT] = {"nmi_mask", "nmi_vmexit_vectoring", "nmi_unmask"},
    [OP_DETACH] = {"nmi_mask", "nmi_guest_detach", "nmi_unmask", "handle_one"},
};

/* A function's boundaries: fuzz_core_bounds[first .. first + count). */
struct span {
	unsigned first, count;
};

/* The boundaries of core function `name` (count 0: not in this build's core). */
static struct span func_span(const char *name)
{
	struct span sp = {0, 0};
	uintptr_t start = sym_lookup(name);
	size_t len = strlen(name);
	for (unsigned k = 0; start && k < nbounds(); k++) {
		uintptr_t a = (uintptr_t)fuzz_core_text + fuzz_core_bounds[k];
		/* sym_describe names the function an address is in, "name+0x..";
		 * padding after the function's last instruction is in none. */
		const char *in = sym_describe(a);
		int inside = a >= start && strncmp(in, name, len) == 0 && in[len] == '+';
		if (inside && !sp.count++)
			sp.first = k;
		else if (!inside && sp.count)
			break;
	}
	return sp;
}

/* The opcode of the instruction at boundary k (prefixes skipped), with *len the
 * instruction's length and *o the opcode's offset in it. */
static const uint8_t *insn(unsigned k, unsigned *len, unsigned *o)
{
	const uint8_t *p = (const uint8_t *)fuzz_core_text + fuzz_core_bounds[k];
	*len = fuzz_core_bounds[k + 1] - fuzz_core_bounds[k];
	for (*o = 0; *o + 1 < *len; ++*o) {
		uint8_t b = p[*o];
		if (!(b == 0x66 || b == 0x67 || b == 0xF2 || b == 0xF3 || b == 0x2E || b == 0x3E ||
		      b == 0x26 || b == 0x36 || b == 0x64 || b == 0x65 || (b & 0xF0) == 0x40))
			break;
	}
	return p;
}

/* Whether boundary k is one no run of the step can usefully stop at: alignment
 * padding (a nop, never reached), or on the straight way into a failed assertion
 * (NMI_ASSERT's call of plat_halt, where the run has already failed).  An NMI
 * there is never one the fuzzer wants, and these are a quarter of a function like
 * nmi_unmask; leaving them out of the paths makes the rest denser.  Anything not
 * recognised ends the scan as hot. */
static int cold(unsigned k, uintptr_t halt)
{
	for (unsigned m = k, len, o; m + 1 < nbounds(); m++) {
		const uint8_t *p = insn(m, &len, &o);
		uint8_t op = p[o], op2 = o + 1 < len ? p[o + 1] : 0;
		if (m == k && (op == 0x90 || (op == 0x0F && op2 == 0x1F)))
			return 1;
		if (op == 0xE8 && o + 5 == len) {
			int32_t rel;
			memcpy(&rel, p + o + 1, sizeof rel);
			return halt && (uintptr_t)(p + len) + (uintptr_t)(intptr_t)rel == halt;
		}
		/* ret, jmp, jcc, loop/jcxz, call/jmp indirect, int3, ud2, hlt. */
		if (op == 0xC3 || op == 0xC2 || op == 0xE9 || op == 0xEB || (op & 0xF0) == 0x70 ||
		    (op >= 0xE0 && op <= 0xE3) || op == 0xFF || op == 0xCC || op == 0xF4 ||
		    (op == 0x0F && ((op2 & 0xF0) == 0x80 || op2 == 0x0B)))
			return 0;
	}
	return 0;
}

/* Format 1's paths (below), found once in this executable: for each operation, the
 * hot boundaries of its functions in op_funcs' order (indices in fuzz_core_bounds),
 * and where each function's part begins. */
#define PATH_MAX_BOUNDS 1024
static uint16_t op_path[OP__COUNT][PATH_MAX_BOUNDS];
static unsigned op_plen[OP__COUNT], op_nfuncs[OP__COUNT], op_fstart[OP__COUNT][OP_NFUNCS];

static void find_paths(void)
{
	static int done;
	if (done)
		return;
	done = 1;
	sym_load();
	uintptr_t halt = sym_lookup("plat_halt");
	for (unsigned op = 0; op < OP__COUNT; op++)
		for (unsigned f = 0; f < OP_NFUNCS && op_funcs[op][f]; f++) {
			struct span sp = func_span(op_funcs[op][f]);
			unsigned from = op_plen[op];
			for (unsigned k = sp.first; k < sp.first + sp.count; k++)
				if (!cold(k, halt) && op_plen[op] < PATH_MAX_BOUNDS)
					op_path[op][op_plen[op]++] = (uint16_t)k;
			if (op_plen[op] > from)
				op_fstart[op][op_nfuncs[op]++] = from;
		}
}

/* The occurrence bits oo of a placement: the first pass 3 times in 4, else the
 * second.  Most windows a step has are passed once; a loop's second pass is the
 * one that differs from its first (a third: a second NMI after the first). */
static unsigned v1_occ(unsigned oo)
{
	return oo < 3 ? 1u : 2u;
}

/* The boundaries a placement counts through: op_path[op] from `start` on, or (op
 * OP__COUNT: an operation without functions in this build) the whole core.  The
 * slot picks the function it starts at: the first twice as often as the second
 * and the third. */
struct path {
	unsigned op, start, len;
};

static struct path path_of(unsigned op, unsigned slot)
{
	static const uint8_t first[4] = {0, 0, 1, 2};
	if (!op_nfuncs[op])
		return (struct path){OP__COUNT, 0, nbounds()};
	unsigned start = op_fstart[op][first[slot & 3u] % op_nfuncs[op]];
	return (struct path){op, start, op_plen[op] - start};
}

/* The index in fuzz_core_bounds of a path's j-th boundary (j < len). */
static unsigned path_at(const struct path *p, unsigned j)
{
	return p->op < OP__COUNT ? op_path[p->op][p->start + j] : j;
}

/* How far on a placement may count from where it starts: PATH_SPAN boundaries or
 * to the end of the path. */
static unsigned reach(unsigned left)
{
	return left < PATH_SPAN ? left : PATH_SPAN;
}

/* A step's format-1 placement: p = b c (and q = x y, the second one, or NULL). */
static void v1_place(struct sim_step *st, const uint8_t *p, const uint8_t *q, int fast)
{
	unsigned k = (p[0] & 15u) << 8 | p[1], k2 = q ? (q[0] & 15u) << 8 | q[1] : 0;
	if (fast) {
		unsigned i = 1u + (k & 63u);
		st->at[st->nat++] = (struct sim_at){.kind = AT_INDEX, .index = i};
		if (q)
			st->at[st->nat++] =
			    (struct sim_at){.kind = AT_INDEX, .index = i + (k2 & 63u)};
		return;
	}
	if (!nbounds())
		return;
	find_paths();
	struct path path = path_of(st->op, k >> 10);
	unsigned j = (k & 1023u) % (path.op < OP__COUNT ? reach(path.len) : path.len);
	st->at[st->nat++] = bound_at(path_at(&path, j), v1_occ(p[0] >> 4 & 3u));
	if (!q)
		return;
	/* The second counts on from the first (it can only land after it): offset 0
	 * is the same boundary, a second NMI at the same instant. */
	j += k2 % reach(path.len - j);
	st->at[st->nat++] = bound_at(path_at(&path, j), v1_occ(q[0] >> 4 & 3u));
}

/* Decode a format-1 body; *marker (if given) is the offset of its first index
 * marker that decoded as one, or -1. */
static void decode_v1(const uint8_t *d, size_t n, int fast, struct sim_schedule *s, long *marker)
{
	if (marker)
		*marker = -1;
	size_t i = 0;
	memset(s, 0, sizeof *s);
	s->fast = (unsigned)fast;
	s->ncpus = n ? 1u + d[i++] % 3u : 1u;
	while (i + 1 < n && s->nsteps < FUZZ_MAX_STEPS) {
		uint8_t a = d[i++], b = d[i++];
		struct sim_step *st = step_head(s, a, b);
		if (st->op == OP_NMI || st->op == OP_QUIESCE || st->op == OP_RUN) {
			continue;
		} else if (b == FUZZ_INDEX_MARKER && i < n) {
			if (marker && *marker < 0)
				*marker = (long)i - 1;
			uint8_t x = d[i++];
			i = index_pair(st, x, d, i, n);
		} else if ((b & 0xC0u) && i < n) {
			const uint8_t first[2] = {b, d[i++]};
			int two = (b & 0xC0u) == 0xC0u && i + 1 < n;
			v1_place(st, first, two ? d + i : NULL, fast);
			i += two ? 2 : 0;
		}
	}
}

int fuzz_format1(const uint8_t *d, size_t n)
{
	return n >= FUZZ_MAGIC_LEN && memcmp(d, FUZZ_MAGIC, FUZZ_MAGIC_LEN) == 0;
}

void fuzz_decode(const uint8_t *d, size_t n, int fast, struct sim_schedule *s)
{
	if (fuzz_format1(d, n))
		decode_v1(d + FUZZ_MAGIC_LEN, n - FUZZ_MAGIC_LEN, fast, s, NULL);
	else
		decode_v0(d, n, fast, s);
}

void fuzz_unmark(uint8_t *d, size_t n)
{
	static struct sim_schedule s; /* 10 KiB: not on the stack of every mutation */
	long at;
	if (!fuzz_format1(d, n))
		return;
	/* Everything before the first marker is left as it is, so each pass moves the
	 * first marker on (the bytes after one may read differently once it is gone):
	 * at most one pass per byte. */
	for (;;) {
		/* Fast mode reads the same bytes the same way, without the paths. */
		decode_v1(d + FUZZ_MAGIC_LEN, n - FUZZ_MAGIC_LEN, 1, &s, &at);
		if (at < 0)
			return;
		d[FUZZ_MAGIC_LEN + (size_t)at] = FUZZ_UNMARKED;
	}
}
