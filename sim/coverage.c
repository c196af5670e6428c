/* SPDX-License-Identifier: MIT */
/*
 * coverage.c - where NMIs land, for `make coverage` (scripts/coverage.py).
 *
 * Off unless the environment variable NMI_COVERAGE names a file.  Then every
 * sim_run() appends a line "R" to it, and every NMI delivered to a CPU appends
 *
 *     N <offset> <class>
 *
 * where <offset> is the hex offset from the start of the core's code (nmi_core_text)
 * of the instruction the NMI landed before, or "-" when it landed outside the core,
 * and <class> the NMI state of the CPU there, as bits: 1 masked, 2 visited > 0,
 * 4 guest NMIs pending > 0, 8 guest virtual-NMI blocked (the VMCS's guest
 * interruptibility state), 16 in guest mode.  A line is one write(2) to a file opened
 * with O_APPEND: safe in the NMI's signal handler, and whole even when several
 * processes (libFuzzer's fork mode) share the file.
 *
 * With NMI_COVERAGE_EXEC=1 as well (make explore under make coverage), every core
 * boundary a stepped run executes is recorded too, once per process for each
 * offset and class:
 *
 *     E <offset> <class>
 *
 * with the class bits above and 32 when NMIs are blocked by the hardware there
 * (the NMI handler, or after an NMI VM exit until its IRET); the NMI handler is
 * then stepped as well, its boundaries counted in no step (stepper_handler).
 *
 * The simulator calls it at four places only: sim_run() (coverage_run_begins), the
 * NMI's signal handler (coverage_nmi_lands, coverage_traces_handler) and the trap
 * handler at a stepped boundary (coverage_boundary), one line each at most.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "machine.h"

static int cov_fd = -2; /* -2: environment not read yet, -1: off */
static uint64_t *exec_seen; /* a bit per (offset, class): E lines written */

static unsigned state_class(const struct sim_cpu *c)
{
	return (c->core.masked ? 1u : 0) | (c->core.visited ? 2u : 0) |
	       (c->core.guest_pending ? 4u : 0) |
	       ((c->vmx.vmcs.guest_intr & GUEST_INTR_BLOCK_NMI) ? 8u : 0) |
	       (c->vmx.in_guest ? 16u : 0);
}

void coverage_run_begins(void)
{
	if (cov_fd == -2) {
		const char *path = getenv("NMI_COVERAGE");
		cov_fd = path && *path ? open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644)
				       : -1;
		if (path && *path && cov_fd < 0)
			perror(path);
		const char *ex = getenv("NMI_COVERAGE_EXEC");
		if (cov_fd >= 0 && ex && !strcmp(ex, "1"))
			exec_seen =
			    calloc((size_t)(__stop_nmi_core_text - __start_nmi_core_text) + 1,
				   sizeof *exec_seen);
	}
	if (cov_fd >= 0 && write(cov_fd, "R\n", 2) != 2)
		cov_fd = -1;
}

void coverage_nmi_lands(const struct sim_cpu *c, uintptr_t rip)
{
	if (cov_fd < 0)
		return;
	unsigned cls = state_class(c);
	char line[64];
	int n = sim_in_core(rip) ? snprintf(line, sizeof line, "N %lx %u\n",
					    (unsigned long)sim_core_offset(rip), cls)
				 : snprintf(line, sizeof line, "N - %u\n", cls);
	if (write(cov_fd, line, (size_t)n) != n)
		cov_fd = -1;
}

int coverage_traces_handler(void)
{
	return exec_seen && cov_fd >= 0;
}

void coverage_boundary(const struct sim_cpu *c, uintptr_t rip)
{
	if (!exec_seen || cov_fd < 0 || !sim_in_core(rip))
		return;
	unsigned cls = state_class(c) | (nmi_hw_blocked(c) ? 32u : 0);
	uintptr_t off = sim_core_offset(rip);
	uint64_t bit = 1ull << cls;
	if (exec_seen[off] & bit)
		return;
	exec_seen[off] |= bit;
	char line[64];
	int n = snprintf(line, sizeof line, "E %lx %u\n", (unsigned long)off, cls);
	if (write(cov_fd, line, (size_t)n) != n)
		cov_fd = -1;
}
