# SPDX-License-Identifier: MIT
"""A finding replays on the hypervisor: make replay ON=bochs|qemu|auto [TRACE=1].

    python3 -m scripts.replay_hv --input corpus/scenarios/seed-race.nmi \\
        --variant racy-counter --build build/racy-counter --on qemu [--trace]

A scenario (.nmi), or a fuzz input (.bin) decoded to one by the fuzz binary,
becomes the command line `workload=replay replay=<compact>` (scripts/replay_scenario.py)
and boots with one CPU more than the scenario's (the last one is the hypervisor's
replay controller): in QEMU (TCG has no VMX: scenarios without guest steps; a
boot takes seconds) or Bochs (VMX).  Every case the hypervisor runs (one per
boundary of the `nmi@*` step, all in one boot) is then run by the simulator, and
the table says whether each pair of verdicts agrees; the instruction count the
hypervisor gives for the `nmi@*` step is checked against the simulator's too.

--trace (Bochs): the hypervisor brackets one case (the simulator's first failing
one) with magic breakpoints, Bochs traces it, and scripts/replay_trace.py prints the
simulator's timeline of that case, then the trace, symbolized.

Exit status: 0 every case agrees, 1 a disagreement (both timelines are printed),
2 the machinery failed (malformed input, no RESULT line, a timeout), 77 the target
cannot replay it (the line says why).  The last line printed is the verdict.
Everything written goes to build/replay/<input>-<build>/.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import time

from .replay_scenario import (COUNT_CASES, REPLAY_RE, CannotReplay, CoreSymbols, ScenarioError, choose_target,
                              compact, compare, normalize, overall, parse_scenario, parse_serial,
                              parse_sim, table)

TIMEOUTS = {"qemu": 120.0, "bochs": 300.0}
SHOWN = 3  # disagreements shown with both timelines
EMULATORS = {"qemu": "qemu-system-x86_64", "bochs": "bochs"}
# Bochs' debugger script for TRACE=1: trace on at the case's first magic breakpoint,
# off at the next (its verdict), then on to the exit's and past it: hv_exit() ends
# Bochs through its shutdown port after its own breakpoint.  The spare `c`s keep a
# replay that stops at one breakpoint more than that (a second NMI's, say) running
# to its RESULT line instead of quitting before it.
# Bochs traces the CPU its debugger is on (`set $cpu = N`): the one whose step places
# the NMI.
def trace_rc(cpu):
    return ("c", f"set $cpu = {cpu}", "trace on", "c", "trace off", "c", "c", "c", "c", "quit")


# ---- the simulator's side ----------------------------------------------------------
def run_sim(nmisim, scn, ats, workdir):
    """{at: (pass|fail, what)}: each case the hypervisor ran, as its own scenario file,
    all in one nmisim process (Scenario.case: at '-' and 'none' leave the wildcard out)."""
    paths = {}
    for at in ats:
        path = os.path.join(workdir, f"case-{at}.nmi")
        with open(path, "w") as f:
            f.write(scn.case(at))
        paths[path] = at
    if not paths:
        return {}
    p = subprocess.run([nmisim, "run", "--quiet"] + list(paths), capture_output=True, text=True,
                       errors="replace", timeout=600)
    if p.returncode not in (0, 1):
        raise RuntimeError(f"nmisim exited {p.returncode}: {(p.stdout + p.stderr).strip()[-300:]}")
    got = parse_sim(p.stdout)
    return {at: got[path] for path, at in paths.items() if path in got}


def sim_timeline(nmisim, text, path):
    """`nmisim run --timeline` of a scenario text written to `path`."""
    with open(path, "w") as f:
        f.write(text)
    p = subprocess.run([nmisim, "run", "--timeline", path], capture_output=True, text=True,
                       errors="replace", timeout=120)
    return p.stdout + p.stderr


def sim_step_insns(nmisim, scn, workdir):
    """How many core instructions the simulator's `nmi@*` step executes with no NMI in
    it: the largest K whose nmi@K lands (an `NMI arrives` more than without it),
    found by doubling and bisection (nmisim prints no count of its own)."""
    arrivals = lambda at: sim_timeline(nmisim, scn.with_at(at), os.path.join(
        workdir, f"probe-{at}.nmi")).count("NMI arrives")
    base = arrivals(None)
    lands = lambda k: arrivals(k) > base
    lo, hi = 0, 1
    while lands(hi):
        lo, hi = hi, hi * 2
        if hi > 1 << 20:
            return lo
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if lands(mid) else (lo, mid)
    return lo


def count_check(nmisim, scn, insns, workdir):
    """The hypervisor counted `insns` boundaries in the wildcard step: the simulator
    must land an NMI at nmi@insns and none at nmi@insns+1 (no `NMI arrives` more than
    the scenario without it), so both count the same instructions."""
    base = sim_timeline(nmisim, scn.with_at(None), os.path.join(workdir, "count-none.nmi"))
    last = sim_timeline(nmisim, scn.with_at(insns), os.path.join(workdir, f"count-{insns}.nmi")) \
        if insns else "NMI arrives" + base  # no nmi@0: nothing to land
    past = sim_timeline(nmisim, scn.with_at(insns + 1),
                        os.path.join(workdir, f"count-{insns + 1}.nmi"))
    n0, n1, n2 = (t.count("NMI arrives") for t in (base, last, past))
    ok = n1 == n0 + 1 and n2 == n0
    return ok, (f"the simulator lands nmi@{insns} " + ("and" if n1 == n0 + 1 else "NOT, and")
                + f" {'none' if n2 == n0 else 'one'} at nmi@{insns + 1}")


def decode(fuzz, path, mode, workdir):
    """A fuzz input as a scenario: the fuzz binary writes <prefix>.nmi (NMI_TIMELINE)."""
    prefix = os.path.join(workdir, "decoded")
    subprocess.run([fuzz, "-handle_usr1=0", "-handle_usr2=0", path],
                   env=dict(os.environ, NMI_TIMELINE=prefix, NMI_FUZZ_MODE=mode),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    if not os.path.exists(prefix + ".nmi"):
        raise ScenarioError(f"{path}: the fuzz binary wrote no scenario (is it a fuzz input?)")
    with open(prefix + ".nmi") as f:
        return f.read()


# ---- the hypervisor's side ---------------------------------------------------------
def boot(target, kernel, cmdline, cpus, workdir, timeout, trace=None):
    """One boot: (serial text, wall seconds, timed out, Bochs' debugger log or None);
    `trace`: the CPU to trace (TRACE=1), or None."""
    if target == "qemu":
        from .qemu import Qemu
        t0 = time.monotonic()
        with Qemu(kernel, cmdline, smp=cpus, timeout=timeout, workdir=workdir) as vm:
            rc, _ = vm.wait_exit()
            serial = vm.output()
        return serial, time.monotonic() - t0, rc is None, None
    from . import bochs
    r = bochs.run_bochs(kernel, cmdline, workdir, cpus=cpus, timeout=timeout,
                        rc_commands=trace_rc(trace) if trace is not None else ("c", "quit"))
    return r["serial"], r["wall"], r["timed_out"], r["files"]["debugger.log"]


def hv_case_text(serial, at):
    """The hypervisor's lines of one case: those after the previous case (or the
    scenario's count) up to its own `REPLAY: case at=<at>` line."""
    block = []
    for line in serial.split("\n"):
        block.append(line)
        m = REPLAY_RE.search(line)
        if m and m[1] == "case" and re.match(rf"at={re.escape(at)} ", m[2]):
            return "\n".join(block)
        if m and m[1] in ("scenario", "count", "case"):
            block = [] if m[1] == "case" else [line]
    return "(no such case in the serial log)"


def hv_alone(target, kernel, scn, core, at, workdir, timeout):
    """The hypervisor's timeline of one case of a wildcard: the case booted on its own
    (the hypervisor prints its state after every step for a lone case only)."""
    if scn.wildcard() is None or at in COUNT_CASES:
        return None
    one = parse_scenario(scn.case(at))
    serial, _, _, _ = boot(target, kernel, f"workload=replay replay={compact(one, core)}",
                           one.ncpus + 1, os.path.join(workdir, f"alone-{at}"), timeout)
    return hv_case_text(serial, "-")


def missing_tools(target):
    from . import bochs
    tools = bochs.TOOLS if target == "bochs" else (EMULATORS["qemu"],)
    return [t for t in tools if not shutil.which(t)]


def stopped_in(nmisim, scn, hv, workdir):
    """Where the hypervisor stopped without a verdict, and what the simulator says
    there: the case after its last one (its count run, when it printed no count)."""
    if scn.wildcard() is None:
        at, which = "-", "its one case"
    elif not hv.counts or not any(at == "none" for at, _, _ in hv.cases):
        at, which = "none", "the run that counts the nmi@* step"
    else:
        at = str(int(hv.cases[-1][0]) + 1 if hv.cases and hv.cases[-1][0].isdigit() else 1)
        which = f"case {at}" + ("" if at != str(max(hv.counts.values()) + 1) else
                                " (after the last)")
    try:
        got = run_sim(nmisim, scn, [at], workdir).get(at)
    except (RuntimeError, subprocess.TimeoutExpired):
        got = None
    return f"; it stopped in {which}, where the simulator says " \
        f"{normalize(*got) if got else '(no verdict)'}"


def trace_case(nmisim, scn, workdir):
    """The case TRACE=1 brackets, chosen before the boot: the simulator's first failing
    placement of the `nmi@*` (else its first); `1` for a scenario without one, whose
    one case the hypervisor traces whatever the number."""
    if scn.wildcard() is None:
        return "1"
    n = sim_step_insns(nmisim, scn, workdir)
    sim = run_sim(nmisim, scn, [str(k) for k in range(1, n + 1)], workdir)
    return next((str(k) for k in range(1, n + 1) if sim.get(str(k), ("pass",))[0] != "pass"), "1")


WRAPPED = re.compile(r"\b(visited|pend)=(\d+)")


def hv_states(serial):
    """The per-step state, books and guest lines the hypervisor prints for a case it
    runs alone (or traces), a counter that wrapped below zero shown in hex too."""
    def mark(m):
        v = int(m.group(2))
        return m.group(0) + (f" (0x{v:x}: wrapped below 0)" if v >= 1 << 31 else "")
    lines = [line[len("REPLAY: "):] for line in serial.splitlines()
             if line.startswith(("REPLAY: state", "REPLAY: books", "REPLAY: guest"))]
    return "\n".join("  " + WRAPPED.sub(mark, line) for line in lines)


class Outcome:
    """What one replay found: its exit status and the verdict line, the table rows."""

    def __init__(self, status, line, rows=(), workdir=None):
        self.status, self.line, self.rows, self.workdir = status, line, list(rows), workdir


def replay(a, out=sys.stdout):
    """make replay ON=...: the steps of the module's docstring; returns an Outcome."""
    say = lambda *text: print(*text, file=out, flush=True)
    tag = os.path.basename(os.path.normpath(a.build))
    stem = os.path.splitext(os.path.basename(a.input))[0]
    name = f"{stem} [{tag}]"
    workdir = os.path.join(a.outdir, f"{stem}-{tag}")
    shutil.rmtree(workdir, ignore_errors=True)
    os.makedirs(workdir)
    kernel, nmisim, fuzz = (os.path.join(a.build, f) for f in ("hv.elf", "nmisim", "fuzz_nmi"))
    needed = [kernel, nmisim] + ([fuzz] if a.input.endswith(".bin") else [])
    missing = [f for f in needed + [a.input] if not os.path.isfile(f)]
    if missing:
        return Outcome(2, f"replay {name}: missing {', '.join(missing)}")
    try:
        if a.input.endswith(".bin"):
            text = decode(fuzz, a.input, a.mode, workdir)
        else:
            with open(a.input, errors="replace") as f:
                text = f.read()
        with open(os.path.join(workdir, "scenario.nmi"), "w") as f:
            f.write(text)
        scn = parse_scenario(text)
        core = CoreSymbols.from_elf(kernel)
        form = compact(scn, core)
    except ScenarioError as e:
        return Outcome(2, f"replay {name}: {a.input}: {e}")
    except CannotReplay as e:
        return Outcome(77, f"SKIP replay {name}: cannot replay on the hypervisor: {e}")
    target = choose_target(a.on, scn, a.trace)
    name += f" on {target}"
    if a.trace and target != "bochs":
        return Outcome(2, f"replay {name}: TRACE=1 needs Bochs (ON=bochs or ON=auto)")
    lack = missing_tools(target)
    if lack:
        return Outcome(77, f"SKIP replay {name}: {', '.join(lack)} not installed "
                           "(scripts/deps.sh system)")
    cmdline = f"workload=replay replay={form}"
    traced = trace_case(nmisim, scn, workdir) if a.trace else None
    if traced:
        cmdline += f" replay_trace={traced}"
    say(f"replay {name}: {cmdline} ({scn.ncpus} + 1 CPUs)")

    timeout = a.timeout or TIMEOUTS[target]
    serial, wall, timed_out, dbglog = boot(target, kernel, cmdline, scn.ncpus + 1, workdir,
                                           timeout, trace=scn.traced_cpu() if traced else None)
    with open(os.path.join(workdir, "serial.txt"), "w") as f:
        f.write(serial)
    hv = parse_serial(serial)
    if hv.result == "SKIP":
        return Outcome(77, f"SKIP replay {name}: the hypervisor: {hv.why}", workdir=workdir)
    if hv.header.get("variant", a.variant) != a.variant:
        return Outcome(2, f"replay {name}: the hypervisor runs variant {hv.header['variant']}, "
                          f"not {a.variant}", workdir=workdir)
    if hv.result != "PASS" or not hv.cases:
        if hv.result == "FAIL":
            why = f"RESULT: FAIL replay: {hv.why}"
        elif hv.result is None:
            why = f"timed out after {timeout:.0f} s" if timed_out else "no RESULT line"
        else:
            why = "no REPLAY: case line"
        say("\n".join(serial.strip().split("\n")[-20:]))
        return Outcome(2, f"replay {name}: the machinery failed: {why}"
                          f"{stopped_in(nmisim, scn, hv, workdir)} (serial log: {workdir}/serial.txt)",
                       workdir=workdir)

    try:
        sim = run_sim(nmisim, scn, [at for at, _, _ in hv.cases], workdir)
        rows = compare(hv.cases, sim)
        counted = None
        for step, insns in sorted(hv.counts.items()):
            ok, how = count_check(nmisim, scn, insns, workdir)
            counted = (ok, f"count: step {step} executes {insns} core instructions on the "
                           f"hypervisor; {how}: {'agree' if ok else 'DISAGREE'}")
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        return Outcome(2, f"replay {name}: the simulator failed: {e}", workdir=workdir)

    text = table(rows)
    bad = [r for r in rows if not r[3]]
    if counted:
        text += "\n" + counted[1]
    if not a.quiet:
        say(text)
        states = hv_states(serial)
        if states:
            say("\n== the hypervisor's state after every step ("
                + (f"case {traced}" if traced and scn.wildcard() is not None else "its one case")
                + f", {workdir}/serial.txt):\n" + states)
    else:  # only what disagrees
        if bad:
            say(table(bad))
        if counted and not counted[0]:
            say(counted[1])
    for at, sk, hk, _ in bad[:SHOWN]:
        say(f"\n== case {at}: the simulator says {sk}, the hypervisor {hk}")
        say(f"-- the simulator (nmisim run --timeline):\n" + sim_timeline(
            nmisim, scn.case(at), os.path.join(workdir, f"timeline-{at}.nmi")).rstrip())
        alone = hv_alone(target, kernel, scn, core, at, workdir, timeout)
        say(f"-- the hypervisor ({workdir}/serial.txt):\n" + hv_case_text(serial, at)
            + (f"\n-- the hypervisor, case {at} booted alone (its state after every step):\n"
               + alone if alone else ""))
    if len(bad) > SHOWN:
        say(f"\n({len(bad) - SHOWN} more disagreements: {workdir}/table.txt)")
    if traced:
        from . import replay_trace
        case = traced if scn.wildcard() is not None else "-"
        say(replay_trace.report(kernel, dbglog, case, hv.cases, sim_timeline(
            nmisim, scn.case(case), os.path.join(workdir, f"traced-{case}.nmi")), workdir))

    disagree = len(bad) + (counted is not None and not counted[0])
    sim_all = overall(r[1] for r in rows)
    hv_all = overall(r[2] for r in rows)
    line = (f"replay {name}: {len(rows)} case{'s' if len(rows) != 1 else ''} in one boot "
            f"({wall:.1f} s): {len(rows) - len(bad)} agree, {len(bad)} disagree"
            + (", the instruction counts disagree" if counted and not counted[0] else "")
            + f"; overall sim {sim_all}, hv {hv_all}")
    with open(os.path.join(workdir, "table.txt"), "w") as f:
        f.write(f"{a.input} [{tag}] on {target}: {cmdline}\n{text}\n{line}\n")
    return Outcome(1 if disagree else 0, line, rows, workdir)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", required=True, help="a scenario (.nmi) or a fuzz input (.bin)")
    ap.add_argument("--variant", required=True)
    ap.add_argument("--build", required=True, help="the build directory: hv.elf, nmisim, fuzz_nmi")
    ap.add_argument("--on", choices=("auto", "qemu", "bochs"), default="auto")
    ap.add_argument("--trace", action="store_true", help="Bochs: trace one case (TRACE=1)")
    ap.add_argument("--mode", choices=("precise", "fast"), default="precise",
                    help="the fuzz mode a .bin is decoded in")
    ap.add_argument("--timeout", type=float, help="seconds for the boot (qemu 120, bochs 300)")
    ap.add_argument("--outdir", default=os.path.join("build", "replay"))
    ap.add_argument("--table", help="also write the verdict table here (make fuzz: <prefix>.hv.txt)")
    ap.add_argument("--quiet", action="store_true", help="only disagreements and the verdict")
    a = ap.parse_args()
    o = replay(a)
    print(o.line, flush=True)
    if a.table:
        src = os.path.join(o.workdir, "table.txt") if o.workdir else None
        with open(a.table, "w") as f:
            f.write(open(src).read() if src and os.path.exists(src) and o.status in (0, 1)
                    else o.line + "\n")
    return o.status


if __name__ == "__main__":
    sys.exit(main())
