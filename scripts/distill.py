"""Write corpus/distilled/: the inputs a campaign on final keeps, merged down to those
that each add a feature (libFuzzer -merge=1), as seeds every make fuzz runs first.

    python3 -m scripts.distill [--seconds 240] [--jobs 2] [--seed 11]

A fresh clone then catches, in its kept-inputs pass, the regressions that a grown
corpus would catch: on the bug catalogue (tests/bugs/), the hand-written seeds alone
catch 22 of the 38 bugs that an execution can tell from final before anything is
mutated, and with the distilled seeds 35.  Run it again after a change to the fuzz input's format, the operations
or the features (fuzz/fuzz_nmi.c), since what the old inputs decode to, or which of
them add a feature, changes with them.  It builds build/final/fuzz_nmi first.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile

from .fuzz import FORK_FLAGS, LIBFUZZER_FLAGS as FLAGS

OUT = os.path.join("corpus", "distilled")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=240)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args()
    subprocess.run(["make", "-s", "build/final/fuzz_nmi"], check=True)
    binary = os.path.join("build", "final", "fuzz_nmi")
    with tempfile.TemporaryDirectory(prefix="distill-", dir="build") as tmp:
        grown, merged = os.path.join(tmp, "grown"), os.path.join(tmp, "merged")
        os.makedirs(grown)
        # The seeds go first, so that only what they do not give is merged in.
        shutil.copytree(os.path.join("corpus", "fuzz"), merged)
        print(f"distill: {args.seconds} s of fuzzing final, {args.jobs} jobs, seed {args.seed}", flush=True)
        p = subprocess.run([binary, grown, os.path.join("corpus", "fuzz"), f"-fork={args.jobs}"] + FORK_FLAGS + [
                            f"-max_total_time={args.seconds}", f"-seed={args.seed}"] + FLAGS,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if p.returncode != 0:
            sys.stderr.write(p.stderr[-3000:])
            print("distill: the campaign on final failed: a finding on final is a bug to fix first",
                  file=sys.stderr)
            return 1
        p = subprocess.run([binary, "-merge=1", merged, grown] + FLAGS,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if p.returncode != 0:
            sys.stderr.write(p.stderr[-3000:])
            return 1
        seeds = set(os.listdir(os.path.join("corpus", "fuzz")))
        kept = sorted(f for f in os.listdir(merged) if f not in seeds)
        shutil.rmtree(OUT, ignore_errors=True)
        os.makedirs(OUT)
        for f in kept:
            shutil.copy(os.path.join(merged, f), os.path.join(OUT, f))
        print(f"distill: {OUT}/: {len(kept)} inputs ({len(os.listdir(grown))} grown, merged)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
