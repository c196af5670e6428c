# SPDX-License-Identifier: MIT
"""System tests: the hypervisor booted in QEMU and Bochs."""
