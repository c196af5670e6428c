/* SPDX-License-Identifier: MIT */
/*
 * nmisim - run nmi_core.c in userspace.
 *
 *   nmisim run FILE...        replay scenario files (exploring nmi@* wildcards until
 *                             a schedule fails, or every placement with --all);
 *                             --corpus PATH explores the inputs there too, within
 *                             --seconds (sim/explore_corpus.c)
 *   nmisim stress [options]   free-running threads + NMI-source threads
 *   nmisim info               the variant and the core's code range
 *
 * Exit status: 0 every run passed, 1 a violation was found, 2 bad usage or input.
 */
#define _GNU_SOURCE
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "explore_corpus.h"
#include "nmi_core.h"
#include "sim.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: nmisim run [--timeline] [--svg FILE] [--quiet] [--nmis K] [--all] "
		   "[--seconds S] [--corpus PATH]... [--corpus-nmis K] [SCENARIO...]\n"
		   "       nmisim stress [--cpus N] [--sources M] [--seconds T] [--nmis K] [--seed "
		   "S] [--quiet]\n"
		   "       nmisim info\n");
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmd_run(int argc, char **argv)
{
	int timeline = 0, quiet = 0, all = 0;
	unsigned nmis = 0; /* 0: each nmi@* is one arrival */
	const char *svg = NULL;
	double seconds = 0, t_start = now();
	char **corpus = calloc((size_t)argc, sizeof *corpus);
	unsigned ncorpus = 0, corpus_nmis = 0; /* 0: --nmis */
	static const struct option opts[] = {{"timeline", no_argument, 0, 't'},
					     {"svg", required_argument, 0, 's'},
					     {"quiet", no_argument, 0, 'q'},
					     {"nmis", required_argument, 0, 'n'},
					     {"all", no_argument, 0, 'a'},
					     {"seconds", required_argument, 0, 'S'},
					     {"corpus", required_argument, 0, 'C'},
					     {"corpus-nmis", required_argument, 0, 'K'},
					     {0, 0, 0, 0}};
	int o;
	if (!corpus)
		return 2;
	while ((o = getopt_long(argc, argv, "ts:qn:a", opts, NULL)) != -1) {
		switch (o) {
		case 'S': seconds = atof(optarg); break;
		case 'C': corpus[ncorpus++] = optarg; break;
		case 'K': corpus_nmis = (unsigned)atoi(optarg); break;
		case 'n':
			nmis = (unsigned)atoi(optarg);
			if (nmis < 1 || nmis > SIM_MAX_AT) {
				fprintf(stderr, "nmisim: --nmis wants 1 to %d\n", SIM_MAX_AT);
				return 2;
			}
			break;
		case 't': timeline = 1; break;
		case 's': svg = optarg; break;
		case 'q': quiet = 1; break;
		case 'a': all = 1; break;
		default: usage(stderr); return 2;
		}
	}
	if (optind >= argc && !ncorpus) {
		usage(stderr);
		return 2;
	}
	/* Parse everything first: a malformed file means nothing runs. */
	int nfiles = argc - optind;
	struct sim_schedule *s = calloc((size_t)nfiles + 1, sizeof *s);
	if (!s)
		return 2;
	sym_load();
	for (int i = 0; i < nfiles; i++) {
		char err[512];
		if (sched_parse_file(argv[optind + i], &s[i], err, sizeof err) != 0) {
			fprintf(stderr, "nmisim: %s\n", err);
			return 2;
		}
	}
	int worst = 0;
	unsigned long total_runs = 0, total_failures = 0, failing_files = 0, total_pruned = 0;
	double t_all = now();
	for (int i = 0; i < nfiles; i++) {
		const char *name = argv[optind + i];
		struct sim_result r;
		struct sim_schedule failing = s[i];
		double t0 = now();
		unsigned long runs = 1, failures = 0, pruned = 0;
		if (sched_has_wildcard(&s[i])) {
			runs = sched_explore(&s[i], nmis, all, &failures, &failing, &r);
			pruned = sched_explore_pruned();
		} else {
			sim_run(&s[i], 0, &r);
			failures = r.failed;
		}
		double el = now() - t0;
		/* Schedules covered: run, or pruned as the twin of one run (explore.c). */
		char how[96] = "";
		if (pruned)
			snprintf(how, sizeof how, " (%lu run, %lu pruned)", runs, pruned);
		runs += pruned;
		total_runs += runs;
		total_pruned += pruned;
		total_failures += failures;
		failing_files += failures != 0;
		if (failures) {
			/* Replay the (first) failing schedule with the timeline on, as it
			 * ran (stepped throughout when it was counting instructions). */
			sim_run(&failing, r.flags | SIM_TIMELINE, &r);
			printf("FAIL %s [%s]: %s\n", name, nmi_variant_name, r.what);
			if (runs > 1 && all)
				printf("  %lu of %lu schedules fail%s; the first one:\n", failures,
				       runs, how);
			else if (runs > 1)
				printf("  schedule %lu fails (%.3f s); the rest of nmi@* is not "
				       "explored:\n",
				       runs, el);
			if (!quiet) {
				printf("\n");
				sched_print(stdout, &failing);
				printf("\n");
				sim_timeline_print(stdout);
			}
			if (svg && sim_timeline_svg(svg) == 0)
				printf("timeline SVG: %s\n", svg);
			worst = 1;
		} else {
			printf("PASS %s [%s]: %lu schedule%s, %.3f s%s\n", name, nmi_variant_name,
			       runs, runs == 1 ? "" : "s", el, how);
			if (timeline || svg) {
				sim_run(&failing, SIM_TIMELINE, &r);
				if (timeline)
					sim_timeline_print(stdout);
				if (svg && sim_timeline_svg(svg) == 0)
					printf("timeline SVG: %s\n", svg);
			}
		}
	}
	if (nfiles > 1)
		printf(
		    "%lu schedules in %d scenarios [%s]: %lu failing (in %lu scenarios), %.3f s; "
		    "%lu run, %lu pruned\n",
		    total_runs, nfiles, nmi_variant_name, total_failures, failing_files,
		    now() - t_all, total_runs - total_pruned, total_pruned);
	if (ncorpus) {
		unsigned k_max = corpus_nmis ? corpus_nmis : nmis ? nmis : 1;
		struct corpus_counts k;
		int rc = explore_corpus(corpus, ncorpus, k_max > SIM_MAX_AT ? SIM_MAX_AT : k_max,
					seconds > 0 ? t_start + seconds : 0, quiet, &k);
		if (rc > worst)
			worst = rc;
		printf("corpus [%s]: %lu inputs, %lu distinct minimized schedules; %lu explored "
		       "in %.3f s: %lu schedules, %lu failing; %lu run, %lu pruned\n",
		       nmi_variant_name, k.inputs, k.distinct, k.explored, k.seconds,
		       k.runs + k.pruned, k.failing, k.runs, k.pruned);
		if (k.explored < k.distinct)
			printf("corpus: the budget of %g s ran out: %lu of %lu schedules left%s\n",
			       seconds, k.distinct - k.explored, k.distinct,
			       k.partial ? " (the first of them explored in part)" : "");
	}
	if (explore_check_report(stdout))
		worst = 1;
	free(s);
	free(corpus);
	return worst;
}

static int cmd_stress(int argc, char **argv)
{
	struct stress_config cfg = {.cpus = 2, .sources = 2, .seconds = 5, .nmis = 0, .seed = 1};
	static const struct option opts[] = {{"cpus", required_argument, 0, 'c'},
					     {"sources", required_argument, 0, 'm'},
					     {"seconds", required_argument, 0, 't'},
					     {"nmis", required_argument, 0, 'k'},
					     {"seed", required_argument, 0, 's'},
					     {"quiet", no_argument, 0, 'q'},
					     {0, 0, 0, 0}};
	int o, seconds_given = 0;
	while ((o = getopt_long(argc, argv, "c:m:t:k:s:q", opts, NULL)) != -1) {
		seconds_given |= o == 't';
		char *end = NULL;
		switch (o) {
		case 'c': cfg.cpus = (unsigned)strtoul(optarg, &end, 10); break;
		case 'm': cfg.sources = (unsigned)strtoul(optarg, &end, 10); break;
		case 't': cfg.seconds = strtod(optarg, &end); break;
		case 'k': cfg.nmis = strtoull(optarg, &end, 10); break;
		case 's': cfg.seed = (unsigned)strtoul(optarg, &end, 10); break;
		case 'q': cfg.quiet = 1; break;
		default: usage(stderr); return 2;
		}
		if (end && *end) {
			fprintf(stderr, "nmisim stress: bad number '%s'\n", optarg);
			return 2;
		}
	}
	if (cfg.nmis && !seconds_given)
		cfg.seconds = 300; /* a safety net, not a goal */
	printf("stress [%s]: %u CPU threads, %u NMI sources, ", nmi_variant_name, cfg.cpus,
	       cfg.sources);
	if (cfg.nmis)
		printf("until %llu NMIs delivered", (unsigned long long)cfg.nmis);
	if (cfg.nmis && cfg.seconds > 0)
		printf(" or ");
	if (cfg.seconds > 0)
		printf("%.1f s", cfg.seconds);
	printf("\n");
	fflush(stdout);
	struct stress_totals t;
	if (sim_stress(&cfg, &t) != 0)
		return 2;
	return (t.lost || t.violations) ? 1 : 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "run") == 0)
		return cmd_run(argc - 1, argv + 1);
	if (strcmp(argv[1], "stress") == 0)
		return cmd_stress(argc - 1, argv + 1);
	if (strcmp(argv[1], "info") == 0) {
		printf("variant %s, core code %p-%p (%zu bytes)\n", nmi_variant_name,
		       (const void *)__start_nmi_core_text, (const void *)__stop_nmi_core_text,
		       (size_t)(__stop_nmi_core_text - __start_nmi_core_text));
		return 0;
	}
	if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
		usage(stdout);
		return 0;
	}
	usage(stderr);
	return 2;
}
