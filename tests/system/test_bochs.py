#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""System tests of the host-side NMI path under Bochs 2.7 (SMP, GRUB multiboot2 boot).

Bochs interleaves its CPUs instruction by instruction, unlike QEMU's threads, so
it exercises other orderings of the same IPI storm and stop-the-world rounds; it
also checks that `make trace` works end to end.  Output: `PASS name` /
`FAIL name: reason` / `SKIP name: reason`, then `N passed, N failed, N skipped`.
"""
import argparse
import importlib.util
import os
import re
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def _load(name, file):
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(HERE, "..", "..", "scripts", file))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


bochs_run = _load("bochs_run", "bochs-run.py")
bochs_trace = _load("bochs_trace", "bochs-trace.py")


class Failed(Exception):
    pass


def workload(kernel, workdir, cpus, cmdline, timeout):
    r = bochs_run.run_bochs(kernel, cmdline, workdir, cpus=cpus, timeout=timeout)
    res = r["result"]
    if not (res and res.startswith("RESULT: PASS")):
        why = res or ("timeout" if r["timed_out"] else "no RESULT line")
        details = [l for l in r["serial"].splitlines()
                   if l.startswith(("check FAILED", "NMI core assertion", "EXCEPTION"))]
        raise Failed(why + ("; " + "; ".join(details[:4]) if details else "")
                     + f" (logs: {r['files']['serial.txt']})")
    rounds = sum(int(row.split()[8]) for row in
                 re.findall(r"^\s*\d+(?:\s+\d+){10}\s*$", r["serial"], re.M))
    return f"{res[len('RESULT: PASS '):]}, stop-the-world rounds={rounds}; {r['wall']:.1f} s"


def trace_nmi(kernel, workdir):
    """`make trace` end to end: one NMI's path, entry stub to IRET, through the core."""
    r = bochs_run.run_bochs(kernel, bochs_trace.REGIONS["nmi"], workdir, cpus=2, timeout=90,
                            rc_commands=bochs_trace.RC)
    if not (r["result"] or "").startswith("RESULT: PASS"):
        raise Failed(f"traced run: {r['result'] or 'no RESULT line'}")
    lines = bochs_trace.traced_lines(r["files"]["debugger.log"])
    if not lines:
        raise Failed("no traced instructions")
    per_fn, in_core, path = bochs_trace.summarize(lines, bochs_run.symbols(kernel))
    if path[0] != "nmi_entry" or path[-1] != "nmi_entry" or "nmi_host_entry" not in path \
            or not in_core:
        raise Failed("unexpected path " + " -> ".join(path))
    return f"{sum(per_fn.values())} instructions, {in_core} in the core; {r['wall']:.1f} s"


def tests(k, w):
    def run(name, cpus, cmdline, timeout):
        return name, lambda: workload(k, os.path.join(w, name), cpus, cmdline, timeout)
    return [
        run("bochs-selftest-smp2", 2, "workload=selftest", 90),
        run("bochs-stress-smp2", 2, "workload=stress rounds=100000", 150),
        run("bochs-stress-smp4", 4, "workload=stress rounds=20000", 150),
        ("bochs-trace-nmi", lambda: trace_nmi(k, os.path.join(w, "bochs-trace-nmi"))),
    ]


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--kernel", required=True)
    ap.add_argument("--workdir", default="build/bochs-test")
    ap.add_argument("-k", "--filter", default="", help="run tests whose name contains this")
    a = ap.parse_args()
    passed = failed = skipped = 0
    start = time.monotonic()
    missing = [t for t in ("bochs", "grub-mkrescue", "xorriso") if not shutil.which(t)]
    for name, fn in tests(a.kernel, a.workdir):
        if a.filter not in name:
            continue
        if missing:
            skipped += 1
            print(f"SKIP {name}: not installed: {' '.join(missing)}", flush=True)
            continue
        try:
            note = fn()
            passed += 1
            print(f"PASS {name} ({note})", flush=True)
        except Exception as e:  # noqa: BLE001 - a test failure of any kind
            failed += 1
            print(f"FAIL {name}: {e}", flush=True)
    print(f"{passed} passed, {failed} failed, {skipped} skipped "
          f"({time.monotonic() - start:.0f} s)")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
