#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""System tests of the hypervisor's host-side NMI path under QEMU (TCG).

Each test boots the kernel with a workload, optionally drives NMIs through QMP
inject-nmi (they arrive on CPU 0 through LINT1), and judges the kernel's RESULT
line plus the counts it reports.  Output: `PASS name`, `FAIL name: reason` or
`SKIP name: reason` per test, then `N passed, N failed, N skipped`.
"""
import argparse
import os
import random
import re
import shutil
import sys
import tempfile
import time

from scripts.iso import make_iso
from scripts.qemu import Qemu, accel_args


class Failed(Exception):
    pass


class Skip(Exception):
    pass


def judge(vm, want_pass=True):
    rc, result = vm.wait_exit()
    if result is None:
        tail = "\n".join(vm.output().splitlines()[-15:])
        raise Failed(("timeout" if rc is None else f"exit status {rc}") +
                     f", no RESULT line; last output:\n{tail}")
    if want_pass and not result.startswith("RESULT: PASS"):
        details = [l for l in vm.output().splitlines()
                   if l.startswith(("check FAILED", "NMI core assertion", "EXCEPTION"))]
        raise Failed(result + ("; " + "; ".join(details[:4]) if details else ""))
    return result


def field(vm, name):
    m = re.search(rf"\b{name}=(\d+)", vm.output())
    return int(m.group(1)) if m else None


def boot(kernel, cmdline, smp, timeout):
    return Qemu(kernel, cmdline, smp=smp, timeout=timeout)


def host_run(kernel, smp, cmdline, inject, timeout=60):
    """Boot a host=1 workload, wait for READY, run inject(qmp), signal the end
    of injection on COM1, and return (vm, RESULT line, NMIs the kernel counted)."""
    with boot(kernel, "host=1 " + cmdline, smp, timeout) as vm:
        if vm.wait_for(r"^READY") is None:
            raise Failed("kernel never became READY:\n" + vm.output()[-800:])
        qmp = vm.connect_qmp()
        injected = inject(qmp)
        vm.send_serial(b"D")
        result = judge(vm)
        got = field(vm, "received")
        return result, got, injected


def paced(kernel, smp, cmdline, count=200, exact=True):
    """NMIs 2-5 ms apart.  Exact: the kernel must count every one (it checks
    nmis=N itself).  Not exact: on a 2-core host, 4 busy vCPUs leave CPU 0's
    thread descheduled for longer than the gap and QEMU merges NMIs pending on
    one vCPU, so only report the count (invariants must still hold)."""
    def inject(qmp):
        for _ in range(count):
            qmp.inject_nmi()
            time.sleep(random.uniform(0.002, 0.005))
        return count
    expect = f" nmis={count}" if exact else ""
    note = ""
    for attempt in (1, 2):
        try:
            _, got, _ = host_run(kernel, smp, cmdline + expect, inject)
            break
        except Failed as e:
            # A short count with every other check passing is what a busy host
            # does to QEMU (see above): retry once; a real loss repeats.
            if attempt == 2 or "host NMIs received == expected" not in str(e) or \
                    str(e).count("check FAILED") > 1:
                raise
            note = f"; retried after a short count under host load: {e}"
    if got is None or got > count:
        raise Failed(f"kernel counted {got} of {count}")
    return (f"{got}/{count} NMIs counted" + ("" if exact else f" ({count - got} merged by QEMU)")
            + note)


def flood(kernel, smp, workload, count=10000):
    def inject(qmp):
        qmp.inject_nmi_burst(count)
        return count
    t = time.monotonic()
    _, got, _ = host_run(kernel, smp, f"workload={workload}", inject, timeout=90)
    if not got:
        raise Failed(f"no NMI counted out of {count}")
    return f"received {got} of {count} injected ({time.monotonic() - t:.1f} s; QEMU coalesces)"


def selfrun(kernel, smp, cmdline, timeout=60, need=()):
    with boot(kernel, cmdline, smp, timeout) as vm:
        judge(vm)
        for name in need:
            if not field(vm, name):
                raise Failed(f"{name} is 0")
        return f"nmi_entries={field(vm, 'nmi_entries')} ipis_sent={field(vm, 'ipis_sent')}"


def quiesce_rounds(vm):
    rows = re.findall(r"^\s*\d+(?:\s+\d+){10}\s*$", vm.output(), re.M)
    return sum(int(r.split()[8]) for r in rows)


def stop_the_world(kernel, smp):
    with boot(kernel, "workload=quiesce seconds=2", smp, 60) as vm:
        judge(vm)
        rounds = quiesce_rounds(vm)
        if rounds == 0:
            raise Failed("no stop-the-world round completed")
        return f"{rounds} rounds, parks == rounds * {smp - 1}"


def iso_boot(kernel, smp):
    if not shutil.which("grub-mkrescue"):
        raise Skip("grub-mkrescue not installed")
    with tempfile.TemporaryDirectory(prefix="hv-iso-test-") as d:
        iso = os.path.join(d, "hv.iso")
        make_iso(kernel, "workload=selftest rounds=1000", iso)
        with Qemu(cdrom=iso, smp=smp, timeout=60) as vm:
            judge(vm)
            if "multiboot2" not in vm.output():
                raise Failed("GRUB did not boot the kernel via multiboot2")
    return "GRUB multiboot2 boot"


def failure_report(kernel, smp, workload, want_result, want_lines):
    """The failure paths themselves: the verdict and the diagnostic lines."""
    with boot(kernel, f"workload={workload}", smp, 30) as vm:
        rc, result = vm.wait_exit()
        if result != want_result:
            raise Failed(f"expected {want_result!r}, got {result!r}")
        out = vm.output()
        missing = [w for w in want_lines if not re.search(w, out, re.M)]
        if missing:
            raise Failed(f"report lacks {missing}")
        return result


def guest_alone(guest, smp):
    """The test guest as a plain multiboot kernel (no hypervisor): its own checks."""
    with Qemu(guest, "", smp=smp, timeout=30) as vm:
        vm.wait_exit()
        out = vm.output()
    m = re.search(r"^GUEST: DONE passed=(\d+) failed=(\d+)", out, re.M)
    if not m:
        raise Failed("no GUEST: DONE line; last output:\n" + "\n".join(out.splitlines()[-10:]))
    fails = re.findall(r"^GUEST: FAIL .*$", out, re.M)
    if fails or int(m.group(2)):
        raise Failed("; ".join(fails) or m.group(0))
    return f"{m.group(1)} guest checks passed"


def vmx_run(kernel, guest, smp, workload="guest", guest_args=""):
    """workload=guest (the test guest as module, its command line `guest_args`) or
    vmx-exp.  Without VMX (TCG) the hypervisor must say why and pass its host-side
    selftest instead."""
    module = f"{guest} {guest_args}".strip() if guest else None
    with Qemu(kernel, f"workload={workload}", smp=smp, timeout=60,
              extra_args=("-initrd", module) if module else ()) as vm:
        result = judge(vm)
        out = vm.output()
    m = re.search(r"^VMX unavailable: (.*?)(?:: running the host-side selftest instead)?$",
                  out, re.M)
    if m:
        raise Skip(f"VMX unavailable: {m.group(1)} (host-side fallback: {result})")
    if not result.startswith(f"RESULT: PASS vmx-{'guest' if guest else 'exp'}"):
        raise Failed(result)
    return result[len("RESULT: PASS "):]


def tests(k, guest):
    return [
        ("guest-standalone-smp1", lambda: guest_alone(guest, 1)),
        ("guest-standalone-smp2", lambda: guest_alone(guest, 2)),
        ("vmx-guest-smp2", lambda: vmx_run(k, guest, 2)),
        ("vmx-smp-guest-smp2", lambda: vmx_run(k, guest, 2, "guest guest_smp=1", "smp=1")),
        ("vmx-exp-smp1", lambda: vmx_run(k, None, 1, "vmx-exp")),
        ("selftest-smp1", lambda: selfrun(k, 1, "workload=selftest")),
        ("selftest-smp4", lambda: selfrun(k, 4, "workload=selftest")),
        ("iso-multiboot2-smp2", lambda: iso_boot(k, 2)),
        ("paced-qmp-200-smp1", lambda: paced(k, 1, "workload=mask-loop")),
        ("paced-qmp-200-smp4-aps-halt", lambda: paced(k, 4, "workload=mask-loop aps=halt")),
        ("paced-qmp-200-smp4-ipi-storm", lambda: paced(k, 4, "workload=ipi-storm", exact=False)),
        ("flood-qmp-10000-smp1", lambda: flood(k, 1, "mask-loop")),
        ("flood-qmp-10000-smp4-stress", lambda: flood(k, 4, "stress")),
        ("ipi-storm-smp4", lambda: selfrun(k, 4, "workload=ipi-storm seconds=2",
                                           need=("ipis_sent",))),
        ("ipi-storm-smp2", lambda: selfrun(k, 2, "workload=ipi-storm seconds=2",
                                           need=("ipis_sent",))),
        ("stop-the-world-smp4", lambda: stop_the_world(k, 4)),
        ("stress-smp4", lambda: selfrun(k, 4, "workload=stress seconds=3")),
        ("exception-report", lambda: failure_report(
            k, 1, "crash-pf", "RESULT: FAIL exception 14",
            [r"^EXCEPTION #PF vector=14 error=0x2", r"rip=[0-9a-f]{16}",
             r"cr2=0000040000000000"])),
        ("assertion-report-smp2", lambda: failure_report(
            k, 2, "crash-assert", "RESULT: FAIL assertion",
            [r"^NMI core assertion failed at .*nmi_core\.c:\d+: !c->masked",
             r"^\s+1\s+0\s+0"])),
    ]


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--kernel", required=True)
    ap.add_argument("--guest", help="the test guest (default: guest.elf next to the kernel)")
    ap.add_argument("-k", "--filter", default="", help="run tests whose name contains this")
    a = ap.parse_args()
    have_qemu = shutil.which("qemu-system-x86_64") is not None
    if have_qemu:
        accel_args()
    passed = failed = skipped = 0
    start = time.monotonic()
    guest = a.guest or os.path.join(os.path.dirname(a.kernel), "guest.elf")
    for name, fn in tests(a.kernel, guest):
        if a.filter not in name:
            continue
        if not have_qemu:
            skipped += 1
            print(f"SKIP {name}: qemu-system-x86_64 not installed", flush=True)
            continue
        t = time.monotonic()
        try:
            note = fn()
            passed += 1
            print(f"PASS {name} ({note}; {time.monotonic() - t:.1f} s)", flush=True)
        except Skip as e:
            skipped += 1
            print(f"SKIP {name}: {e}", flush=True)
        except Exception as e:  # noqa: BLE001 - a test failure of any kind
            failed += 1
            print(f"FAIL {name}: {e}", flush=True)
    print(f"{passed} passed, {failed} failed, {skipped} skipped "
          f"({time.monotonic() - start:.0f} s)")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
