# SPDX-License-Identifier: MIT
"""What make replay ON=bochs|qemu|auto (scripts/replay_hv.py) reads and writes, as
pure functions that tests/unit/test_replay_hv.py checks without an emulator:

  - a scenario (the format at the top of sim/sched.c), parsed and checked as the
    simulator checks it, and its one `nmi@*` replaced by `nmi@K` for each case;
  - its compact form, the hypervisor's `workload=replay replay=<compact>`:
    `<ncpus>:<step>/<step>...`, a step `<cpu><op letter>[<arg>](@<at>)*` with at
    `K` (nmi@K), `*` (nmi@*, expanded by the hypervisor in one boot) or
    `a<hex>[:N]` (nmi@function+offset[:N], as an offset into the core's code);
  - the hypervisor's `REPLAY:` and `RESULT:` lines, nmisim's verdict lines;
  - one normalized kind per verdict, so that the two sides compare.
"""
import re

from . import elfsym

# Operation name -> the compact form's letter (the hypervisor's hv/replay*.c reads it).
OPS = {"mask": "m", "unmask": "u", "crit": "c", "nmi": "n", "enter": "e", "exit": "x",
       "giret": "i", "block": "b", "unblock": "o", "quiesce": "q", "run": "r",
       "fault": "f", "detach": "d"}
# Steps that need a guest, hence VMX: QEMU's TCG has none, Bochs has.
GUEST_OPS = frozenset("exibofd")
MAX_CPUS = 7        # the hypervisor boots one CPU more (the replay controller), 8 at most
MAX_COMPACT = 900   # what the command line holds (hv/cmdline.c)
SIM_MAX_CPUS, SIM_MAX_STEPS, SIM_MAX_AT, SIM_MAX_BURST = 8, 256, 4, 16  # sim/sim.h
SIM_MAX_AT_INDEX = 1000000


COUNT_CASES = ("-", "none")  # cases without a wildcard NMI: the hypervisor's at=- and at=none


class ScenarioError(ValueError):
    """The scenario is malformed (the simulator would refuse it too)."""


class CannotReplay(ValueError):
    """A valid scenario that the hypervisor cannot replay (fast mode, too many CPUs...)."""


class Step:
    def __init__(self, cpu, op, arg, ats, lineno):
        self.cpu, self.op, self.arg, self.ats, self.lineno = cpu, op, arg, ats, lineno


class Scenario:
    """A parsed scenario, its text kept: each case is the same text with the `nmi@*`
    replaced, so the simulator runs exactly what the author wrote."""

    def __init__(self, text, ncpus, fast, steps):
        self.text, self.ncpus, self.fast, self.steps = text, ncpus, fast, steps

    def wildcard(self):
        """The index of the step with `nmi@*`, or None."""
        for i, st in enumerate(self.steps):
            if "*" in st.ats:
                return i
        return None

    def traced_cpu(self):
        """The CPU whose step places the traced NMI: the wildcard's, else the first step
        with an `nmi@`, else CPU 0."""
        i = self.wildcard()
        if i is None:
            i = next((j for j, st in enumerate(self.steps) if st.ats), None)
        return self.steps[i].cpu if i is not None else 0

    def guest_ops(self):
        return sorted({st.op for st in self.steps if OPS[st.op] in GUEST_OPS})

    def case(self, at):
        """The text the simulator runs for the hypervisor's case `at`: nmi@<at>, or for
        '-' (no wildcard) and 'none' (the run that counts the wildcard's step) the
        scenario with its wildcard left out."""
        return self.with_at(None if at in COUNT_CASES else at)

    def with_at(self, at):
        """The scenario's text with its `nmi@*` as `nmi@<at>` (at None: removed)."""
        i = self.wildcard()
        if i is None:
            return self.text
        lines = self.text.split("\n")
        n = self.steps[i].lineno - 1
        code, hash_, comment = lines[n].partition("#")
        code = re.sub(r"(^|\s)nmi@\*(?=\s|$)", (lambda m: m[1] + f"nmi@{at}") if at is not None
                      else "", code, count=1)
        lines[n] = code + hash_ + comment
        return "\n".join(lines)


def parse_scenario(text):
    """The scenario format of sim/sched.c, checked as it checks it."""
    ncpus, fast, steps, maxcpu = None, False, [], 0
    for lineno, raw in enumerate(text.split("\n"), 1):
        words = raw.split("#", 1)[0].split()
        if not words:
            continue

        def bad(why):
            return ScenarioError(f"line {lineno}: {why}")
        if words[0] == "cpus":
            if len(words) != 2 or not words[1].isdigit() or not 1 <= int(words[1]) <= SIM_MAX_CPUS:
                raise bad(f"'cpus N' wants N from 1 to {SIM_MAX_CPUS}")
            if steps:
                raise bad("'cpus' must come before the first step")
            ncpus = int(words[1])
            continue
        if words[0] == "mode":
            if len(words) != 2 or words[1] not in ("fast", "precise"):
                raise bad("'mode' wants 'fast' or 'precise'")
            fast = words[1] == "fast"
            continue
        m = re.fullmatch(r"cpu(\d)", words[0])
        if not m:
            raise bad(f"expected 'cpuN OP' or 'cpus N', got '{words[0]}'")
        cpu = int(m[1])
        if ncpus and cpu >= ncpus:
            raise bad(f"{words[0]} is beyond the 'cpus' line")
        if cpu >= SIM_MAX_CPUS:
            raise bad(f"{words[0]}: at most {SIM_MAX_CPUS} CPUs")
        if len(words) < 2:
            raise bad(f"{words[0]}: missing operation")
        if len(steps) == SIM_MAX_STEPS:
            raise bad(f"more than {SIM_MAX_STEPS} steps")
        op = words[1]
        if op not in OPS:
            raise bad(f"unknown operation '{op}' ({' '.join(OPS)})")
        arg, ats = 0, []
        for i, w in enumerate(words[2:], 2):
            if op == "nmi" and w.startswith("x") and i == 2:
                if not w[1:].isdigit() or not 1 <= int(w[1:]) <= SIM_MAX_BURST:
                    raise bad(f"burst '{w}': want x1 to x{SIM_MAX_BURST}")
                arg = int(w[1:])
            elif op == "quiesce" and w == "flush" and i == 2:
                arg = 1
            elif w.startswith("nmi@") and op not in ("nmi", "run"):
                if len(ats) == SIM_MAX_AT:
                    raise bad(f"at most {SIM_MAX_AT} nmi@ arrivals per step")
                at = w[4:]
                if at != "*" and not parse_at(at):
                    raise bad(f"'{w}': want nmi@N, nmi@function+offset[:N] or nmi@*")
                ats.append(at)
            else:
                raise bad(f"unexpected '{w}'")
        maxcpu = max(maxcpu, cpu)
        steps.append(Step(cpu, op, arg, ats, lineno))
    return Scenario(text, ncpus or maxcpu + 1, fast, steps)


def _strtoul0(s):
    """C's strtoul(s, &end, 0) over the whole string (sched.c reads offsets so)."""
    if re.fullmatch(r"0[xX][0-9a-fA-F]+", s):
        return int(s, 16)
    if re.fullmatch(r"0[0-7]*", s):
        return int(s, 8)
    if re.fullmatch(r"[1-9]\d*", s):
        return int(s)
    return None


def parse_at(at):
    """`nmi@` forms: ("index", N) | ("addr", function, offset, occurrence) | None."""
    if at[:1].isdigit():
        if at.isdigit() and 1 <= int(at) <= SIM_MAX_AT_INDEX:
            return ("index", int(at))
        return None
    m = re.fullmatch(r"([^+:]+)(?:\+([^:]+))?(?::(\d+))?", at)
    if not m:
        return None
    off = _strtoul0(m[2]) if m[2] is not None else 0
    occ = int(m[3]) if m[3] is not None else 1
    if off is None or not 1 <= occ <= SIM_MAX_AT_INDEX:
        return None
    return ("addr", m[1], off, occ)


class CoreSymbols:
    """The core's functions in hv.elf, as offsets from the start of its code section
    (nmi_core_text, bracketed by __start_nmi_core_text or __nmi_core_start): the same
    bytes at the same offsets in every binary (the identity check)."""

    def __init__(self, syms):
        names = {}
        for addr, name, kind in syms:
            names.setdefault(name, []).append((addr, kind))
        first = lambda *keys: next((names[k][0][0] for k in keys if k in names), None)
        self.start = first("__start_nmi_core_text", "__nmi_core_start")
        self.end = first("__stop_nmi_core_text", "__nmi_core_end")
        if self.start is None or self.end is None:
            raise CannotReplay("hv.elf has no bracket around the NMI core's code")
        self.inside, self.outside = {}, set()
        for addr, name, kind in syms:
            if kind not in elfsym.CODE or name in elfsym.MARKERS:
                continue
            if self.start <= addr < self.end:
                self.inside[name] = addr - self.start
            else:
                self.outside.add(name)

    @classmethod
    def from_elf(cls, elf):
        return cls(elfsym.symbols(elf))

    def offset(self, fn, off):
        if fn not in self.inside:
            if fn in self.outside:
                raise CannotReplay(f"nmi@{fn}+{off:#x}: {fn} is outside the NMI core; "
                                   "the hypervisor places NMIs in the core only")
            raise ScenarioError(f"nmi@{fn}: no such function in hv.elf")
        o = self.inside[fn] + off
        if o >= self.end - self.start:
            raise CannotReplay(f"nmi@{fn}+{off:#x} lies past the end of the NMI core")
        return o


def compact(scn, core=None):
    """The hypervisor's `replay=` value: `<ncpus>:<step>/<step>...`, a step
    `<cpu><op letter>[<arg>](@<at>)*`, at `K`, `*` or `a<hex offset in the core>[:N]`."""
    if scn.fast:
        raise CannotReplay("mode fast: its nmi@N counts platform calls, not instructions, "
                           "so the hypervisor cannot place its NMIs; replay it in precise mode")
    if scn.ncpus > MAX_CPUS:
        raise CannotReplay(f"{scn.ncpus} CPUs: the hypervisor boots one more for the replay "
                           f"controller, so at most {MAX_CPUS}")
    if not scn.steps:
        raise CannotReplay("no steps")
    if sum(st.ats.count("*") for st in scn.steps) > 1:
        raise CannotReplay("more than one nmi@*: the hypervisor expands one wildcard in a boot")
    parts = []
    for st in scn.steps:
        s = f"{st.cpu}{OPS[st.op]}"
        if st.op == "nmi" and st.arg > 1:
            s += str(st.arg)
        elif st.op == "quiesce" and st.arg:
            s += "1"
        for at in st.ats:
            p = parse_at(at) if at != "*" else ("every",)
            if p[0] == "every":
                s += "@*"
            elif p[0] == "index":
                s += f"@{p[1]}"
            else:
                if core is None:
                    raise CannotReplay(f"nmi@{at}: an address needs hv.elf's symbols")
                s += f"@a{core.offset(p[1], p[2]):x}" + (f":{p[3]}" if p[3] != 1 else "")
        parts.append(s)
    text = f"{scn.ncpus}:" + "/".join(parts)
    if len(text) > MAX_COMPACT:
        raise CannotReplay(f"the compact form is {len(text)} characters, the command line "
                           f"takes {MAX_COMPACT}")
    return text


def choose_target(on, scn, trace=False):
    """auto: QEMU (fast to boot, no VMX) unless a step needs a guest, or a trace."""
    if on != "auto":
        return on
    return "bochs" if trace or scn.guest_ops() else "qemu"


# ---- what the hypervisor prints ---------------------------------------------------
REPLAY_RE = re.compile(r"REPLAY: (\w+)\b ?(.*)$")  # scenario, count, case, done, state...
CASE_RE = re.compile(r"at=(\S+) verdict=(\w+)(?: what=(.*))?$")
HV_RESULT_RE = re.compile(r"RESULT: (PASS|FAIL|SKIP) replay\b:? ?(.*)$")


class HvRun:
    """The REPLAY and RESULT lines of one boot."""

    def __init__(self):
        self.header, self.counts, self.cases, self.done = {}, {}, [], {}
        self.result, self.why, self.lines = None, "", []


def parse_serial(text):
    r = HvRun()
    for line in text.replace("\r", "").split("\n"):
        m = REPLAY_RE.search(line)
        if m:
            r.lines.append(line[m.start():])
            kind, rest = m[1], m[2].strip()
            if kind == "case":
                c = CASE_RE.match(rest)
                if c:
                    r.cases.append((c[1], c[2].lower(), (c[3] or "").strip()))
                continue
            kv = dict(re.findall(r"(\w+)=(\S+)", rest))
            if kind == "scenario":
                r.header = kv
            elif kind == "count" and "step" in kv and "insns" in kv:
                r.counts[int(kv["step"])] = int(kv["insns"])
            elif kind == "done":
                r.done = {k: int(v) for k, v in kv.items() if v.isdigit()}
            continue
        m = HV_RESULT_RE.search(line)
        if m and r.result is None:
            r.result, r.why = m[1], m[2].strip()
            r.lines.append(line[m.start():])
    return r


def normalize(verdict, what=""):
    """One kind per verdict, comparable across the simulator and the hypervisor."""
    if verdict.lower() == "pass":
        return "pass"
    what = " ".join((what or "").split())
    m = re.search(r"NMI core assertion failed at (?:\S*/)?nmi_core\.c:(\d+)", what)
    if m:
        return f"assert nmi_core.c:{m[1]}"
    m = re.search(r"\blaw=(\S+) cpu=(\d+)", what)
    if m:
        return f"law {m[1]} cpu{m[2]}"
    return what or "fail"


SIM_LINE_RE = re.compile(r"^(PASS|FAIL) (\S+) \[[^]]*\]:? ?(.*)$", re.M)


def parse_sim(out):
    """nmisim run --quiet's lines: {file: (pass|fail, what)}."""
    return {m[2]: (m[1].lower(), m[3].strip() if m[1] == "FAIL" else "")
            for m in SIM_LINE_RE.finditer(out)}


def compare(hv_cases, sim):
    """Rows (at, sim kind, hv kind, agree) for every case the hypervisor ran."""
    rows = []
    for at, verdict, what in hv_cases:
        s = sim.get(at)
        sk = normalize(*s) if s else "(not run)"
        hk = normalize(verdict, what)
        rows.append((at, sk, hk, s is not None and sk == hk))
    return rows


def table(rows):
    w = max([len(r[1]) for r in rows] + [12])
    out = [f"{'case':>6}  {'simulator':<{w}}  {'hypervisor':<{w}}  agree"]
    out += [f"{at:>6}  {s:<{w}}  {h:<{w}}  {'yes' if ok else 'NO'}" for at, s, h, ok in rows]
    return "\n".join(out)


def overall(kinds):
    return "fail" if any(k != "pass" for k in kinds) else "pass"

