"""make bench-bugs (python3 -m scripts.bugs): how fast each tool finds each bug of the
catalogue (tests/bugs/*.patch, scripts/bugs_catalogue.py).

Per bug, in one scratch copy of the repository (build/bugs/tree/), hv/nmi_core.c is
reset, the bug applied and final built; then

  fuzz-empty-j1, fuzz-empty-j2   make fuzz VARIANT=final JOBS=1|2 from an empty grown
                                 corpus (the seeds of corpus/fuzz/ and corpus/distilled/)
  fuzz-grown-j1, fuzz-grown-j2   the same from the grown corpus of a 60 s JOBS=2 campaign
                                 on unmodified final (made once, cached in
                                 build/bugs/grown-<hash of nmi_core.c>/; --regrow)
                                 each with HV_REPLAY=0, FUZZ_SECONDS=--budget,
                                 FUZZ_SEED=1..--seeds: the seconds on its line
                                 'finding after S s'; once printed the run is stopped
                                 (minimizing and explaining are not measured)
  explore                        make explore VARIANT=final: found when it exits non-zero
                                 with a failing schedule; its wall time
  test-sim                       the suites of make test-sim that can see a change of
                                 the core (TEST_SIM_SUITES): found on any FAIL line;
                                 wall time

One line per finished measurement, then the table: a row per bug, "median/max" of
the seeds per fuzz column, "-" not found, "ERR" the tool failed; then each column's
median and maximum over the bugs found, and the goals.

    python3 -m scripts.bugs [--bugs a,b] [--configs fuzz-empty-j1,explore] [--seeds 3]
                            [--budget 10] [--json FILE] [--regrow] [--full-test-sim]
    python3 -m scripts.bugs --table A.json,B.json   the table of saved runs, merged
"""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

from . import bugs_catalogue as catalogue
from .bugs_table import FUZZ_CONFIGS, table

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
CONFIGS = FUZZ_CONFIGS + ["explore", "test-sim"]
# make test-sim's suites that run the core: the others (identity, input, clang,
# sanitizers, service, scripts, style) build it again another way or never run it.
TEST_SIM_SUITES = ["unit", "scenarios", "corpus"]
FULL_TEST_SIM = ["unit", "identity", "scenarios", "corpus", "input", "clang", "sanitizers",
                 "service", "scripts", "style"]
GROWN = os.path.join("corpus", "grown", "final-precise")
GROW_SECONDS = 60
FOUND_RE = re.compile(r"finding after ([0-9.]+) s")
FUZZ_STALL = 120


def log(text):
    print(text, flush=True)


def make_fuzz(tree, seconds, seed, jobs, stop_at_finding=True):
    """One make fuzz VARIANT=final in `tree`: ('found', seconds) | ('none', None) |
    ('error', why).  The run is stopped once it has printed its finding's line."""
    env = dict(os.environ, HV_REPLAY="0", FUZZ_SECONDS=str(seconds), FUZZ_SEED=str(seed),
               JOBS=str(jobs))
    shutil.rmtree(os.path.join(tree, "findings"), ignore_errors=True)
    proc = subprocess.Popen(["make", "fuzz", "VARIANT=final"], cwd=tree, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            errors="replace", start_new_session=True)
    # A run that goes silent is stopped all the same, FUZZ_STALL seconds after its budget.
    watchdog = threading.Timer(seconds + FUZZ_STALL, kill_group, (proc,))
    watchdog.start()
    found, tail = None, []
    try:
        for line in proc.stdout:
            tail = (tail + [line.rstrip()])[-5:]
            m = FOUND_RE.search(line)
            if m:
                found = float(m[1])
                if stop_at_finding:
                    break
    finally:
        watchdog.cancel()
        kill_group(proc)
        proc.stdout.close()
        rc = proc.wait()
    if found is not None:
        return "found", found
    if rc == 0:
        return "none", None
    if rc == -signal.SIGKILL:
        return "error", f"no end {FUZZ_STALL} s after its budget: " + " | ".join(tail)[-200:]
    return "error", f"exit {rc}: " + " | ".join(tail)[-200:]


def kill_group(proc):
    """make fuzz and everything it started (its own session): the fuzzer's workers too."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def set_grown(tree, source):
    """corpus/grown/final-precise/ of `tree`: emptied, then a copy of `source` if any."""
    path = os.path.join(tree, GROWN)
    shutil.rmtree(path, ignore_errors=True)
    if source:
        shutil.copytree(source, path)
    else:
        os.makedirs(path)


def grown_corpus(scratch, regrow):
    """The grown corpus of a GROW_SECONDS JOBS=2 campaign on unmodified final, made
    in the scratch copy and cached per hash of nmi_core.c."""
    cache = os.path.join(ROOT, "build", "bugs", f"grown-{scratch.core_hash}")
    if os.path.isdir(cache) and os.listdir(cache) and not regrow:
        log(f"grown corpus: {cache} ({len(os.listdir(cache))} inputs, cached)")
        return cache
    scratch.reset()
    ok, out = scratch.build("fuzz_nmi")
    if not ok:
        raise RuntimeError(f"final does not build: {out}")
    set_grown(scratch.path, None)
    log(f"grown corpus: a {GROW_SECONDS} s campaign on final, JOBS=2 ...")
    kind, what = make_fuzz(scratch.path, GROW_SECONDS, 1, 2, stop_at_finding=True)
    if kind != "none":
        raise RuntimeError(f"the campaign on unmodified final did not end cleanly: {kind} {what}")
    shutil.rmtree(cache, ignore_errors=True)
    shutil.copytree(os.path.join(scratch.path, GROWN), cache)
    log(f"grown corpus: {cache} ({len(os.listdir(cache))} inputs)")
    return cache


def timed(cmd, tree, timeout):
    t0 = time.monotonic()
    rc, out = catalogue.run(cmd, tree, timeout=timeout)
    return rc, out, time.monotonic() - t0


def run_explore(tree):
    rc, out, secs = timed(["make", "explore", "VARIANT=final"], tree, 300)
    if rc == 0:
        return "none", secs
    if re.search(r"^FAIL ", out, re.M) or re.search(r": [1-9]\d* failing", out):
        return "found", secs
    return "error", f"exit {rc}: {out.strip()[-200:]}"


def run_test_sim(tree, suites):
    rc, out, secs = timed([sys.executable, "tests/run_tests.py"] + suites, tree, 1800)
    fails = re.findall(r"^FAIL (.*)", out, re.M)
    if fails:
        return "found", secs, fails[0][:100]
    if rc == 0:
        return "none", secs, ""
    return "error", f"exit {rc}: {out.strip()[-200:]}", ""


def measure(bug, scratch, configs, args, grown):
    """Every configuration on one bug: {config: [result, ...]}, result = [kind, value]."""
    res = {}
    ok, out = scratch.apply(bug)
    if ok:
        ok, out = scratch.build("nmisim", "fuzz_nmi")
    if not ok:
        log(f"{bug.name:30} ERROR: {out.splitlines()[-1] if out else 'patch/build failed'}")
        return {c: [["error", out[-200:]]] for c in configs}
    for c in configs:
        if c in FUZZ_CONFIGS:
            jobs = int(c[-1])
            res[c] = []
            for seed in range(1, args.seeds + 1):
                set_grown(scratch.path, grown if "grown" in c else None)
                kind, v = make_fuzz(scratch.path, args.budget, seed, jobs)
                res[c].append([kind, v])
                log(f"{bug.name:30} {c:14} seed {seed}: "
                    + (f"found after {v:.2f} s" if kind == "found" else
                       f"not found in {args.budget} s" if kind == "none" else f"ERROR {v}"))
        elif c == "explore":
            kind, v = run_explore(scratch.path)
            res[c] = [[kind, v]]
            log(f"{bug.name:30} {c:14} " + (f"{kind} ({v:.1f} s)" if kind != "error" else f"ERROR {v}"))
        elif c == "test-sim":
            kind, v, first = run_test_sim(scratch.path, args.suites)
            res[c] = [[kind, v]]
            log(f"{bug.name:30} {c:14} " + (f"{kind} ({v:.1f} s)" if kind != "error" else f"ERROR {v}")
                + (f": FAIL {first}" if first else ""))
    return res


def saved_table(args):
    """The table of one or more --json files: each bug's results per configuration,
    the later file's where two measured the same."""
    results, configs = {}, []
    for path in args.table.split(","):
        with open(path) as f:
            saved = json.load(f)
        for c in saved["configs"]:
            if c not in configs:
                configs.append(c)
        for name, res in saved["results"].items():
            results.setdefault(name, {}).update(res)
        if any(c in FUZZ_CONFIGS for c in saved["configs"]):
            args.seeds, args.budget = saved["seeds"], saved["budget"]
        if "test-sim" in saved["configs"]:
            args.suites = saved["test_sim_suites"]
    args.suites = getattr(args, "suites", TEST_SIM_SUITES)
    configs = [c for c in CONFIGS if c in configs]
    bugs = [b for b in catalogue.load(ROOT) if b.name in results]
    return 0 if table(bugs, configs, results, args) else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bugs", help="comma-separated names (default: the whole catalogue)")
    ap.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated, of {', '.join(CONFIGS)}")
    ap.add_argument("--seeds", type=int, default=3, help="FUZZ_SEED=1..N per fuzz configuration (3)")
    ap.add_argument("--budget", type=int, default=10, help="FUZZ_SECONDS per fuzz run (10)")
    ap.add_argument("--json", help="write the raw results here")
    ap.add_argument("--regrow", action="store_true", help="grow the corpus again even if cached")
    ap.add_argument("--full-test-sim", action="store_true",
                    help="test-sim runs every suite of make test-sim, not only the core's")
    ap.add_argument("--table", metavar="JSON,...", help="measure nothing: print the table of "
                    "runs saved with --json (several: their configurations side by side)")
    args = ap.parse_args()
    os.chdir(ROOT)
    if args.table:
        return saved_table(args)
    configs = [c for c in args.configs.split(",") if c]
    bad = [c for c in configs if c not in CONFIGS]
    if bad:
        ap.error(f"unknown configuration {', '.join(bad)} (of {', '.join(CONFIGS)})")
    args.suites = FULL_TEST_SIM if args.full_test_sim else TEST_SIM_SUITES
    try:
        bugs = catalogue.load(ROOT, [n for n in (args.bugs or "").split(",") if n])
    except ValueError as e:
        ap.error(str(e))
    scratch = catalogue.Scratch(ROOT, os.path.join(ROOT, "build", "bugs", "tree"))
    log(f"{len(bugs)} bugs, configurations {', '.join(configs)}; fuzz: {args.seeds} seeds, "
        f"{args.budget} s budget; test-sim: suites {' '.join(args.suites)}; scratch copy {scratch.path}")
    grown = grown_corpus(scratch, args.regrow) if any("grown" in c for c in configs) else None
    results = {}
    try:
        for bug in bugs:
            results[bug.name] = measure(bug, scratch, configs, args, grown)
    except KeyboardInterrupt:
        log("interrupted: the table of what was measured")
    finally:
        scratch.reset()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"configs": configs, "seeds": args.seeds, "budget": args.budget,
                       "test_sim_suites": args.suites,
                       "equivalent": [b.name for b in bugs if b.equivalent],
                       "results": results}, f, indent=1)
    ok = table(bugs, configs, results, args)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
