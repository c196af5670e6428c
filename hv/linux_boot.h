/* SPDX-License-Identifier: MIT */
/* linux_boot.h - loading a Linux bzImage guest (linux_boot.c). */
#ifndef HV_LINUX_BOOT_H
#define HV_LINUX_BOOT_H

#include <stdint.h>

#include "guest_image.h"

/* The image carries the Linux boot protocol's setup header ("HdrS" at 0x202). */
int linux_is_bzimage(const uint8_t *img, uint64_t size);

/* Load `kernel` (a bzImage module) with `initrd` (a module, or NULL) for the
 * 32-bit boot protocol, giving it the memory map `map` (n entries, the
 * hypervisor's range already reserved).  The kernel's command line is the
 * kernel module's string.  Returns NULL and fills *g, or says why not. */
const char *linux_load(struct guest_image *g, const struct guest_module *kernel,
		       const struct guest_module *initrd, const struct region *map, unsigned n,
		       uint64_t hv_lo, uint64_t hv_hi);

#endif /* HV_LINUX_BOOT_H */
