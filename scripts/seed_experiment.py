# SPDX-License-Identifier: MIT
"""The seed's experiment on the bare-metal hypervisor: how long does the
racy-counter core survive an NMI flood before its counter underflows?

qemu (default): QEMU -smp 1, the mask/unmask loop (workload=mask-loop host=1),
    CPU 0 flooded with back-to-back QMP inject-nmi.  Time is wall time from the
    first injection to the core's `NMI core assertion failed` line.
bochs: Bochs, 2 CPUs, an NMI IPI storm between them (workload=ipi-storm), a
    different `seed=` per run.  Time is the kernel's own (emulated) clock at the
    assertion, printed by plat_halt.

Why QEMU rarely trips it: the race needs one NMI deferred inside a critical
section and a second one landing between nmi_unmask()'s test of `visited` and
its decrement.  TCG takes interrupts only at translation-block boundaries, so the
window is one short block, and QEMU merges NMIs injected faster than the vCPU
takes them (about 1000 delivered per second here).  Bochs delivers NMIs at
instruction boundaries, and IPIs arrive far faster.  Not part of the test suite.

    python3 -m scripts.seed_experiment --kernel build/racy-counter/hv.elf --emulator bochs
"""
import argparse
import re
import statistics
import tempfile
import time

from . import books
from .bochs import run_bochs
from .qemu import Qemu, accel_args
from .qmp import QMPError

ASSERT = "NMI core assertion failed"
AT_RE = re.compile(r"on cpu (\d+) at t=(\d+) us")


def nmis_counted(text):
    """NMIs taken on every CPU, from the per-CPU state the assertion prints."""
    return books.parse(text).total("nmi_entries")


def qemu_run(kernel, cap, work, batch, seed):
    with Qemu(kernel, f"workload=mask-loop host=1 work={work} seed={seed} "
              f"seconds={int(cap) + 30}", smp=1, timeout=cap + 60) as vm:
        if vm.wait_for(r"^READY", timeout=20) is None:
            return None, "never READY"
        qmp = vm.connect_qmp()
        start = time.monotonic()
        injected = 0
        while time.monotonic() - start < cap:
            try:
                qmp.inject_nmi_burst(100, batch=batch)
            except (OSError, QMPError):
                break  # the kernel exited QEMU: the assertion (or worse)
            injected += 100
            if any(ASSERT in line for _, line in list(vm.lines)):
                break
        hit = next((t for t, line in list(vm.lines) if ASSERT in line), None)
        if hit is None:
            vm.wait_for(ASSERT, timeout=3)
            hit = next((t for t, line in list(vm.lines) if ASSERT in line), None)
        if hit is None:
            return None, f"survived {cap:.0f} s, {injected} NMIs injected"
        vm.wait_for(r"^RESULT", timeout=5)
        where = next(line for _, line in vm.lines if ASSERT in line)
        return hit - start, (f"{injected} injected, {nmis_counted(vm.output())} taken: "
                             + where.strip())


def bochs_run_once(kernel, cap, work, seed):
    with tempfile.TemporaryDirectory(prefix="hv-seed-") as d:
        r = run_bochs(kernel, f"workload=ipi-storm work={work} seed={seed} "
                      f"seconds={int(cap)}", d, cpus=2, timeout=cap * 4 + 60)
    m = AT_RE.search(r["serial"])
    if ASSERT not in r["serial"] or not m:
        return None, f"survived ({r['result'] or 'no RESULT'}, {r['wall']:.0f} s wall)"
    where = next(l for l in r["serial"].splitlines() if ASSERT in l)
    return int(m.group(2)) / 1e6, (f"{nmis_counted(r['serial'])} NMIs taken, "
                                   f"{r['wall']:.1f} s wall: {where.strip()}")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kernel", required=True)
    ap.add_argument("--emulator", choices=("qemu", "bochs"), default="qemu")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--cap", type=float, default=30,
                    help="seconds per run (QEMU: of flood; Bochs: of emulated time)")
    ap.add_argument("--work", type=int, default=200, help="mean critical-section length")
    ap.add_argument("--batch", type=int, default=100,
                    help="QEMU: inject-nmi commands pipelined per QMP round trip")
    a = ap.parse_args()
    if a.emulator == "qemu":
        accel_args()
    clock = "wall time from the first injection" if a.emulator == "qemu" else \
        "emulated time since boot"
    print(f"seed experiment: {a.emulator}, {a.runs} runs, cap {a.cap:.0f} s ({clock})",
          flush=True)
    times = []
    for i in range(a.runs):
        if a.emulator == "qemu":
            t, what = qemu_run(a.kernel, a.cap, a.work, a.batch, seed=i)
        else:
            t, what = bochs_run_once(a.kernel, a.cap, a.work, seed=i)
        if t is None:
            print(f"run {i + 1}: no assertion: {what}", flush=True)
        else:
            times.append(t)
            print(f"run {i + 1}: assertion after {t:.3f} s ({what})", flush=True)
    if times:
        print(f"time to failure ({a.emulator}): median {statistics.median(times):.3f} s, "
              f"min {min(times):.3f} s, max {max(times):.3f} s; "
              f"{len(times)}/{a.runs} runs failed")
    else:
        print(f"no run failed within {a.cap:.0f} s ({a.emulator})")


if __name__ == "__main__":
    main()
