/* SPDX-License-Identifier: MIT */
/*
 * x86.h - thin wrappers around the privileged instructions the hypervisor uses
 * (one definition each; the VMX instructions are in vmx_insn.h), and the
 * architectural MSR numbers and control-register bits it names.
 */
#ifndef HV_X86_H
#define HV_X86_H

#include <stdint.h>

#define MSR_APIC_BASE       0x01Bu
#define MSR_FEATURE_CONTROL 0x03Au
#define MSR_X2APIC          0x800u /* + xAPIC register offset / 16 */
#define MSR_X2APIC_ICR      0x830u
#define MSR_EFER            0xC0000080u
#define MSR_FS_BASE         0xC0000100u
#define MSR_GS_BASE         0xC0000101u

#define CR0_PE      (1ull << 0)
#define CR0_ET      (1ull << 4)
#define CR0_NE      (1ull << 5)
#define CR0_PG      (1ull << 31)
#define CR4_VMXE    (1ull << 13)
#define CR4_OSXSAVE (1ull << 18)

#define CPUID1_ECX_VMX        (1u << 5)
#define CPUID1_ECX_XSAVE      (1u << 26)
#define CPUID1_ECX_HYPERVISOR (1u << 31)

static inline void outb(uint16_t port, uint8_t v)
{
	__asm__ __volatile__("outb %0, %1" ::"a"(v), "Nd"(port));
}
static inline void outw(uint16_t port, uint16_t v)
{
	__asm__ __volatile__("outw %0, %1" ::"a"(v), "Nd"(port));
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

static inline uint64_t rdmsr(uint32_t msr)
{
	uint32_t lo, hi;
	__asm__ __volatile__("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
	return ((uint64_t)hi << 32) | lo;
}
static inline void wrmsr(uint32_t msr, uint64_t v)
{
	__asm__ __volatile__("wrmsr" ::"c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32))
			     : "memory");
}

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;
	__asm__ __volatile__("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}

/* CPUID leaf `leaf`, sub-leaf `sub` (ECX). */
static inline void cpuid_sub(uint32_t leaf, uint32_t sub, uint32_t *a, uint32_t *b, uint32_t *c,
			     uint32_t *d)
{
	__asm__ __volatile__("cpuid"
			     : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d)
			     : "a"(leaf), "c"(sub));
}
static inline void cpuid(uint32_t leaf, uint32_t *a, uint32_t *b, uint32_t *c, uint32_t *d)
{
	cpuid_sub(leaf, 0, a, b, c, d);
}

static inline uint64_t read_cr0(void)
{
	uint64_t v;
	__asm__ __volatile__("mov %%cr0, %0" : "=r"(v));
	return v;
}
static inline uint64_t read_cr2(void)
{
	uint64_t v;
	__asm__ __volatile__("mov %%cr2, %0" : "=r"(v));
	return v;
}
static inline uint64_t read_cr3(void)
{
	uint64_t v;
	__asm__ __volatile__("mov %%cr3, %0" : "=r"(v));
	return v;
}
static inline uint64_t read_cr4(void)
{
	uint64_t v;
	__asm__ __volatile__("mov %%cr4, %0" : "=r"(v));
	return v;
}
static inline void write_cr0(uint64_t v)
{
	__asm__ __volatile__("mov %0, %%cr0" ::"r"(v) : "memory");
}
static inline void write_cr4(uint64_t v)
{
	__asm__ __volatile__("mov %0, %%cr4" ::"r"(v) : "memory");
}

static inline void cpu_pause(void)
{
	__asm__ __volatile__("pause" ::: "memory");
}

/* Bochs magic breakpoint (magic_break: enabled=1); a no-op everywhere else. */
static inline void magic_break(void)
{
	__asm__ __volatile__("xchg %%bx, %%bx" ::: "memory");
}

static inline _Noreturn void cpu_halt_forever(void)
{
	for (;;)
		__asm__ __volatile__("cli; hlt");
}

/* A pointer to a low physical address (identity-mapped).  The empty asm hides the
 * constant from gcc, whose -Warray-bounds rejects dereferencing small integers. */
static inline void *phys_ptr(uintptr_t pa)
{
	__asm__("" : "+r"(pa));
	return (void *)pa;
}

static inline uint32_t mmio_read32(uintptr_t addr)
{
	return *(volatile uint32_t *)addr;
}
static inline void mmio_write32(uintptr_t addr, uint32_t v)
{
	*(volatile uint32_t *)addr = v;
}

#endif /* HV_X86_H */
