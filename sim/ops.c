/* SPDX-License-Identifier: MIT */
/*
 * ops.c - what each operation of a step does on its CPU (run on the CPU's own
 * thread).  Every operation is total: one that makes no sense in the CPU's current
 * mode is recorded as ignored, never an error.  `nmi` and `run` never get here:
 * they are the controller's (an external NMI, a spinning CPU resumed).
 *
 * Whether an operation makes sense is decided by the simulator's own model of the
 * CPU (struct nmi_books_expect: the mask held, a guest attached), kept from the
 * calls the operations made, never by the core's state: a core that leaves a CPU
 * in the wrong state must not turn the schedule's next operations into no-ops.
 * When the model says an operation can run and the core's state says it cannot,
 * that is a violation (laws `mask`, `attached`).
 */
#include "machine.h"

/* What an operation needs of its CPU; the first unmet need is why it is ignored. */
enum {
	NEED_HOST = 1, /* host mode, not guest mode        */
	NEED_GUEST = 2, /* guest mode                       */
	NEED_UNMASKED = 4, /* the software mask is not held     */
	NEED_MASKED = 8, /* the software mask is held         */
	NEED_ATTACHED = 16, /* a guest is attached to the core   */
	NEED_ALIVE = 32, /* the guest was not detached        */
};

static const struct {
	unsigned need;
	const char *why;
} needs[] = {
    {NEED_HOST, "in guest mode"},
    {NEED_GUEST, "not in guest mode"},
    {NEED_UNMASKED, "masked"},
    {NEED_MASKED, "not masked"},
    {NEED_ATTACHED, "no guest attached"},
    {NEED_ALIVE, "the guest was detached"},
};

/* Stands for an intercept handler's edits of per-CPU state under the mask. */
static void critical_work(void)
{
	for (volatile int i = 0; i < 4; i++)
		;
}

static void op_mask(struct sim_cpu *c, const struct sim_step *s)
{
	(void)c, (void)s;
	CORE(nmi_mask());
}

static void op_unmask(struct sim_cpu *c, const struct sim_step *s)
{
	(void)c, (void)s;
	CORE(nmi_unmask());
}

static void op_crit(struct sim_cpu *c, const struct sim_step *s)
{
	(void)c, (void)s;
	CORE(nmi_mask());
	critical_work();
	CORE(nmi_unmask());
}

/* VM entry; the first one attaches the guest (its VMCS is loaded from now on). */
static void op_enter(struct sim_cpu *c, const struct sim_step *s)
{
	(void)s;
	if (!c->expect.attached) {
		CORE(nmi_mask());
		CORE(nmi_guest_attach());
		CORE(nmi_unmask());
	}
	vmx_hw_entry(c);
}

/* A VM exit for another reason (CPUID...), handled under the mask. */
static void op_exit(struct sim_cpu *c, const struct sim_step *s)
{
	(void)s;
	vmx_hw_leave(c);
	CORE(nmi_mask());
	critical_work();
	CORE(nmi_unmask());
}

static void op_giret(struct sim_cpu *c, const struct sim_step *s)
{
	(void)s;
	vmx_hw_guest_iret(c);
}

static void op_block(struct sim_cpu *c, const struct sim_step *s)
{
	(void)c;
	CORE(nmi_mask());
	if (s->op == OP_BLOCK)
		CORE(nmi_guest_block());
	else
		CORE(nmi_guest_unblock());
	CORE(nmi_unmask());
}

static void op_fault(struct sim_cpu *c, const struct sim_step *s)
{
	(void)s;
	vmx_hw_arm_fault(c);
}

static void op_quiesce(struct sim_cpu *c, const struct sim_step *s)
{
	CORE(nmi_quiesce_begin());
	oracle_world_stopped(c);
	CORE(nmi_quiesce_end(s->arg));
}

/* The guest is gone for good: leave guest mode, detach it under the mask. */
static void op_detach(struct sim_cpu *c, const struct sim_step *s)
{
	(void)s;
	vmx_hw_leave(c);
	CORE(nmi_mask());
	CORE(nmi_guest_detach());
	vmx_hw_detached(c);
	CORE(nmi_unmask());
}

/* What an operation leaves the model at, once it has completed: the mask held or
 * not, a guest attached or not (SAME: as it was).  Every operation that needs the
 * mask released leaves it released: the calls it makes mask and unmask in pairs,
 * nmi_quiesce_begin() and nmi_quiesce_end() included (nmi_core.h). */
enum { SAME, SET, CLEAR };

static const struct {
	unsigned need;
	void (*run)(struct sim_cpu *c, const struct sim_step *s);
	uint8_t masked, attached;
} ops[OP__COUNT] = {
    [OP_MASK] = {NEED_HOST | NEED_UNMASKED, op_mask, SET, SAME},
    [OP_UNMASK] = {NEED_MASKED, op_unmask, CLEAR, SAME},
    [OP_CRIT] = {NEED_HOST | NEED_UNMASKED, op_crit, SAME, SAME},
    [OP_ENTER] = {NEED_HOST | NEED_UNMASKED | NEED_ALIVE, op_enter, SAME, SET},
    [OP_EXIT] = {NEED_GUEST, op_exit, SAME, SAME},
    [OP_GIRET] = {NEED_GUEST, op_giret, SAME, SAME},
    [OP_BLOCK] = {NEED_HOST | NEED_UNMASKED | NEED_ATTACHED, op_block, SAME, SAME},
    [OP_UNBLOCK] = {NEED_HOST | NEED_UNMASKED | NEED_ATTACHED, op_block, SAME, SAME},
    [OP_QUIESCE] = {NEED_HOST | NEED_UNMASKED, op_quiesce, CLEAR, SAME},
    [OP_FAULT] = {0, op_fault, SAME, SAME},
    [OP_DETACH] = {NEED_UNMASKED | NEED_ATTACHED, op_detach, SAME, CLEAR},
};

/* The needs the CPU does not meet, by the hardware model (guest mode, the guest
 * detached for good) and by the masked/attached state given. */
static unsigned unmet(const struct sim_cpu *c, unsigned need, int masked, int attached)
{
	int guest = c->vmx.in_guest != 0;
	unsigned bad = 0;
	if (M.flags & SIM_RAW) /* tests of the core's own assertions: mask/unmask always run */
		guest = 0, masked = need & NEED_UNMASKED ? 0 : 1;
	bad |= guest ? NEED_HOST : NEED_GUEST;
	bad |= masked ? NEED_UNMASKED : NEED_MASKED;
	bad |= attached ? 0 : NEED_ATTACHED;
	bad |= c->vmx.detached ? NEED_ALIVE : 0;
	return need & bad;
}

static void update(uint32_t *v, uint8_t how)
{
	if (how != SAME)
		*v = how == SET;
}

int ops_run(struct sim_cpu *c, const struct sim_step *s)
{
	if (s->op >= OP__COUNT || !ops[s->op].run)
		return 0;
	unsigned need = ops[s->op].need;
	/* Meaningless for the schedule (`unmask` where it never masked): ignored. */
	unsigned bad = unmet(c, need, c->expect.masked != 0, c->expect.attached != 0);
	for (unsigned i = 0; bad && i < sizeof needs / sizeof needs[0]; i++)
		if (bad & needs[i].need) {
			if (tl_enabled())
				tl_event(c->id, 0, "(ignored: %s)", needs[i].why);
			return 1;
		}
	/* Meaningful, but the core's state forbids it: the core's fault. */
	bad = unmet(c, need, c->core.masked != 0, c->core.guest_present != 0);
	if (bad && !(M.flags & SIM_RAW)) {
		oracle_cannot_run(c, s, bad & (NEED_MASKED | NEED_UNMASKED) ? "mask" : "attached");
		return 0;
	}
	ops[s->op].run(c, s);
	c->expect.after = sched_op_name(s->op);
	update(&c->expect.masked, ops[s->op].masked);
	update(&c->expect.attached, ops[s->op].attached);
	return 0;
}
