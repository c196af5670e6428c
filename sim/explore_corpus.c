/* SPDX-License-Identifier: MIT */
/*
 * explore_corpus.c - make explore beyond the canonical scenarios: every input of the
 * kept corpus (fuzz inputs decoded by fuzz/decode.c, scenarios parsed) becomes a
 * schedule whose NMIs are nmi@* wildcards, is minimized, and is explored once per
 * distinct minimized schedule, within a time budget (docs/fuzzing.md, "make explore").
 *
 * Minimizing is judged on the base run: the input's schedule with its NMIs removed,
 * run once.  In order:
 *  - a step that resumed its CPU there (the CPU was spinning) becomes `run`: that is
 *    what any operation on a spinning CPU does;
 *  - a `run` with nothing spinning there is dropped;
 *  - a step ignored there (not in its CPU's mode: `giret` in host mode, `mask` while
 *    masked) is dropped when no `quiesce` comes before it: until a stop-the-world
 *    has begun nothing spins, and the mode a step meets is the schedule's doing (the
 *    mask, guest mode, the attached guest are changed by operations, not by NMIs);
 *    after one, another schedule may find the CPU spinning there, so it stays;
 *  - of a row of identical steps (CPU, operation, argument) the first REPEAT_MAX stay;
 *  - every step left but `nmi` gets one nmi@*: the explorer places up to NMIS NMIs
 *    among them, at every core boundary each executes (a `run`: in the spin turn it
 *    resumes).  Everything else stays as it is, trailing `nmi` steps included (their
 *    NMIs are taken, the end of the schedule releases what they left).
 * Two inputs whose minimized schedules print the same are explored once.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "decode.h"
#include "explore_corpus.h"
#include "nmi_core.h"

#define REPEAT_MAX 3

struct item {
	char *name; /* the first input that gave it */
	char *text; /* the minimized schedule, printed: the key of deduplication */
	struct sim_schedule *s;
};

static struct item *items;
static unsigned nitems, items_cap;
static double deadline;
static int out_of_time;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int stop(void)
{
	if (!out_of_time && deadline > 0 && now() > deadline)
		out_of_time = 1;
	return out_of_time;
}

/* The input at path as a schedule: 0, or 1 when it is no input (another file). */
static int load(const char *path, struct sim_schedule *s)
{
	size_t len = strlen(path);
	if (len > 4 && !strcmp(path + len - 4, ".nmi")) {
		char err[512];
		if (sched_parse_file(path, s, err, sizeof err) == 0)
			return 0;
		fprintf(stderr, "nmisim: %s\n", err);
		return 1;
	}
	FILE *f = fopen(path, "rb");
	if (!f)
		return 1;
	static uint8_t buf[1 << 16];
	size_t n = fread(buf, 1, sizeof buf, f);
	fclose(f);
	fuzz_decode(buf, n, 0, s);
	return 0;
}

static int same_step(const struct sim_step *a, const struct sim_step *b)
{
	return a->cpu == b->cpu && a->op == b->op && a->arg == b->arg;
}

/* s, minimized as the comment at the top says, into *out. */
static void minimize(const struct sim_schedule *s, struct sim_schedule *out)
{
	static struct sim_schedule base;
	struct sim_result r;
	base = *s;
	base.fast = 0;
	for (unsigned i = 0; i < base.nsteps; i++)
		base.step[i].nat = 0;
	sim_run(&base, 0, &r);
	memset(out, 0, sizeof *out);
	out->ncpus = base.ncpus;
	int quiesced = 0;
	for (unsigned i = 0; i < base.nsteps; i++) {
		struct sim_step st = base.step[i];
		unsigned fl = r.step_flags[i];
		st.line = 0;
		if (fl & SIM_STEP_RESUMED)
			st.op = OP_RUN, st.arg = 0;
		else if ((fl & SIM_STEP_IGNORED) && (st.op == OP_RUN || !quiesced))
			continue;
		quiesced |= st.op == OP_QUIESCE;
		unsigned same = 0;
		while (same < out->nsteps && same_step(&out->step[out->nsteps - 1 - same], &st))
			same++;
		if (same >= REPEAT_MAX)
			continue;
		if (st.op != OP_NMI)
			st.at[st.nat++] = (struct sim_at){.kind = AT_EVERY};
		out->step[out->nsteps++] = st;
	}
}

/* Add the minimized schedule of the input at path, unless one prints the same. */
static int add(const char *path, struct corpus_counts *k)
{
	static struct sim_schedule s, m;
	if (load(path, &s))
		return 0;
	k->inputs++;
	minimize(&s, &m);
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	if (!f)
		return -1;
	sched_print(f, &m);
	fclose(f);
	for (unsigned i = 0; i < nitems; i++)
		if (!strcmp(items[i].text, text)) {
			free(text);
			return 0;
		}
	if (nitems == items_cap) {
		items_cap = items_cap ? 2 * items_cap : 256;
		items = realloc(items, items_cap * sizeof *items);
	}
	struct sim_schedule *copy = malloc(sizeof *copy);
	if (!items || !copy)
		return -1;
	*copy = m;
	items[nitems++] = (struct item){strdup(path), text, copy};
	return 0;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every input under path (a file, or a directory read in name order, recursively). */
static int walk(const char *path, struct corpus_counts *k)
{
	struct stat sb;
	if (stat(path, &sb) != 0)
		return 0; /* not there (no grown corpus yet): nothing to take */
	if (!S_ISDIR(sb.st_mode))
		return add(path, k);
	DIR *d = opendir(path);
	if (!d)
		return 0;
	char **names = NULL;
	size_t n = 0, cap = 0;
	for (struct dirent *e; (e = readdir(d));) {
		if (e->d_name[0] == '.')
			continue;
		size_t l = strlen(e->d_name);
		/* A finding's timeline and picture sit beside its input. */
		if (l > 4 &&
		    (!strcmp(e->d_name + l - 4, ".txt") || !strcmp(e->d_name + l - 4, ".svg")))
			continue;
		if (n == cap)
			names = realloc(names, (cap = cap ? 2 * cap : 64) * sizeof *names);
		if (!names || asprintf(&names[n], "%s/%s", path, e->d_name) < 0)
			return -1;
		n++;
	}
	closedir(d);
	qsort(names, n, sizeof *names, by_name);
	int rc = 0;
	for (size_t i = 0; i < n; i++) {
		if (!rc)
			rc = walk(names[i], k);
		free(names[i]);
	}
	free(names);
	return rc;
}

static void report_failure(const struct item *it, struct sim_schedule *failing,
			   const struct sim_result *r0, unsigned long nth)
{
	struct sim_result r;
	sim_run(failing, r0->flags | SIM_TIMELINE, &r);
	printf("FAIL %s [%s]: %s\n", it->name, nmi_variant_name, r.what);
	printf("  schedule %lu of its minimized schedule fails; the rest of it is not explored:\n"
	       "\n",
	       nth);
	sched_print(stdout, failing);
	printf("\n");
	sim_timeline_print(stdout);
}

int explore_corpus(char *const *paths, unsigned npaths, unsigned nmis, double until, int quiet,
		   struct corpus_counts *k)
{
	memset(k, 0, sizeof *k);
	for (unsigned i = 0; i < npaths; i++)
		if (walk(paths[i], k) != 0)
			return 2;
	k->distinct = nitems;
	deadline = until;
	sched_explore_stop = stop;
	int worst = 0;
	double t0 = now();
	for (unsigned i = 0; i < nitems && !stop(); i++) {
		struct item *it = &items[i];
		struct sim_schedule failing = *it->s;
		struct sim_result r;
		unsigned long failures = 0;
		unsigned long runs = sched_explore(it->s, nmis, 0, &failures, &failing, &r);
		unsigned long pruned = sched_explore_pruned();
		k->runs += runs;
		k->pruned += pruned;
		if (failures) {
			k->failing++;
			report_failure(it, &failing, &r, runs + pruned);
			worst = 1;
		} else if (out_of_time) {
			k->partial = 1;
			break;
		} else if (!quiet) {
			printf("PASS %s [%s]: %lu schedules (%lu run, %lu pruned)\n", it->name,
			       nmi_variant_name, runs + pruned, runs, pruned);
		}
		k->explored++;
	}
	sched_explore_stop = NULL;
	k->seconds = now() - t0;
	return worst;
}
