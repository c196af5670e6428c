/* SPDX-License-Identifier: MIT */
/*
 * replay_sched.c - workload=replay's schedule from the command line, compact:
 *
 *   replay=<ncpus>:<step>/<step>/...
 *   step = <cpu><op>[<arg>](@<at>)*      op: the letters of enum replay_op (replay.h)
 *   at   = <K>                           before the K-th core instruction of the step
 *        | *                             every boundary, one case each
 *        | a<hex>[:<N>]                  the N-th time the step reaches the core
 *                                        address __start_nmi_core_text + <hex>
 *
 * scripts/replay_hv.py writes it from a scenario file or a fuzz input, so that a
 * malformed one is a bug of that script: the reason is printed, nothing runs.
 */
#include "hv.h"
#include "replay.h"

#define REPLAY_SPEC 1024u

static const char ops[] = "mucnexiboqrfd";

static const char *parse_at(const char **pp, struct replay_at *a)
{
	const char *p = *pp;
	extern const char __start_nmi_core_text[], __stop_nmi_core_text[];
	uint64_t v = 0;
	if (*p == '*') {
		a->kind = AT_EVERY;
		p++;
	} else if (*p == 'a') {
		unsigned digits = 0;
		for (p++;; p++, digits++) {
			unsigned d = *p >= '0' && *p <= '9'   ? (unsigned)(*p - '0')
				     : *p >= 'a' && *p <= 'f' ? (unsigned)(*p - 'a' + 10)
							      : 16u;
			if (d == 16)
				break;
			v = v * 16 + d;
		}
		if (!digits || v >= (uint64_t)(__stop_nmi_core_text - __start_nmi_core_text))
			return "nmi@a<offset>: not an offset into the core's code";
		a->kind = AT_ADDR;
		a->addr = (uintptr_t)__start_nmi_core_text + v;
		a->index = 1;
		if (*p == ':') {
			a->index = 0;
			for (p++; *p >= '0' && *p <= '9'; p++)
				a->index = a->index * 10 + (uint32_t)(*p - '0');
			if (!a->index)
				return "nmi@a<offset>:<N>: N counts from 1";
		}
	} else if (*p >= '0' && *p <= '9') {
		for (; *p >= '0' && *p <= '9' && v < 1000000; p++)
			v = v * 10 + (uint64_t)(*p - '0');
		if (!v || v >= 1000000)
			return "nmi@K: K must be 1..999999";
		a->kind = AT_INDEX;
		a->index = (uint32_t)v;
	} else {
		return "nmi@: expected K, * or a<offset>";
	}
	*pp = p;
	return 0;
}

/* "1:0m/0n/0u@*" -> steps[].  Returns why it is malformed, or NULL. */
static const char *parse(struct replay_sched *s, const char *p)
{
	if (*p < '1' || *p > '0' + REPLAY_MAX_CPUS || p[1] != ':')
		return "replay=<ncpus 1-7>:<steps>";
	s->ncpus = (unsigned)(*p - '0');
	for (p += 2; *p && *p != ' ';) {
		if (s->nsteps == REPLAY_MAX_STEPS)
			return "too many steps";
		struct replay_step *st = &s->step[s->nsteps];
		if (*p < '0' || *p >= '0' + (int)s->ncpus)
			return "a step's CPU is not one of the scenario's";
		st->cpu = (uint8_t)(*p++ - '0');
		unsigned i = 0;
		while (ops[i] && ops[i] != *p)
			i++;
		if (!ops[i] || !*p)
			return "unknown operation letter";
		st->op = *p++;
		for (unsigned v = 0; *p >= '0' && *p <= '9'; p++) {
			v = v * 10 + (unsigned)(*p - '0');
			if (v > 255)
				return "argument too large";
			st->arg = (uint8_t)v;
		}
		while (*p == '@') {
			if (st->nat == REPLAY_MAX_AT)
				return "too many nmi@ in one step";
			p++;
			const char *why = parse_at(&p, &st->at[st->nat]);
			if (why)
				return why;
			if (st->at[st->nat].kind == AT_EVERY) {
				if (s->wild_step >= 0)
					return "nmi@* in more than one place";
				s->wild_step = (int)s->nsteps;
				s->wild_at = st->nat;
			}
			st->nat++;
		}
		s->nsteps++;
		if (*p == '/')
			p++;
		else if (*p && *p != ' ')
			return "expected '/' between steps";
	}
	return s->nsteps ? 0 : "no steps";
}

static const char *spec(void)
{
	static char buf[REPLAY_SPEC];
	const char *w = cmdline_raw();
	for (; *w; w++) {
		const char *k = "replay=";
		unsigned i = 0;
		while (k[i] && w[i] == k[i])
			i++;
		if (!k[i] && (w == cmdline_raw() || w[-1] == ' ')) {
			unsigned n = 0;
			for (w += i; *w && *w != ' ' && n < sizeof buf - 1; w++)
				buf[n++] = *w;
			buf[n] = 0;
			return buf;
		}
	}
	return 0;
}

/* Parse `replay=` into s (zeroed: a static).  Returns why it is malformed, or NULL. */
const char *replay_sched_parse(struct replay_sched *s)
{
	s->wild_step = -1;
	const char *p = spec();
	return p ? parse(s, p) : "no replay=<schedule> on the command line";
}
