"""Run libFuzzer on one variant of nmi_core; on a finding, minimize it, replay it
with a timeline (text + SVG) and print the replay commands (in the simulator, and on
the hypervisor: make replay ON=bochs TRACE=1).  When QEMU or Bochs is installed (and
HV_REPLAY is not 0) the finding is replayed on the hypervisor too, within 180 s, and
its verdict table saved beside the simulator's timeline, as <prefix>.hv.txt.

    python3 -m scripts.fuzz --binary build/final/fuzz_nmi --variant final   (make fuzz)
    python3 -m scripts.fuzz ... --jobs 2          (make fuzz JOBS=2: libFuzzer -fork=2)
    python3 -m scripts.fuzz ... --replay INPUT                                (make replay)

With --jobs N > 1, libFuzzer's own fork mode runs N worker processes; the parent
merges what they find into the same grown corpus, stops at the first finding (exit
77) and leaves the workers' failing inputs in the findings directory, where they are
minimized and explained exactly as with one worker.

Exit status: 0 no finding, 1 a finding, 2 the fuzzer itself failed.
"""
import argparse
import glob
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time

from .replay_scenario import ScenarioError, parse_scenario

# -handle_usr1/2=0: SIGUSR1 is the simulated NMI, the harness's own.  -timeout: a
# run that the simulator's own runaway bounds (sim/runaway.c) did not end is a finding
# too, a hang of the harness or the core (reported with its timeline like any other).
LIBFUZZER_FLAGS = ["-handle_usr1=0", "-handle_usr2=0", "-timeout=10", "-rss_limit_mb=2048"]
# Fork mode's defaults drop what they should stop for: it ignores timeouts and
# out-of-memory children and goes on fuzzing.  Every failure a worker meets ends the
# campaign as a finding, whatever libFuzzer's defaults are (docs/fuzzing.md).
FORK_FLAGS = ["-ignore_crashes=0", "-ignore_timeouts=0", "-ignore_ooms=0"]
# What libFuzzer saves a failing input as: a crash (an oracle violation aborts), a
# run over -timeout, a run over -rss_limit_mb.
FAILURE_PREFIXES = ("crash-", "timeout-", "oom-")
# A line that says a run failed, in libFuzzer's output or the harness's.
FAILURE_LINE = re.compile(r"NMI VIOLATION|ERROR: libFuzzer: |ERROR: \w+Sanitizer|runtime error:")
HV_REPLAY_SECONDS = 180  # the hypervisor's replay of a finding, its build included
REPLAY_SECONDS = 60  # writing a finding's timeline (a hang is bounded by -timeout)


def failures(findings):
    """The failing inputs libFuzzer saved in the findings directory."""
    return {p for p in glob.glob(os.path.join(findings, "*"))
            if os.path.basename(p).startswith(FAILURE_PREFIXES)}


def kept_inputs(args, grown):
    """The inputs every make fuzz runs first: the grown corpus, the seeds and the
    distilled seeds (corpus directories; libFuzzer keeps what it finds in the first),
    and the reproducers the
    variant must handle (its own; on final, every variant's, since final passes them
    all), which sit beside their scenarios and are named one by one.  Returns
    (directories, reproducer files, how many inputs in all)."""
    regressions = os.path.join("corpus", "regressions")
    mine = [args.variant] if args.variant != "final" else sorted(os.listdir(regressions))
    repro = sorted(f for v in mine for f in glob.glob(os.path.join(regressions, v, "*.bin")))
    dirs = [grown, os.path.join("corpus", "fuzz")] + [
        d for d in [os.path.join("corpus", "distilled")] if os.path.isdir(d)]
    n = len(repro) + sum(1 for d in dirs for f in os.listdir(d) if os.path.isfile(os.path.join(d, f)))
    return dirs, repro, n


def seed_flag(files):
    return [f"-seed_inputs={','.join(files)}"] if files else []


def kept_pass(args, env, dirs, repro):
    """Run every kept input once, in one process, before any fuzzing: a change that
    breaks what the corpus already exercises is found here, in the time the corpus
    takes to run (libFuzzer -runs=0 executes each input and stops at the first
    failure, saving it like a campaign's).  Returns (failing inputs, lines, seconds)."""
    before = failures(args.findings)
    cmd = ([args.binary, "-runs=0", f"-artifact_prefix={args.findings}/"] + LIBFUZZER_FLAGS
           + seed_flag(repro) + dirs)
    t0 = time.monotonic()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True, errors="replace")
    secs = time.monotonic() - t0
    found = sorted(failures(args.findings) - before, key=os.path.getmtime)
    lines = proc.stderr.splitlines()
    if proc.returncode != 0 and not found:
        sys.stderr.write(proc.stderr[-4000:])
        raise RuntimeError(f"the kept inputs did not run (libFuzzer exit {proc.returncode})")
    return found, lines, secs


class Campaign:
    """libFuzzer in a session of its own, held to the budget: one process stops by
    itself at -max_total_time; fork mode's parent only stops starting new jobs then
    and waits for the running ones (each up to its job number in seconds), so the
    whole session is interrupted at the budget.  On a finding in fork mode the other
    workers are stopped too: the failing worker has saved its input already."""

    def __init__(self, cmd, env, budget, fork):
        self.proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True,
                                     errors="replace", start_new_session=True)
        self.fork = fork
        self.timers = []
        self.stopped_at_budget = False
        # A single process gets a few seconds past its own limit before it is stopped.
        self.later(budget + (0 if fork else 5), self.budget_over)

    def later(self, seconds, fn):
        t = threading.Timer(max(0.0, seconds), fn)
        t.daemon = True
        t.start()
        self.timers.append(t)

    def budget_over(self):
        self.stopped_at_budget = self.proc.poll() is None
        self.stop()

    def stop(self):
        """SIGINT to every process of the session (libFuzzer's own orderly exit), then
        SIGKILL to whatever is left two seconds later."""
        if self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGINT)
        except ProcessLookupError:
            return
        self.later(2.0, self.kill)

    def kill(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def wait(self):
        rc = self.proc.wait()
        for t in self.timers:
            t.cancel()
        self.kill()  # a worker its parent left behind
        return rc


def run_fuzzer(args, env):
    grown = os.path.join("corpus", "grown", f"{args.tag}-{args.mode}")
    os.makedirs(grown, exist_ok=True)
    os.makedirs(args.findings, exist_ok=True)
    dirs, repro, n = kept_inputs(args, grown)
    t0 = time.monotonic()
    res = {"stats": {}, "progress": "", "grown": grown, "found_at": None, "pass": None,
           "rc": 0, "crashes": [], "where": "while fuzzing"}

    # 1. The kept inputs, before anything is mutated.
    found, lines, secs = kept_pass(args, env, dirs, repro)
    res["pass"] = (n, secs)
    if found:
        print(f"fuzz: kept inputs: {n} run in {secs:.2f} s; one fails:", flush=True)
        # The failure's own lines: from the violation up to libFuzzer's report.
        shown = False
        for line in lines:
            if FAILURE_LINE.search(line) and not shown:
                shown = True
            elif shown and re.match(r"==\d+== ERROR: libFuzzer", line):
                break
            if shown:
                sys.stderr.write(line + "\n")
        res.update(crashes=found, found_at=time.monotonic() - t0, rc=1, where="in the kept inputs")
        return res
    print(f"fuzz: kept inputs: {n} run in {secs:.2f} s ({', '.join(dirs)}, {len(repro)} reproducers): no failure",
          flush=True)

    # 2. The campaign, in what is left of the budget.
    budget = max(1.0, args.seconds - (time.monotonic() - t0))
    before = failures(args.findings)
    cmd = [args.binary] + dirs + [f"-max_total_time={max(1, int(budget))}", "-print_final_stats=1",
                                  f"-artifact_prefix={args.findings}/"] + seed_flag(repro) + LIBFUZZER_FLAGS
    if args.jobs > 1:
        cmd += [f"-fork={args.jobs}"] + FORK_FLAGS
    if args.seed is not None:
        cmd.append(f"-seed={args.seed}")
    print("+", " ".join(cmd), flush=True)
    run = Campaign(cmd, env, budget, args.jobs > 1)
    tempdir = None
    for line in run.proc.stderr:
        if not args.quiet or "VIOLATION" in line:
            sys.stderr.write(line)
        # One process: "#N  NEW cov: ...".  Fork mode's parent: "#N: cov: ... corp: K ...";
        # there a worker's own lines and statistics (an interrupted one prints them
        # here) are one job's, not the campaign's.
        progress = r"#\d+: cov:" if run.fork else r"#\d+\s+(NEW|REDUCE|pulse|INITED|DONE)"
        if re.match(progress, line):
            res["progress"] = line.strip()
        m = re.match(r"stat::(\w+):\s+(\d+)", line)
        if m and not run.fork:
            res["stats"][m.group(1)] = int(m.group(2))
        m = re.search(r"starting to fuzz in (\S+)", line)
        if m:
            tempdir = m.group(1)
        if FAILURE_LINE.search(line) and res["found_at"] is None:
            res["found_at"] = time.monotonic() - t0
            if run.fork:
                run.later(1.0, run.stop)
    res["rc"] = run.wait()
    res["stats"]["wall_seconds"] = time.monotonic() - t0
    if tempdir and os.path.basename(tempdir).startswith("libFuzzerTemp."):
        shutil.rmtree(tempdir, ignore_errors=True)  # an interrupted parent leaves it
    res["stopped_at_budget"] = run.stopped_at_budget
    res["crashes"] = sorted(failures(args.findings) - before, key=os.path.getmtime)
    return res


def summary(stats, progress):
    """(execs, execs/s, coverage text) of a run without a finding, from either the
    single process's final stats or fork mode's last progress line (whose parent
    prints no final stats): execs/s is then the total over the wall time."""
    single = re.search(r"cov: (\d+) ft: (\d+) corp: (\d+)/(\S+)", progress)
    fork = re.match(r"#(\d+): cov: (\d+) ft: (\d+) corp: (\d+)", progress)
    if fork:
        execs = int(fork.group(1))
        rate = int(execs / stats["wall_seconds"]) if stats.get("wall_seconds") else 0
        return execs, rate, (f"coverage {fork.group(2)} edges / {fork.group(3)} features, "
                             f"corpus {fork.group(4)} inputs")
    execs = stats.get("number_of_executed_units", 0)
    cov = (f"coverage {single.group(1)} edges / {single.group(2)} features, "
           f"corpus {single.group(3)} inputs ({single.group(4)})") if single else ""
    return execs, stats.get("average_exec_per_sec", 0), cov


def minimize(args, env, crash):
    """libFuzzer's -minimize_crash, bounded; returns the smallest failing input."""
    name = os.path.basename(crash)
    for p in FAILURE_PREFIXES:
        if name.startswith(p):
            name = "min-" + name[len(p):]
    out = os.path.join(os.path.dirname(crash), name)
    subprocess.run([args.binary, "-minimize_crash=1", "-max_total_time=15",
                    f"-exact_artifact_path={out}", crash] + LIBFUZZER_FLAGS,
                   env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return out if os.path.exists(out) else crash


def replay(args, env, path, prefix=None):
    """Run one input with the timeline on; returns the prefix of the written files.
    Bounded: an input that hangs the harness is stopped by -timeout, and the harness
    writes the timeline of what ran (fuzz/fuzz_nmi.c, NMI_TIMELINE)."""
    prefix = prefix or (os.path.splitext(path)[0] if path.endswith(".bin") else path)
    env = dict(env, NMI_TIMELINE=prefix)
    try:
        subprocess.run([args.binary, path] + LIBFUZZER_FLAGS, env=env, timeout=REPLAY_SECONDS,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        pass
    return prefix


def replay_command(args, env):
    """make replay: a scenario goes to nmisim, a fuzz input to the fuzz binary."""
    path = args.replay
    if not os.path.isfile(path):
        print(f"replay: {path}: no such file", file=sys.stderr)
        return 2
    # What a replay writes goes to build/replay/, never next to a kept input.
    outdir = os.path.join("build", "replay")
    os.makedirs(outdir, exist_ok=True)
    prefix = os.path.join(outdir, os.path.splitext(os.path.basename(path))[0])
    if path.endswith(".nmi"):
        return subprocess.run([args.nmisim, "run", "--timeline", "--svg", prefix + ".svg", path]).returncode
    prefix = replay(args, env, path, prefix)
    if not os.path.exists(prefix + ".txt"):
        print(f"replay: {path} did not run (is it a fuzz input?)", file=sys.stderr)
        return 2
    with open(prefix + ".txt") as f:
        text = f.read()
    print(text)
    print(f"timeline: {prefix}.txt, picture: {prefix}.svg, as a scenario: {prefix}.nmi")
    return 1 if "VIOLATION:" in text else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--binary", required=True)
    ap.add_argument("--variant", required=True)
    ap.add_argument("--mode", choices=["precise", "fast"], default="precise")
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--jobs", type=int, default=1,
                    help="worker processes (libFuzzer -fork=N when N > 1; default 1)")
    ap.add_argument("--tag", help="build name, e.g. reentrant-loop-O0 (default: the variant)")
    ap.add_argument("--findings", default=None)
    ap.add_argument("--make-vars", help="the make variables that select this build, for "
                    "the replay command it prints (e.g. 'OPT=-O0 HV_CC=clang')")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--replay", metavar="INPUT", help="replay one saved input and stop")
    ap.add_argument("--nmisim", help="the simulator CLI, for replaying .nmi scenarios")
    args = ap.parse_args()
    args.tag = args.tag or args.variant
    args.findings = args.findings or os.path.join("findings", args.tag)
    env = dict(os.environ, NMI_FUZZ_MODE=args.mode)
    if args.replay:
        return replay_command(args, env)

    res = run_fuzzer(args, env)
    crashes, stats = res["crashes"], res["stats"]
    jobs = f"{args.jobs} job{'s' if args.jobs > 1 else ''}"
    if not crashes:
        if res["rc"] != 0 and not res.get("stopped_at_budget"):
            print(f"fuzz: libFuzzer exited with status {res['rc']} and saved no input", file=sys.stderr)
            return 2
        execs, rate, cov = summary(stats, res["progress"])
        print(f"\nfuzz [{args.variant}, {args.mode}, {jobs}]: "
              f"no finding in {stats['wall_seconds']:.1f} s (budget {args.seconds} s): "
              f"{res['pass'][0]} kept inputs, then {execs} execs, {rate} execs/s"
              + (f", {cov}" if cov else "") + f", corpus kept in {res['grown']}/")
        return 0

    crash = crashes[0]
    where = res["where"]
    print(f"\nfuzz [{args.variant}, {args.mode}, {jobs}]: finding"
          + (f" after {res['found_at']:.2f} s" if res["found_at"] is not None else "")
          + f" ({where})"
          + (f" ({len(crashes)} failing inputs saved by the workers; the first is "
             f"minimized, the others stay in {args.findings}/)" if len(crashes) > 1 else ""),
          flush=True)
    t_min = time.monotonic()
    small = minimize(args, env, crash)
    final = small + ".bin" if not small.endswith(".bin") else small
    os.replace(small, final)
    prefix = replay(args, env, final)
    print(f"fuzz: minimized and explained in {time.monotonic() - t_min:.1f} s", flush=True)
    if os.path.exists(prefix + ".txt"):
        with open(prefix + ".txt") as f:
            print(f.read())
    else:
        print(f"(no timeline: the input did not finish within {REPLAY_SECONDS} s when replayed)")
    print(f"saved: {final} (input), {prefix}.txt (timeline), {prefix}.svg (picture), "
          f"{prefix}.nmi (as a scenario)")
    if args.make_vars is None:
        opt = args.tag[len(args.variant):]
        args.make_vars = f"OPT={opt}" if opt else ""
    selection = f"VARIANT={args.variant}" + (f" {args.make_vars}" if args.make_vars else "")
    print(f"replay: make replay {selection} MODE={args.mode} INPUT={final}")
    print(hv_replay_command(args, selection, final, prefix))
    hv_verdict(args, final, prefix)
    return 1


def hv_replay_command(args, selection, final, prefix):
    """The line that replays the finding on the hypervisor; a fast-mode finding cannot
    be (its nmi@N counts platform calls, which the hypervisor does not)."""
    if args.mode == "fast":
        return ("replay on the hypervisor: not for a fast-mode finding (its NMIs are placed "
                "by platform calls, not instructions)")
    try:
        with open(prefix + ".nmi") as f:
            guest = parse_scenario(f.read()).guest_ops()
    except (OSError, ScenarioError):
        guest = ["?"]
    return (f"replay on the hypervisor: make replay {selection} INPUT={final} ON=bochs TRACE=1"
            + ("" if guest else " (no guest step: ON=qemu replays it in seconds, untraced)"))


def hv_verdict(args, final, prefix):
    """The finding's folder receives the hypervisor's verdict beside the simulator's:
    make replay ON=auto (no trace) into <prefix>.hv.txt, one line printed.  Bounded
    (HV_REPLAY_SECONDS, the build included); nothing here may turn a finding into a
    crash of this script, so every failure is a line."""
    if os.environ.get("HV_REPLAY", "1") == "0" or args.mode == "fast":
        return
    if not (shutil.which("bochs") or shutil.which("qemu-system-x86_64")):
        print("hypervisor: not replayed (neither bochs nor qemu-system-x86_64 is installed)")
        return
    deadline = time.monotonic() + HV_REPLAY_SECONDS
    build = os.path.join("build", args.tag)
    try:
        made = subprocess.run(["make", "-s", f"VARIANT={args.variant}"] + shlex.split(args.make_vars or "")
                              + [f"{build}/hv.elf", f"{build}/nmisim"], capture_output=True,
                              text=True, timeout=HV_REPLAY_SECONDS)
        if made.returncode != 0:
            why = (made.stdout + made.stderr).strip().splitlines()
            print(f"hypervisor: not replayed: the build failed ({why[-1] if why else made.returncode})")
            return
        proc = subprocess.Popen([sys.executable, "-m", "scripts.replay_hv", "--input", final,
                                 "--variant", args.variant, "--build", build, "--on", "auto",
                                 "--mode", args.mode, "--table", prefix + ".hv.txt", "--quiet"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                errors="replace", start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the emulator too: its own session
            proc.communicate()
            line = f"the replay did not finish within {HV_REPLAY_SECONDS} s"
            with open(prefix + ".hv.txt", "w") as f:
                f.write(line + "\n")
            print(f"hypervisor: {line} ({prefix}.hv.txt)")
            return
        lines = out.strip().splitlines()
        print(f"hypervisor: {lines[-1] if lines else f'no verdict (exit {proc.returncode})'}"
              + (f" ({prefix}.hv.txt)" if os.path.exists(prefix + ".hv.txt") else ""))
    except Exception as e:  # noqa: BLE001 - a finding stays a finding
        print(f"hypervisor: not replayed: {e.__class__.__name__}: {e}")


if __name__ == "__main__":
    sys.exit(main())
