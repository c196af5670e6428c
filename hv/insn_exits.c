/* SPDX-License-Identifier: MIT */
/*
 * insn_exits.c - instructions that exit unconditionally in VMX non-root operation
 * (SDM vol. 3C, 25.1.2 "Instructions That Cause VM Exits Unconditionally") or by a
 * control this hypervisor leaves at its default, and what the guest gets instead:
 *
 *   XSETBV (55)       checked as the CPU would (#GP), then executed here
 *   INVD (13)         WBINVD here: INVD would drop the hypervisor's dirty lines too
 *   WBINVD (54)       executed here (exits only with "WBINVD exiting", off)
 *   GETSEC (11), the VMX instructions (VMCLEAR 19, VMLAUNCH 20, VMPTRLD 21,
 *   VMPTRST 22, VMREAD 23, VMRESUME 24, VMWRITE 25, VMXOFF 26, VMXON 27,
 *   INVEPT 50, INVVPID 53, VMFUNC 59)
 *                     #UD, as on a CPU without VMX (CPUID hides it, cpuid.c)
 *
 * Privilege checks (CPL > 0: #GP) and #UD for CR4.OSXSAVE = 0 have priority over
 * these VM exits (25.1.1 "Relative Priority of Faults and VM Exits"): the CPU
 * raises them in the guest itself, so these handlers never see them.
 */
#include "hv.h"
#include "x86.h"

#define VEC_UD 6
#define VEC_GP 13

#define XCR0_X87      (1ull << 0)
#define XCR0_SSE      (1ull << 1)
#define XCR0_AVX      (1ull << 2)
#define XCR0_BNDREGS  (1ull << 3)
#define XCR0_BNDCSR   (1ull << 4)
#define XCR0_AVX512   (7ull << 5) /* opmask, ZMM_Hi256, Hi16_ZMM */
#define XCR0_TILECFG  (1ull << 17)
#define XCR0_TILEDATA (1ull << 18)

static void xsetbv(uint32_t xcr, uint64_t v)
{
	__asm__ __volatile__("xsetbv" ::"c"(xcr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32))
			     : "memory");
}

/* A value XSETBV would take for XCR0 (SDM vol. 2C XSETBV; vol. 1, 13.3 "Enabling
 * the XSAVE Feature Set and XSAVE-Enabled Features"): x87 set; AVX needs SSE;
 * the MPX pair, the AVX-512 triple (which needs AVX) and the AMX pair each all or
 * none; only bits CPUID.(EAX=0DH,ECX=0):EDX:EAX reports. */
static int xcr0_valid(uint64_t v)
{
	uint32_t a, b, c, d;
	cpuid_sub(0xD, 0, &a, &b, &c, &d);
	uint64_t supported = ((uint64_t)d << 32) | a;
	if ((v & ~supported) || !(v & XCR0_X87))
		return 0;
	if ((v & XCR0_AVX) && !(v & XCR0_SSE))
		return 0;
	if (!(v & XCR0_BNDREGS) != !(v & XCR0_BNDCSR))
		return 0;
	if ((v & XCR0_AVX512) && ((v & XCR0_AVX512) != XCR0_AVX512 || !(v & XCR0_AVX)))
		return 0;
	if (!(v & XCR0_TILECFG) != !(v & XCR0_TILEDATA))
		return 0;
	return 1;
}

/* XSETBV (reason 55).  The host has CR4.OSXSAVE (cpu.c), so it can execute it;
 * XCR0 is not switched between host and guest: the hypervisor uses no extended
 * state (-mgeneral-regs-only), the value is the guest's alone. */
void exit_xsetbv(struct vmexit *x)
{
	uint32_t xcr = (uint32_t)x->r->rcx;
	uint64_t v = ((uint64_t)(uint32_t)x->r->rdx << 32) | (uint32_t)x->r->rax;
	if (xcr != 0 || !xcr0_valid(v)) {
		vmx_inject_exception(VEC_GP, 1, 0);
		return;
	}
	xsetbv(0, v);
	vmx_skip_instruction();
}

/* INVD (13) and WBINVD (54): write back and invalidate.  INVD's "invalidate
 * without writing back" would lose the hypervisor's own modified lines; a guest
 * cannot tell the difference in its own memory but for timing. */
void exit_wbinvd(struct vmexit *x)
{
	(void)x;
	__asm__ __volatile__("wbinvd" ::: "memory");
	vmx_skip_instruction();
}

/* The VMX instructions and GETSEC: #UD, a fault (RIP stays). */
void exit_ud(struct vmexit *x)
{
	(void)x;
	vmx_inject_exception(VEC_UD, 0, 0);
}
