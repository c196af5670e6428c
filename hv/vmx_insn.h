/* SPDX-License-Identifier: MIT */
/*
 * vmx_insn.h - the VMX instructions, one definition each.  VMLAUNCH and VMRESUME
 * live in vmx_entry.S (they switch register state).
 *
 * Every VMX instruction reports failure in RFLAGS (Intel SDM vol. 3C, 30.2
 * "Conventions"): CF=1 is VMfailInvalid (no current VMCS, bad operand), ZF=1 is
 * VMfailValid (the VM-instruction error field says why).  `setbe` catches both.
 * Each wrapper returns nonzero on failure; what to do about it is the caller's.
 */
#ifndef HV_VMX_INSN_H
#define HV_VMX_INSN_H

#include <stdint.h>

/* VMXON, VMCLEAR, VMPTRLD: a 64-bit physical-address memory operand. */
#define VMX_PA_INSN(insn)                                                                          \
	static inline int insn(uint64_t pa)                                                        \
	{                                                                                          \
		uint8_t failed;                                                                    \
		__asm__ __volatile__(#insn " %1\n\tsetbe %0"                                       \
				     : "=qm"(failed)                                               \
				     : "m"(pa)                                                     \
				     : "cc", "memory");                                            \
		return failed;                                                                     \
	}
VMX_PA_INSN(vmxon)
VMX_PA_INSN(vmclear)
VMX_PA_INSN(vmptrld)
#undef VMX_PA_INSN

/* VMREAD of `field` of the current VMCS into *value. */
static inline int vmread(uint32_t field, uint64_t *value)
{
	uint8_t failed;
	__asm__ __volatile__("vmread %2, %0\n\tsetbe %1"
			     : "=r"(*value), "=qm"(failed)
			     : "r"((uint64_t)field)
			     : "cc", "memory");
	return failed;
}

/* VMWRITE of `value` to `field` of the current VMCS. */
static inline int vmwrite(uint32_t field, uint64_t value)
{
	uint8_t failed;
	__asm__ __volatile__("vmwrite %1, %2\n\tsetbe %0"
			     : "=qm"(failed)
			     : "r"(value), "r"((uint64_t)field)
			     : "cc", "memory");
	return failed;
}

/* INVEPT of `type` (1: single context, 2: all contexts) for `eptp`. */
static inline int invept(uint64_t type, uint64_t eptp)
{
	struct {
		uint64_t eptp, reserved;
	} desc = {eptp, 0};
	uint8_t failed;
	__asm__ __volatile__("invept %1, %2\n\tsetbe %0"
			     : "=qm"(failed)
			     : "m"(desc), "r"(type)
			     : "cc", "memory");
	return failed;
}

#endif /* HV_VMX_INSN_H */
