/* SPDX-License-Identifier: MIT */
/*
 * books.c - the hypervisor's side of nmi_books.c: the laws checked on every CPU's
 * books at the end of a run and printed on the console in the books' one format,
 * and the run's own checks ("check FAILED: ...").  The run's verdict reads
 * books_failures.
 */
#include "hv.h"
#include "nmi_books.h"

int books_failures;

void books_check(int ok, const char *what, unsigned cpu, uint64_t a, uint64_t b)
{
	if (ok)
		return;
	books_failures++;
	kprintf("check FAILED: %s (cpu %u: %lu vs %lu)\n", what, cpu, a, b);
}

/* The hypervisor cannot see inside its guest, nor does it keep a model of the
 * calls it made: the core's books and what the platform counted doing are all it
 * has. */
static void views(struct nmi_books *b, struct nmi_books_cpu *cpus,
		  struct nmi_books_platform *platform, int at_rest)
{
	for (unsigned i = 0; i < ncpus; i++) {
		plat_hv_asked(i, &platform[i]);
		cpus[i].core = &percpu[i].nmi;
		cpus[i].guest = NULL;
		cpus[i].platform = &platform[i];
		cpus[i].expect = NULL;
		cpus[i].detached = NULL;
		cpus[i].busy = 0;
	}
	b->ncpus = ncpus;
	b->cpu = cpus;
	b->at_rest = at_rest;
}

static void console_line(void *ctx, const char *line)
{
	(void)ctx;
	kprintf("%s\n", line);
}

static void panic_line(void *ctx, const char *line)
{
	(void)ctx;
	panic_printf("%s\n", line);
}

void books_check_core(void)
{
	struct nmi_books_cpu cpus[MAX_CPUS];
	struct nmi_books_platform platform[MAX_CPUS];
	struct nmi_books b;
	views(&b, cpus, platform, 1);
	books_failures += (int)nmi_books_report(&b, console_line, NULL);
}

void books_panic_table(void)
{
	struct nmi_books_cpu cpus[MAX_CPUS];
	struct nmi_books_platform platform[MAX_CPUS];
	struct nmi_books b;
	views(&b, cpus, platform, 0);
	nmi_books_table(&b, panic_line, NULL);
}
