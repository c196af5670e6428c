# SPDX-License-Identifier: MIT
"""Make a GRUB rescue ISO that boots the hypervisor with `multiboot2` and a command line,
optionally with a guest kernel as its boot module (`module2`, read by hv/guest_load.c).

    python3 -m scripts.iso --kernel build/final/hv.elf --cmdline workload=selftest -o hv.iso
"""
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
{module}    boot
}}
"""


def make_iso(kernel, cmdline, out, module=None, module_args="", more_modules=()):
    """`module`: a guest kernel, passed with `module_args` as its command line;
    `more_modules`: files passed after it (its environment...), each with its file
    name as its string."""
    with tempfile.TemporaryDirectory(prefix="hv-iso-") as root:
        os.makedirs(os.path.join(root, "boot", "grub"))
        shutil.copy(kernel, os.path.join(root, "boot", "hv.elf"))
        mod = ""
        if module:
            shutil.copy(module, os.path.join(root, "boot", "guest.elf"))
            mod = f"    module2 /boot/guest.elf guest.elf {module_args}\n"
        for i, extra in enumerate(more_modules):
            name = os.path.basename(extra)
            shutil.copy(extra, os.path.join(root, "boot", f"m{i}-{name}"))
            mod += f"    module2 /boot/m{i}-{name} {name}\n"
        with open(os.path.join(root, "boot", "grub", "grub.cfg"), "w") as f:
            f.write(GRUB_CFG.format(cmdline=cmdline, module=mod))
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        r = subprocess.run(["grub-mkrescue", "-o", out, root], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
        if r.returncode != 0:
            sys.exit(f"grub-mkrescue failed:\n{r.stdout}")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--kernel", required=True)
    ap.add_argument("--cmdline", default="workload=selftest")
    ap.add_argument("--module", help="guest kernel passed as the boot module")
    ap.add_argument("--module-args", default="", help="the guest's command line")
    ap.add_argument("-o", "--output", required=True)
    a = ap.parse_args()
    make_iso(a.kernel, a.cmdline, a.output, a.module, a.module_args)


if __name__ == "__main__":
    main()
