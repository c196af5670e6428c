# SPDX-License-Identifier: MIT
"""The project's tests; tests/run_tests.py runs every suite."""
