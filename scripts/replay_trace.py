# SPDX-License-Identifier: MIT
"""make replay ON=bochs TRACE=1: one case of a replay, instruction by instruction.

The hypervisor (workload=replay replay_trace=K) brackets case K with Bochs' magic
breakpoints, from the #DB handler that sends the NMI (right before it does) to the
case's verdict; the debugger script of scripts/bochs_trace.py turns the trace on
and off there.  report() writes build/replay/<name>/trace.txt, each traced
instruction as function+offset and, inside the core, its nmi_core.c line
(addr2line), as `make trace` symbolizes, and prints it after the simulator's
timeline of the same case, so that a reader finds the same instructions on both
sides.  The NMI arrives before the core instruction the simulator names
(`NMI arrives ... at nmi_unmask+0x38`): the trace marks that instruction where
the handler's IRET comes back to it.
"""
import bisect
import os
import re
import subprocess

from . import bochs_trace, elfsym

PRINTED = 400  # trace lines printed; trace.txt holds them all
SPIN = 500  # a run of more instructions than this in one function is a wait: cut short
ARRIVAL_RE = re.compile(r"NMI arrives.*\n.*?\bat (\w+)\+(0x[0-9a-f]+|0)\b")


def arrival_sites(timeline):
    """The simulator's NMI arrivals in its timeline, in order: [(function, offset)]."""
    return [(m[1], int(m[2], 16)) for m in ARRIVAL_RE.finditer(timeline)]


def source_lines(elf, addrs):
    """{address: 'nmi_core.c:N'} through one addr2line run."""
    addrs = sorted(set(addrs))
    if not addrs:
        return {}
    try:
        out = subprocess.run(["addr2line", "-e", elf] + [hex(a) for a in addrs],
                             capture_output=True, text=True, timeout=60).stdout.split("\n")
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return {a: os.path.basename(line.split()[0]) for a, line in zip(addrs, out)
            if line and not line.startswith("??")}


def symbolize(lines, syms):
    """[(cpu, linear address, function, offset, instruction)] for Bochs trace lines."""
    code = elfsym.code_symbols(syms)
    starts = [a for a, _ in code]
    out = []
    for line in lines:
        m = bochs_trace.LINE_RE.match(line)
        if not m:
            continue
        linear = int(m[4], 16)
        i = bisect.bisect_right(starts, linear) - 1
        fn, base = (code[i][1], code[i][0]) if i >= 0 else ("?", linear)
        out.append((int(m[1]), linear, fn, linear - base, m[6]))
    return out


def mark_arrivals(entries, sites):
    """{index in entries: site} for each simulator arrival: its instruction where it
    runs right after an IRET (the handler returning to it), else where it first runs."""
    marks, start = {}, 0
    for site in sites:
        hits = [i for i in range(start, len(entries)) if (entries[i][2], entries[i][3]) == site]
        after_iret = [i for i in hits if i and entries[i - 1][4].startswith("iret")]
        pick = (after_iret or hits or [None])[0]
        if pick is not None:
            marks[pick] = site
            start = pick + 1
    return marks


def render(entries, srcs, marks, core):
    lo, hi = core
    rows = []
    for i, (cpu, linear, fn, off, insn) in enumerate(entries):
        src = srcs.get(linear, "") if lo <= linear < hi else ""
        row = f"({cpu}) {linear:#010x} {fn + '+' + hex(off):<32} {src:<16} {insn}"
        if i in marks:
            row += "   <== the NMI arrived before this instruction (simulator: " \
                   f"{marks[i][0]}+{marks[i][1]:#x})"
        rows.append(row)
    return rows


def collapse_spins(rows, entries, keep=(40, 10)):
    """A CPU waiting for the token runs one loop for as long as the case lasts (over
    half a million instructions): each run of more than SPIN instructions in one
    function keeps its first and last few, and says how many it left out."""
    out, i = [], 0
    while i < len(entries):
        j = i
        while j < len(entries) and entries[j][2] == entries[i][2]:
            j += 1
        if j - i > SPIN:
            out += rows[i:i + keep[0]]
            out.append(f"    ... {j - i - sum(keep)} more instructions of {entries[i][2]} "
                       "(a loop: the CPU waits) ...")
            out += rows[j - keep[1]:j]
        else:
            out += rows[i:j]
        i = j
    return out


def compact_path(path, width=4):
    """The function path with each repeated cycle of up to `width` functions written
    once with its count: `vformat -> to_buffer` 40 times is `(vformat -> to_buffer) x40`."""
    out, i = [], 0
    while i < len(path):
        best = (1, 1)  # (cycle length, repetitions)
        for w in range(1, width + 1):
            n = 1
            while path[i + n * w:i + (n + 1) * w] == path[i:i + w]:
                n += 1
            if n > 1 and n * w > best[0] * best[1]:
                best = (w, n)
        w, n = best
        cycle = " -> ".join(path[i:i + w])
        out.append(cycle if n == 1 else f"({cycle}) x{n}" if w > 1 else f"{cycle} x{n}")
        i += w * n
    return " -> ".join(out)


def excerpt(rows, path, around=40):
    """What is printed of a long trace: its first PRINTED lines and `around` lines
    either side of every arrival mark after them; the gaps say how long they are."""
    keep = set(range(min(PRINTED, len(rows))))
    for i, row in enumerate(rows):
        if "<== the NMI arrived" in row:
            keep |= set(range(max(0, i - around), min(len(rows), i + around)))
    out, last = [], -1
    for i in sorted(keep):
        if i != last + 1:
            out.append(f"    ... {i - last - 1} lines (all in {path}) ...")
        out.append(rows[i])
        last = i
    if last + 1 < len(rows):
        out.append(f"    ... {len(rows) - last - 1} more lines in {path}")
    return out


def report(elf, debugger_log, case, hv_cases, sim_timeline, workdir):
    """trace.txt written; the text printed: the simulator's timeline of the case, then
    the hypervisor's trace of it, per function, and the path."""
    verdict = next(((v, w) for at, v, w in hv_cases if at == case or at == "-"), None)
    head = [f"\n== case {case}: the simulator's timeline (nmisim run --timeline)",
            sim_timeline.rstrip(),
            f"\n== case {case}: the hypervisor's trace (Bochs)"
            + (f", verdict {verdict[0]}" + (f": {verdict[1]}" if verdict[1] else "")
               if verdict else "")]
    lines = bochs_trace.traced_lines(debugger_log) \
        if debugger_log and os.path.exists(debugger_log) else []
    if not lines:
        return "\n".join(head + [f"trace: no traced instructions in {debugger_log} (did the "
                                 f"hypervisor bracket case {case}?)"])
    syms = elfsym.symbols(elf)
    core = elfsym.core_range(syms)
    entries = symbolize(lines, syms)
    srcs = source_lines(elf, [e[1] for e in entries if core[0] <= e[1] < core[1]])
    rows = collapse_spins(render(entries, srcs, mark_arrivals(
        entries, arrival_sites(sim_timeline)), core), entries)
    path = os.path.join(workdir, "trace.txt")
    with open(path, "w") as f:
        f.write("\n".join(rows) + "\n")
    per_fn, in_core, fn_path = bochs_trace.summarize(lines, syms)
    body = excerpt(rows, path)
    summary = [f"trace: case {case}: {len(entries)} instructions, {in_core} in the NMI core, "
               f"in {path}", "  instructions per function (first seen first):"]
    summary += [f"    {n:6d}  {fn}" for fn, n in per_fn.items()]
    summary.append("  path: " + compact_path(fn_path))
    return "\n".join(head + body + summary)
