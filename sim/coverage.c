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
 * The simulator calls it at two places only: sim_run() (coverage_run_begins) and
 * the NMI's signal handler (coverage_nmi_lands), one line each.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "machine.h"

static int cov_fd = -2; /* -2: environment not read yet, -1: off */

void coverage_run_begins(void)
{
	if (cov_fd == -2) {
		const char *path = getenv("NMI_COVERAGE");
		cov_fd = path && *path ? open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644)
				       : -1;
		if (path && *path && cov_fd < 0)
			perror(path);
	}
	if (cov_fd >= 0 && write(cov_fd, "R\n", 2) != 2)
		cov_fd = -1;
}

void coverage_nmi_lands(const struct sim_cpu *c, uintptr_t rip)
{
	if (cov_fd < 0)
		return;
	unsigned cls = (c->core.masked ? 1u : 0) | (c->core.visited ? 2u : 0) |
		       (c->core.guest_pending ? 4u : 0) |
		       ((c->vmx.vmcs.guest_intr & GUEST_INTR_BLOCK_NMI) ? 8u : 0) |
		       (c->vmx.in_guest ? 16u : 0);
	char line[64];
	int n = sim_in_core(rip) ? snprintf(line, sizeof line, "N %lx %u\n",
					    (unsigned long)sim_core_offset(rip), cls)
				 : snprintf(line, sizeof line, "N - %u\n", cls);
	if (write(cov_fd, line, (size_t)n) != n)
		cov_fd = -1;
}
