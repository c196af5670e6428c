/* SPDX-License-Identifier: MIT */
/*
 * timeline.c - what happened in a deterministic run, as text (one lane per CPU)
 * and as SVG.  Recording is off unless a run asks for it: the fuzzer runs without
 * it and replays a finding with it.  Only one CPU thread runs at a time in a
 * deterministic run, so the recorder needs no lock.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "machine.h"

#define TL_MAX_ROWS 4096
#define TL_TEXT     256

enum row_kind { ROW_STEP, ROW_EVENT, ROW_STATE };

struct cpu_state {
	uint8_t masked, blocked, window, guest, mode;
	uint32_t visited, pending;
};

struct row {
	uint8_t kind;
	uint8_t cpu;
	unsigned step;
	uintptr_t rip;
	char text[TL_TEXT];
	struct cpu_state st[SIM_MAX_CPUS];
};

static struct row rows[TL_MAX_ROWS];
static unsigned nrows, overflow;
static int enabled;

int tl_enabled(void)
{
	return enabled;
}
void tl_enable(int on)
{
	enabled = on;
}
void tl_reset(void)
{
	nrows = overflow = 0;
}

static struct row *add(uint8_t kind, unsigned cpu)
{
	if (nrows >= TL_MAX_ROWS) {
		overflow++;
		return NULL;
	}
	struct row *r = &rows[nrows++];
	memset(r, 0, sizeof *r);
	r->kind = kind;
	r->cpu = (uint8_t)cpu;
	r->step = M.cur_step + 1;
	return r;
}

static void vadd(uint8_t kind, unsigned cpu, unsigned step, uintptr_t rip, const char *fmt,
		 va_list ap)
{
	struct row *r = add(kind, cpu);
	if (!r)
		return;
	if (kind == ROW_STEP)
		r->step = step;
	r->rip = rip;
	vsnprintf(r->text, sizeof r->text, fmt, ap);
}

void tl_step(unsigned step, unsigned cpu, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vadd(ROW_STEP, cpu, step, 0, fmt, ap);
	va_end(ap);
}

void tl_event(unsigned cpu, uintptr_t rip, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vadd(ROW_EVENT, cpu, 0, rip, fmt, ap);
	va_end(ap);
}

void tl_snapshot(void)
{
	if (!enabled)
		return;
	struct row *r = add(ROW_STATE, 0);
	if (!r)
		return;
	for (unsigned i = 0; i < M.ncpus; i++) {
		struct sim_cpu *c = &M.cpu[i];
		r->st[i] = (struct cpu_state){
		    .masked = c->core.masked != 0,
		    .visited = c->core.visited,
		    .pending = c->core.guest_pending,
		    .blocked = (c->vmx.vmcs.guest_intr & GUEST_INTR_BLOCK_NMI) != 0,
		    .window = (c->vmx.vmcs.proc & PROC_NMI_WINDOW_EXITING) != 0,
		    .guest = c->vmx.in_guest != 0,
		    .mode = c->busy           ? 's'
			    : c->halted       ? 'X'
			    : c->vmx.in_guest ? 'g'
					      : 'h',
		};
	}
}

/* A step of the schedule as its row: "unmask nmi@9", "run (resumes its spin)". */
void tl_schedule_step(unsigned idx, const struct sim_step *s, int resume)
{
	if (!enabled)
		return;
	char at[160] = "";
	size_t off = 0;
	for (unsigned i = 0; i < s->nat; i++) {
		const struct sim_at *a = &s->at[i];
		if (a->kind == AT_INDEX)
			off += snprintf(at + off, sizeof at - off, " nmi@%u", a->index);
		else if (a->kind == AT_ADDR && a->index > 1)
			off += snprintf(at + off, sizeof at - off, " nmi@%s:%u",
					sym_describe(a->addr), a->index);
		else if (a->kind == AT_ADDR)
			off +=
			    snprintf(at + off, sizeof at - off, " nmi@%s", sym_describe(a->addr));
		if (off >= sizeof at)
			break;
	}
	if (resume)
		tl_step(idx + 1, s->cpu, "run (resumes its spin)");
	else if (s->op == OP_NMI && s->arg > 1)
		tl_step(idx + 1, s->cpu, "nmi x%u (external)", s->arg);
	else if (s->op == OP_NMI)
		tl_step(idx + 1, s->cpu, "nmi (external)");
	else if (s->op == OP_QUIESCE && s->arg)
		tl_step(idx + 1, s->cpu, "quiesce flush%s", at);
	else
		tl_step(idx + 1, s->cpu, "%s%s", sched_op_name(s->op), at);
}

/* "deferred (visited 0->1), handled directly, ..." from two copies of the state. */
void tl_describe_delta(const struct nmi_cpu *a, const struct nmi_cpu *b, char *buf, size_t len)
{
	size_t off = 0;
#define SAY(...)                                                                                   \
	do {                                                                                       \
		if (off < len)                                                                     \
			off += snprintf(buf + off, len - off, "%s", off ? ", " : "");              \
		if (off < len)                                                                     \
			off += snprintf(buf + off, len - off, __VA_ARGS__);                        \
	} while (0)
	if (b->deferred != a->deferred)
		SAY("masked, so deferred (visited %u->%u)", a->visited, b->visited);
	if (b->handled_direct != a->handled_direct)
		SAY("handled directly");
	if (b->drained != a->drained)
		SAY("drained %llu inside the handler (visited %u->%u)",
		    (unsigned long long)(b->drained - a->drained), a->visited, b->visited);
	if (b->quiesce_parks != a->quiesce_parks)
		SAY("parked for stop-the-world round %u", b->quiesce_seen);
	if (b->guest_accepted != a->guest_accepted)
		SAY("guest NMI pending %u->%u", a->guest_pending, b->guest_pending);
	if (b->guest_coalesced != a->guest_coalesced)
		SAY("guest NMI coalesced (cap)");
	if (b->host_consumed != a->host_consumed)
		SAY("no guest: consumed");
	if (off == 0)
		snprintf(buf, len, "no change");
#undef SAY
}

static const char *state_text(const struct cpu_state *s)
{
	static char b[64];
	snprintf(b, sizeof b, "%c mask=%u visited=%u pend=%u vblk=%u win=%u", s->mode, s->masked,
		 s->visited, s->pending, s->blocked, s->window);
	return b;
}

void sim_timeline_print(FILE *f)
{
	enum { LANE = 62 };
	fprintf(f,
		"Timeline (variant %s, %u CPU%s). State after each step: h host, g guest, "
		"s spinning, X halted;\n  mask = software NMI mask, visited = deferred NMIs, "
		"pend = guest NMIs pending,\n  vblk = guest virtual-NMI blocked, win = "
		"NMI-window exiting.\n\n",
		nmi_variant_name, M.ncpus, M.ncpus == 1 ? "" : "s");
	fprintf(f, "step ");
	for (unsigned i = 0; i < M.ncpus; i++) {
		char name[16];
		snprintf(name, sizeof name, "cpu%u", i);
		fprintf(f, "| %-*s", LANE - 2, name);
	}
	fprintf(f, "\n");
	for (unsigned k = 0; k < nrows; k++) {
		struct row *r = &rows[k];
		char text[2 * TL_TEXT + 64];
		if (r->kind == ROW_STATE) {
			fprintf(f, "     ");
			for (unsigned i = 0; i < M.ncpus; i++)
				fprintf(f, "| %-*s", LANE - 2, state_text(&r->st[i]));
			fprintf(f, "\n");
			continue;
		}
		if (r->kind == ROW_STEP)
			snprintf(text, sizeof text, "%s", r->text);
		else if (sim_in_core(r->rip))
			snprintf(text, sizeof text, "  %s\n      at %s (%s)", r->text,
				 sym_describe(r->rip), sym_source_line(r->rip));
		else
			snprintf(text, sizeof text, "  %s", r->text);
		/* One line per text line, in this CPU's lane. */
		char *save = NULL;
		int first = 1;
		for (char *line = strtok_r(text, "\n", &save); line;
		     line = strtok_r(NULL, "\n", &save)) {
			if (r->kind == ROW_STEP && first && r->step)
				fprintf(f, "%4u ", r->step);
			else
				fprintf(f, "     ");
			for (unsigned i = 0; i < r->cpu; i++)
				fprintf(f, "| %-*s", LANE - 2, "");
			fprintf(f, "| %s\n", line);
			first = 0;
		}
	}
	if (overflow)
		fprintf(f, "(%u more events not recorded)\n", overflow);
	if (M.failed)
		fprintf(f, "\nVIOLATION: %s\n", M.what);
}

static void svg_text(FILE *f, const char *s)
{
	for (; *s; s++) {
		switch (*s) {
		case '<': fputs("&lt;", f); break;
		case '>': fputs("&gt;", f); break;
		case '&': fputs("&amp;", f); break;
		default: fputc(*s, f);
		}
	}
}

int sim_timeline_svg(const char *path)
{
	enum { ROW_H = 18, LEFT = 50, TOP = 60, CHAR_W = 7 };
	FILE *f = fopen(path, "w");
	if (!f)
		return -1;
	/* Lanes as wide as their longest line (monospace, 12 px: about 7 px a char). */
	unsigned lane_w = 430;
	for (unsigned k = 0; k < nrows; k++) {
		size_t n = strlen(rows[k].text) + 4;
		if (rows[k].kind == ROW_EVENT && sim_in_core(rows[k].rip))
			n = n > 60 ? n : 60;
		if (n * CHAR_W + 30 > lane_w)
			lane_w = (unsigned)(n * CHAR_W + 30);
	}
	if (M.ncpus == 1 && strlen(M.what) * CHAR_W + 40 > lane_w)
		lane_w = (unsigned)(strlen(M.what) * CHAR_W + 40);
	const unsigned LANE_W = lane_w;
	unsigned lines = 0;
	for (unsigned k = 0; k < nrows; k++)
		lines += rows[k].kind == ROW_EVENT && sim_in_core(rows[k].rip) ? 2 : 1;
	unsigned width = LEFT + M.ncpus * LANE_W + 20, height = TOP + lines * ROW_H + 60;
	fprintf(f,
		"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%u\" height=\"%u\" "
		"font-family=\"monospace\" font-size=\"12\">\n",
		width, height);
	fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
	fprintf(f,
		"<text x=\"%d\" y=\"22\" font-size=\"15\" font-weight=\"bold\">NMI timeline: "
		"variant %s%s</text>\n",
		LEFT, nmi_variant_name, M.failed ? " (VIOLATION)" : "");
	for (unsigned i = 0; i < M.ncpus; i++) {
		unsigned x = LEFT + i * LANE_W;
		fprintf(f, "<rect x=\"%u\" y=\"%d\" width=\"%d\" height=\"%u\" fill=\"%s\"/>\n", x,
			TOP - 20, LANE_W - 6, lines * ROW_H + 24, i % 2 ? "#f4f6fb" : "#eef5ee");
		fprintf(f, "<text x=\"%u\" y=\"%d\" font-weight=\"bold\">cpu%u</text>\n", x + 6,
			TOP - 6, i);
	}
	unsigned y = TOP + ROW_H;
	for (unsigned k = 0; k < nrows; k++) {
		struct row *r = &rows[k];
		if (r->kind == ROW_STATE) {
			for (unsigned i = 0; i < M.ncpus; i++) {
				fprintf(f,
					"<text x=\"%u\" y=\"%u\" fill=\"#777\" font-size=\"10\">",
					LEFT + i * LANE_W + 16, y - 4);
				svg_text(f, state_text(&r->st[i]));
				fprintf(f, "</text>\n");
			}
			fprintf(f,
				"<line x1=\"%d\" x2=\"%u\" y1=\"%u\" y2=\"%u\" stroke=\"#ccc\"/>\n",
				LEFT, width - 20, y + 2, y + 2);
			y += ROW_H;
			continue;
		}
		unsigned x = LEFT + r->cpu * LANE_W + 6;
		int nmi = strstr(r->text, "NMI") != NULL;
		int bad = strncmp(r->text, "VIOLATION", 9) == 0;
		const char *color = bad                   ? "#c00000"
				    : r->kind == ROW_STEP ? "#000"
				    : nmi                 ? "#b35900"
							  : "#1f4e9a";
		if (r->kind == ROW_STEP && r->step)
			fprintf(f, "<text x=\"8\" y=\"%u\" fill=\"#555\">%u</text>\n", y, r->step);
		if (nmi && r->kind == ROW_EVENT && sim_in_core(r->rip))
			fprintf(f, "<circle cx=\"%u\" cy=\"%u\" r=\"4\" fill=\"#d40000\"/>\n", x,
				y - 4);
		fprintf(f, "<text x=\"%u\" y=\"%u\" fill=\"%s\"%s>",
			x + (r->kind == ROW_EVENT ? 10 : 0), y, color,
			r->kind == ROW_STEP || bad ? " font-weight=\"bold\"" : "");
		svg_text(f, r->text);
		fprintf(f, "</text>\n");
		if (r->kind == ROW_EVENT && sim_in_core(r->rip)) {
			y += ROW_H;
			char at[256];
			snprintf(at, sizeof at, "at %s (%s)", sym_describe(r->rip),
				 sym_source_line(r->rip));
			fprintf(f, "<text x=\"%u\" y=\"%u\" fill=\"#b35900\">", x + 22, y);
			svg_text(f, at);
			fprintf(f, "</text>\n");
		}
		y += ROW_H;
	}
	if (M.failed) {
		fprintf(f, "<text x=\"%d\" y=\"%u\" fill=\"#c00000\" font-weight=\"bold\">", LEFT,
			y + 16);
		svg_text(f, M.what);
		fprintf(f, "</text>\n");
	}
	fprintf(f, "</svg>\n");
	return fclose(f);
}
