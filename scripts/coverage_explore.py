"""make coverage's second source: make explore over the same corpus (and the canonical
scenarios), its NMI landings and the boundaries its stepped runs executed, and why a
boundary no NMI landed on stays so (docs/fuzzing.md, "The coverage map").

explore runs as `nmisim run --nmis NMIS --seconds S --corpus-nmis K --corpus PATH...
corpus/scenarios/*.nmi` with NMI_COVERAGE=FILE and NMI_COVERAGE_EXEC=1: FILE gets an
`R` line per run, an `N <offset> <class>` line per NMI landing (as the fuzz replay's)
and an `E <offset> <class>` line the first time a stepped run executed a boundary in a
class, class bit 32 meaning NMIs are blocked by the hardware there (sim/coverage.c).
"""
import glob
import os
import re
import subprocess
import sys

BLOCKED = 32
# Why a boundary has had no NMI, from the data: the explorer's executed boundaries and
# the object's own instructions.
WHY = [
    ("gap", "executed where an NMI can land, by no explored schedule with one there"),
    ("blocked", "executed only with NMIs blocked by the hardware (NMI handler, NMI exit)"),
    ("padding", "never executed: alignment padding"),
    ("assert", "never executed: the straight path into a failed assertion (plat_halt)"),
    ("unexecuted", "never executed by any explored schedule"),
]


def run_explore(nmisim, corpus, records, nmis, seconds, corpus_nmis):
    """Explore the canonical scenarios in full and the corpus within `seconds`, recording
    into `records`.  Returns (exit status, the corpus summary lines)."""
    open(records, "w").close()
    env = dict(os.environ, NMI_COVERAGE=records, NMI_COVERAGE_EXEC="1")
    cmd = [nmisim, "run", "--quiet", "--nmis", str(nmis), "--seconds", str(seconds),
           "--corpus-nmis", str(corpus_nmis)]
    for c in corpus:
        cmd += ["--corpus", c]
    p = subprocess.run(cmd + sorted(glob.glob("corpus/scenarios/*.nmi")), env=env,
                       capture_output=True, text=True, errors="replace")
    lines = [l for l in p.stdout.splitlines() if l.startswith("corpus")]
    if p.returncode not in (0, 1):
        sys.exit(f"coverage: {nmisim} exited {p.returncode}: {p.stderr.strip()[-400:]}")
    return p.returncode, lines


def read_exec(records):
    """{offset: set of classes} a stepped run executed (E lines)."""
    out = {}
    with open(records) as f:
        for line in f:
            if line.startswith("E "):
                _, off, cls = line.split()
                out.setdefault(int(off, 16), set()).add(int(cls))
    return out


def assert_paths(insns):
    """Offsets on a straight line into `call plat_halt` (NMI_ASSERT's failure path):
    from the last branch target or transfer before such a call up to it."""
    out, run = set(), []
    for i in insns:
        asm = i["asm"]
        run.append(i["off"])
        if asm.startswith("call") and "plat_halt" in asm:
            out.update(run)
            run = []
        elif re.match(r"(j\w*|ret\w*|call\w*)\b", asm):
            run = []
    return out


def is_padding(asm):
    return bool(re.match(r"(cs )?(nop\w*|xchg %ax,%ax|data16 )", asm))


def classify(insns, hit, executed):
    """{offset: why} for every boundary not in `hit` (either source's landings)."""
    into_halt = assert_paths(insns)
    why = {}
    for i in insns:
        o = i["off"]
        if o in hit:
            continue
        cls = executed.get(o, set())
        if any(not c & BLOCKED for c in cls):
            why[o] = "gap"
        elif cls:
            why[o] = "blocked"
        elif is_padding(i["asm"]):
            why[o] = "padding"
        elif o in into_halt:
            why[o] = "assert"
        else:
            why[o] = "unexecuted"
    return why


def executed_by_class(insns, executed, classes):
    """{class name: boundaries executed where an NMI can land, in that class}."""
    offs = {i["off"] for i in insns}
    return {name: sum(1 for o, cs in executed.items() if o in offs
                      and any(not c & BLOCKED and pred(c) for c in cs))
            for name, pred in classes}
