# tests/guest2/guest2.mk - guest2: a multiboot v1 test kernel written the way
# kernels for QEMU are (tests/guest2/guest2.c).  Included by hv/hv.mk; uses B,
# HV_CC and HV_CFLAGS.  Its environment module is tests/guest2/guest2.env.
GUEST2_CFLAGS := $(filter-out -mcmodel=%,$(HV_CFLAGS)) -m32
GUEST2_OBJS := $(B)/guest2/guest2.o $(B)/guest2/entry.o
GUEST2_LDFLAGS := -m32 -nostdlib -static -no-pie -z max-page-size=0x1000 \
	-Wl,--no-warn-rwx-segments -Wl,--build-id=none -T tests/guest2/guest2.ld

$(B)/guest2/guest2.o: tests/guest2/guest2.c
	@mkdir -p $(@D)
	$(HV_CC) $(GUEST2_CFLAGS) -c $< -o $@

$(B)/guest2/entry.o: tests/guest2/entry.S
	@mkdir -p $(@D)
	$(HV_CC) $(GUEST2_CFLAGS) -c $< -o $@

$(B)/guest2.elf: $(GUEST2_OBJS) tests/guest2/guest2.ld
	$(HV_CC) $(GUEST2_LDFLAGS) -o $@ $(GUEST2_OBJS)

.PHONY: guest2
guest2: $(B)/guest2.elf
