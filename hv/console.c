/* SPDX-License-Identifier: MIT */
/*
 * console.c - output on COM1 (0x3f8), mirrored to port 0xE9 (Bochs port_e9_hack,
 * QEMU -debugcon), and COM1 input polling.
 *
 * One spinlock serializes whole lines.  Rules:
 *   - never print from NMI context: an NMI may interrupt this CPU inside
 *     kprintf() with the lock held;
 *   - the lock is also the platform's "world lock" (plat_world_lock()): a
 *     stop-the-world requester takes it so that no CPU is parked holding it;
 *   - failure paths (exceptions, plat_halt) use panic_begin()/panic_printf(),
 *     which first make every CPU drop NMIs, then wait a bounded time for the
 *     lock and print without it if need be.
 */
#include <stdarg.h>

#include "hv.h"
#include "x86.h"

#define COM1             0x3f8
#define E9               0xe9
#define PANIC_LOCK_SPINS 20000000ul

static volatile uint32_t console_locked;
static volatile uint32_t panicking;

void console_init(void)
{
	outb(COM1 + 1, 0x00); /* no interrupts */
	outb(COM1 + 3, 0x80); /* DLAB */
	outb(COM1 + 0, 0x01); /* 115200 baud */
	outb(COM1 + 1, 0x00);
	outb(COM1 + 3, 0x03); /* 8N1 */
	outb(COM1 + 2, 0xC7); /* FIFO on, cleared */
	outb(COM1 + 4, 0x03); /* DTR, RTS */
}

static void putc_raw(char c)
{
	for (unsigned i = 0; i < 100000 && !(inb(COM1 + 5) & 0x20); i++)
		cpu_pause();
	outb(COM1, (uint8_t)c);
	outb(E9, (uint8_t)c);
}

/* A guest's line in progress (guest_console.c): a hypervisor line that comes
 * meanwhile first ends it, and the guest's next byte starts a new prefixed line,
 * so every line on the console is wholly the hypervisor's or wholly the guest's.
 * Only read and written under the console lock. */
static int guest_mid_line;
static const char guest_prefix[] = "guest: ";

void console_guest_putc(char c)
{
	console_lock();
	if (!guest_mid_line)
		for (const char *p = guest_prefix; *p; p++)
			putc_raw(*p);
	putc_raw(c);
	guest_mid_line = c != '\n';
	console_unlock();
}

static void end_guest_line(void)
{
	if (guest_mid_line)
		putc_raw('\n');
	guest_mid_line = 0;
}

int serial_poll_byte(void)
{
	if (!(inb(COM1 + 5) & 0x01))
		return -1;
	return inb(COM1);
}

void console_lock(void)
{
	while (__atomic_exchange_n(&console_locked, 1, __ATOMIC_ACQUIRE))
		while (console_locked)
			cpu_pause();
}

void console_unlock(void)
{
	__atomic_store_n(&console_locked, 0, __ATOMIC_RELEASE);
}

/* ---- Formatting: %[-][0][width][l|ll]{d,u,x,s,c,p} and %% ---- */

struct sink {
	void (*put)(struct sink *k, char c);
	char *buf; /* ksnprintf: the buffer, its size, what was written */
	size_t len, n;
};

static void to_console(struct sink *k, char c)
{
	(void)k;
	putc_raw(c);
}

static void to_buffer(struct sink *k, char c)
{
	if (k->n + 1 < k->len)
		k->buf[k->n++] = c;
}

static void put_padded(struct sink *k, const char *s, unsigned len, int width, int left, char pad)
{
	int fill = width > (int)len ? width - (int)len : 0;
	if (!left)
		while (fill-- > 0)
			k->put(k, pad);
	for (unsigned i = 0; i < len; i++)
		k->put(k, s[i]);
	if (left)
		while (fill-- > 0)
			k->put(k, ' ');
}

static void vformat(struct sink *k, const char *fmt, va_list ap)
{
	char buf[24];
	for (; *fmt; fmt++) {
		if (*fmt != '%') {
			if (*fmt == '\n' && k->put == to_console)
				k->put(k, '\r');
			k->put(k, *fmt);
			continue;
		}
		int left = 0, width = 0, longs = 0;
		char pad = ' ';
		fmt++;
		if (*fmt == '-') {
			left = 1;
			fmt++;
		}
		if (*fmt == '0') {
			pad = '0';
			fmt++;
		}
		while (*fmt >= '0' && *fmt <= '9')
			width = width * 10 + (*fmt++ - '0');
		while (*fmt == 'l') {
			longs++;
			fmt++;
		}
		uint64_t v = 0;
		int neg = 0;
		unsigned base = 10, n = 0;
		switch (*fmt) {
		case 's': {
			const char *s = va_arg(ap, const char *);
			unsigned len = 0;
			if (!s)
				s = "(null)";
			while (s[len])
				len++;
			put_padded(k, s, len, width, left, ' ');
			continue;
		}
		case 'c':
			buf[0] = (char)va_arg(ap, int);
			put_padded(k, buf, 1, width, left, ' ');
			continue;
		case '%': k->put(k, '%'); continue;
		case 'd': {
			int64_t sv = longs ? va_arg(ap, int64_t) : va_arg(ap, int);
			neg = sv < 0;
			v = neg ? -(uint64_t)sv : (uint64_t)sv;
			break;
		}
		case 'p':
			v = (uintptr_t)va_arg(ap, void *);
			base = 16;
			break;
		case 'x':
			base = 16;
			/* fall through */
		case 'u': v = longs ? va_arg(ap, uint64_t) : va_arg(ap, unsigned); break;
		default: k->put(k, '?'); continue;
		}
		do {
			buf[sizeof buf - 1 - n++] = "0123456789abcdef"[v % base];
			v /= base;
		} while (v);
		if (neg)
			buf[sizeof buf - 1 - n++] = '-';
		put_padded(k, buf + sizeof buf - n, n, width, left, pad);
	}
}

void kprintf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	struct sink k = {.put = to_console};
	console_lock();
	end_guest_line();
	vformat(&k, fmt, ap);
	console_unlock();
	va_end(ap);
}

void panic_begin(void)
{
	/* Only the first failing CPU reports; any later one stops silently. */
	if (__atomic_exchange_n(&panicking, 1, __ATOMIC_ACQ_REL))
		cpu_halt_forever();
	idt_silence_nmis();
	for (unsigned long i = 0; i < PANIC_LOCK_SPINS; i++) {
		if (!__atomic_exchange_n(&console_locked, 1, __ATOMIC_ACQUIRE))
			return;
		cpu_pause();
	}
	/* The holder is stuck (parked, interrupted by us, or dead): print anyway. */
	putc_raw('\n');
}

void panic_printf(const char *fmt, ...)
{
	va_list ap;
	struct sink k = {.put = to_console};
	va_start(ap, fmt);
	vformat(&k, fmt, ap);
	va_end(ap);
}

/* kprintf's format into buf (always terminated, truncated to len - 1 characters).
 * Callable from any context: it touches nothing but buf. */
void kvsnprintf(char *buf, size_t len, const char *fmt, va_list ap)
{
	struct sink k = {.put = to_buffer, .buf = buf, .len = len};
	vformat(&k, fmt, ap);
	if (len)
		buf[k.n < len ? k.n : len - 1] = 0;
}

void ksnprintf(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	kvsnprintf(buf, len, fmt, ap);
	va_end(ap);
}
