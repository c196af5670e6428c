/* SPDX-License-Identifier: MIT */
/*
 * nmi_books.h - the laws every NMI obeys, checked against the core's books
 * (struct nmi_cpu) in one place for every build: the hypervisor's end-of-run
 * report, the simulator's oracle after every step, the fuzzer, the unit tests.
 * docs/nmi-semantics.md explains each law; here each has a short name.
 *
 * Freestanding C11: no libc, no locks, no allocation.  Output goes, one line at a
 * time without the newline, to a caller-supplied function (kprintf on bare metal,
 * stdio in the simulator), in one format tools can parse:
 *
 *   books cpu=<n> <field>=<value> ...        one line per CPU, every field of
 *                                             struct nmi_cpu by its own name
 *   books: ok                                 every law holds
 *   books: FAILED law=<name> cpu=<n> <detail> one line per violation
 */
#ifndef NMI_BOOKS_H
#define NMI_BOOKS_H

#include <stdint.h>

#include "nmi_core.h"

/* The guest as a platform that can watch it sees it (the simulator can; the
 * hypervisor cannot see inside its guest).  `deliverable` and the fields after it
 * are what a real CPU would have delivered to the guest for the same NMIs: one in
 * service plus one latched.  The platform keeps them with nmi_books_guest_sync()
 * and nmi_books_guest_iret(), called in the order things happen. */
struct nmi_books_guest {
	uint32_t blocked; /* virtual-NMI blocking: the guest is in its NMI handler */
	uint32_t queued; /* an NMI waits in the VM-entry interruption field       */
	uint32_t window; /* NMI-window exiting is on                              */
	uint64_t received; /* NMIs the guest's handler took                          */
	uint64_t deliverable; /* NMIs hardware would have delivered by now          */
	uint64_t arrived; /* guest-owned NMIs fed to the model so far               */
	uint8_t in_service, latched; /* the model's NMI line                         */
};

/* What the core asked of its platform on one CPU, counted by the platform as it
 * does it, never by the core: a counter the core keeps for something it asked for
 * says only that it meant to ask.  Calls the platform's other users make (a
 * workload's own IPIs, say) are not the core's and are not counted here. */
struct nmi_books_platform {
	uint64_t tlb_flushes; /* plat_tlb_flush()                                   */
	uint64_t injections; /* VMWRITEs of an NMI to the VM-entry interruption field */
	uint64_t irets; /* plat_nmi_iret()                                         */
	const uint64_t *sent_to; /* [ncpus]: plat_send_nmi() to each CPU from this one */
};

/* What the calls the platform made on one CPU leave the core's state at, kept by
 * the platform from the calls themselves (the simulator, from its schedule), never
 * read from the core. */
struct nmi_books_expect {
	const char *after; /* the operation that last completed here: named in a report */
	uint32_t masked; /* the software mask is held                               */
	uint32_t attached; /* a guest is attached: nmi_guest_attach(), no detach since */
};

/* One CPU as the laws see it. */
struct nmi_books_cpu {
	const struct nmi_cpu *core;
	/* NULL where the platform cannot see the guest: the guest laws are skipped. */
	const struct nmi_books_guest *guest;
	/* NULL where the platform does not count what it was asked: laws `flushed`,
	 * `injections`, `iret` and `ipis` are skipped. */
	const struct nmi_books_platform *platform;
	/* NULL where the platform keeps no such model: laws `mask` and `attached` are
	 * skipped. */
	const struct nmi_books_expect *expect;
	/* The core's books at the moment the platform detached the guest for good
	 * (nmi_guest_detach() returned); NULL while a guest may still run here. */
	const struct nmi_cpu *detached;
	/* Nonzero while the CPU is in the middle of a step (spinning inside the core):
	 * its books are in motion and are not checked. */
	int busy;
};

struct nmi_books {
	unsigned ncpus;
	const struct nmi_books_cpu *cpu;
	/* Nonzero once the run is over and every CPU idles: law `idle` applies. */
	int at_rest;
};

/* Receives one line of output, without its newline. */
typedef void nmi_books_out(void *ctx, const char *line);

/* Check every law that applies now; one `books: FAILED ...` line per violation
 * (nothing when all hold).  Returns the number of violations. */
unsigned nmi_books_check(const struct nmi_books *b, nmi_books_out *out, void *ctx);

/* The table: one `books cpu=<n> ...` line per CPU. */
void nmi_books_table(const struct nmi_books *b, nmi_books_out *out, void *ctx);

/* The table, then the verdict: `books: ok` or the violations.  Returns their number. */
unsigned nmi_books_report(const struct nmi_books *b, nmi_books_out *out, void *ctx);

/* The guest model.  sync: take in the guest-owned NMIs the core has handled since
 * the last call (guest_accepted + guest_coalesced grew); iret: the guest's IRET
 * ended its NMI handler (sync first, so NMIs before the IRET count before it). */
void nmi_books_guest_sync(struct nmi_books_guest *g, const struct nmi_cpu *c);
void nmi_books_guest_iret(struct nmi_books_guest *g, const struct nmi_cpu *c);

#endif /* NMI_BOOKS_H */
