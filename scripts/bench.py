"""make bench (python3 -m scripts.bench): the project's figures, measured, never asserted.

  1. stress throughput of the simulator on final (NMIs handled per second, cost per NMI)
  2. time for libFuzzer to find the seed race on racy-counter from an empty corpus,
     instruction-precise mode, over N seeds: median, max, found
  3. steady-state execs/s of each fuzzing mode on final, precise against fast as a
     ratio (goal >= 1), precise with hardware breakpoints against it stepped, and
     JOBS=2 (libFuzzer's fork mode) against JOBS=1 on final, as figures and a ratio
     (BENCH_HWBP_SECONDS, BENCH_JOBS_SECONDS, 20)
  4. make explore time for the seed scenario (NMIS=1 and 2), and for every canonical
     scenario at NMIS=1, 2, 3: schedules run, pruned, failing, seconds
  5. replay on the hypervisor (make replay ON=qemu|bochs): wall seconds of one case
     (seed-race on racy-counter at nmi@9) and of nmi@* over seed-race in one boot, as
     cases per second, in QEMU (TCG) and in Bochs
  6. with BENCH_HV=1: the seed's own experiment, a QMP NMI flood against the
     racy-counter hypervisor in QEMU (make bench-hv), and the instruction counts of
     one host NMI and of one guest NMI under VMX (make trace, Bochs)
  7. Linux's boot to /init in Bochs (2 CPUs): natively, and as the hypervisor's
     guest, with the ratio and the VM exits by reason during that run
     (make bench-linux, tests/linux/bench.py)
  8. the bug catalogue (tests/bugs/, make bench-bugs): per bug, the seconds make fuzz
     (empty and grown corpus, JOBS=1 and 2), make explore and make test-sim take to
     find it, with BENCH_BUGS_SEEDS (3) seeds and BENCH_BUGS_BUDGET (10 s) per run
  9. with BENCH_LONG=1: a 10-minute campaign on final

Environment: BENCH_SEEDS (20), BENCH_SEED_TIMEOUT (30 s), BENCH_STRESS_NMIS (1000000).
"""
import glob
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

FLAGS = ["-handle_usr1=0", "-handle_usr2=0", "-timeout=10"]


def make(variant, *targets):
    subprocess.run(["make", "-s", f"VARIANT={variant}"] + [f"build/{variant}/{t}" for t in targets], check=True)


def header(text):
    print(f"\n== {text}", flush=True)


def bench_stress():
    n = int(os.environ.get("BENCH_STRESS_NMIS", "1000000"))
    header(f"stress: final, 2 CPU threads, 2 NMI sources, {n} NMIs")
    out = subprocess.run(["build/final/nmisim", "stress", "--cpus", "2", "--sources", "2",
                          "--nmis", str(n), "--quiet"], capture_output=True, text=True).stdout
    m = re.search(r"delivered (\d+).*handled (\d+), lost (\d+);.*; ([\d.]+) s, (\d+) NMIs/s", out)
    if not m:
        print(out)
        return None
    delivered, handled, lost, secs, rate = int(m[1]), int(m[2]), int(m[3]), float(m[4]), int(m[5])
    print(f"  {handled} NMIs handled in {secs:.2f} s: {rate} NMIs/s, "
          f"{secs / delivered * 1e6:.2f} us of wall time per NMI (2 host cores), lost {lost}")
    return rate


def time_to_find(binary, seed, timeout, corpus_dir):
    t0 = time.monotonic()
    proc = subprocess.Popen([binary, corpus_dir, f"-seed={seed}", f"-max_total_time={timeout}",
                             f"-artifact_prefix={corpus_dir}/"] + FLAGS,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    found, what = None, ""
    for line in proc.stderr:
        if "NMI VIOLATION" in line and found is None:
            found = time.monotonic() - t0
            what = line.split(":", 1)[1].strip()
    proc.wait()
    return found, what


def bench_seed_race():
    seeds = int(os.environ.get("BENCH_SEEDS", "20"))
    timeout = int(os.environ.get("BENCH_SEED_TIMEOUT", "30"))
    header(f"time to find the seed race: racy-counter, precise, empty corpus, {seeds} seeds")
    times, kinds = [], {}
    for s in range(1, seeds + 1):
        d = tempfile.mkdtemp(prefix="nmi-bench-")
        try:
            t, what = time_to_find("build/racy-counter/fuzz_nmi", s, timeout, d)
        finally:
            shutil.rmtree(d)
        kind = "underflow assertion" if "UINT32_MAX" in what else \
               "counter underflow (double handling)" if "underflow" in what else what[:60]
        if t is not None:
            times.append(t)
            kinds[kind] = kinds.get(kind, 0) + 1
        print(f"  seed {s:2}: " + (f"{t:.3f} s  {kind}" if t is not None else f"not found in {timeout} s"),
              flush=True)
    if times:
        print(f"  found {len(times)} of {seeds}; median {statistics.median(times):.3f} s, "
              f"max {max(times):.3f} s; as: " + ", ".join(f"{k} x{v}" for k, v in kinds.items()))
    return statistics.median(times) if times else None


def execs_per_sec(mode, seconds, extra_env=None):
    """Steady-state execs/s of a campaign on final from the seed corpus (libFuzzer's
    average over the run), with NMI_FUZZ_MODE=mode; NMI_NO_HWBP only if extra_env
    sets it."""
    d = tempfile.mkdtemp(prefix="nmi-bench-")
    env = {k: v for k, v in os.environ.items() if k != "NMI_NO_HWBP"}
    env.update(NMI_FUZZ_MODE=mode, **(extra_env or {}))
    try:
        out = subprocess.run(["build/final/fuzz_nmi", d, "corpus/fuzz", f"-max_total_time={seconds}",
                              "-print_final_stats=1"] + FLAGS, capture_output=True, text=True,
                             env=env).stderr
    finally:
        shutil.rmtree(d)
    m = re.search(r"stat::average_exec_per_sec:\s+(\d+)", out)
    return int(m[1]) if m else 0


def bench_execs():
    """Precise mode's execs/s against fast mode's, the same run, as a ratio (precise
    mode should cost no more than fast).  New inputs are format 1 (fuzz/decode.c), so
    precise mode places their NMIs with hardware breakpoints, one trap each."""
    header("steady-state execs/s on final (20 s each, seed corpus)")
    rates = {mode: execs_per_sec(mode, 20) for mode in ("precise", "fast")}
    for mode, rate in rates.items():
        print(f"  {mode:8}: {rate} execs/s")
    if rates["fast"]:
        print(f"  precise / fast: {rates['precise'] / rates['fast']:.2f}x (goal >= 1.00)")
    return rates


# ---- precise mode on hardware breakpoints ------------------------------------------
def bench_hwbp():
    """Precise mode with hardware breakpoints against the same with them turned off
    (NMI_NO_HWBP=1: every breakpoint placement single-stepped, the fallback where
    perf_event_open is refused) against fast mode: execs/s on final, seed corpus,
    the same run.  The fuzzer's mutants are format 1, whose placements are
    breakpoint placements (docs/fuzzing.md); the format-0 seeds kept in corpus/fuzz/
    run as they are, index form and all, stepped in either case."""
    seconds = int(os.environ.get("BENCH_HWBP_SECONDS", "20"))
    header(f"precise mode: stepped against hardware breakpoints against fast, final, "
           f"{seconds} s each, seed corpus")
    rates = {}
    for name, mode, env in (("precise, stepped", "precise", dict(NMI_NO_HWBP="1")),
                            ("precise, breakpoints", "precise", None),
                            ("fast", "fast", None)):
        rates[name] = execs_per_sec(mode, seconds, env)
        print(f"  {name:21}: {rates[name]} execs/s", flush=True)
    if rates["precise, stepped"] and rates["fast"]:
        print(f"  breakpoints / stepped: {rates['precise, breakpoints'] / rates['precise, stepped']:.2f}x; "
              f"precise (breakpoints) / fast: {rates['precise, breakpoints'] / rates['fast']:.2f}x "
              f"(goal >= 1.00)")
    return rates


def fuzz_rate(jobs, seconds):
    """Total execs and execs/s over the wall time (start-up included) of one fuzzing
    run on final, precise mode, seed corpus: jobs 1 is one process, as make fuzz
    JOBS=1; jobs N > 1 is libFuzzer's -fork=N, as make fuzz JOBS=N."""
    d = tempfile.mkdtemp(prefix="nmi-bench-")
    try:
        cmd = ["build/final/fuzz_nmi", d, "corpus/fuzz", f"-max_total_time={seconds}",
               "-print_final_stats=1"] + FLAGS + ([f"-fork={jobs}"] if jobs > 1 else [])
        t0 = time.monotonic()
        err = subprocess.run(cmd, capture_output=True, text=True).stderr
        wall = time.monotonic() - t0
    finally:
        shutil.rmtree(d)
    if jobs > 1:
        execs = [int(m) for m in re.findall(r"^#(\d+): cov:", err, re.M)]
        execs = max(execs) if execs else 0
    else:
        m = re.search(r"stat::number_of_executed_units:\s+(\d+)", err)
        execs = int(m[1]) if m else 0
    return execs, execs / wall if wall else 0.0, wall


def bench_jobs():
    seconds = int(os.environ.get("BENCH_JOBS_SECONDS", "20"))
    header(f"fuzzing workers: make fuzz JOBS=2 (libFuzzer -fork=2) against JOBS=1, final, "
           f"precise, {seconds} s each, {os.cpu_count()} cores")
    rates = {}
    for jobs in (1, 2):
        load = os.getloadavg()[0]
        execs, rate, wall = fuzz_rate(jobs, seconds)
        rates[jobs] = rate
        print(f"  JOBS={jobs}: {execs} execs in {wall:.1f} s: {rate:.0f} execs/s "
              f"(load average {load:.2f} at the start)", flush=True)
    if rates[1]:
        print(f"  JOBS=2 / JOBS=1: {rates[2] / rates[1]:.2f}x")
    return rates


def bench_explore():
    header("make explore on the seed scenario")
    for v in ("racy-counter", "final"):
        for k in (1, 2):
            t0 = time.monotonic()
            out = subprocess.run([f"build/{v}/nmisim", "run", "--quiet", "--nmis", str(k),
                                  "corpus/scenarios/seed-race.nmi"], capture_output=True, text=True).stdout
            el = time.monotonic() - t0
            m = re.search(r"(\d+) of (\d+) schedules fail", out) or re.search(r"(\d+) schedules", out)
            summary = f"{m[1]} of {m[2]} schedules fail" if m and m.lastindex == 2 else \
                f"{m[1]} schedules, none fails" if m else out.strip()[:80]
            print(f"  {v:13} NMIS={k}: {el:.3f} s, {summary}")


def bench_explore_depth():
    """make explore on every canonical scenario (final) at NMIS=1, 2, 3: schedules
    covered, run, pruned as the twin of one run (sim/explore.c), failing, seconds,
    against the targets (NMIS=2 within 1 s, NMIS=3 within 60 s); NMIS=2 once more with
    every NMI placed by index, single-stepped (NMI_NO_HWBP=1: where hardware
    breakpoints are unavailable), for comparison."""
    header("make explore NMIS=1,2,3: every canonical scenario, final, with pruning")
    goals = {2: 1.0, 3: 60.0}
    files = sorted(glob.glob("corpus/scenarios/*.nmi"))
    for k, env, how in ((1, {}, ""), (2, {}, ""), (3, {}, ""),
                        (2, {"NMI_NO_HWBP": "1"}, " (by index: NMI_NO_HWBP=1)")):
        t0 = time.monotonic()
        p = subprocess.run(["build/final/nmisim", "run", "--quiet", "--nmis", str(k)] + files,
                           capture_output=True, text=True, env=dict(os.environ, **env))
        el = time.monotonic() - t0
        out = p.stdout
        m = re.search(r"(\d+) schedules in \d+ scenarios \[[^]]*\]: (\d+) failing.*; "
                      r"(\d+) run, (\d+) pruned", out)
        if not m:
            print(f"  NMIS={k}{how}: no figure ({out.strip()[-120:]})")
            continue
        if not env and "hardware breakpoints unavailable" in p.stderr:
            how = " (hardware breakpoints unavailable here: placed by index)"
        goal = f", target {goals[k]:g} s: {el / goals[k]:.2f}x the target" if k in goals else ""
        print(f"  NMIS={k}{how}: {m[1]} schedules, {m[3]} run, {m[4]} pruned, {m[2]} failing, "
              f"{el:.3f} s{goal}", flush=True)


def bench_replay():
    """make replay ON=qemu|bochs on seed-race, racy-counter: one case (nmi@9, the
    simulator's first failing placement) and the nmi@* expansion (every boundary of
    the unmask step) in one boot; the wall time of the whole replay (decode, boot,
    the simulator's side) and the emulator's own, cases per second over the whole."""
    header("replay on the hypervisor: seed-race on racy-counter (make replay ON=qemu|bochs)")
    make("racy-counter", "nmisim", "hv.elf")
    seed = "corpus/scenarios/seed-race.nmi"
    d = tempfile.mkdtemp(prefix="nmi-bench-")
    try:
        fixed = os.path.join(d, "seed-race-at9.nmi")
        with open(seed) as f, open(fixed, "w") as g:
            g.write(f.read().replace("nmi@*", "nmi@9"))
        for target, tool in (("qemu", "qemu-system-x86_64"), ("bochs", "bochs")):
            if not shutil.which(tool):
                print(f"  {target:5}: {tool} is not installed")
                continue
            for label, path in (("one case, nmi@9", fixed), ("nmi@*", seed)):
                t0 = time.monotonic()
                p = subprocess.run([sys.executable, "-m", "scripts.replay_hv", "--input", path,
                                    "--variant", "racy-counter", "--build", "build/racy-counter",
                                    "--on", target, "--quiet", "--outdir", d],
                                   capture_output=True, text=True)
                wall = time.monotonic() - t0
                last = (p.stdout.strip().splitlines() or ["?"])[-1]
                m = re.search(r"(\d+) cases? in one boot \(([\d.]+) s\): (\d+) agree", last)
                if p.returncode != 0 or not m:
                    print(f"  {target:5} {label:15}: no figure (exit {p.returncode}: {last[-120:]})")
                    continue
                cases = int(m[1])
                print(f"  {target:5} {label:15}: {wall:5.1f} s wall, {float(m[2]):5.1f} s booted; "
                      f"{cases} case{'s' if cases > 1 else ''} ({m[3]} agree), "
                      f"{cases / wall:.1f} cases/s, boots: 1", flush=True)
    finally:
        shutil.rmtree(d)


def bench_hv():
    header("the seed's own experiment: QMP NMI flood against the racy-counter hypervisor (QEMU)")
    subprocess.run(["make", "-s", "bench-hv"])


def bench_trace():
    header("instructions per NMI on final (make trace, Bochs): host NMI; guest NMI from its "
           "NMI exit to its handler")
    for region in ("nmi", "guest-nmi"):
        out = subprocess.run(["make", "-s", f"TRACE={region}", "trace"], capture_output=True,
                             text=True).stdout
        m = re.search(r"trace region \S+: (\d+) instructions.*\n\s+inside the NMI core: (\d+)", out)
        print(f"  {region:9}: " + (f"{m[1]} instructions, {m[2]} in the core" if m else
                                   "no figure (" + (out.strip().splitlines() or ["?"])[-1] + ")"))


def bench_linux():
    header("Linux boot to /init in Bochs, 2 CPUs: native against under the hypervisor "
           "(goal: ratio <= 1.5)")
    subprocess.run(["make", "-s", "bench-linux", "SMP=2"])


def bench_bugs():
    seeds = os.environ.get("BENCH_BUGS_SEEDS", "3")
    budget = os.environ.get("BENCH_BUGS_BUDGET", "10")
    header(f"the bug catalogue (tests/bugs/): time to find each bug, {seeds} seeds, "
           f"{budget} s per fuzz run (make bench-bugs)")
    subprocess.run([sys.executable, "-m", "scripts.bugs", "--seeds", seeds, "--budget", budget])


def bench_long():
    header("10-minute campaign on final")
    d = tempfile.mkdtemp(prefix="nmi-bench-")
    try:
        p = subprocess.run(["build/final/fuzz_nmi", d, "corpus/fuzz", "-max_total_time=600",
                            "-print_final_stats=1"] + FLAGS, capture_output=True, text=True)
    finally:
        shutil.rmtree(d)
    m = re.search(r"stat::number_of_executed_units:\s+(\d+)", p.stderr)
    print(f"  {m[1] if m else '?'} execs, " + ("0 findings" if p.returncode == 0 else "A FINDING:\n" + p.stderr[-2000:]))


def main():
    make("final", "nmisim", "fuzz_nmi")
    make("racy-counter", "nmisim", "fuzz_nmi")
    bench_stress()
    fuzz_median = bench_seed_race()
    bench_execs()
    bench_hwbp()
    bench_jobs()
    bench_explore()
    bench_explore_depth()
    bench_replay()
    if os.environ.get("BENCH_HV"):
        bench_hv()
        bench_trace()
    bench_linux()
    bench_bugs()
    if os.environ.get("BENCH_LONG"):
        bench_long()
    if fuzz_median is not None:
        print(f"\nseed race: libFuzzer median {fuzz_median:.3f} s (target 0.3 s: "
              f"{fuzz_median / 0.3:.2f}x the target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
