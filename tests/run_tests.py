#!/usr/bin/env python3
"""The project's test runner: every suite, one verdict line per test, and the
closing line `N passed, N failed, N skipped`.

Suites (all by default):
  unit        table-driven tests of each core entry point (tests/unit/test_core.c)
  identity    the core's machine code is byte-identical in every binary
  scenarios   corpus/scenarios/*.nmi on every variant, against their `# expect:` line
  corpus      corpus/fuzz seeds pass on final; corpus/regressions/<variant>/ fail on
              their variant and pass on final
  input       malformed scenario files are rejected with their line number
  stress      free-running threads + NMI sources on final: 0 lost, 0 violations
  system      the system tests of tests/system/tests.cfg under QEMU and Bochs
              (make test-qemu, make test-bochs: python3 -m tests.system.run)
  linux       an unmodified Linux kernel as the hypervisor's guest on 2 CPUs (Bochs),
              its own NMI users as checks (make test-linux; docs/linux-guest.md)
  scripts     the Python tooling on sample text: books parser, manifest, judges
              (python3 -m tests.unit.test_scripts)
  style       every C file is formatted by the root .clang-format

Run from anywhere: it works in the repository root.
"""
import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
VARIANTS = ["final", "coalescing", "racy-counter", "reentrant-loop"]
RESULTS = {"PASS": 0, "FAIL": 0, "SKIP": 0}


def verdict(kind, name, why=""):
    RESULTS[kind] += 1
    print(f"{kind} {name}" + (f": {why}" if why else ""), flush=True)


def run(cmd, timeout=600, env=None):
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        return p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        return 124, out + f"\n(timed out after {timeout} s)"


def build(variant, *targets):
    rc, out = run(["make", "-s", f"VARIANT={variant}"] + [f"build/{variant}/{t}" for t in targets])
    if rc != 0:
        verdict("FAIL", f"build {variant}: {' '.join(targets)}", out.strip().splitlines()[-1] if out.strip() else "")
        return False
    return True


def relay(out, prefix=""):
    """Count the PASS/FAIL/SKIP lines a sub-suite printed."""
    seen = 0
    for line in out.splitlines():
        m = re.match(r"(PASS|FAIL|SKIP) (.*)", line)
        if m:
            verdict(m.group(1), prefix + m.group(2))
            seen += 1
    return seen


def suite_unit():
    if not build("final", "test_core"):
        return
    rc, out = run(["build/final/test_core"])
    if relay(out) == 0 or (rc != 0 and "FAIL" not in out):
        verdict("FAIL", "unit", f"test_core exited {rc}: {out[-300:]}")
    if not build("final", "test_decode"):
        return
    rc, out = run(["build/final/test_decode"])
    if relay(out) == 0 or (rc != 0 and "FAIL" not in out):
        verdict("FAIL", "unit", f"test_decode exited {rc}: {out[-300:]}")


def suite_identity():
    if not build("final", "nmisim", "fuzz_nmi", "test_core"):
        return
    bins = ["build/final/nmisim", "build/final/fuzz_nmi", "build/final/test_core"]
    if os.path.exists("hv/hv.mk") and build("final", "hv.elf"):
        bins.append("build/final/hv.elf")
    rc, out = run([sys.executable, "-m", "scripts.check_identity", "build/final/nmi_core.o"] + bins)
    relay(out)
    # The check must be able to fail: a core built with other flags differs.  The
    # Makefile builds it (OPT=-O1 builds apart, in build/final-O1/).
    rc1, out1 = run(["make", "-s", "OPT=-O1", "build/final-O1/nmi_core.o"])
    rc2, out2 = run([sys.executable, "-m", "scripts.check_identity", "build/final-O1/nmi_core.o",
                     "build/final/nmisim"])
    if rc1 == 0 and rc2 == 1 and "FAIL identity" in out2:
        verdict("PASS", "identity: a core compiled with -O1 is told apart from the shipped one")
    else:
        verdict("FAIL", "identity: a core compiled with -O1 was not told apart",
                (out1 if rc1 else out2)[-300:])


def expectations(path):
    with open(path) as f:
        for line in f:
            m = re.match(r"#\s*expect:\s*(.*)", line)
            if m:
                return dict(kv.split("=") for kv in m.group(1).split())
    return {}


def suite_scenarios():
    files = sorted(glob.glob("corpus/scenarios/*.nmi"))
    for v in VARIANTS:
        if not build(v, "nmisim"):
            continue
        for f in files:
            want = expectations(f).get(v)
            name = f"scenario {os.path.basename(f)} [{v}]"
            if want not in ("pass", "fail"):
                verdict("FAIL", name, "no '# expect:' entry for this variant")
                continue
            rc, out = run([f"build/{v}/nmisim", "run", "--quiet", f])
            got = {0: "pass", 1: "fail"}.get(rc, f"error (exit {rc})")
            first = out.strip().splitlines()[0] if out.strip() else ""
            if got == want:
                how = "passes" if want == "pass" else "fails"
                verdict("PASS", name, f"{how} as expected ({first.split(': ', 1)[-1]})")
            else:
                verdict("FAIL", name, f"expected {want}, got {got}: {first}")


def replay_input(variant, path):
    rc, out = run([f"build/{variant}/fuzz_nmi", "-handle_usr1=0", "-handle_usr2=0", path], timeout=120)
    m = re.search(r"NMI VIOLATION \[[^]]*\]: (.*)", out)
    return rc, (m.group(1) if m else None)


def suite_corpus():
    if not build("final", "fuzz_nmi"):
        return
    seeds = sorted(glob.glob("corpus/fuzz/*"))
    bad = [s for s in seeds if replay_input("final", s)[0] != 0]
    if seeds and not bad:
        verdict("PASS", f"corpus: all {len(seeds)} seed inputs pass on final")
    else:
        verdict("FAIL", "corpus: seed inputs", f"{len(bad)} of {len(seeds)} fail on final: {bad[:3]}")
    for v in VARIANTS[1:]:
        regs = sorted(glob.glob(f"corpus/regressions/{v}/*.bin"))
        if not regs:
            verdict("SKIP", f"regressions [{v}]", f"corpus/regressions/{v}/ holds no reproducer")
            continue
        if not build(v, "fuzz_nmi"):
            continue
        for r in regs:
            rc_v, why = replay_input(v, r)
            rc_f, why_f = replay_input("final", r)
            name = f"regression {v}/{os.path.basename(r)}"
            if rc_v != 0 and why and rc_f == 0:
                verdict("PASS", name, f"fails on {v} ({why}), passes on final")
            else:
                verdict("FAIL", name, f"on {v}: {why or 'no violation'}; on final: {why_f or 'passes'}")
            # Its decoded form, replayed by the gcc-built nmisim, must agree.
            text = r[:-4] + ".nmi"
            if os.path.exists(text) and build(v, "nmisim") and build("final", "nmisim"):
                rc_tv, _ = run([f"build/{v}/nmisim", "run", "--quiet", text])
                rc_tf, _ = run(["build/final/nmisim", "run", "--quiet", text])
                verdict("PASS" if (rc_tv, rc_tf) == (1, 0) else "FAIL",
                        f"regression {v}/{os.path.basename(text)} (as a scenario)",
                        f"nmisim: exit {rc_tv} on {v}, {rc_tf} on final")


BAD_SCENARIOS = [
    ("cpus 2\ncpu0 mask\ncpu0 frobnicate\n", 3, "unknown operation"),
    ("cpus 1\ncpu1 mask\n", 2, "beyond the 'cpus' line"),
    ("cpu0 mask\ncpus 2\n", 2, "before the first step"),
    ("cpu0 unmask nmi@0\n", 1, "want nmi@N"),
    ("cpu0 unmask nmi@no_such_function+4\n", 1, "no such function"),
    ("cpu0 nmi x99\n", 1, "burst"),
    ("cpus 9\n", 1, "from 1 to 8"),
]


def suite_input():
    if not build("final", "nmisim"):
        return
    with tempfile.TemporaryDirectory() as d:
        for i, (text, line, words) in enumerate(BAD_SCENARIOS):
            good = os.path.join(d, "a-good.nmi")
            with open(good, "w") as f:
                f.write("cpu0 crit\n")
            bad = os.path.join(d, f"bad{i}.nmi")
            with open(bad, "w") as f:
                f.write(text)
            # The good file comes first: nothing may run when any file is malformed.
            rc, out = run(["build/final/nmisim", "run", good, bad])
            name = f"input: malformed scenario rejected ({words})"
            if rc == 2 and f"line {line}:" in out and words in out and "PASS" not in out:
                verdict("PASS", name, out.strip().splitlines()[-1])
            else:
                verdict("FAIL", name, f"exit {rc}: {out.strip()[:200]}")
        binary = os.path.join(d, "input.bin")
        with open(binary, "wb") as f:
            f.write(b"\x00\x84\x01\x00")
        rc, out = run(["build/final/nmisim", "run", binary])
        verdict("PASS" if rc == 2 and "binary data" in out else "FAIL",
                "input: a binary fuzz input given as a scenario is refused", out.strip()[:200])


def suite_stress(nmis):
    if not build("final", "nmisim"):
        return
    rc, out = run(["build/final/nmisim", "stress", "--cpus", "2", "--sources", "2", "--nmis", str(nmis),
                   "--seconds", "240", "--quiet"], timeout=300)
    m = re.search(r"delivered (\d+) .* lost (\d+);", out)
    name = f"stress: {nmis} NMIs over 2 CPU threads and 2 sources on final"
    if rc == 0 and m and int(m.group(1)) >= nmis and m.group(2) == "0" and "VIOLATION" not in out:
        verdict("PASS", name, out.strip().splitlines()[-1])
    else:
        verdict("FAIL", name, f"exit {rc}: {out.strip()[-400:]}")


def suite_system():
    for target in ("test-qemu", "test-bochs"):
        rc, out = run(["make", "-s", target], timeout=900)
        seen = relay(out, "")
        if seen == 0 or (rc != 0 and "FAIL" not in out):
            verdict("FAIL", f"system: make {target}", f"exit {rc}: {out.strip()[-400:]}")


def suite_linux():
    """The Linux guest (tests/linux/, docs/linux-guest.md): the checks' own tests
    (QEMU TCG), then Linux 6.1 under the hypervisor in Bochs on 2 CPUs, then under
    KVM with nested VMX (skipped, with the reason, where there is none)."""
    for args in (["test-linux-self"], ["test-linux", "SMP=2"], ["test-linux", "EMU=qemu"]):
        rc, out = run(["make", "-s"] + args, timeout=1500)
        seen = relay(out)
        if seen == 0 or (rc != 0 and "FAIL" not in out):
            verdict("FAIL", f"linux: make {' '.join(args)}", f"exit {rc}: {out.strip()[-400:]}")


def suite_scripts():
    rc, out = run([sys.executable, "-m", "tests.unit.test_scripts"])
    if relay(out) == 0 or (rc != 0 and "FAIL" not in out):
        verdict("FAIL", "scripts", f"exit {rc}: {out.strip()[-400:]}")


def suite_style():
    rc, out = run(["git", "ls-files", "*.c", "*.h"])
    files = out.split()
    if rc != 0 or not files:
        verdict("SKIP", "style", "not a git checkout: no list of the project's C files")
        return
    tool = shutil.which("clang-format") or shutil.which("clang-format-14")
    if not tool:
        verdict("FAIL", "style", "clang-format is missing (scripts/deps.sh installs it)")
        return
    rc, out = run([tool, "--dry-run", "--Werror"] + files)
    bad = sorted({line.split(":")[0] for line in out.splitlines() if ": error:" in line})
    if rc == 0:
        verdict("PASS", f"style: {len(files)} C files match .clang-format")
    else:
        verdict("FAIL", "style", f"not formatted (make format): {' '.join(bad)}")


SUITES = ["unit", "identity", "scenarios", "corpus", "input", "stress", "system", "linux",
          "scripts", "style"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("suites", nargs="*", choices=SUITES + [[]], default=[])
    ap.add_argument("--stress-nmis", type=int, default=1000000)
    args = ap.parse_args()
    os.chdir(ROOT)
    for s in args.suites or SUITES:
        print(f"== {s}", flush=True)
        if s == "stress":
            suite_stress(args.stress_nmis)
        else:
            globals()[f"suite_{s}"]()
    print(f"{RESULTS['PASS']} passed, {RESULTS['FAIL']} failed, {RESULTS['SKIP']} skipped")
    return 1 if RESULTS["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main())
