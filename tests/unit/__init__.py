# SPDX-License-Identifier: MIT
"""Unit tests: the core's (test_core.c) and the Python tooling's (test_scripts.py)."""
