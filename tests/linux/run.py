# SPDX-License-Identifier: MIT
"""Boot the Linux guest and judge its checks (docs/linux-guest.md).

    python3 -m tests.linux.run [--emu qemu|bochs] [--native] [--smp N] [--cmdline WORDS]
    python3 -m tests.linux.run --interactive ...     # a shell on this terminal

The guest's /init (tests/linux/init.sh) prints `LINUX: PASS|FAIL|SKIP <check> ...`
lines and `LINUX: DONE passed=N failed=N skipped=N`; under the hypervisor each guest
console line carries the prefix `guest: `, and the hypervisor ends the run with its
own `RESULT:` line.  This prints one verdict per check, `PASS|FAIL|SKIP
linux-<run>-<check>: details` with <run> one of qemu-native, bochs-native, bochs-hv,
qemu-hv, then the run's own verdicts (boot, done; under the hypervisor isolation and
result), the boot-to-/init time, and exits 1 on any failure, after printing the
last console lines.
"""
import argparse
import os
import re
import sys

from tests.linux import emu as E

LINE_RE = re.compile(r"(?:^|\bguest\S*: )LINUX: (INIT|INFO|PASS|FAIL|SKIP|DONE|ISOLATION)\b ?(.*)$")
DONE_RE = re.compile(r"passed=(\d+) failed=(\d+)")
RESULT_RE = re.compile(r"^RESULT: (PASS|FAIL)\b.*$")
DEFAULT_TIMEOUT = {"qemu-native": 120, "bochs-native": 400, "bochs-hv": 900, "qemu-hv": 300}


def parse(lines):
    """The guest's LINUX: lines and the hypervisor's RESULT line from [(t, text)]."""
    out = {"init": None, "info": None, "checks": [], "done": None, "isolation": [],
           "result": None, "ept": None}
    for t, text in lines:
        m = LINE_RE.search(text)
        if m:
            kind, rest = m.group(1), m.group(2).strip()
            if kind == "INIT" and out["init"] is None:
                out["init"] = (t, rest)
            elif kind == "INFO":
                out["info"] = rest
            elif kind in ("PASS", "FAIL", "SKIP"):
                name, _, detail = rest.partition(" ")
                out["checks"].append((kind, name, detail, t))
            elif kind == "DONE" and out["done"] is None:
                out["done"] = (t, rest)
            elif kind == "ISOLATION":
                out["isolation"].append((t, rest))
            continue
        if text.startswith("guest"):
            continue
        r = RESULT_RE.search(text)
        if r and out["result"] is None:
            out["result"] = text
        elif "EPT violation" in text and out["ept"] is None:
            out["ept"] = (t, text)
    return out


def judge(run, lines, ended, native, expect_isolation):
    """[(kind, name, detail)] for one finished run, and the timing figures."""
    p = parse(lines)
    v = []
    for kind, name, detail, _ in p["checks"]:
        v.append((kind, f"linux-{run}-{name}", detail))
    times = {"init_s": p["init"][0] if p["init"] else None,
             "done_s": p["done"][0] if p["done"] else None,
             "end_s": lines[-1][0] if lines else None}
    if p["init"]:
        up = re.search(r"uptime=(\S+)", p["init"][1])
        times["init_uptime_s"] = float(up.group(1)) if up else None
        v.append(("PASS", f"linux-{run}-boot",
                  f"/init at {p['init'][0]:.1f} s wall ({p['init'][1]})"))
    else:
        v.append(("FAIL", f"linux-{run}-boot", "no 'LINUX: INIT' line: /init never ran"))
    npass = sum(1 for k, *_ in p["checks"] if k == "PASS")
    nfail = sum(1 for k, *_ in p["checks"] if k == "FAIL")
    if p["done"] is None:
        v.append(("FAIL", f"linux-{run}-done", "no 'LINUX: DONE' line"
                  + ("" if ended else " (the emulator was stopped at the timeout)")))
    else:
        m = DONE_RE.search(p["done"][1])
        if not m or (int(m.group(1)), int(m.group(2))) != (npass, nfail):
            v.append(("FAIL", f"linux-{run}-done",
                      f"'{p['done'][1]}' but {npass} PASS and {nfail} FAIL lines"))
        elif not ended:
            v.append(("FAIL", f"linux-{run}-done",
                      f"{p['done'][1]}, then the run did not end (stopped at the timeout)"))
        else:
            v.append(("PASS" if nfail == 0 else "FAIL", f"linux-{run}-done", p["done"][1]))
    if not native:
        if expect_isolation:
            wrote = [x for x in p["isolation"] if x[1].startswith("writing")]
            survived = [x for x in p["isolation"] if x[1].startswith("survived")]
            if not wrote:
                v.append(("FAIL", f"linux-{run}-isolation", "the guest never made the write"))
            elif survived:
                v.append(("FAIL", f"linux-{run}-isolation", f"guest: {survived[0][1]}"))
            elif p["ept"] is None or p["ept"][0] < wrote[0][0]:
                v.append(("FAIL", f"linux-{run}-isolation", "no EPT violation reported after the write"))
            else:
                v.append(("PASS", f"linux-{run}-isolation", p["ept"][1].strip()))
        if p["result"] is None:
            v.append(("FAIL", f"linux-{run}-result", "the hypervisor printed no RESULT line"))
        else:
            v.append(("PASS" if p["result"].startswith("RESULT: PASS") else "FAIL",
                      f"linux-{run}-result", p["result"]))
    return v, times


def cmdline_checks(cmdline):
    m = re.search(r"\blinuxtest\.checks=(\S+)", cmdline)
    return m.group(1).split(",") if m else None


def hv_cmdline_for(linux_cmdline, base=E.HV_CMDLINE):
    """The hypervisor expects the guest to end in its EPT report when the isolation
    check runs (the default), and a clean end otherwise."""
    checks = cmdline_checks(linux_cmdline)
    if "guest_expect=" in base:
        return base
    return base + (" guest_expect=ept" if checks is None or "isolation" in checks else "")


def run_linux(emu="qemu", native=True, smp=2, cmdline="", timeout=None, hv=E.HV_ELF,
              hv_cmdline=None, workdir=None, log=print, kernel=E.KERNEL, initrd=E.INITRD):
    """One run: boots, waits for the end (or the timeout), judges.  Returns a dict:
    verdicts [(kind, name, detail)], times {init_s, done_s, end_s, init_uptime_s}
    (seconds of wall time from the emulator's start), lines, ended, run."""
    run = E.label(emu, native)
    if emu == "qemu" and not native:
        ok, why = E.nested_vmx()
        if not ok:
            return {"verdicts": [("SKIP", f"linux-{run}", why)], "times": {}, "lines": [],
                    "ended": False, "run": run}
    linux_cmdline = f"{E.LINUX_CMDLINE} {cmdline}".strip()
    hv_cmdline = hv_cmdline or hv_cmdline_for(linux_cmdline)
    checks = cmdline_checks(linux_cmdline)
    m = E.Machine(emu, native, smp, linux_cmdline, workdir, kernel=kernel, initrd=initrd, hv=hv,
                  hv_cmdline=hv_cmdline)
    log(f"linux-{run}: {smp} CPUs, Linux '{linux_cmdline}'"
        + ("" if native else f", hypervisor '{hv_cmdline}'") + f"; logs in {m.workdir}")
    m.start()
    try:
        ended = m.wait(timeout or DEFAULT_TIMEOUT[run])
    finally:
        m.stop()
    v, times = judge(run, m.lines, ended, native, checks is None or "isolation" in checks)
    return {"verdicts": v, "times": times, "lines": m.lines, "ended": ended, "run": run,
            "workdir": m.workdir}


def _fmt(x):
    return "-" if x is None else f"{x:.1f} s"


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m tests.linux.run", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--emu", choices=E.EMUS, default="qemu")
    ap.add_argument("--native", action="store_true", help="Linux alone, without the hypervisor")
    ap.add_argument("--smp", type=int, default=2)
    ap.add_argument("--cmdline", default="", help="more words for Linux' command line "
                    "(linuxtest.nmis=20, linuxtest.checks=..., ...)")
    ap.add_argument("--hv", default=E.HV_ELF, help="the hypervisor (default build/final/hv.elf)")
    ap.add_argument("--kernel", default=E.KERNEL, help="Linux bzImage (default build/linux/vmlinuz)")
    ap.add_argument("--initrd", default=E.INITRD, help="initramfs (default build/linux/initrd.gz)")
    ap.add_argument("--hv-cmdline", help=f"the hypervisor's command line (default '{E.HV_CMDLINE}'"
                    ", plus guest_expect=ept when the isolation check runs)")
    ap.add_argument("--timeout", type=float, help="seconds (default per run: "
                    + ", ".join(f"{k} {v}" for k, v in DEFAULT_TIMEOUT.items()) + ")")
    ap.add_argument("--workdir", help="logs and ISO (default build/linux/<run>)")
    ap.add_argument("--interactive", action="store_true",
                    help="the console on this terminal, /init gives a shell (linuxtest=shell)")
    a = ap.parse_args(argv)

    if a.interactive:
        cmdline = a.cmdline if "linuxtest=" in a.cmdline else f"linuxtest=shell {a.cmdline}"
        linux_cmdline = f"{E.LINUX_CMDLINE} {cmdline}".strip()
        if a.emu == "qemu" and not a.native:
            ok, why = E.nested_vmx()
            if not ok:
                sys.exit(f"linux: QEMU under the hypervisor needs KVM with nested VMX: {why}."
                         " Use EMU=bochs, or NATIVE=1")
        m = E.Machine(a.emu, a.native, a.smp, linux_cmdline, a.workdir, kernel=a.kernel,
                      initrd=a.initrd, hv=a.hv,
                      hv_cmdline=a.hv_cmdline or f"{E.HV_CMDLINE} guest_expect=done")
        rc = m.interactive()
        sys.exit(0 if rc in (0, 1, None) else rc)

    r = run_linux(a.emu, a.native, a.smp, a.cmdline, a.timeout, a.hv, a.hv_cmdline, a.workdir,
                  kernel=a.kernel, initrd=a.initrd)
    failed = 0
    for kind, name, detail in r["verdicts"]:
        print(f"{kind} {name}" + (f": {detail}" if detail else ""), flush=True)
        failed += kind == "FAIL"
    t = r["times"]
    if t:
        up = t.get("init_uptime_s")
        print(f"linux-{r['run']}: boot-to-/init {_fmt(t['init_s'])}, DONE {_fmt(t['done_s'])}, "
              f"last line {_fmt(t['end_s'])} (wall, from the emulator's start)"
              + (f"; guest uptime at /init {up:.2f} s" if up is not None else ""))
    if failed:
        print(f"--- last console lines ({r.get('workdir', '')}/serial.txt) ---")
        for _, line in r["lines"][-40:]:
            print(line)
        sys.exit(1)


if __name__ == "__main__":
    main()
