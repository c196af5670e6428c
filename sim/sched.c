/* SPDX-License-Identifier: MIT */
/*
 * sched.c - schedules as text: parsing scenario files, printing a schedule back.
 *
 * Scenario format (docs/simulator.md), one step per line, '#' starts a comment:
 *
 *     cpus 2                      number of CPUs (optional, before any step)
 *     mode fast                   nmi@N counts platform calls (default: precise)
 *     cpu0 mask                   an operation on a CPU
 *     cpu0 nmi                    an external NMI arrives at cpu0 now
 *     cpu0 nmi x3                 a burst: three NMIs at once
 *     cpu0 unmask nmi@7           an NMI lands before the 7th core instruction the
 *                                 step executes; nmi@nmi_unmask+0x1c before that
 *                                 address (nmi@nmi_unmask+0x1c:3: its 3rd time);
 *                                 nmi@* at every boundary, one run each
 *     cpu1 quiesce flush          stop-the-world with TLB flush
 *     cpu1 run                    let a spinning CPU run on; run nmi@* places NMIs
 *                                 in the turn it resumes (counted from 1)
 *     cpu0 fault                  the next NMI injection's delivery exits midway
 *     cpu0 detach                 the guest is gone for good
 *
 * A malformed line is rejected with its number and nothing runs.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

static const char *const op_names[OP__COUNT] = {
    [OP_MASK] = "mask",       [OP_UNMASK] = "unmask",   [OP_CRIT] = "crit",   [OP_NMI] = "nmi",
    [OP_ENTER] = "enter",     [OP_EXIT] = "exit",       [OP_GIRET] = "giret", [OP_BLOCK] = "block",
    [OP_UNBLOCK] = "unblock", [OP_QUIESCE] = "quiesce", [OP_RUN] = "run",     [OP_FAULT] = "fault",
    [OP_DETACH] = "detach",
};

const char *sched_op_name(unsigned op)
{
	return op < OP__COUNT ? op_names[op] : "?";
}

static int fail(char *err, size_t len, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(char *err, size_t len, int line, const char *fmt, ...)
{
	char msg[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	snprintf(err, len, "line %d: %s", line, msg);
	return -1;
}

/* "mask unmask crit ...": every operation's name, for the error message. */
static const char *op_list(void)
{
	static char list[256];
	size_t off = 0;
	for (unsigned op = 0; op < OP__COUNT && off < sizeof list; op++)
		off += snprintf(list + off, sizeof list - off, "%s%s", op ? " " : "", op_names[op]);
	return list;
}

static int parse_at(const char *w, struct sim_at *a)
{
	const char *p = w + 4; /* after "nmi@" */
	char *end;
	if (strcmp(p, "*") == 0) {
		a->kind = AT_EVERY;
		return 0;
	}
	if (isdigit((unsigned char)*p)) {
		errno = 0;
		unsigned long v = strtoul(p, &end, 10);
		if (*end || errno || v == 0 || v > SIM_MAX_AT_INDEX)
			return -1;
		a->kind = AT_INDEX;
		a->index = (uint32_t)v;
		return 0;
	}
	/* symbol[+offset][:occurrence] */
	char word[160];
	unsigned long occ = 1;
	const char *colon = strchr(p, ':');
	if (colon) {
		errno = 0;
		occ = strtoul(colon + 1, &end, 10);
		if (*end || errno || occ == 0 || occ > SIM_MAX_AT_INDEX ||
		    (size_t)(colon - p) >= sizeof word)
			return -1;
		memcpy(word, p, (size_t)(colon - p));
		word[colon - p] = 0;
		p = word;
	}
	char name[128];
	const char *plus = strchr(p, '+');
	size_t n = plus ? (size_t)(plus - p) : strlen(p);
	if (n == 0 || n >= sizeof name)
		return -1;
	memcpy(name, p, n);
	name[n] = 0;
	unsigned long off = 0;
	if (plus) {
		errno = 0;
		off = strtoul(plus + 1, &end, 0);
		if (*end || errno)
			return -1;
	}
	uintptr_t base = sym_lookup(name);
	if (!base)
		return -2;
	a->kind = AT_ADDR;
	a->addr = base + off;
	a->index = (uint32_t)occ;
	return 0;
}

int sched_parse(const char *text, struct sim_schedule *s, char *err, size_t errlen)
{
	memset(s, 0, sizeof *s);
	unsigned declared = 0, maxcpu = 0;
	int lineno = 0;
	const char *p = text;
	while (*p) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		char line[512];
		lineno++;
		if (len >= sizeof line)
			return fail(err, errlen, lineno, "line too long");
		memcpy(line, p, len);
		line[len] = 0;
		p += len + (nl ? 1 : 0);
		char *hash = strchr(line, '#');
		if (hash)
			*hash = 0;

		char *words[12];
		unsigned nw = 0;
		char *save = NULL;
		for (char *w = strtok_r(line, " \t\r", &save); w;
		     w = strtok_r(NULL, " \t\r", &save)) {
			if (nw == 12)
				return fail(err, errlen, lineno, "too many words");
			words[nw++] = w;
		}
		if (nw == 0)
			continue;

		if (strcmp(words[0], "cpus") == 0) {
			char *end;
			unsigned long n = nw == 2 ? strtoul(words[1], &end, 10) : 0;
			if (nw != 2 || *end || n < 1 || n > SIM_MAX_CPUS)
				return fail(err, errlen, lineno, "'cpus N' wants N from 1 to %d",
					    SIM_MAX_CPUS);
			if (s->nsteps)
				return fail(err, errlen, lineno,
					    "'cpus' must come before the first step");
			declared = (unsigned)n;
			continue;
		}
		if (strcmp(words[0], "mode") == 0) {
			if (nw != 2 || (strcmp(words[1], "fast") && strcmp(words[1], "precise")))
				return fail(err, errlen, lineno,
					    "'mode' wants 'fast' or 'precise'");
			s->fast = strcmp(words[1], "fast") == 0;
			continue;
		}
		if (strncmp(words[0], "cpu", 3) != 0 || !isdigit((unsigned char)words[0][3]) ||
		    words[0][4] != 0)
			return fail(err, errlen, lineno, "expected 'cpuN OP' or 'cpus N', got '%s'",
				    words[0]);
		unsigned cpu = (unsigned)(words[0][3] - '0');
		if (declared && cpu >= declared)
			return fail(err, errlen, lineno, "%s is beyond the 'cpus' line", words[0]);
		if (cpu >= SIM_MAX_CPUS)
			return fail(err, errlen, lineno, "%s: at most %d CPUs", words[0],
				    SIM_MAX_CPUS);
		if (nw < 2)
			return fail(err, errlen, lineno, "%s: missing operation", words[0]);
		if (s->nsteps == SIM_MAX_STEPS)
			return fail(err, errlen, lineno, "more than %d steps", SIM_MAX_STEPS);

		struct sim_step *st = &s->step[s->nsteps];
		memset(st, 0, sizeof *st);
		st->cpu = (uint8_t)cpu;
		st->line = lineno;
		unsigned op;
		for (op = 0; op < OP__COUNT; op++)
			if (strcmp(words[1], op_names[op]) == 0)
				break;
		if (op == OP__COUNT)
			return fail(err, errlen, lineno, "unknown operation '%s' (%s)", words[1],
				    op_list());
		st->op = (uint8_t)op;
		for (unsigned i = 2; i < nw; i++) {
			const char *w = words[i];
			if (op == OP_NMI && w[0] == 'x' && i == 2) {
				char *end;
				unsigned long n = strtoul(w + 1, &end, 10);
				if (*end || n < 1 || n > SIM_MAX_BURST)
					return fail(err, errlen, lineno,
						    "burst '%s': want x1 to x%d", w, SIM_MAX_BURST);
				st->arg = (uint8_t)n;
			} else if (op == OP_QUIESCE && strcmp(w, "flush") == 0 && i == 2) {
				st->arg = 1;
			} else if (strncmp(w, "nmi@", 4) == 0 && op != OP_NMI) {
				if (st->nat == SIM_MAX_AT)
					return fail(err, errlen, lineno,
						    "at most %d nmi@ arrivals per step",
						    SIM_MAX_AT);
				int rc = parse_at(w, &st->at[st->nat]);
				if (rc == -2)
					return fail(err, errlen, lineno, "'%s': no such function",
						    w);
				if (rc)
					return fail(
					    err, errlen, lineno,
					    "'%s': want nmi@N, nmi@function+offset[:N] or nmi@*",
					    w);
				st->nat++;
			} else {
				return fail(err, errlen, lineno, "unexpected '%s'", w);
			}
		}
		if (cpu > maxcpu)
			maxcpu = cpu;
		s->nsteps++;
	}
	s->ncpus = declared ? declared : maxcpu + 1;
	return 0;
}

int sched_parse_file(const char *path, struct sim_schedule *s, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	static char buf[1 << 17];
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	int toolong = !feof(f);
	fclose(f);
	if (toolong) {
		snprintf(err, errlen, "%s: larger than %zu bytes", path, sizeof buf - 1);
		return -1;
	}
	buf[n] = 0;
	if (memchr(buf, 0, n)) {
		snprintf(err, errlen,
			 "%s: binary data, not a scenario (a fuzz input? use make "
			 "replay INPUT=%s)",
			 path, path);
		return -1;
	}
	char e[256];
	if (sched_parse(buf, s, e, sizeof e) != 0) {
		snprintf(err, errlen, "%s: %s", path, e);
		return -1;
	}
	return 0;
}

void sched_print(FILE *f, const struct sim_schedule *s)
{
	fprintf(f, "cpus %u\n", s->ncpus);
	if (s->fast)
		fprintf(f, "mode fast\n");
	for (unsigned i = 0; i < s->nsteps; i++) {
		const struct sim_step *st = &s->step[i];
		fprintf(f, "cpu%u %s", st->cpu, sched_op_name(st->op));
		if (st->op == OP_NMI && st->arg > 1)
			fprintf(f, " x%u", st->arg);
		if (st->op == OP_QUIESCE && st->arg)
			fprintf(f, " flush");
		for (unsigned k = 0; k < st->nat; k++) {
			const struct sim_at *a = &st->at[k];
			if (a->kind == AT_INDEX)
				fprintf(f, " nmi@%u", a->index);
			else if (a->kind == AT_ADDR && a->index > 1)
				fprintf(f, " nmi@%s:%u", sym_describe(a->addr), a->index);
			else if (a->kind == AT_ADDR)
				fprintf(f, " nmi@%s", sym_describe(a->addr));
			else
				fprintf(f, " nmi@*");
		}
		fprintf(f, "\n");
	}
}
