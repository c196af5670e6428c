# SPDX-License-Identifier: MIT
"""Verdicts: the hypervisor's, and ours.

A run of the hypervisor ends with one line on COM1, `RESULT: PASS <summary>` or
`RESULT: FAIL <reason>` (result_line() finds it; boot_main() serves the command
lines that boot one run).  Our runners print, through one Reporter, a line per check,

    PASS name (note)
    FAIL name: note
    SKIP name: note

and the closing `N passed, N failed, N skipped (T s)`.  tests/run_tests.py relays
these lines (it counts them by their first word), so a note that runs over several
lines is indented after its first: no continuation line can pass for a verdict."""
import argparse
import re
import sys
import time

KINDS = ("PASS", "FAIL", "SKIP")
RESULT_RE = re.compile(r"^RESULT: (PASS|FAIL)\b.*$", re.M)


def result_line(text):
    """The run's `RESULT: ...` line, or None."""
    m = RESULT_RE.search(text)
    return m.group(0) if m else None


def boot_arguments(doc, cpus_flag, timeout):
    """The options every one-run command line takes: kernel, command line, CPUs."""
    ap = argparse.ArgumentParser(description=doc,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kernel", required=True)
    ap.add_argument("--cmdline", default="workload=selftest")
    ap.add_argument(cpus_flag, type=int, default=2, help="CPUs")
    ap.add_argument("--timeout", type=float, default=timeout)
    return ap


def exit_by_result(tool, result, timed_out):
    """Exit 0 on RESULT: PASS, 1 on RESULT: FAIL, with a message when there was none."""
    if result is None:
        sys.exit(f"{tool}: no RESULT line ({'timeout' if timed_out else 'the run ended'})")
    sys.exit(0 if result.startswith("RESULT: PASS") else 1)


class Reporter:
    def __init__(self, out=None):
        self.out = out or sys.stdout
        self.counts = dict.fromkeys(KINDS, 0)
        self.start = time.monotonic()

    def verdict(self, kind, name, note=""):
        if kind not in KINDS:
            raise ValueError(f"verdict {kind!r} is not one of {KINDS}")
        self.counts[kind] += 1
        note = str(note).strip().replace("\n", "\n    ")
        if not note:
            line = f"{kind} {name}"
        elif kind == "PASS":
            line = f"PASS {name} ({note})"
        else:
            line = f"{kind} {name}: {note}"
        print(line, file=self.out, flush=True)

    @property
    def failed(self):
        return self.counts["FAIL"]

    def summary(self):
        """Print the closing line; the exit status: 1 when anything failed."""
        c = self.counts
        print(f"{c['PASS']} passed, {c['FAIL']} failed, {c['SKIP']} skipped "
              f"({time.monotonic() - self.start:.0f} s)", file=self.out, flush=True)
        return 1 if c["FAIL"] else 0
