"""Suite `bugs` of tests/run_tests.py: the bug catalogue (tests/bugs/*.patch) and the
machinery of make bench-bugs (scripts/bugs.py) stay usable.

  - every patch has its header fields (Thinking, Caught-by, Entry; Equivalent at most
    once), applies cleanly to hv/nmi_core.c and builds (build/final/nmisim);
  - a few bugs, one of each kind the fuzzer must always find (a flag for a counter, a
    drain that never ends, a guest NMI-window bug), are found by make fuzz VARIANT=final
    JOBS=1 from an empty grown corpus, one seed, FIND_SECONDS each.

Everything runs in a scratch copy of the tracked files, build/bugs/test-tree/.
"""
import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, ROOT)

from scripts import bugs  # noqa: E402
from scripts import bugs_catalogue as catalogue  # noqa: E402

MUST_FIND = ["deferred-as-flag", "drain-runaway", "window-no-update"]
FIND_SECONDS = 20


def _print_verdict(kind, name, why=""):
    print(f"{kind} {name}" + (f": {why}" if why else ""), flush=True)


def suite_bugs(verdict=None):
    """Run from tests/run_tests.py its verdict() counts every result; alone
    (python3 tests/suite_bugs.py) they are only printed."""
    if verdict is None:
        verdict = getattr(sys.modules["__main__"], "verdict", _print_verdict)
    try:
        scratch = catalogue.Scratch(ROOT, os.path.join(ROOT, "build", "bugs", "test-tree"))
    except Exception as e:  # noqa: BLE001 - no git checkout, say so once
        verdict("SKIP", "bugs", f"no scratch copy of the repository: {e}")
        return
    every = catalogue.load(ROOT)
    if not every:
        verdict("FAIL", "bugs", f"{catalogue.BUGS_DIR}/ holds no patch")
        return
    try:
        for b in every:
            name = f"bugs: {b.name}.patch has its header, applies and builds"
            if b.problems:
                verdict("FAIL", name, "; ".join(b.problems))
                continue
            ok, out = scratch.apply(b)
            if not ok:
                verdict("FAIL", name, f"does not apply: {out[-200:]}")
                continue
            ok, out = scratch.build("nmisim")
            verdict("PASS" if ok else "FAIL", name, "" if ok else f"does not build: {out[-300:]}")
        for n in MUST_FIND:
            name = f"bugs: make fuzz JOBS=1 finds {n} within {FIND_SECONDS} s (empty corpus, seed 1)"
            b = [x for x in every if x.name == n]
            if not b:
                verdict("FAIL", name, f"{catalogue.BUGS_DIR}/{n}.patch is missing")
                continue
            ok, out = scratch.apply(b[0])
            if ok:
                ok, out = scratch.build("fuzz_nmi")
            if not ok:
                verdict("FAIL", name, out[-300:])
                continue
            bugs.set_grown(scratch.path, None)
            kind, v = bugs.make_fuzz(scratch.path, FIND_SECONDS, 1, 1)
            if kind == "found":
                verdict("PASS", name, f"after {v:.2f} s")
            else:
                verdict("FAIL", name, "not found" if kind == "none" else f"make fuzz failed: {v}")
    finally:
        scratch.reset()


if __name__ == "__main__":
    suite_bugs()
