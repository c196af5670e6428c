# SPDX-License-Identifier: MIT
"""Running the hypervisor in QEMU: `python3 -m qemu.run` (the runner is scripts/qemu.py)."""
