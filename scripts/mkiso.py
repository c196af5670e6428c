#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Make a GRUB rescue ISO that boots the hypervisor with `multiboot2` and a command line."""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile

GRUB_CFG = """set timeout=0
set default=0
menuentry "hv" {{
    multiboot2 /boot/hv.elf {cmdline}
    boot
}}
"""


def make_iso(kernel, cmdline, out):
    with tempfile.TemporaryDirectory(prefix="hv-iso-") as root:
        os.makedirs(os.path.join(root, "boot", "grub"))
        shutil.copy(kernel, os.path.join(root, "boot", "hv.elf"))
        with open(os.path.join(root, "boot", "grub", "grub.cfg"), "w") as f:
            f.write(GRUB_CFG.format(cmdline=cmdline))
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        r = subprocess.run(["grub-mkrescue", "-o", out, root], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
        if r.returncode != 0:
            sys.exit(f"grub-mkrescue failed:\n{r.stdout}")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--kernel", required=True)
    ap.add_argument("--cmdline", default="workload=selftest")
    ap.add_argument("-o", "--output", required=True)
    a = ap.parse_args()
    make_iso(a.kernel, a.cmdline, a.output)


if __name__ == "__main__":
    main()
