#!/usr/bin/env python3
"""The project's test runner: every suite, one verdict line per test, and the
closing line `N passed, N failed, N skipped`.

Suites (all by default):
  unit        table-driven tests of each core entry point (tests/unit/test_core.c)
  identity    the core's machine code is byte-identical in every binary
  scenarios   corpus/scenarios/*.nmi on every variant, against their `# expect:` line
  corpus      corpus/fuzz seeds pass on final; corpus/regressions/<variant>/ fail on
              their variant and pass on final; every input stored before format 1
              decodes as it did; NMIs placed by breakpoint land where stepping does
  clang       the core built by clang (make HV_CC=clang): identity in nmisim, fuzz_nmi,
              test_core and hv.elf, told apart from gcc's, unit tests, scenarios
  sanitizers  the harness under ASan + UBSan with the shipped core (make
              SANITIZE=address,undefined): the corpus suite and the scenarios on it
  service     .clusterfuzzlite/build.sh with a fuzzing service's environment; the
              target it builds runs its seed corpus with its options and dictionary
  coverage    make coverage's page in headless chromium: it loads, and every count it
              shows equals an independent replay's (and a page with wrong counts fails)
  input       malformed scenario files are rejected with their line number
  stress      free-running threads + NMI sources on final, up to 1,000,000 NMIs or 60 s:
              0 lost, 0 violations, at least 1,000 delivered (speed is make bench's)
  system      the system tests of tests/system/tests.cfg under QEMU and Bochs
              (make test-qemu, make test-bochs: python3 -m tests.system.run)
  linux       an unmodified Linux kernel as the hypervisor's guest on 2 CPUs (Bochs),
              its own NMI users as checks (make test-linux; docs/linux-guest.md)
  replay      make replay ON=auto: every scenario on every variant and every reproducer
              on its variant and on final, on the hypervisor (QEMU, or Bochs for guest
              steps), each case's verdict the simulator's, the whole the `# expect:`
              line's; and one TRACE=1 replay in Bochs (seed-race, racy-counter)
  scripts     the Python tooling on sample text: books parser, manifest, judges, the
              replay's scenario conversion and parsers (python3 -m tests.unit.test_scripts,
              tests.unit.test_replay_hv)
  style       every C file is formatted by the root .clang-format

Run from anywhere: it works in the repository root.
"""
import argparse
import glob
import os
import re
import shutil
import sys
import tempfile

from corpus_checks import format_checks, hwbp_checks
from harness import FLAVOURS, RESULTS, ROOT, VARIANTS, build, expectations, relay, replay_input, run, verdict
from suite_bugs import suite_bugs  # noqa: F401 - each suite_<name> is found by name
from suite_coverage import suite_coverage  # noqa: F401
from suite_replay import suite_replay  # noqa: F401
from suite_service import suite_service  # noqa: F401

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


def suite_scenarios(flavour=None):
    files = sorted(glob.glob("corpus/scenarios/*.nmi"))
    suffix = FLAVOURS[flavour][0]
    for v in VARIANTS:
        if not build(v, "nmisim", flavour=flavour):
            continue
        for f in files:
            want = expectations(f, flavour).get(v)
            name = f"scenario {os.path.basename(f)} [{v}{suffix}]"
            if want not in ("pass", "fail"):
                verdict("FAIL", name, "no '# expect:' entry for this variant")
                continue
            rc, out = run([f"build/{v}{suffix}/nmisim", "run", "--quiet", f])
            got = {0: "pass", 1: "fail"}.get(rc, f"error (exit {rc})")
            first = out.strip().splitlines()[0] if out.strip() else ""
            if got == want:
                how = "passes" if want == "pass" else "fails"
                verdict("PASS", name, f"{how} as expected ({first.split(': ', 1)[-1]})")
            else:
                verdict("FAIL", name, f"expected {want}, got {got}: {first}")
    if flavour is None:
        explore_checks(files)


def explore_checks(files):
    """make explore's search with pruning (sim/explore.c): at NMIS=2 over every
    scenario, and NMIS=3 on the seed's, each historical variant still fails every
    scenario it is expected to fail and final passes them all; pruning changes no
    count (--all, against NMISIM_PRUNE=0); sampled pruned subtrees, explored anyway
    (NMISIM_PRUNE_CHECK), match their twins; schedules placed by address (hardware
    breakpoints) run as they do placed by index (NMISIM_ADDR_CHECK), and the index
    form alone (NMI_NO_HWBP=1) counts the same schedules and failures."""
    seed = "corpus/scenarios/seed-race.nmi"
    final_passes = True
    for v in VARIANTS:
        for k, fs in ((2, files), (3, [seed])):
            rc, out = run([f"build/{v}/nmisim", "run", "--quiet", "--nmis", str(k)] + fs)
            failed = set(re.findall(r"^FAIL (\S+) ", out, re.M))
            want = {f for f in fs if expectations(f).get(v) == "fail"}
            # The totals line when there is one (several files), else the scenario's.
            pruned = re.search(r"; \d+ run, (\d+) pruned$", out, re.M) or re.search(r"(\d+) pruned", out)
            name = f"explore NMIS={k} [{v}]: " + ("every scenario" if len(fs) > 1 else "seed-race")
            if v == "final":
                ok = rc == 0 and not failed
                final_passes = final_passes and ok
                how = "passes"
            else:
                ok = rc == 1 and want <= failed
                how = f"fails {len(failed)} scenarios, every one of the {len(want)} expected"
            verdict("PASS" if ok else "FAIL", name,
                    f"{how} ({pruned[1] if pruned else 0} schedules pruned)" if ok else
                    f"expected to fail {sorted(want)}, failed {sorted(failed)}: {out[-300:]}")
    counts = {}
    for prune in ("1", "0"):
        rc, out = run(["build/racy-counter/nmisim", "run", "--quiet", "--all", "--nmis", "2", seed],
                      env=dict(os.environ, NMISIM_PRUNE=prune))
        m = re.search(r"(\d+) of (\d+) schedules fail", out)
        counts[prune] = (m[1], m[2]) if m else out[-200:]
    verdict("PASS" if counts["1"] == counts["0"] and isinstance(counts["1"], tuple) else "FAIL",
            "explore --all NMIS=2 [racy-counter] seed-race: pruning counts the same failing "
            "schedules", f"pruned {counts['1']}, unpruned {counts['0']}")
    # The checks of the search itself, on every schedule (--all): on final only while
    # final passes.  A broken final has failed above already, and a core that runs
    # away fails thousands of schedules here, each after its 0.1 s of CPU time.
    machinery = ["racy-counter"] + (["final"] if final_passes else [])
    if not final_passes:
        verdict("SKIP", "explore --all checks [final]",
                "final fails make explore above: the search's own checks need a final that passes")
    for v in machinery:
        rc, out = run([f"build/{v}/nmisim", "run", "--quiet", "--all", "--nmis", "2"] + files,
                      env=dict(os.environ, NMISIM_PRUNE_CHECK="5"))
        m = re.search(r"prune check: (\d+) of (\d+) pruned subtrees explored anyway, (\d+) differ", out)
        verdict("PASS" if m and m[3] == "0" and int(m[1]) > 0 else "FAIL",
                f"explore prune check [{v}]: every 5th pruned subtree, explored anyway, matches its twin",
                m[0] if m else out[-300:])
    totals = re.compile(r"^\d+ schedules in \d+ scenarios \[[^]]*\]: \d+ failing \(in \d+ scenarios\)", re.M)
    for v in machinery:
        cmd = [f"build/{v}/nmisim", "run", "--quiet", "--all", "--nmis", "2"] + files
        rc, out = run(cmd, env=dict(os.environ, NMISIM_ADDR_CHECK="3"))
        name = f"explore address check [{v}]: every 3rd schedule placed by address, run by index too, is the same run"
        m = re.search(r"address check: (\d+) of (\d+) schedules placed by address also run by index, (\d+) differ", out)
        if "hardware breakpoints unavailable" in out:
            verdict("SKIP", name, "hardware breakpoints unavailable here: explore places NMIs by index")
        else:
            verdict("PASS" if m and m[3] == "0" and int(m[1]) > 0 else "FAIL", name,
                    m[0] if m else out[-300:])
        rc_i, out_i = run(cmd, env=dict(os.environ, NMI_NO_HWBP="1"))
        a, b = totals.search(out), totals.search(out_i)
        said = out_i.count("explore places each NMI by its instruction index") == 1
        verdict("PASS" if a and b and a[0] == b[0] and said else "FAIL",
                f"explore --all NMIS=2 [{v}]: the index form alone (NMI_NO_HWBP=1) counts the same, said once",
                f"{b[0] if b else out_i[-200:]}" if a and b and a[0] == b[0] and said else
                f"by address: {a[0] if a else out[-200:]}; by index: {b[0] if b else out_i[-200:]}; said once: {said}")


def suite_corpus(flavour=None):
    suffix = FLAVOURS[flavour][0]
    tag = f" [{flavour}]" if flavour else ""
    if not build("final", "fuzz_nmi", flavour=flavour):
        return
    seeds = sorted(glob.glob("corpus/fuzz/*"))
    results = [(s, replay_input("final", s, suffix)) for s in seeds]
    bad = [s for s, (rc, _, san) in results if rc != 0 or san]
    if seeds and not bad:
        verdict("PASS", f"corpus{tag}: all {len(seeds)} seed inputs pass on final{suffix}")
    else:
        verdict("FAIL", f"corpus{tag}: seed inputs",
                f"{len(bad)} of {len(seeds)} fail on final{suffix}: {bad[:3]} "
                + "; ".join(san for _, (_, _, san) in results if san)[:300])
    # The distilled seeds (scripts/distill.py), in one process as make fuzz runs them.
    distilled = glob.glob("corpus/distilled/*")
    rc, out = run([f"build/final{suffix}/fuzz_nmi", "-runs=0", "-handle_usr1=0", "-handle_usr2=0",
                   "corpus/distilled"], timeout=300)
    m = re.search(r"(NMI VIOLATION .*|ERROR: \w+Sanitizer: .*|runtime error: .*)", out)
    if distilled and rc == 0 and not m:
        verdict("PASS", f"corpus{tag}: all {len(distilled)} distilled seed inputs pass on final{suffix}")
    else:
        verdict("FAIL", f"corpus{tag}: distilled seed inputs",
                f"{len(distilled)} inputs, exit {rc}: {m.group(1) if m else out.strip()[-300:]}")
    for v in VARIANTS[1:]:
        regs = sorted(glob.glob(f"corpus/regressions/{v}/*.bin"))
        if not regs:
            verdict("SKIP", f"regressions{tag} [{v}]", f"corpus/regressions/{v}/ holds no reproducer")
            continue
        if not build(v, "fuzz_nmi", flavour=flavour):
            continue
        for r in regs:
            rc_v, why, san_v = replay_input(v, r, suffix)
            rc_f, why_f, san_f = replay_input("final", r, suffix)
            name = f"regression{tag} {v}/{os.path.basename(r)}"
            if rc_v != 0 and why and rc_f == 0 and not (san_v or san_f):
                verdict("PASS", name, f"fails on {v}{suffix} ({why}), passes on final{suffix}")
            else:
                verdict("FAIL", name, f"on {v}{suffix}: {san_v or why or 'no violation'}; "
                        f"on final{suffix}: {san_f or why_f or 'passes'}")
            # Its decoded form, replayed by the same build's nmisim, must agree.
            text = r[:-4] + ".nmi"
            if os.path.exists(text) and build(v, "nmisim", flavour=flavour) \
                    and build("final", "nmisim", flavour=flavour):
                rc_tv, out_v = run([f"build/{v}{suffix}/nmisim", "run", "--quiet", text])
                rc_tf, out_f = run([f"build/final{suffix}/nmisim", "run", "--quiet", text])
                clean = not re.search(r"ERROR: AddressSanitizer|runtime error:", out_v + out_f)
                verdict("PASS" if (rc_tv, rc_tf) == (1, 0) and clean else "FAIL",
                        f"regression{tag} {v}/{os.path.basename(text)} (as a scenario)",
                        f"nmisim: exit {rc_tv} on {v}{suffix}, {rc_tf} on final{suffix}")

    if flavour is None:
        format_checks()
        hwbp_checks()


def suite_clang():
    """The core as clang builds it (make HV_CC=clang, build/<variant>-clang/)."""
    if not build("final", "nmisim", "fuzz_nmi", "test_core", "hv.elf", flavour="clang"):
        return
    bins = [f"build/final-clang/{b}" for b in ("nmisim", "fuzz_nmi", "test_core", "hv.elf")]
    rc, out = run([sys.executable, "-m", "scripts.check_identity", "build/final-clang/nmi_core.o"]
                  + bins)
    if relay(out, "clang ") == 0:
        verdict("FAIL", "clang identity", out.strip()[-300:])
    # The check tells the compilers apart: the gcc core is not what clang built.
    if build("final", "nmi_core.o"):
        rc, out = run([sys.executable, "-m", "scripts.check_identity", "build/final/nmi_core.o",
                       "build/final-clang/nmisim"])
        verdict("PASS" if rc == 1 and "FAIL identity" in out else "FAIL",
                "clang identity: the gcc-built core is told apart from the clang-built one",
                out.strip()[-200:])
    rc, out = run(["build/final-clang/test_core"])
    m = re.search(r"(\d+) passed, (\d+) failed", out)
    verdict("PASS" if rc == 0 and m and m.group(2) == "0" else "FAIL",
            "clang unit: the table-driven tests on the clang-built core",
            m.group(0) if m else out.strip()[-300:])
    suite_scenarios("clang")


def suite_sanitizers():
    """The harness under AddressSanitizer + UndefinedBehaviorSanitizer, the core as
    shipped (make SANITIZE=address,undefined, build/<variant>-address-undefined/)."""
    for v in VARIANTS:
        if not (build(v, "nmi_core.o") and build(v, "fuzz_nmi", "nmisim", flavour="san")):
            continue
        rc, out = run([sys.executable, "-m", "scripts.check_identity", f"build/{v}/nmi_core.o",
                       f"build/{v}-address-undefined/fuzz_nmi",
                       f"build/{v}-address-undefined/nmisim"])
        verdict("PASS" if rc == 0 else "FAIL",
                f"sanitizers: the core in build/{v}-address-undefined/ is the shipped gcc object",
                out.strip().splitlines()[-1] if out.strip() else "")
    suite_corpus("san")
    suite_scenarios("san")


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


# The stress run is judged by its books, not by its speed (make bench measures that):
# it runs until `nmis` NMIs are delivered or STRESS_SECONDS pass, whichever comes
# first, and passes with 0 lost, no violation, and at least STRESS_MIN_NMIS delivered:
# progress any machine makes, loaded or not, in that time.
STRESS_SECONDS = 60
STRESS_MIN_NMIS = 1000


def suite_stress(nmis):
    if not build("final", "nmisim"):
        return
    rc, out = run(["build/final/nmisim", "stress", "--cpus", "2", "--sources", "2", "--nmis", str(nmis),
                   "--seconds", str(STRESS_SECONDS), "--quiet"], timeout=STRESS_SECONDS + 120)
    m = re.search(r"delivered (\d+) .* lost (\d+);.*; ([\d.]+) s,", out)
    name = f"stress: up to {nmis} NMIs or {STRESS_SECONDS} s over 2 CPU threads and 2 sources on final"
    if rc == 0 and m and int(m.group(1)) >= min(nmis, STRESS_MIN_NMIS) and m.group(2) == "0" \
            and "VIOLATION" not in out:
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
    for module in ("tests.unit.test_scripts", "tests.unit.test_replay_hv"):
        rc, out = run([sys.executable, "-m", module])
        if relay(out) == 0 or (rc != 0 and "FAIL" not in out):
            verdict("FAIL", f"scripts: {module}", f"exit {rc}: {out.strip()[-400:]}")


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


SUITES = ["unit", "identity", "scenarios", "corpus", "input", "clang", "sanitizers", "service",
          "stress", "system", "linux", "coverage", "replay", "scripts", "style", "bugs"]


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
