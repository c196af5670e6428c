"""Suite `replay`: make replay ON=auto on the hypervisor, each case's verdict the
simulator's, and one TRACE=1 replay in Bochs."""
import concurrent.futures
import glob
import os
import re
import sys

from harness import VARIANTS, build, expectations, run, verdict


def replay_hv(path, variant, *extra, timeout=600):
    """python3 -m scripts.replay_hv (make replay ON=...): (exit status, output)."""
    return run([sys.executable, "-m", "scripts.replay_hv", "--input", path, "--variant", variant,
                "--build", f"build/{variant}", "--quiet"] + list(extra), timeout=timeout)


def judge_replay(path, variant, want, rc, out):
    """One replay's verdict: every case as the simulator says, the whole as `# expect:`."""
    last = out.strip().splitlines()[-1] if out.strip() else f"no output (exit {rc})"
    on = re.search(r"\] on (\w+)", out)
    where = os.path.relpath(path, "corpus") if path.startswith("corpus/") else path
    name = f"replay {where} [{variant}] on {on[1] if on else '?'}"
    got = re.search(r"overall sim (\w+), hv (\w+)", last)
    if rc == 77:
        verdict("SKIP", name, last.split(": ", 1)[-1])
    elif rc == 0 and got and got[2] == want:
        verdict("PASS", name, last.split(": ", 1)[-1] + f"; {want}, as expected")
    else:
        why = f"expected {want}, " + (f"both say {got[2]}" if rc == 0 and got else f"exit {rc}")
        body = out.strip().splitlines()[-40:]
        verdict("FAIL", name, why + "\n    " + "\n    ".join(body))


def suite_replay():
    """make replay ON=auto: each scenario of corpus/scenarios/ on every variant and each
    reproducer of corpus/regressions/<v>/ on v and on final, on the hypervisor (QEMU
    for host-only scenarios, Bochs for those with guest steps), nmi@* expanded in one
    boot: every case's verdict is the simulator's, and the whole (any case failing is
    a failure) is the `# expect:` line's.  REPLAY_JOBS (2) replays run at once (Bochs
    is single-threaded).  Then one TRACE=1 replay in Bochs."""
    for v in VARIANTS:
        if not build(v, "nmisim", "hv.elf"):
            return
    jobs = [(f, v, expectations(f).get(v)) for f in sorted(glob.glob("corpus/scenarios/*.nmi"))
            for v in VARIANTS]
    for v in VARIANTS[1:]:
        for f in sorted(glob.glob(f"corpus/regressions/{v}/*.nmi")):
            jobs += [(f, v, "fail"), (f, "final", "pass")]
    # The address form: the seed race's NMI placed at racy-counter's nmi_unmask+0x36
    # (its 9th boundary), the second time there after a second deferred NMI.
    os.makedirs("build/replay-suite", exist_ok=True)
    addr = "build/replay-suite/seed-race-at-address.nmi"
    with open(addr, "w") as f:
        f.write("cpus 1\ncpu0 mask\ncpu0 nmi\ncpu0 nmi\ncpu0 unmask nmi@nmi_unmask+0x36:2\n")
    jobs += [(addr, "racy-counter", "fail"), (addr, "final", "pass")]
    workers = int(os.environ.get("REPLAY_JOBS", "2"))
    with concurrent.futures.ThreadPoolExecutor(max(1, workers)) as pool:
        runs = pool.map(lambda job: replay_hv(job[0], job[1]), jobs)
        for (f, v, want), (rc, out) in zip(jobs, runs):
            judge_replay(f, v, want, rc, out)
    replay_trace_check()


def replay_trace_check():
    """TRACE=1: seed-race on racy-counter in Bochs; the traced case (the simulator's first
    failing one) fails on the hypervisor with the same assertion line as in the simulator,
    and its trace runs through nmi_host_entry and nmi_unmask, the arrival marked."""
    name = "replay-trace scenarios/seed-race.nmi [racy-counter] on bochs"
    rc, out = replay_hv("corpus/scenarios/seed-race.nmi", "racy-counter", "--on", "bochs", "--trace")
    last = out.strip().splitlines()[-1] if out.strip() else ""
    if rc == 77:
        verdict("SKIP", name, last.split(": ", 1)[-1])
        return
    m = re.search(r"trace: case (\d+): (\d+) instructions, (\d+) in the NMI core, in (\S+)", out)
    row, text = None, ""
    if m and os.path.exists(m[4]):
        with open(m[4]) as f:
            text = f.read()
        with open(os.path.join(os.path.dirname(m[4]), "table.txt")) as f:
            row = re.search(rf"^\s*{m[1]}\s+(.+?)\s{{2,}}(.+?)\s+(yes|NO)$", f.read(), re.M)
    problems = [p for p, bad in (
        (f"exit {rc}", rc != 0),
        ("no trace", not m),
        ("the traced case is not an assertion on both sides, the same line",
         not (row and row[1].startswith("assert nmi_core.c:") and row[1] == row[2])),
        ("nmi_host_entry or nmi_unmask missing from the trace",
         "nmi_host_entry+" not in text or "nmi_unmask+" not in text),
        ("no arrival marked", "<== the NMI arrived" not in text)) if bad]
    if problems:
        verdict("FAIL", name, "; ".join(problems) + "\n    "
                + "\n    ".join(out.strip().splitlines()[-30:]))
    else:
        verdict("PASS", name, f"case {m[1]}: {row[1]} on both sides; {m[2]} instructions traced, "
                f"{m[3]} in the core, through nmi_host_entry and nmi_unmask")
