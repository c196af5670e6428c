/* SPDX-License-Identifier: MIT */
/*
 * guest.c - a small multiboot v1 test guest that uses NMIs the way an OS does.
 *
 * It runs alone (QEMU -kernel) or under the hypervisor (as its multiboot module),
 * and checks the architectural NMI rules it can observe from the inside:
 *
 *   nmi-self           an NMI to its own APIC ID arrives exactly once
 *   nmi-all-incl-self  the "all including self" shorthand arrives exactly once here
 *   nmi-pair           two back-to-back NMIs, not blocked: both arrive
 *   nmi-nested-held    an NMI sent from inside the handler waits for its IRET
 *   nmi-flood-blocked  5 NMIs sent from inside the handler: exactly 1 after IRET
 *   nmi-self-burst     100 NMIs, one at a time: 100 arrive
 * and, under the hypervisor only (CPUID 0x40000000 signature, hv/hypercall.h):
 *   hc-ping, hc-bad    the hypercall ABI, unknown numbers return -1
 *   reinject-nmi       an NMI whose delivery hits a not-present EPT page (its
 *                      IDT) arrives once the hypervisor maps the page again
 *   reinject-int       the same for INT 0x20 (a software interrupt)
 *   nmi-external       NMIs from another physical CPU, paced: every one arrives
 *   quiesce-invisible  stop-the-world rounds while it runs: it sees no NMI
 * and with `smp=N` (the hypervisor's `guest_smp=1`: every CPU runs this guest):
 *   smp-start          SIPIs start N APs (real-mode trampoline), each loads the
 *                      IDT and counts its own NMIs
 *   nmi-cross-cpu      `xnmi=N` (1000) NMIs from CPU 0 to the first AP, paced: all arrive
 *   quiesce-ap-invisible   stop-the-world rounds requested by CPU 0 (HC_QUIESCE)
 *                          while the AP runs: the AP sees no NMI
 *   quiesce-bsp-invisible  the same requested by the AP while CPU 0 runs
 *
 * Command line words: `touch-hv` reads and writes the hypervisor's memory (the
 * isolation test: under the hypervisor it must be stopped by an EPT violation);
 * `ext=N` (200) external NMIs and `rounds=N` (50) stop-the-world rounds;
 * `trace`: the first NMI handler entry hits a Bochs magic breakpoint.
 * Output on COM1: `GUEST: PASS name k/n`, `GUEST: FAIL name ...`, `GUEST: SKIP
 * name: why`, then `GUEST: DONE passed=N failed=M`.  Alone it leaves through
 * QEMU's isa-debug-exit (0xf4) or, failing that, a triple fault; under the
 * hypervisor through HC_DONE.
 */
#include <stdarg.h>
#include <stdint.h>

#include "hypercall.h"

#define COM1              0x3F8
#define LAPIC             0xFEE00000u
#define LAPIC_ID          0x020
#define LAPIC_ICR_LO      0x300
#define LAPIC_ICR_HI      0x310
#define ICR_BUSY          (1u << 12)
#define ICR_NMI           0x00004400u /* delivery mode NMI, assert, physical */
#define ICR_ALL_INCL_SELF 0x00080000u /* destination shorthand 10b */
#define ICR_INIT_OTHERS   0x000C4500u /* INIT, assert, all excluding self */
#define ICR_INIT_DEASSERT 0x000C8500u /* INIT level de-assert, all excluding self */
#define ICR_SIPI_OTHERS   0x000C4600u /* start-up, all excluding self; vector in 7:0 */
#define AP_TRAMP_PA       0x7000u /* keep in sync with guest.S */
#define MAX_APIC_IDS      16u
#define SOFT_VECTOR       0x20u /* the software interrupt of reinject-int */
#define MB_INFO_CMDLINE   (1u << 2)

/* Spin iterations that bound every wait for an NMI: long enough for an NMI exit,
 * an NMI-window exit and the injection under Bochs, short enough to fail fast. */
#define WAIT_SPINS 2000000u
/* How long the handler waits for an NMI that must stay blocked. */
#define HELD_SPINS 20000u

struct exc_frame {
	uint32_t esp_arg, vector, error, eip, cs, eflags;
};

struct idt_gate {
	uint16_t off0, sel;
	uint8_t zero, type; /* 0x8E: present, DPL 0, 32-bit interrupt gate */
	uint16_t off1;
} __attribute__((packed));

struct desc_ptr {
	uint16_t limit;
	uint32_t base;
} __attribute__((packed));

extern const uint32_t exc_stubs[32];
extern volatile uint32_t trace_break; /* guest.S: break at the next NMI's entry */
extern const char ap_tramp[], ap_tramp_end[];
void soft_stub(void);
void guest_main(uint32_t magic, const uint32_t *mbi);
void guest_ap_main(uint32_t index);
void guest_nmi(void);
_Noreturn void guest_exception(const struct exc_frame *f);

static struct idt_gate idt[32];
/* reinject-*: an IDT alone in its page, which the hypervisor takes out of the EPT. */
static struct idt_gate lazy_idt[4096 / sizeof(struct idt_gate)] __attribute__((aligned(4096)));
static int under_hv;
static unsigned passed, failed;
volatile uint32_t soft_count; /* guest.S soft_stub: INT 0x20 handled */

/* NMI handler state.  `nmi_count` (the BSP's NMIs) is written only by the
 * handler on the BSP, `ap_nmis[id]` only by the handler on the AP with APIC ID id. */
static uint32_t bsp_apic;
static volatile uint32_t nmi_count;
static volatile uint32_t ap_nmis[MAX_APIC_IDS];
static volatile uint32_t nested_send; /* NMIs the next handler entry sends to itself */
static volatile uint32_t nested_seen; /* NMIs that arrived while that handler ran */

static inline void outb(uint16_t port, uint8_t v)
{
	__asm__ __volatile__("outb %0, %1" ::"a"(v), "Nd"(port));
}
static inline void outl(uint16_t port, uint32_t v)
{
	__asm__ __volatile__("outl %0, %1" ::"a"(v), "Nd"(port));
}
static inline uint8_t inb(uint16_t port)
{
	uint8_t v;
	__asm__ __volatile__("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}
static inline void pause(void)
{
	__asm__ __volatile__("pause" ::: "memory");
}
static inline uint32_t lapic_rd(unsigned r)
{
	return *(volatile uint32_t *)(LAPIC + r);
}
static inline void lapic_wr(unsigned r, uint32_t v)
{
	*(volatile uint32_t *)(LAPIC + r) = v;
}

/* ---- Console ---------------------------------------------------------------------- */

static void putc_serial(char c)
{
	if (c == '\n')
		putc_serial('\r');
	for (unsigned i = 0; i < 100000 && !(inb(COM1 + 5) & 0x20); i++)
		pause();
	outb(COM1, (uint8_t)c);
}

static void put_num(uint32_t v, unsigned base)
{
	char buf[12];
	unsigned n = 0;
	do {
		buf[n++] = "0123456789abcdef"[v % base];
		v /= base;
	} while (v);
	while (n)
		putc_serial(buf[--n]);
}

/* printf for %u, %x, %s and %%: all the guest needs. */
static void gprintf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	for (; *fmt; fmt++) {
		if (*fmt != '%') {
			putc_serial(*fmt);
			continue;
		}
		switch (*++fmt) {
		case 'u': put_num(va_arg(ap, uint32_t), 10); break;
		case 'x': put_num(va_arg(ap, uint32_t), 16); break;
		case 's':
			for (const char *s = va_arg(ap, const char *); *s; s++)
				putc_serial(*s);
			break;
		default: putc_serial(*fmt);
		}
	}
	va_end(ap);
}

/* ---- Leaving ---------------------------------------------------------------------- */

static _Noreturn void triple_fault(void)
{
	static const struct desc_ptr none = {0, 0};
	__asm__ __volatile__("lidt %0\n\tint3" ::"m"(none));
	for (;;)
		__asm__ __volatile__("cli; hlt");
}

static uint32_t vmcall(uint32_t nr, uint32_t b, uint32_t c, uint32_t *b_out)
{
	uint32_t a;
	__asm__ __volatile__("vmcall" : "=a"(a), "+b"(b), "+c"(c) : "a"(nr) : "memory");
	if (b_out)
		*b_out = b;
	return a;
}

static _Noreturn void finish(void)
{
	gprintf("GUEST: DONE passed=%u failed=%u\n", passed, failed);
	if (under_hv) /* does not come back */
		__asm__ __volatile__("vmcall" ::"a"(HC_DONE), "b"(passed), "c"(failed),
				     "d"(nmi_count));
	for (unsigned i = 0; i < 1000000 && !(inb(COM1 + 5) & 0x40); i++)
		pause(); /* let COM1 drain */
	outl(0xf4, failed ? 1 : 0); /* QEMU isa-debug-exit */
	triple_fault();
}

_Noreturn void guest_exception(const struct exc_frame *f)
{
	gprintf("GUEST: FAIL exception vector=%u error=%x eip=%x\n", f->vector, f->error, f->eip);
	failed++;
	finish();
}

/* ---- NMIs -------------------------------------------------------------------------- */

/* Runs with NMIs blocked by the CPU until the stub's IRET.  When asked, it sends
 * itself NMIs and watches that none arrives before that IRET. */
void guest_nmi(void)
{
	uint32_t id = lapic_rd(LAPIC_ID) >> 24;
	if (id != bsp_apic) {
		ap_nmis[id % MAX_APIC_IDS]++;
		return;
	}
	uint32_t send = nested_send;

	nmi_count++;
	if (!send)
		return;
	nested_send = 0;
	uint32_t before = nmi_count;
	uint32_t self = lapic_rd(LAPIC_ID) & 0xFF000000u;
	for (uint32_t i = 0; i < send; i++) {
		while (lapic_rd(LAPIC_ICR_LO) & ICR_BUSY)
			pause();
		lapic_wr(LAPIC_ICR_HI, self);
		lapic_wr(LAPIC_ICR_LO, ICR_NMI);
	}
	for (unsigned i = 0; i < HELD_SPINS; i++)
		pause();
	nested_seen = nmi_count - before;
}

static void send_ipi_to(uint32_t apic_id, uint32_t icr_lo)
{
	while (lapic_rd(LAPIC_ICR_LO) & ICR_BUSY)
		pause();
	lapic_wr(LAPIC_ICR_HI, apic_id << 24);
	lapic_wr(LAPIC_ICR_LO, icr_lo);
}

static void send_ipi(uint32_t icr_lo)
{
	send_ipi_to(lapic_rd(LAPIC_ID) >> 24, icr_lo);
}

/* Wait until `want` NMIs arrived since `start` (or the bound runs out), then a
 * little longer to catch surplus ones.  Returns how many arrived. */
static uint32_t wait_nmis(uint32_t start, uint32_t want)
{
	for (unsigned i = 0; i < WAIT_SPINS && nmi_count - start < want; i++)
		pause();
	for (unsigned i = 0; i < HELD_SPINS; i++)
		pause();
	return nmi_count - start;
}

static void verdict(const char *name, int ok, uint32_t got, uint32_t want)
{
	if (ok) {
		passed++;
		gprintf("GUEST: PASS %s %u/%u\n", name, got, want);
	} else {
		failed++;
		gprintf("GUEST: FAIL %s got %u want %u\n", name, got, want);
	}
}

static void test_one(const char *name, uint32_t icr_lo)
{
	uint32_t start = nmi_count;
	send_ipi(icr_lo);
	uint32_t got = wait_nmis(start, 1);
	verdict(name, got == 1, got, 1);
}

static void test_pair(void)
{
	uint32_t start = nmi_count;
	send_ipi(ICR_NMI);
	send_ipi(ICR_NMI);
	uint32_t got = wait_nmis(start, 2);
	verdict("nmi-pair", got == 2, got, 2);
}

/* `inside` NMIs sent from inside the handler: none may arrive before its IRET,
 * exactly one after it (one latched, the rest lost, as on hardware). */
static void test_nested(const char *name, uint32_t inside)
{
	uint32_t start = nmi_count;
	nested_seen = 0xFFFFFFFFu;
	nested_send = inside;
	send_ipi(ICR_NMI);
	uint32_t got = wait_nmis(start, 2);
	if (nested_seen != 0) {
		failed++;
		gprintf("GUEST: FAIL %s: %u NMI(s) arrived inside the handler\n", name,
			nested_seen);
		return;
	}
	verdict(name, got == 2, got - 1, 1);
}

static void test_burst(uint32_t n)
{
	uint32_t start = nmi_count, got = 0;
	for (uint32_t i = 0; i < n; i++) {
		send_ipi(ICR_NMI);
		got = wait_nmis(start, i + 1);
		if (got != i + 1)
			break;
	}
	verdict("nmi-self-burst", got == n, got, n);
}

/* ---- Under the hypervisor ------------------------------------------------------------ */

static int detect_hv(void)
{
	uint32_t a, b, c, d;
	__asm__ __volatile__("cpuid"
			     : "=a"(a), "=b"(b), "=c"(c), "=d"(d)
			     : "a"(HV_CPUID_LEAF), "c"(0));
	return b == HV_CPUID_EBX && c == HV_CPUID_ECX && d == HV_CPUID_EDX;
}

static void test_hypercalls(void)
{
	uint32_t r = vmcall(HC_PING, 0, 0, 0);
	verdict("hc-ping", r == HC_PING_MAGIC, r == HC_PING_MAGIC, 1);
	static const uint32_t bad[] = {7, 0x100, 0xDEADu, 0x7FFFFFFFu, 0xFFFFFFFFu};
	unsigned ok = 0;
	for (unsigned i = 0; i < sizeof bad / sizeof bad[0]; i++)
		ok += vmcall(bad[i], 1, 2, 0) == HC_ERROR;
	verdict("hc-bad", ok == sizeof bad / sizeof bad[0], ok, sizeof bad / sizeof bad[0]);
}

/* Ask another CPU for a job and wait until it is done.  Returns 0 if the
 * hypervisor refused (a single-CPU host). */
static int run_job(uint32_t kind, uint32_t count)
{
	if (vmcall(HC_NMI_JOB, kind, count, 0) != 0)
		return 0;
	while (vmcall(HC_NMI_POLL, 0, 0, 0) != 0)
		pause();
	return 1;
}

static void test_external(uint32_t n)
{
	uint32_t start = nmi_count;
	if (!run_job(HC_JOB_NMIS, n)) {
		gprintf("GUEST: SKIP nmi-external: the hypervisor has no other CPU\n");
		return;
	}
	uint32_t got = wait_nmis(start, n);
	verdict("nmi-external", got == n, got, n);
}

static void test_quiesce(uint32_t rounds)
{
	uint32_t start = nmi_count;
	if (!run_job(HC_JOB_QUIESCE, rounds)) {
		gprintf("GUEST: SKIP quiesce-invisible: the hypervisor has no other CPU\n");
		return;
	}
	uint32_t got = wait_nmis(start, 0);
	verdict("quiesce-invisible", got == 0, got, 0);
}

static struct idt_gate gate(uint32_t handler)
{
	return (struct idt_gate){
	    .off0 = (uint16_t)handler,
	    .sel = 0x08,
	    .type = 0x8E,
	    .off1 = (uint16_t)(handler >> 16),
	};
}

static void load_idt(const struct idt_gate *table, uint32_t entries)
{
	struct desc_ptr idtr = {(uint16_t)(entries * sizeof *table - 1),
				(uint32_t)(uintptr_t)table};
	__asm__ __volatile__("lidt %0" ::"m"(idtr));
}

/* Events whose delivery is interrupted by an EPT violation: the IDT's page is out
 * of the EPT (HC_EPT_LAZY), so reading the gate exits with IDT-vectoring
 * information valid; the hypervisor maps the page and must deliver the event
 * again, exactly once. */
static void test_reinject(void)
{
	uint32_t page = (uint32_t)(uintptr_t)lazy_idt;
	for (unsigned v = 0; v < 32; v++)
		lazy_idt[v] = idt[v];
	lazy_idt[SOFT_VECTOR] = gate((uint32_t)(uintptr_t)soft_stub);
	if (vmcall(HC_EPT_LAZY, page, 0, 0) != 0) {
		gprintf("GUEST: SKIP reinject: the hypervisor refused HC_EPT_LAZY\n");
		return;
	}
	load_idt(lazy_idt, SOFT_VECTOR + 1);
	uint32_t start = nmi_count;
	send_ipi(ICR_NMI);
	uint32_t got = wait_nmis(start, 1);
	verdict("reinject-nmi", got == 1, got, 1);

	int lazy = vmcall(HC_EPT_LAZY, page, 0, 0) == 0;
	uint32_t before = soft_count;
	__asm__ __volatile__("int %0" ::"i"(SOFT_VECTOR) : "memory");
	got = soft_count - before;
	verdict("reinject-int", lazy && got == 1, got, 1);
	load_idt(idt, 32);
}

/* ---- Every CPU runs the guest (smp=N) ------------------------------------------------ */

/* The APs.  guest.S gives each its own stack, ap_stacks[index], by ap_next. */
#define MAX_APS 15u /* keep in sync with guest.S */
uint8_t ap_stacks[MAX_APS][4096] __attribute__((aligned(16)));
volatile uint32_t ap_next;
static volatile uint32_t ap_online; /* APs in guest_ap_main */
static volatile uint32_t ap_apic[MAX_APS]; /* their APIC IDs, by index */
/* A request from the BSP to AP 0: HC_QUIESCE with ap_cmd_rounds.  AP 0 writes
 * the result to ap_cmd_ret, then clears ap_cmd. */
static volatile uint32_t ap_cmd, ap_cmd_rounds, ap_cmd_ret;

void guest_ap_main(uint32_t index)
{
	load_idt(idt, 32);
	ap_apic[index] = lapic_rd(LAPIC_ID) >> 24;
	__atomic_fetch_add(&ap_online, 1, __ATOMIC_SEQ_CST);
	for (;;) {
		if (index == 0 && __atomic_load_n(&ap_cmd, __ATOMIC_ACQUIRE)) {
			ap_cmd_ret = vmcall(HC_QUIESCE, 0, ap_cmd_rounds, 0);
			__atomic_store_n(&ap_cmd, 0, __ATOMIC_RELEASE);
		}
		pause();
	}
}

/* SIPIs to every other CPU; each is a SIPI exit that starts that CPU's guest in
 * real mode at ap_tramp.  An OS sends INIT first, to bring the APs into
 * wait-for-SIPI; the hypervisor enters them there already, and under Bochs 2.7
 * an INIT to a CPU in VMX non-root operation is never consumed, so none is sent.
 * Two SIPIs is the usual count; Bochs 2.7 starts only one waiting guest CPU per
 * broadcast SIPI, so they are repeated (at most once per AP, plus one) until
 * every AP is online (docs/emulator-deviations.md). */
static int test_smp_start(uint32_t want)
{
	volatile uint8_t *dst = (volatile uint8_t *)(uintptr_t)AP_TRAMP_PA;
	for (const char *p = ap_tramp; p < ap_tramp_end; p++)
		*dst++ = (uint8_t)*p;
	uint32_t sipis = 0;
	while (ap_online < want && sipis < want + 1) {
		uint32_t before = ap_online;
		send_ipi(ICR_SIPI_OTHERS | (AP_TRAMP_PA >> 12));
		sipis++;
		for (unsigned i = 0; i < WAIT_SPINS && ap_online == before; i++)
			pause();
		for (unsigned i = 0; i < HELD_SPINS; i++)
			pause(); /* others started by the same SIPI check in */
	}
	uint32_t got = ap_online;
	gprintf("GUEST: smp-start: %u AP(s) online after %u SIPI broadcast(s)\n", got, sipis);
	verdict("smp-start", got == want, got, want);
	return got > 0;
}

/* `n` NMIs from this CPU to AP 0, each only after the previous one arrived, so
 * none may coalesce: every one must arrive. */
static void test_cross_cpu(uint32_t n)
{
	uint32_t dest = ap_apic[0], start = ap_nmis[dest], got = 0;
	for (uint32_t i = 0; i < n; i++) {
		send_ipi_to(dest, ICR_NMI);
		for (unsigned k = 0; k < WAIT_SPINS && ap_nmis[dest] - start < i + 1; k++)
			pause();
		got = ap_nmis[dest] - start;
		if (got != i + 1)
			break;
	}
	for (unsigned k = 0; k < HELD_SPINS; k++)
		pause();
	got = ap_nmis[dest] - start;
	verdict("nmi-cross-cpu", got == n, got, n);
}

/* Stop-the-world rounds requested by one guest CPU (HC_QUIESCE) while the other
 * runs the guest: the other's NMI exits park it, and it must see no NMI. */
static void test_quiesce_smp(uint32_t rounds)
{
	uint32_t ap = ap_apic[0], start = ap_nmis[ap];
	uint32_t r = vmcall(HC_QUIESCE, 0, rounds, 0);
	for (unsigned k = 0; k < HELD_SPINS; k++)
		pause();
	uint32_t seen = ap_nmis[ap] - start;
	verdict("quiesce-ap-invisible", r == 0 && seen == 0, seen, 0);

	start = nmi_count;
	ap_cmd_rounds = rounds;
	ap_cmd_ret = HC_ERROR;
	__atomic_store_n(&ap_cmd, 1, __ATOMIC_RELEASE);
	while (__atomic_load_n(&ap_cmd, __ATOMIC_ACQUIRE))
		pause();
	for (unsigned k = 0; k < HELD_SPINS; k++)
		pause();
	seen = nmi_count - start;
	verdict("quiesce-bsp-invisible", ap_cmd_ret == 0 && seen == 0, seen, 0);
}

/* The isolation test: the hypervisor's first page must be out of reach. */
static void touch_hv(void)
{
	uint32_t first = HV_LOAD_ADDR, end = 0;
	if (under_hv)
		first = vmcall(HC_HV_RANGE, 0, 0, &end);
	volatile uint32_t *p = (volatile uint32_t *)(uintptr_t)first;
	gprintf("GUEST: touch-hv: reading hypervisor memory at %x\n", first);
	uint32_t v = *p;
	gprintf("GUEST: touch-hv: read %x, writing it back\n", v);
	*p = v ^ 0xFFFFFFFFu;
	*p = v;
	failed++;
	gprintf("GUEST: FAIL touch-hv: hypervisor memory at %x is readable and writable\n", first);
}

/* ---- Start -------------------------------------------------------------------------- */

/* The rest of the word of `line` that starts with `prefix`, or NULL. */
static const char *find_word(const char *line, const char *prefix)
{
	for (const char *w = line; *w;) {
		const char *a = w, *b = prefix;
		while (*b && *a == *b) {
			a++;
			b++;
		}
		if (!*b)
			return a;
		while (*w && *w != ' ')
			w++;
		while (*w == ' ')
			w++;
	}
	return 0;
}

static int has_word(const char *line, const char *word)
{
	const char *rest = find_word(line, word);
	return rest && (*rest == ' ' || !*rest);
}

/* `key=N` from the command line, or `def`. */
static uint32_t word_u32(const char *line, const char *key, uint32_t def)
{
	const char *v = find_word(line, key);
	if (!v || *v < '0' || *v > '9')
		return def;
	uint32_t n = 0;
	while (*v >= '0' && *v <= '9')
		n = n * 10 + (uint32_t)(*v++ - '0');
	return n;
}

static void idt_init(void)
{
	for (unsigned v = 0; v < 32; v++)
		idt[v] = gate(exc_stubs[v]);
	load_idt(idt, 32);
}

void guest_main(uint32_t magic, const uint32_t *mbi)
{
	outb(COM1 + 1, 0x00); /* no UART interrupts */
	outb(COM1 + 3, 0x80); /* 115200 8N1 */
	outb(COM1 + 0, 0x01);
	outb(COM1 + 1, 0x00);
	outb(COM1 + 3, 0x03);
	outb(COM1 + 2, 0xC7);
	idt_init();

	const char *cmdline = "";
	if (magic == 0x2BADB002u && (mbi[0] & MB_INFO_CMDLINE))
		cmdline = (const char *)(uintptr_t)mbi[4];
	under_hv = detect_hv();
	bsp_apic = lapic_rd(LAPIC_ID) >> 24;
	gprintf("GUEST: start apic=%u under-hypervisor=%s cmdline \"%s\"\n",
		lapic_rd(LAPIC_ID) >> 24, under_hv ? "yes" : "no", cmdline);
	if (magic != 0x2BADB002u) {
		failed++;
		gprintf("GUEST: FAIL multiboot magic %x\n", magic);
	}

	/* Alone, the other CPUs belong to the firmware (SeaBIOS leaves them halted
	 * with its own IDT, where an NMI triple-faults the machine): park them in
	 * wait-for-SIPI, as an OS does before it starts them.  Under the hypervisor
	 * they are the hypervisor's, and an NMI there is the host's business. */
	if (!under_hv) {
		send_ipi(ICR_INIT_OTHERS);
		send_ipi(ICR_INIT_DEASSERT);
	}
	trace_break = has_word(cmdline, "trace");
	if (has_word(cmdline, "touch-hv"))
		touch_hv();
	else {
		/* smp=N: the APs are started before the NMI tests, so that an
		 * all-including-self NMI finds them with their IDT loaded; the
		 * re-injection test comes first, while only this CPU runs. */
		uint32_t smp = under_hv ? word_u32(cmdline, "smp=", 0) : 0;
		int aps = 0;
		if (under_hv) {
			test_hypercalls();
			if (trace_break) /* the traced NMI must be a plain one */
				gprintf("GUEST: SKIP reinject: tracing one plain NMI\n");
			else
				test_reinject();
			if (smp)
				aps = test_smp_start(smp);
		}
		test_one("nmi-self", ICR_NMI);
		test_one("nmi-all-incl-self", ICR_NMI | ICR_ALL_INCL_SELF);
		test_pair();
		test_nested("nmi-nested-held", 1);
		test_nested("nmi-flood-blocked", 5);
		test_burst(100);
		if (aps) {
			test_cross_cpu(word_u32(cmdline, "xnmi=", 1000));
			test_quiesce_smp(word_u32(cmdline, "rounds=", 50));
		} else if (under_hv && !smp) {
			test_external(word_u32(cmdline, "ext=", 200));
			test_quiesce(word_u32(cmdline, "rounds=", 50));
		} else if (!under_hv) {
			gprintf("GUEST: SKIP hypercalls: not under the hypervisor\n");
		}
	}
	finish();
}
