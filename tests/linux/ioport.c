/* SPDX-License-Identifier: MIT */
/* ioport - byte-wide x86 port I/O from the Linux guest's shell, for tests/linux/hvcmd.
 *
 *   ioport w PORT BYTE...   write BYTE i to port PORT+i, in order (outb)
 *   ioport r PORT COUNT     read COUNT ports from PORT up (inb), print the bytes in
 *                           decimal on one line
 *
 * Numbers are decimal or 0x-hex.  Debian's kernels are built without /dev/port
 * (CONFIG_DEVPORT is not set), so the shell cannot reach the hypervisor's test
 * port by itself; this tool asks for the ports with ioperm(2) and uses in/out.
 * No libc: it is linked -nostdlib -static and makes its three system calls itself,
 * so it builds with nothing but gcc and runs in a busybox initramfs. */

#define SYS_write  1
#define SYS_ioperm 173
#define SYS_exit   60

static long syscall3(long n, long a, long b, long c)
{
	long r;
	__asm__ volatile("syscall"
			 : "=a"(r)
			 : "a"(n), "D"(a), "S"(b), "d"(c)
			 : "rcx", "r11", "memory");
	return r;
}

static void out(const char *s, long n)
{
	syscall3(SYS_write, 1, (long)s, n);
}

static long len(const char *s)
{
	long n = 0;
	while (s[n])
		n++;
	return n;
}

static _Noreturn void die(const char *msg)
{
	syscall3(SYS_write, 2, (long)msg, len(msg));
	syscall3(SYS_exit, 2, 0, 0);
	__builtin_unreachable();
}

static unsigned long num(const char *s)
{
	unsigned long v = 0, base = 10;
	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		s += 2;
	}
	if (!*s)
		die("ioport: empty number\n");
	for (; *s; s++) {
		unsigned d;
		if (*s >= '0' && *s <= '9')
			d = *s - '0';
		else if (base == 16 && *s >= 'a' && *s <= 'f')
			d = *s - 'a' + 10;
		else if (base == 16 && *s >= 'A' && *s <= 'F')
			d = *s - 'A' + 10;
		else
			die("ioport: bad number\n");
		v = v * base + d;
	}
	return v;
}

static void outb(unsigned short port, unsigned char v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static unsigned char inb(unsigned short port)
{
	unsigned char v;
	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static void grant(unsigned long port, unsigned long n)
{
	if (n == 0 || port + n > 0x10000)
		die("ioport: port range out of 0..0xffff\n");
	if (syscall3(SYS_ioperm, (long)port, (long)n, 1) != 0)
		die("ioport: ioperm failed (root? CONFIG_X86_IOPL_IOPERM?)\n");
}

static const char usage[] = "usage: ioport w PORT BYTE... | ioport r PORT COUNT\n";

int cmain(long *sp)
{
	long argc = sp[0];
	char **argv = (char **)(sp + 1);
	if (argc < 4 || argv[1][1] != 0 || (argv[1][0] != 'w' && argv[1][0] != 'r'))
		die(usage);
	unsigned long port = num(argv[2]);
	if (argv[1][0] == 'w') {
		grant(port, argc - 3);
		for (long i = 3; i < argc; i++)
			outb(port + (i - 3), num(argv[i]) & 0xFF);
	} else {
		unsigned long n = num(argv[3]);
		grant(port, n);
		for (unsigned long i = 0; i < n; i++) {
			char buf[5];
			unsigned v = inb(port + i), k = 0;
			if (v >= 100)
				buf[k++] = '0' + v / 100;
			if (v >= 10)
				buf[k++] = '0' + v / 10 % 10;
			buf[k++] = '0' + v % 10;
			buf[k++] = i + 1 < n ? ' ' : '\n';
			out(buf, k);
		}
	}
	syscall3(SYS_exit, 0, 0, 0);
	__builtin_unreachable();
}

__asm__(".globl _start\n"
	"_start:\n"
	"	xor %ebp, %ebp\n"
	"	mov %rsp, %rdi\n"
	"	and $-16, %rsp\n"
	"	call cmain\n"
	"	hlt\n");
