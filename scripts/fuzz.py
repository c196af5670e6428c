"""Run libFuzzer on one variant of nmi_core; on a finding, minimize it, replay it
with a timeline (text + SVG) and print the replay command.

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
import subprocess
import sys
import time

LIBFUZZER_FLAGS = ["-handle_usr1=0", "-handle_usr2=0", "-timeout=10", "-rss_limit_mb=2048"]


def run_fuzzer(args, env):
    grown = os.path.join("corpus", "grown", f"{args.tag}-{args.mode}")
    os.makedirs(grown, exist_ok=True)
    os.makedirs(args.findings, exist_ok=True)
    before = set(glob.glob(os.path.join(args.findings, "crash-*")))
    cmd = [args.binary, grown, "corpus/fuzz",
           f"-max_total_time={args.seconds}", "-print_final_stats=1",
           f"-artifact_prefix={args.findings}/"] + LIBFUZZER_FLAGS
    if args.jobs > 1:
        cmd.append(f"-fork={args.jobs}")
    if args.seed is not None:
        cmd.append(f"-seed={args.seed}")
    print("+", " ".join(cmd), flush=True)
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    last_progress, stats, found_at = "", {}, None
    for line in proc.stderr:
        if not args.quiet or "VIOLATION" in line:
            sys.stderr.write(line)
        # One process: "#N  NEW cov: ...".  Fork mode's parent: "#N: cov: ... corp: K ...".
        if re.match(r"#\d+(\s+(NEW|REDUCE|pulse|INITED|DONE)|: cov:)", line):
            last_progress = line.strip()
        m = re.match(r"stat::(\w+):\s+(\d+)", line)
        if m:
            stats[m.group(1)] = int(m.group(2))
        if "NMI VIOLATION" in line and found_at is None:
            found_at = time.monotonic() - t0
    rc = proc.wait()
    stats["wall_seconds"] = time.monotonic() - t0
    crashes = sorted(set(glob.glob(os.path.join(args.findings, "crash-*"))) - before,
                     key=os.path.getmtime)
    return rc, crashes, last_progress, stats, found_at, grown


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
    out = crash.replace("crash-", "min-")
    subprocess.run([args.binary, "-minimize_crash=1", "-max_total_time=15",
                    f"-exact_artifact_path={out}", crash] + LIBFUZZER_FLAGS,
                   env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return out if os.path.exists(out) else crash


def replay(args, env, path, prefix=None):
    """Run one input with the timeline on; returns the prefix of the written files."""
    prefix = prefix or (os.path.splitext(path)[0] if path.endswith(".bin") else path)
    env = dict(env, NMI_TIMELINE=prefix)
    subprocess.run([args.binary, path] + LIBFUZZER_FLAGS, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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

    rc, crashes, progress, stats, found_at, grown = run_fuzzer(args, env)
    if not crashes:
        if rc != 0:
            print(f"fuzz: libFuzzer exited with status {rc} and saved no input", file=sys.stderr)
            return 2
        execs, rate, cov = summary(stats, progress)
        print(f"\nfuzz [{args.variant}, {args.mode}, {args.jobs} job{'s' if args.jobs > 1 else ''}]: "
              f"no finding in {args.seconds} s: {execs} execs, {rate} execs/s"
              + (f", {cov}" if cov else "") + f", corpus kept in {grown}/")
        return 0

    crash = crashes[0]
    print(f"\nfuzz [{args.variant}, {args.mode}]: finding"
          + (f" after {found_at:.2f} s" if found_at is not None else "")
          + (f" ({len(crashes)} failing inputs saved by the workers; the first is "
             f"minimized, the others stay in {args.findings}/)" if len(crashes) > 1 else ""),
          flush=True)
    small = minimize(args, env, crash)
    final = small + ".bin" if not small.endswith(".bin") else small
    os.replace(small, final)
    prefix = replay(args, env, final)
    with open(prefix + ".txt") as f:
        print(f.read())
    print(f"saved: {final} (input), {prefix}.txt (timeline), {prefix}.svg (picture), "
          f"{prefix}.nmi (as a scenario)")
    if args.make_vars is None:
        opt = args.tag[len(args.variant):]
        args.make_vars = f"OPT={opt}" if opt else ""
    print(f"replay: make replay VARIANT={args.variant}"
          + (f" {args.make_vars}" if args.make_vars else "") + f" MODE={args.mode} INPUT={final}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
