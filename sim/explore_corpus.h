/* SPDX-License-Identifier: MIT */
/* explore_corpus.h - make explore over the kept corpus (sim/explore_corpus.c). */
#ifndef SIM_EXPLORE_CORPUS_H
#define SIM_EXPLORE_CORPUS_H

#include "sim.h"

struct corpus_counts {
	unsigned long inputs; /* inputs read (fuzz inputs and scenarios)            */
	unsigned long distinct; /* distinct minimized schedules                      */
	unsigned long explored; /* of those, explored in full                         */
	int partial; /* the budget ran out inside the next one                 */
	unsigned long failing; /* schedules with a failing placement                 */
	unsigned long runs, pruned; /* schedules run, and pruned as a twin's (explore.c) */
	double seconds;
};

/* Read every input under paths (files, or directories recursively in name order),
 * minimize and deduplicate them, and explore each with up to nmis NMIs until the
 * monotonic clock passes `until` (0: no budget).  Each failing schedule is printed
 * with its timeline; PASS lines too unless quiet.  Returns 0, 1 (a failure) or 2. */
int explore_corpus(char *const *paths, unsigned npaths, unsigned nmis, double until, int quiet,
		   struct corpus_counts *k);

#endif
