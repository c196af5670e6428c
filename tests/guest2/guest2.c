/* SPDX-License-Identifier: MIT */
/*
 * guest2.c - a test kernel written the way test kernels for QEMU are
 * (kvm-unit-tests' x86 tests, for one), to prove that such kernels run unchanged
 * under the hypervisor (docs/vmx.md "Guests from elsewhere").  It knows
 * nothing of the hypervisor: no CPUID signature, no hypercall.  It expects what
 * QEMU gives such a kernel:
 *
 *   env          its environment as a multiboot module (key=value lines:
 *                GUEST2_ENV=1 must be there), with the module's command line
 *   mem-upper    mem_upper covers its own image and a 1 MiB heap after it (the
 *                kernel's allocator runs from its end to mem_upper)
 *   msr-gs-base  WRMSR/RDMSR of IA32_GS_BASE (and IA32_TSC_AUX with RDTSCP)
 *   cr0-ne       MOV to CR0 clearing NE reads back clear, then set again
 *   rdtscp       RDTSCP where CPUID.80000001H:EDX[27] reports it: ECX = TSC_AUX
 *   apic-reset   IA32_APIC_BASE global disable (EN reads 0), re-enable, the APIC
 *                set up again: a self-NMI arrives (SKIP where EN stays 0 after the
 *                re-enable: the APIC models of QEMU TCG and Bochs 2.7 never
 *                re-enable, unlike real CPUs)
 *   smp-start    `smp=N`: INIT to all other CPUs, then one SIPI: N come online
 *   smp-restart  then the same again, to CPUs that run: all N come back
 * The LAPIC in x2APIC mode where CPUID offers it (kvm-unit-tests do the same),
 * else (or with `xapic` on the command line) xAPIC.
 *
 * Output on COM1, one line per check (`GUEST: PASS name 1/1`, `GUEST: FAIL name: why`,
 * `GUEST: SKIP name: why`), `GUEST: DONE passed=N failed=M`, then the exit code
 * (0: all passed, 1: a check failed, 3: an unexpected exception) written to QEMU's
 * isa-debug-exit port, `exit_port=` on its command line (0xf4).  Natively QEMU
 * exits with status (code << 1) | 1; the hypervisor reports `guest exit code N`.
 */
#include <stdarg.h>
#include <stdint.h>

#define COM1            0x3F8
#define LAPIC           0xFEE00000u
#define LAPIC_ID        0x020
#define LAPIC_VERSION   0x030
#define LAPIC_SVR       0x0F0
#define LAPIC_ICR_LO    0x300
#define LAPIC_ICR_HI    0x310
#define ICR_BUSY        (1u << 12)
#define ICR_NMI         0x00004400u /* NMI, assert, physical destination */
#define ICR_INIT_OTHERS 0x000C4500u /* INIT, assert, all excluding self */
#define ICR_SIPI_OTHERS 0x000C4600u /* start-up, all excluding self; vector in 7:0 */
#define AP_TRAMP_PA     0x7000u /* keep in sync with entry.S */
#define MSR_APIC_BASE   0x1Bu
#define MSR_GS_BASE     0xC0000101u
#define MSR_TSC_AUX     0xC0000103u
#define APIC_EN         (1u << 11)
#define APIC_EXTD       (1u << 10)
#define MSR_X2APIC      0x800u
#define CR0_NE          (1u << 5)
#define MB_INFO_MEM     (1u << 0)
#define MB_INFO_CMDLINE (1u << 2)
#define MB_INFO_MODS    (1u << 3)
#define HEAP            0x100000u
#define SPINS           20000000u

struct mb_info {
	uint32_t flags, mem_lower, mem_upper, boot_device, cmdline, mods_count, mods_addr;
};
struct mb_module {
	uint32_t start, end, string, reserved;
};
struct gate {
	uint16_t off0, sel;
	uint8_t zero, type;
	uint16_t off1;
} __attribute__((packed));
struct desc_ptr {
	uint16_t limit;
	uint32_t base;
} __attribute__((packed));

extern char nmi_stub[], exc_stub[], ap_tramp[], ap_tramp_end[], __bss_end[];
volatile uint32_t nmi_count, aps_online;
static struct gate idt[256];
static unsigned passed, failed;
static uint16_t exit_port = 0xf4;

/* ---- Port I/O, MSRs, serial ---------------------------------------------------- */
static inline void outb(uint16_t p, uint8_t v)
{
	__asm__ __volatile__("outb %0, %1" : : "a"(v), "Nd"(p));
}
static inline void outl(uint16_t p, uint32_t v)
{
	__asm__ __volatile__("outl %0, %1" : : "a"(v), "Nd"(p));
}
static inline uint8_t inb(uint16_t p)
{
	uint8_t v;
	__asm__ __volatile__("inb %1, %0" : "=a"(v) : "Nd"(p));
	return v;
}
static inline uint64_t rdmsr(uint32_t m)
{
	uint32_t lo, hi;
	__asm__ __volatile__("rdmsr" : "=a"(lo), "=d"(hi) : "c"(m));
	return (uint64_t)hi << 32 | lo;
}
static inline void wrmsr(uint32_t m, uint64_t v)
{
	__asm__ __volatile__("wrmsr" : : "c"(m), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)));
}
static inline void cpuid(uint32_t leaf, uint32_t *a, uint32_t *b, uint32_t *c, uint32_t *d)
{
	__asm__ __volatile__("cpuid" : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d) : "a"(leaf), "c"(0));
}

/* The local APIC: x2APIC (MSRs) where CPUID offers it, as kvm-unit-tests do; else
 * xAPIC (MMIO).  `xapic` on the command line keeps xAPIC. */
static int x2apic;

static uint32_t apic_read(unsigned reg)
{
	if (x2apic)
		return (uint32_t)rdmsr(MSR_X2APIC + reg / 16);
	return *(volatile uint32_t *)(LAPIC + reg);
}

static void apic_write(unsigned reg, uint32_t v)
{
	if (x2apic)
		wrmsr(MSR_X2APIC + reg / 16, v);
	else
		*(volatile uint32_t *)(LAPIC + reg) = v;
}

static uint32_t apic_id(void)
{
	return x2apic ? apic_read(LAPIC_ID) : apic_read(LAPIC_ID) >> 24;
}

static void putc_(char c)
{
	for (unsigned i = 0; i < 100000 && !(inb(COM1 + 5) & 0x20); i++)
		;
	outb(COM1, (uint8_t)c);
}

static void puts_(const char *s)
{
	while (*s)
		putc_(*s++);
}

static void putn(uint32_t v, unsigned base)
{
	char b[12];
	int n = 0;
	do {
		b[n++] = "0123456789abcdef"[v % base];
		v /= base;
	} while (v);
	if (base == 16)
		puts_("0x");
	while (n)
		putc_(b[--n]);
}

/* %s, %u, %x only. */
static void say(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	for (; *fmt; fmt++) {
		if (*fmt != '%') {
			putc_(*fmt);
			continue;
		}
		fmt++;
		if (*fmt == 's')
			puts_(va_arg(ap, const char *));
		else if (*fmt == 'u')
			putn(va_arg(ap, uint32_t), 10);
		else if (*fmt == 'x')
			putn(va_arg(ap, uint32_t), 16);
	}
	va_end(ap);
}

static void check(const char *name, int ok, const char *why)
{
	if (ok) {
		passed++;
		say("GUEST: PASS %s 1/1\n", name);
	} else {
		failed++;
		say("GUEST: FAIL %s: %s\n", name, why);
	}
}

static _Noreturn void exit_with(uint32_t code)
{
	outl(exit_port, code); /* QEMU's isa-debug-exit */
	for (;;)
		__asm__ __volatile__("cli; hlt");
}

void unexpected(const uint32_t *frame);
void unexpected(const uint32_t *frame)
{
	say("GUEST: FAIL exception at eip %x\nGUEST: DONE passed=%u failed=%u\n", frame[1], passed,
	    failed + 1);
	exit_with(3);
}

/* ---- Helpers -------------------------------------------------------------------- */
static int str_eq_n(const char *a, const char *b, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (a[i] != b[i])
			return 0;
	return 1;
}

/* The value of `key=` among the words of `s`, or 0. */
static const char *word(const char *s, const char *key, unsigned klen)
{
	for (unsigned i = 0; s && s[i]; i++)
		if ((i == 0 || s[i - 1] == ' ') && str_eq_n(s + i, key, klen))
			return s + i + klen;
	return 0;
}

static uint32_t number(const char *v, uint32_t def)
{
	if (!v)
		return def;
	uint32_t n = 0, base = 10;
	if (v[0] == '0' && v[1] == 'x') {
		base = 16;
		v += 2;
	}
	for (;; v++) {
		uint32_t d = (*v >= '0' && *v <= '9')   ? (uint32_t)(*v - '0')
			     : (*v >= 'a' && *v <= 'f') ? (uint32_t)(*v - 'a' + 10)
							: 99;
		if (d >= base)
			return n;
		n = n * base + d;
	}
}

static void spin(unsigned n)
{
	for (volatile unsigned i = 0; i < n; i++)
		;
}

static void send_ipi(uint32_t dest, uint32_t lo)
{
	if (x2apic) { /* one 64-bit write, no delivery status (10.12.9) */
		wrmsr(MSR_X2APIC + LAPIC_ICR_LO / 16, (uint64_t)dest << 32 | lo);
		return;
	}
	apic_write(LAPIC_ICR_HI, dest << 24);
	apic_write(LAPIC_ICR_LO, lo);
	for (unsigned i = 0; i < SPINS && (apic_read(LAPIC_ICR_LO) & ICR_BUSY); i++)
		;
}

static void setup_idt(void)
{
	for (unsigned v = 0; v < 256; v++) {
		uint32_t h = (uint32_t)(v == 2 ? nmi_stub : exc_stub);
		idt[v] = (struct gate){(uint16_t)h, 0x08, 0, 0x8E, (uint16_t)(h >> 16)};
	}
	struct desc_ptr p = {sizeof idt - 1, (uint32_t)idt};
	__asm__ __volatile__("lidt %0" : : "m"(p));
}

/* ---- The checks ------------------------------------------------------------------ */
static void check_env(const struct mb_info *mi)
{
	if (!(mi->flags & MB_INFO_MODS) || mi->mods_count < 1) {
		check("env", 0, "no multiboot module");
		return;
	}
	const struct mb_module *m = (const struct mb_module *)mi->mods_addr;
	const char *env = (const char *)m->start;
	unsigned len = m->end - m->start;
	int found = 0;
	for (unsigned i = 0; i + 12 <= len; i++)
		if ((i == 0 || env[i - 1] == '\n') && str_eq_n(env + i, "GUEST2_ENV=1", 12))
			found = 1;
	say("GUEST: env module \"%s\", %u bytes\n", m->string ? (const char *)m->string : "", len);
	check("env", found, "GUEST2_ENV=1 not in the first module");
}

static void check_mem_upper(const struct mb_info *mi)
{
	uint32_t end = (mi->mem_upper + 1024) * 1024; /* upper memory starts at 1 MiB */
	say("GUEST: mem_upper %u KiB (upper memory ends at %x), image ends at %x\n", mi->mem_upper,
	    end, (uint32_t)__bss_end);
	check("mem-upper", (mi->flags & MB_INFO_MEM) && end >= (uint32_t)__bss_end + HEAP,
	      "mem_upper does not cover the kernel and a 1 MiB heap after it");
}

static int has_rdtscp(void)
{
	uint32_t a, b, c, d;
	cpuid(0x80000000u, &a, &b, &c, &d);
	if (a < 0x80000001u)
		return 0;
	cpuid(0x80000001u, &a, &b, &c, &d);
	return (d >> 27) & 1;
}

static void check_msrs(void)
{
	wrmsr(MSR_GS_BASE, 0x12345000u);
	uint64_t v = rdmsr(MSR_GS_BASE);
	__asm__ __volatile__("movw %%ds, %%ax; movw %%ax, %%gs" : : : "eax"); /* base back */
	check("msr-gs-base", v == 0x12345000u, "IA32_GS_BASE did not read back");
	if (has_rdtscp()) {
		wrmsr(MSR_TSC_AUX, 0x2a);
		check("msr-tsc-aux", rdmsr(MSR_TSC_AUX) == 0x2a, "IA32_TSC_AUX did not read back");
	}
}

static void check_cr0(void)
{
	uint32_t cr0, back, again;
	__asm__ __volatile__("movl %%cr0, %0" : "=r"(cr0));
	__asm__ __volatile__("movl %0, %%cr0" : : "r"(cr0 & ~CR0_NE));
	__asm__ __volatile__("movl %%cr0, %0" : "=r"(back));
	__asm__ __volatile__("movl %0, %%cr0" : : "r"(cr0 | CR0_NE));
	__asm__ __volatile__("movl %%cr0, %0" : "=r"(again));
	check("cr0-ne", !(back & CR0_NE) && (again & CR0_NE),
	      "CR0.NE did not read back as written");
}

static void check_rdtscp(void)
{
	if (!has_rdtscp()) {
		say("GUEST: SKIP rdtscp: CPUID does not report it\n");
		return;
	}
	uint32_t lo, hi, aux;
	__asm__ __volatile__("rdtscp" : "=a"(lo), "=d"(hi), "=c"(aux));
	check("rdtscp", aux == 0x2a, "ECX is not IA32_TSC_AUX");
}

/* The APIC's global disable and re-enable (SDM vol. 3A, 10.4.3), then set up again
 * (the re-enabled APIC may be in its power-up state): a self-NMI arrives. */
static void check_apic_reset(void)
{
	uint64_t base = rdmsr(MSR_APIC_BASE);
	wrmsr(MSR_APIC_BASE, base & ~(uint64_t)(APIC_EN | APIC_EXTD));
	int off = !(rdmsr(MSR_APIC_BASE) & APIC_EN);
	/* disabled -> xAPIC (-> x2APIC): the only way back (SDM vol. 3A 10.12.5) */
	wrmsr(MSR_APIC_BASE, (base & ~(uint64_t)APIC_EXTD) | APIC_EN);
	if (x2apic)
		wrmsr(MSR_APIC_BASE, base | APIC_EN | APIC_EXTD);
	int on = (rdmsr(MSR_APIC_BASE) & APIC_EN) != 0;
	apic_write(LAPIC_SVR, 0x1FF); /* software enable, spurious vector 0xFF */
	uint32_t before = nmi_count;
	send_ipi(apic_id(), ICR_NMI);
	for (unsigned i = 0; i < SPINS && nmi_count == before; i++)
		;
	say("GUEST: apic-reset: EN read %u after the disable, %u after the re-enable; version %x\n",
	    (uint32_t)!off, (uint32_t)on, apic_read(LAPIC_VERSION));
	if (off && !on) { /* the APIC models of QEMU (TCG) and Bochs keep EN clear for good */
		say("GUEST: SKIP apic-reset: this machine's APIC cannot be re-enabled once "
		    "globally disabled\n");
		return;
	}
	check("apic-reset", off && on && nmi_count == before + 1,
	      "the APIC did not come back (no self-NMI after the re-enable)");
}

/* INIT to every other CPU, then a single SIPI (the IA-32 start-up protocol without
 * the second SIPI, which a CPU that started on the first ignores). */
static void check_smp(uint32_t aps)
{
	if (!aps)
		return;
	uint8_t *dst = (uint8_t *)AP_TRAMP_PA;
	for (const char *s = ap_tramp; s < ap_tramp_end; s++)
		*dst++ = (uint8_t)*s;
	send_ipi(0, ICR_INIT_OTHERS);
	spin(100000); /* "10 ms" */
	send_ipi(0, ICR_SIPI_OTHERS | (AP_TRAMP_PA >> 12));
	for (unsigned i = 0; i < SPINS * 4 && aps_online < aps; i++)
		;
	say("GUEST: smp-start: %u of %u APs online after INIT and one SIPI\n", aps_online, aps);
	check("smp-start", aps_online == aps, "not every AP came online");
	if (aps_online != aps)
		return;
	/* Again, to CPUs that run now: INIT resets them to wait-for-SIPI, one SIPI
	 * starts them again (they count in a second time). */
	send_ipi(0, ICR_INIT_OTHERS);
	spin(100000);
	send_ipi(0, ICR_SIPI_OTHERS | (AP_TRAMP_PA >> 12));
	for (unsigned i = 0; i < SPINS * 4 && aps_online < 2 * aps; i++)
		;
	say("GUEST: smp-restart: %u of %u APs back after INIT and one SIPI\n", aps_online - aps,
	    aps);
	check("smp-restart", aps_online == 2 * aps, "not every AP came back");
}

void main(uint32_t magic, const struct mb_info *mi);
void main(uint32_t magic, const struct mb_info *mi)
{
	const char *cmd = (magic == 0x2BADB002u && (mi->flags & MB_INFO_CMDLINE))
			      ? (const char *)mi->cmdline
			      : "";
	exit_port = (uint16_t)number(word(cmd, "exit_port=", 10), 0xf4);
	uint32_t a, b, c, d;
	cpuid(1, &a, &b, &c, &d);
	if ((c & (1u << 21)) && !word(cmd, "xapic", 5)) {
		wrmsr(MSR_APIC_BASE, rdmsr(MSR_APIC_BASE) | APIC_EN | APIC_EXTD);
		x2apic = 1;
	}
	say("GUEST: guest2 up, command line \"%s\", %s mode\n", cmd, x2apic ? "x2APIC" : "xAPIC");
	setup_idt();
	if (magic != 0x2BADB002u) {
		check("multiboot", 0, "not entered by a multiboot loader");
		exit_with(1);
	}
	check_env(mi);
	check_mem_upper(mi);
	check_msrs();
	check_cr0();
	check_rdtscp();
	check_apic_reset();
	check_smp(number(word(cmd, "smp=", 4), 0));
	say("GUEST: DONE passed=%u failed=%u\n", passed, failed);
	exit_with(failed ? 1 : 0);
}
