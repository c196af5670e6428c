# tests/guest/guest.mk - the test guest: a 32-bit multiboot v1 kernel that exercises
# NMIs from the inside (tests/guest/guest.c).  Included by hv/hv.mk; uses B, HV_CC
# and HV_CFLAGS.  It runs alone under QEMU -kernel or as the hypervisor's module.

# The hypervisor's flags, for i386: -mcmodel has no 32-bit meaning.
GUEST_CFLAGS := $(filter-out -mcmodel=%,$(HV_CFLAGS)) -m32 -Ihv
GUEST_OBJS := $(B)/guest/guest.o $(B)/guest/entry.o
GUEST_LDFLAGS := -m32 -nostdlib -static -no-pie -z max-page-size=0x1000 \
	-Wl,--no-warn-rwx-segments -Wl,--build-id=none -T tests/guest/guest.ld

$(B)/guest/guest.o: tests/guest/guest.c hv/hypercall.h
	@mkdir -p $(@D)
	$(HV_CC) $(GUEST_CFLAGS) -c $< -o $@

$(B)/guest/entry.o: tests/guest/guest.S
	@mkdir -p $(@D)
	$(HV_CC) $(GUEST_CFLAGS) -c $< -o $@

$(B)/guest.elf: $(GUEST_OBJS) tests/guest/guest.ld
	$(HV_CC) $(GUEST_LDFLAGS) -o $@ $(GUEST_OBJS)

.PHONY: guest
guest: $(B)/guest.elf
