# SPDX-License-Identifier: MIT
"""One reporter for every runner: a line per check,

    PASS name (note)
    FAIL name: note
    SKIP name: note

and the closing `N passed, N failed, N skipped (T s)`.  tests/run_tests.py relays
these lines (it counts them by their first word), so a note that runs over several
lines is indented after its first: no continuation line can pass for a verdict."""
import sys
import time

KINDS = ("PASS", "FAIL", "SKIP")


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
