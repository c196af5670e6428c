# SPDX-License-Identifier: MIT
"""Boot the hypervisor in QEMU, from the repository root:

    python3 -m qemu.run --kernel build/final/hv.elf --smp 4 --cmdline "workload=ipi-storm"
    python3 -m qemu.run --kernel build/final/hv.elf --interactive [--gdb]

(`make qemu` runs the second.)  Everything it does is in scripts/qemu.py.
"""
if not __package__:
    raise SystemExit("run it from the repository root as: python3 -m qemu.run --help")

from scripts.qemu import main  # noqa: E402

if __name__ == "__main__":
    main()
