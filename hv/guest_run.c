/* SPDX-License-Identifier: MIT */
/*
 * guest_run.c - the verdict of a `workload=guest` run.  When the guest stops on
 * one CPU (guest_stop.c), the first CPU here stops it on every other CPU, proves
 * the hypervisor still works (one stop-the-world round with an EPT flush), prints
 * the exit counts and the NMI core's books, checks them (books.c), judges the run
 * against `guest_expect=` and ends it with one RESULT line.
 */
#include "foreign.h"
#include "hv.h"
#include "nmi_platform.h"
#include "x86.h"

#define LEAVE_TIMEOUT_US 1000000u
#define SETTLE_US        20000u

static struct {
	int done; /* the guest called HC_DONE */
	uint32_t passed, failed, nmis; /* what it reported */
	int ept_violation; /* stopped by an EPT violation ... */
	uint64_t ept_gpa; /* ... at this guest-physical address */
	int exited; /* wrote its exit code to the debug-exit port (debug_exit.c) ... */
	uint32_t exit_code; /* ... this one */
} outcome;

/* The run is ending: every other guest CPU detaches at its next exit. */
static volatile uint32_t stopping;
static volatile uint32_t finishing; /* one CPU judges the run */

void guest_run_done(uint32_t passed, uint32_t failed, uint32_t nmis)
{
	outcome.done = 1;
	outcome.passed = passed;
	outcome.failed = failed;
	outcome.nmis = nmis;
}

void guest_run_ept_violation(uint64_t gpa)
{
	outcome.ept_violation = 1;
	outcome.ept_gpa = gpa;
}

void guest_run_exit_code(uint32_t code)
{
	outcome.exited = 1;
	outcome.exit_code = code;
}

int guest_run_stopping(void)
{
	return __atomic_load_n(&stopping, __ATOMIC_ACQUIRE) != 0;
}

/* guest_expect=done (default): the guest called HC_DONE with failed == 0, and every
 * NMI it counted came through an injection by the core; or a guest written for
 * QEMU ended through the debug-exit port with the exit code `guest_exit_code=`
 * (default 0) expects. */
static int judge_done(void)
{
	if (outcome.exited)
		return outcome.exit_code == cmdline_u64("guest_exit_code", 0);
	if (outcome.done)
		books_check(outcome.nmis == percpu[0].nmi.guest_injected,
			    "guest-counted NMIs == guest_injected", 0, outcome.nmis,
			    percpu[0].nmi.guest_injected);
	return outcome.done && outcome.failed == 0 && outcome.passed > 0;
}

/* guest_expect=ept: the isolation test; the guest must be stopped by an EPT
 * violation inside the hypervisor's image. */
static int judge_ept(void)
{
	int ok = outcome.ept_violation && outcome.ept_gpa >= vmx_guest.hv_lo &&
		 outcome.ept_gpa < vmx_guest.hv_hi;
	kprintf("vmx: isolation: %s\n", ok ? "the guest's access to hypervisor memory was stopped"
					   : "NO EPT violation in hypervisor memory");
	return ok;
}

static const struct {
	const char *name;
	int (*judge)(void);
} expectations[] = {
    {"done", judge_done},
    {"ept", judge_ept},
};

static int (*find_judge(void))(void)
{
	const char *want = cmdline_str("guest_expect", "done");
	for (unsigned i = 0; i < sizeof expectations / sizeof expectations[0]; i++) {
		const char *a = want, *b = expectations[i].name;
		while (*a && *a == *b) {
			a++;
			b++;
		}
		if (*a == *b)
			return expectations[i].judge;
	}
	return 0;
}

const char *guest_run_check_expect(void)
{
	return find_judge() ? 0 : "unknown guest_expect= (done, ept)";
}

/* guest_smp=1: make every other CPU that runs the guest leave it (an NMI forces
 * an exit; its handler sees `stopping`, detaches and idles unmasked), so the
 * books are still when books_check_core() reads them.  A CPU in wait-for-SIPI cannot
 * be forced out (NMIs blocked), but it makes no exits either: its books are still. */
static void stop_other_guest_cpus(unsigned me)
{
	__atomic_store_n(&stopping, 1, __ATOMIC_SEQ_CST);
	for (unsigned i = 0; i < ncpus; i++) {
		const struct vmx_cpu *v = &percpu[i].vmx;
		if (i == me || v->waiting_for_sipi)
			continue;
		uint64_t deadline = time_us() + LEAVE_TIMEOUT_US;
		while (__atomic_load_n(&v->in_guest, __ATOMIC_ACQUIRE) && time_us() < deadline) {
			hv_send_nmi(i);
			udelay(1000);
		}
		if (v->in_guest) {
			books_failures++;
			kprintf("check FAILED: guest cpu %u did not leave the guest\n", i);
		}
	}
}

/* The exit counts and the events delivered again, summed over the CPUs. */
static uint64_t report_exits(void)
{
	uint64_t sum[EXIT_REASONS + 1] = {0}, total = 0, redelivered = 0, nmis_requeued = 0;
	for (unsigned i = 0; i < ncpus; i++) {
		const struct vmx_cpu *v = &percpu[i].vmx;
		for (unsigned k = 0; k <= EXIT_REASONS; k++)
			sum[k] += v->exits[k];
		total += v->exits_total;
		redelivered += v->reinjected;
		nmis_requeued += percpu[i].nmi.guest_reinjected;
	}
	struct guest_jobs_stats jobs = guest_jobs_stats();
	kprintf(
	    "vmx: exits: nmi %lu nmi-window %lu cpuid %lu vmcall %lu (bad %lu) ept %lu init %lu "
	    "sipi %lu total %lu\n",
	    sum[EXIT_EXCEPTION_NMI], sum[EXIT_NMI_WINDOW], sum[EXIT_CPUID], sum[EXIT_VMCALL],
	    hypercalls_bad(), sum[EXIT_EPT_VIOLATION], sum[EXIT_INIT], sum[EXIT_SIPI], total);
	kprintf("vmx: exits by reason:");
	for (unsigned k = 0; k < EXIT_REASONS; k++)
		if (sum[k])
			kprintf(" %u=%lu", k, sum[k]);
	kprintf(" other=%lu\n", sum[EXIT_REASONS]);
	kprintf("vmx: interrupted event delivery: NMIs re-queued by the core %lu, other events "
		"re-injected %lu; lazy EPT pages mapped again %lu\n",
		nmis_requeued, redelivered, jobs.lazy_restored);
	kprintf("vmx: helper jobs: nmis_sent=%lu nmis_lost=%lu quiesce_rounds=%lu\n",
		jobs.nmis_sent, jobs.nmis_lost, jobs.rounds);
	lapic_guard_report();
	apic_base_report();
	guest_init_report();
	return total;
}

_Noreturn void guest_run_finish(const char *why)
{
	unsigned me = this_percpu()->index;
	if (__atomic_exchange_n(&finishing, 1, __ATOMIC_SEQ_CST))
		for (;;)
			cpu_pause(); /* another CPU judges; unmasked: parkable */
	kprintf("vmx: guest stopped on cpu %u: %s; the hypervisor keeps running\n", me, why);
	guest_jobs_wait_idle(); /* a job in flight ends on its own (bounded waits) */
	stop_other_guest_cpus(me);
	if (ncpus > 1 && vmx_all_parkable()) {
		nmi_quiesce_begin();
		nmi_quiesce_end(1);
		kprintf("vmx: host stop-the-world round after the guest stopped: ok\n");
	} else if (ncpus > 1) {
		kprintf("vmx: no stop-the-world round: a guest CPU still waits for its SIPI\n");
	}
	udelay(SETTLE_US);
	uint64_t exits = report_exits();
	books_check_core(); /* the NMI core's books and laws */
	struct guest_jobs_stats jobs = guest_jobs_stats();
	books_check(jobs.nmis_lost == 0, "helper NMIs all injected", 1, jobs.nmis_lost, 0);

	unsigned guest_cpus = 0;
	for (unsigned i = 0; i < ncpus; i++)
		guest_cpus += (i == 0 || vmx_guest.smp) && !percpu[i].vmx.waiting_for_sipi;
	int (*judge)(void) = find_judge();
	int ok = judge && judge();
	if (!ok || books_failures) {
		kprintf("RESULT: FAIL vmx-guest: %s", why);
		if (outcome.exited)
			kprintf(" %u", outcome.exit_code);
		kprintf(" (guest passed=%u failed=%u, %d check(s))\n", outcome.passed,
			outcome.failed, books_failures);
		hv_exit(1);
	}
	kprintf("RESULT: PASS vmx-guest cpus=%u guest_cpus=%u guest passed=%u failed=%u nmis=%u "
		"injected=%lu exits=%lu",
		ncpus, guest_cpus, outcome.passed, outcome.failed, outcome.nmis,
		percpu[0].nmi.guest_injected, exits);
	if (outcome.exited)
		kprintf(" guest exit code %u", outcome.exit_code);
	kprintf("\n");
	hv_exit(0);
}
