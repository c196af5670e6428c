# SPDX-License-Identifier: MIT
"""The system tests: tests/system/tests.cfg declares them (its header is the
format), this boots each one and judges it.  From the repository root:

    python3 -m tests.system.run --emulator qemu --kernel build/final/hv.elf
    python3 -m tests.system.run --emulator bochs --kernel build/final/hv.elf -k vmx-exp
    python3 -m tests.system.run --list

One line per verdict (scripts/report.py), each with how long its test took, then
`N passed, N failed, N skipped`.  A test fails for lack of progress: no output for
its `quiet` seconds stops it (the workloads print a progress line every second);
its `timeout` is only an outer limit.  The first line says how QEMU runs (KVM or
TCG, and why; HV_QEMU_ACCEL=kvm|tcg chooses).
Exit status 1 when a test failed, 2 when the manifest is malformed.
"""
import argparse
import os
import re
import shutil
import sys
import time
import types

from scripts import bochs, bochs_trace, books, qemu
from scripts.iso import make_iso
from scripts.qmp import QMPError
from scripts.report import Reporter, result_line

from .manifest import ManifestError, load

MANIFEST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tests.cfg")
ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
EXIT_CODE_RE = re.compile(r"\bguest exit code (\d+)\b")
VMX_UNAVAILABLE_RE = re.compile(
    r"^VMX unavailable: (.*?)(?:: running the host-side selftest instead)?$", re.M)
GUEST_DONE_RE = re.compile(r"^(?:guest: )?GUEST: DONE passed=(\d+) failed=(\d+)", re.M)
GUEST_RE = re.compile(r"^(?:guest: )?GUEST: (PASS|FAIL|SKIP) (\S+?):? (.*)$", re.M)
HOST_NMIS_RE = re.compile(r"^HOST-NMIS: received=(\d+) expected=(\d+)", re.M)
SEEN_RE = re.compile(r"^HOST-NMIS: seen=(\d+)")
# hv/vmx_exp.c: `EXP <n> <config> <setup>: expected ...; observed ...: <verdict>`
EXP_RE = re.compile(r"^EXP (\d+) (E[01]V[01]) (.*): (as expected|DEVIATES|not run \(.*\))$",
                    re.M)
EXP_RAN_RE = re.compile(r"\b(\d+) experiments ran\b.*?(?:(\d+) not run)?$")
CATALOGUE = 30  # docs/vmx.md's catalogue of VMX NMI experiments: 1..30
LAZY_RE = re.compile(r"^vmx: lazy EPT page \S+ mapped again \(guest rip \S+, idt-vectoring "
                     r"(0x[0-9a-f]+)\)$", re.M)
# The IDT-vectoring information of an NMI (type 2, vector 2) and of INT 0x20 (type 4).
WANT_VECTORING = {"0x80000202": "NMI", "0x80000420": "INT 0x20"}
DETAILS = ("check FAILED", "books: FAILED", "NMI core assertion", "EXCEPTION", "vmx: ")
TOOLS = {"qemu": ("qemu-system-x86_64",), "bochs": bochs.TOOLS}
ISO_TOOLS = ("grub-mkrescue", "xorriso")


# ---- Booting: one run of a test's machine, whatever the emulator ----------------

def run_args(t, ctx):
    """(kernel, command line, module, module command line, more modules) of a test."""
    kernel = ctx.guests[t.kernel] if t.kernel != "hv" else ctx.kernel
    cmdline = t.cmdline
    if t.inject:
        cmdline += " host=1" + (f" ack=1 nmis={t.inject.count}" if t.inject.kind == "qmp-paced"
                                else "")
    extra = [os.path.join(ROOT, m) for m in t.modules]
    return (kernel, cmdline.strip(), ctx.guests[t.guest] if t.guest else None, t.guest_args,
            extra)


def initrd(module, module_args, extra):
    """QEMU's -initrd for multiboot: modules "file args", separated by commas."""
    mods = ([f"{module} {module_args}".strip()] if module else []) + list(extra)
    return ("-initrd", ",".join(mods)) if mods else ()


def inject(t, vm, qmp, out):
    """Send the test's NMIs through QMP; returns how many were injected.  Paced: each
    one after the kernel has counted the one before (its `HOST-NMIS: seen=N` line),
    so that no two are ever pending together and none may merge; a count that does
    not come within the test's `quiet` seconds, or a wrong one, ends the injection
    (out.problem says which)."""
    if t.inject.kind == "qmp-flood":
        qmp.inject_nmi_burst(t.inject.count)
        return t.inject.count
    for n in range(1, t.inject.count + 1):
        mark = vm.line_count()
        qmp.inject_nmi()
        line = vm.wait_for(SEEN_RE.pattern, timeout=t.quiet, after=mark)
        seen = int(SEEN_RE.match(line).group(1)) if line else None
        if seen != n:
            out.problem = (f"NMI {n} of {t.inject.count}: " +
                           (f"the kernel counted {seen}" if line else
                            f"not counted within {t.quiet:.0f} s"))
            return n
    return t.inject.count


def boot_qemu(t, ctx, workdir):
    kernel, cmdline, module, module_args, more = run_args(t, ctx)
    out = types.SimpleNamespace(problem=None, injected=None, trace=None)
    cdrom, extra = None, ()
    if t.boot == "iso":
        cdrom = os.path.join(workdir, "hv.iso")
        make_iso(kernel, cmdline, cdrom, module, module_args, more)
    else:
        extra = initrd(module, module_args, more)
    start = time.monotonic()
    with qemu.Qemu(kernel, cmdline, smp=t.cpus, timeout=t.timeout, cdrom=cdrom,
                   workdir=workdir, extra_args=extra, quiet=t.quiet) as vm:
        if t.inject:
            if vm.wait_for(r"^READY", timeout=t.quiet) is None:
                out.problem = "the kernel never became READY for the injection"
            else:
                try:
                    out.injected = inject(t, vm, vm.connect_qmp(), out)
                except (OSError, QMPError) as e:
                    out.problem = f"QMP: {e}"
                vm.send_serial(b"D")
        rc, _ = vm.wait_exit()
        out.output = vm.output()
        out.stalled = vm.stalled
        times = [vm.started] + [when for when, _ in vm.lines]
        out.silence = max(b - a for a, b in zip(times, times[1:] + [time.monotonic()]))
    out.wall = time.monotonic() - start
    out.exit, out.timed_out = rc, rc is None and not out.stalled
    return out


def boot_bochs(t, ctx, workdir):
    kernel, cmdline, module, module_args, more = run_args(t, ctx)
    out = types.SimpleNamespace(problem=None, injected=None, trace=None)
    if t.trace:
        r, lines, syms = bochs_trace.trace(kernel, t.trace, workdir, module, t.timeout,
                                           cpus=t.cpus, quiet=t.quiet)
        out.trace = (lines, syms)
    else:
        r = bochs.run_bochs(kernel, cmdline, workdir, cpus=t.cpus, timeout=t.timeout,
                            module=module, module_args=module_args, more_modules=more,
                            quiet=t.quiet)
    out.output, out.exit, out.timed_out, out.wall, out.stalled, out.silence = \
        r["serial"], r["returncode"], r["timed_out"], r["wall"], r["stalled"], r["silence"]
    return out


BOOT = {"qemu": boot_qemu, "bochs": boot_bochs}


# ---- Judging: sub-verdicts [(kind, name, note)], and problems of the test itself --

def verdict_of(t, output):
    """The run's verdict as `PASS ...` / `FAIL ...`, or None when it gave none."""
    if t.kernel != "hv":
        m = GUEST_DONE_RE.search(output)
        if not m:
            return None
        fails = re.findall(r"^(?:guest: )?GUEST: FAIL .*$", output, re.M)
        ok = not fails and m.group(2) == "0"
        return f"{'PASS' if ok else 'FAIL'} {m.group(1)} guest checks passed, " \
            f"{m.group(2)} failed" + "".join(f"; {f}" for f in fails)
    line = result_line(output)
    return line[len("RESULT: "):] if line else None


def expected(t, verdict):
    return verdict == t.expect or verdict.startswith(t.expect + " ")


def judge_books(t, run, notes):
    b = books.parse(run.output)
    problems = []
    for word in t.books:
        if word == "balanced":
            problems += [f"books: {p}" for p in b.problems(t.cpus)]
        elif word.endswith(">0"):
            field = word[:-2]
            total = b.total(field)
            notes.append(f"{field}={total}")
            if not total:
                problems.append(f"books: {field} is 0 on every CPU")
        else:  # cpuN.FIELD=V
            cpu, field, want = re.fullmatch(r"cpu(\d+)\.(\w+)=(\d+)", word).groups()
            got = b.cpus.get(int(cpu), {}).get(field)
            if got != int(want):
                problems.append(f"books: cpu {cpu} {field}={got}, want {want}")
    return problems


def judge_host_nmis(t, run, notes):
    m = HOST_NMIS_RE.search(run.output)
    if run.injected is None:
        return []  # the injection itself failed: run.problem says why
    if not m:
        return ["no HOST-NMIS line"]
    got, sent = int(m.group(1)), run.injected
    if got == 0:
        return [f"no NMI counted of {sent} injected"]
    if got > sent:
        return [f"{got} NMIs counted, more than the {sent} injected"]
    if t.inject.kind == "qmp-paced" and got != sent:
        return [f"{got} NMIs counted of {sent} injected, each after the one before was "
                "counted: want all"]
    notes.append(f"{got}/{sent} NMIs counted" + (f" ({sent - got} merged by QEMU)"
                                                 if got < sent else ""))
    return []


def judge_guest_cpus(t, run, verdict):
    m = re.search(r"\bguest_cpus=(\d+)", verdict)
    if not m or int(m.group(1)) != t.cpus:
        return [f"the guest ran on fewer than {t.cpus} CPUs"]
    return []


def path_matches(words, path):
    """Does the function path match the manifest's words (`...`: any functions)?"""
    pattern = "".join(r"(?:\S+ )*" if w == "..." else re.escape(w) + " " for w in words)
    return re.fullmatch(pattern, " ".join(path) + " ") is not None


def judge_path(t, run, notes):
    lines, syms = run.trace
    if not lines:
        return ["no traced instructions"]
    per_fn, in_core, path = bochs_trace.summarize(lines, syms)
    notes.append(f"{sum(per_fn.values())} instructions, {in_core} in the core")
    problems = [] if path_matches(t.path, path) else ["unexpected path " + " -> ".join(path)]
    if not in_core:
        problems.append("no instruction inside the NMI core")
    return problems


def sub_guest_checks(t, run, ctx):
    return [(v, f"{t.name}/{check}", note) for v, check, note in GUEST_RE.findall(run.output)]


def sub_idt_vectoring(t, run, ctx):
    checks = GUEST_RE.findall(run.output)
    if not any(c.startswith("reinject-") and v == "PASS" for v, c, _ in checks):
        return []
    seen = LAZY_RE.findall(run.output)
    missing = [what for info, what in WANT_VECTORING.items() if info not in seen]
    if missing:
        return [("FAIL", f"{t.name}/idt-vectoring",
                 f"no exit during delivery of {', '.join(missing)}")]
    return [("PASS", f"{t.name}/idt-vectoring", "exits during delivery: " + ", ".join(
        f"{WANT_VECTORING.get(i, '?')} {i}" for i in seen))]


def sub_ept_report(t, run, ctx):
    ept = re.search(r"^vmx: EPT violation: .*$", run.output, re.M)
    alive = "the hypervisor keeps running" in run.output
    return [("PASS" if ept and alive else "FAIL", f"{t.name}/ept-report",
             (ept.group(0) if ept else "no EPT violation report")
             + ("" if alive else "; the hypervisor did not keep running"))]


def sub_experiments(t, run, ctx):
    known = ctx.deviations.get(t.emulator, set())
    out = []
    for exp, cfg, text, how in EXP_RE.findall(run.output):
        listed = exp in known
        if how.startswith("not run"):
            out.append(("SKIP", f"{t.name}/{exp}", f"{cfg}: {how}"))
        elif how == "as expected" and not listed:
            out.append(("PASS", f"{t.name}/{exp}", "as the SDM says"))
        elif how == "DEVIATES" and listed:
            out.append(("PASS", f"{t.name}/{exp}", f"known {t.emulator} deviation, "
                        "docs/emulator-deviations.md"))
        else:
            out.append(("FAIL", f"{t.name}/{exp}",
                        f"{how}, but [deviations] lists it otherwise: {text}"))
    return out


def judge_experiments(t, run, verdict):
    """Every experiment printed its line once: as many as the verdict says ran (and
    were not run), and the whole catalogue unless the command line picked one."""
    m = EXP_RAN_RE.search(verdict)
    lines = EXP_RE.findall(run.output)
    want = (int(m.group(1)) + int(m.group(2) or 0)) if m else None
    if not lines or want != len(lines):
        return [f"{len(lines)} EXP lines for {want if m else '?'} experiments"]
    numbers = sorted(int(n) for n, *_ in lines)
    if "only=" not in t.cmdline and numbers != list(range(1, CATALOGUE + 1)):
        return [f"the EXP lines are not experiments 1..{CATALOGUE} once each: {numbers}"]
    return []


def sub_exit_code(t, run, ctx):
    """The guest kernel's exit code through isa-debug-exit: QEMU alone exits with
    status (code << 1) | 1; the hypervisor names it in its RESULT line."""
    if t.kernel != "hv":
        status = run.exit
        code = (status >> 1) if status is not None and status & 1 else None
        how = f"QEMU exit status {status}"
    else:
        m = EXIT_CODE_RE.search(result_line(run.output) or "")
        code = int(m.group(1)) if m else None
        how = "the hypervisor's RESULT line"
    if code is None:
        return [("FAIL", f"{t.name}/exit-code", f"no exit code ({how})")]
    return [("PASS" if code == 0 else "FAIL", f"{t.name}/exit-code",
             f"guest exit code {code} ({how})")]


SUB = {"guest-checks": sub_guest_checks, "idt-vectoring": sub_idt_vectoring,
       "ept-report": sub_ept_report, "experiments": sub_experiments,
       "exit-code": sub_exit_code}


def how_it_ended(t, run):
    """Why a run without a verdict line ended: stuck, out of time, or its exit."""
    stalled = getattr(run, "stalled", None)
    if stalled:
        return f"no progress: no output for {stalled[0]:.0f} s (since {stalled[1]:.1f} s)"
    if run.timed_out:
        return f"still printing at the outer limit of {t.timeout:.0f} s"
    return f"exit status {run.exit}"


def judge(t, run, ctx):
    """[(kind, name, note)]: the sub-verdicts, then the test's own."""
    logs = f" (logs: {run.logs})"
    took = f"{run.wall:.1f} s"
    verdict = verdict_of(t, run.output)
    if verdict is None:
        tail = "\n".join(run.output.splitlines()[-15:])
        why = how_it_ended(t, run)
        return [("FAIL", t.name, f"{took}: {run.problem + '; ' if run.problem else ''}{why}, "
                 f"no verdict line{logs}; last output:\n{tail}")]
    m = VMX_UNAVAILABLE_RE.search(run.output)
    if t.needs == "vmx" and m:
        return [("SKIP", t.name, f"VMX unavailable: {m.group(1)} (fallback: {verdict})")]
    subs = [r for check in t.checks if check in SUB for r in SUB[check](t, run, ctx)]
    notes, problems = [], [run.problem] if run.problem else []
    if not expected(t, verdict):
        problems.append(f"RESULT: {verdict}, want RESULT: {t.expect}")
    problems += [f"no output line matches {rx!r}" for rx in t.output
                 if not re.search(rx, run.output, re.M)]
    problems += judge_books(t, run, notes)
    if "host-nmis" in t.checks:
        problems += judge_host_nmis(t, run, notes)
    if "guest-on-every-cpu" in t.checks:
        problems += judge_guest_cpus(t, run, verdict)
    if "experiments" in t.checks:
        problems += judge_experiments(t, run, verdict)
    if t.trace:
        problems += judge_path(t, run, notes)
    silence = getattr(run, "silence", None)
    if silence is not None:
        notes.append(f"longest silence {silence:.1f} s")
    if problems:
        details = [line for line in run.output.splitlines() if line.startswith(DETAILS)]
        return subs + [("FAIL", t.name, f"{took}: " + "; ".join(problems + details[-4:]) + logs)]
    summary = verdict[len("PASS "):] if verdict.startswith("PASS ") else verdict
    return subs + [("PASS", t.name, "; ".join([summary] + notes + [took]))]


def run_test(t, ctx):
    missing = [tool for tool in TOOLS[t.emulator] + (ISO_TOOLS if t.boot == "iso" else ())
               if not shutil.which(tool)]
    if missing:
        return [("SKIP", t.name, f"not installed: {' '.join(missing)}")]
    workdir = os.path.abspath(os.path.join(ctx.workdir, t.name))
    shutil.rmtree(workdir, ignore_errors=True)
    os.makedirs(workdir)
    run = BOOT[t.emulator](t, ctx, workdir)
    run.logs = workdir
    return judge(t, run, ctx)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--emulator", choices=sorted(BOOT), help="run this emulator's tests")
    ap.add_argument("--kernel", help="the hypervisor (build/final/hv.elf)")
    ap.add_argument("--guest", help="the test guest (default: guest.elf next to the kernel)")
    ap.add_argument("--guest2", help="the QEMU-style test kernel (default: guest2.elf there)")
    ap.add_argument("--workdir", help="logs, one folder per test (default: next to the kernel)")
    ap.add_argument("--manifest", default=MANIFEST)
    ap.add_argument("-k", "--filter", default="", help="only tests whose name contains this")
    ap.add_argument("--list", action="store_true", help="list the tests and what fails them")
    a = ap.parse_args()
    try:
        tests, deviations = load(a.manifest)
    except ManifestError as e:
        print(f"FAIL manifest: {e}", flush=True)
        return 2
    tests = [t for t in tests if (not a.emulator or t.emulator == a.emulator)
             and a.filter in t.name]
    if a.list:
        for t in tests:
            print(f"{t.name:32} {t.emulator:5} cpus={t.cpus} {t.cmdline or t.trace or ''}\n"
                  f"{'':32} fails when {t.fails_when}")
        return 0
    if not a.kernel or not a.emulator:
        ap.error("--emulator and --kernel are needed to run tests")
    base = os.path.dirname(a.kernel)
    ctx = types.SimpleNamespace(
        kernel=a.kernel, guests={"guest": a.guest or os.path.join(base, "guest.elf"),
                                 "guest2": a.guest2 or os.path.join(base, "guest2.elf")},
        workdir=a.workdir or os.path.join(base, f"{a.emulator}-test"), deviations=deviations)
    if a.emulator == "qemu" and shutil.which("qemu-system-x86_64"):
        args, how = qemu.accel()
        print(f"QEMU: {' '.join(args)} ({how})", flush=True)
    report = Reporter()
    for t in tests:
        for kind, name, note in run_test(t, ctx):
            report.verdict(kind, name, note)
    return report.summary()


if __name__ == "__main__":
    sys.exit(main())
