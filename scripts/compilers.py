"""The verdict on every variant as each compiler builds it (docs/variants.md, the table).

    python3 -m scripts.compilers [--seconds 30] [--variants v,v] [--compilers gcc,clang]
                                 [--opts -O0,-O2]

For each variant x compiler x optimisation level it builds the core with
`make HV_CC=... OPT=...` (build/<variant>[-O0][-clang]/), checks that the core is
byte-identical in nmisim and fuzz_nmi, and measures:
  - explore: `nmisim run --quiet --all --nmis 2` on corpus/scenarios/seed-race.nmi
    (every placement of up to two NMIs in it, at instruction precision): failing
    schedules;
    with --all, on every canonical scenario too (what `make explore` runs: slow at -O0);
  - fuzz: libFuzzer in precise mode from an empty corpus, seed 1, for up to --seconds:
    the time to the first finding and what it was (the books' law it broke, or the
    core's assertion), or the executions without one.
It prints one Markdown table row per build as it goes, then, for reentrant-loop, the
machine code of the drain's decrement (`c->visited--` in nmi_unmask) in each build.
"""
import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

FLAGS = ["-handle_usr1=0", "-handle_usr2=0", "-timeout=10"]


def tag(variant, cc, opt):
    return variant + ("" if opt == "-O2" else opt) + ("" if cc == "gcc" else "-clang")


def build(variant, cc, opt):
    t = tag(variant, cc, opt)
    subprocess.run(["make", "-s", f"VARIANT={variant}", f"HV_CC={cc}", f"OPT={opt}",
                    f"build/{t}/nmisim", f"build/{t}/fuzz_nmi"], check=True,
                   stdout=subprocess.DEVNULL)
    out = subprocess.run([sys.executable, "-m", "scripts.check_identity", f"build/{t}/nmi_core.o",
                          f"build/{t}/nmisim", f"build/{t}/fuzz_nmi"],
                         capture_output=True, text=True)
    return f"build/{t}", out.returncode == 0


def explore(b, files):
    # --all: count every failing placement; without it nmisim stops at the first.
    out = subprocess.run([f"{b}/nmisim", "run", "--quiet", "--all", "--nmis", "2"] + files,
                         capture_output=True, text=True).stdout
    m = re.search(r"(\d+) schedules in \d+ scenarios \[[^]]*\]: (\d+) failing", out)
    if m:
        return int(m[2]), int(m[1])
    fail = re.search(r"(\d+) of (\d+) schedules fail", out)
    if fail:
        return int(fail[1]), int(fail[2])
    n = re.search(r"(\d+) schedules?,", out)
    return 0, int(n[1]) if n else -1


def fuzz(b, seconds):
    d = tempfile.mkdtemp(prefix="nmi-compilers-")
    t0 = time.monotonic()
    try:
        p = subprocess.Popen([f"{b}/fuzz_nmi", d, "-seed=1", f"-max_total_time={seconds}",
                              "-print_final_stats=1", f"-artifact_prefix={d}/"] + FLAGS,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        found, what, execs = None, "", 0
        for line in p.stderr:
            if "NMI VIOLATION" in line and found is None:
                found = time.monotonic() - t0
                what = line.split(":", 1)[1].strip()
            m = re.match(r"stat::number_of_executed_units:\s+(\d+)", line)
            if m:
                execs = int(m[1])
        p.wait()
    finally:
        shutil.rmtree(d)
    return found, what, execs


def short(what):
    if "UINT32_MAX" in what:
        return "counter underflow (assertion)"
    law = re.search(r"law=([\w-]+)", what)  # books: FAILED law=<name> cpu=<n> ...
    if law:
        return f"law {law[1]}"
    if "underflow" in what:
        return "counter underflow (NMI handled twice)"
    if "lost" in what:
        return "lost NMI"
    if "unbounded" in what:
        return "unbounded drain"
    return what[:50]


def decrement(b):
    """The instructions of the source line `c->visited--;` inside nmi_unmask."""
    lines = {i + 1 for i, text in enumerate(open("hv/nmi_core.c")) if "c->visited--;" in text}
    out = subprocess.run(["objdump", "-d", "-l", "--no-show-raw-insn", f"{b}/nmi_core.o"],
                         capture_output=True, text=True).stdout
    func, src, picked = None, None, []
    for line in out.splitlines():
        m = re.match(r"[0-9a-f]+ <(\w+)>:", line)
        if m:
            func = m[1]
            continue
        m = re.match(r".*nmi_core\.c:(\d+)", line)
        if m:
            src = int(m[1])
            continue
        m = re.match(r"\s+([0-9a-f]+):\s+(.*)", line)
        if m and func == "nmi_unmask" and src in lines:
            picked.append(f"{m[1]:>5}:  {m[2].strip()}")
    return picked


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--variants", default="coalescing,racy-counter,reentrant-loop,final")
    ap.add_argument("--compilers", default="gcc,clang")
    ap.add_argument("--opts", default="-O2,-O0")
    ap.add_argument("--all", action="store_true", help="explore every canonical scenario too")
    args = ap.parse_args()
    scenarios = sorted(glob.glob("corpus/scenarios/*.nmi"))
    version = {cc: subprocess.run([{"gcc": "gcc", "clang": "clang-14"}[cc], "--version"],
                                  capture_output=True, text=True).stdout.splitlines()[0]
               for cc in args.compilers.split(",")}
    for cc, v in version.items():
        print(f"{cc}: {v}")
    print(f"fuzz: precise mode, empty corpus, -seed=1, up to {args.seconds} s; explore: NMIS=2\n")
    print("| variant | compiler | OPT | core identical | fuzz | explore seed-race.nmi |"
          + (f" explore all {len(scenarios)} scenarios |" if args.all else ""))
    print("| --- | --- | --- | --- | --- | --- |" + (" --- |" if args.all else ""), flush=True)
    builds = []
    for variant in args.variants.split(","):
        for cc in args.compilers.split(","):
            for opt in args.opts.split(","):
                b, same = build(variant, cc, opt)
                builds.append((variant, cc, opt, b))
                f1, n1 = explore(b, ["corpus/scenarios/seed-race.nmi"])
                fa, na = explore(b, scenarios) if args.all else (0, 0)
                found, what, execs = fuzz(b, args.seconds)
                fz = (f"**{short(what)}** in {found:.2f} s" if found is not None
                      else f"nothing in {args.seconds} s ({execs} execs)")
                ex1 = f"**{f1} of {n1} fail**" if f1 else f"0 of {n1} fail"
                exa = f"**{fa} of {na} fail**" if fa else f"0 of {na} fail"
                print(f"| `{variant}` | {cc} | {opt} | {'yes' if same else 'NO'} | {fz} | "
                      f"{ex1} |" + (f" {exa} |" if args.all else ""), flush=True)
    for variant, cc, opt, b in builds:
        if variant != "reentrant-loop":
            continue
        print(f"\nreentrant-loop, {cc} {opt}: `c->visited--` in nmi_unmask "
              f"(objdump -d {b}/nmi_core.o)")
        for line in decrement(b):
            print("    " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
