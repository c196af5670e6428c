# SPDX-License-Identifier: MIT
"""Unit tests of make replay ON=... (scripts/replay_scenario.py, replay_hv.py,
replay_trace.py) without an emulator:

  - scenario -> the hypervisor's compact replay= form: every operation, bursts,
    flush, nmi@K, nmi@*, the address form; and the refusals (mode fast, more than 7
    CPUs, an unknown operation, two wildcards, a function outside the core);
  - the hypervisor's REPLAY/RESULT lines and nmisim's verdict lines, parsed;
  - normalize(): one kind per verdict on both sides;
  - a replay end to end with the boot faked (the simulator real, when built):
    agreement, a disagreement, SKIP and a machinery failure give 0, 1, 77, 2;
  - the trace's symbolization, its arrival mark, its waiting loops cut short.

    python3 -m tests.unit.test_replay_hv      (tests/run_tests.py: suite `scripts`)
"""
import argparse
import glob
import io
import os
import sys
import tempfile
import unittest

from scripts import fuzz, replay_hv, replay_trace
from scripts.replay_scenario import (CannotReplay, CoreSymbols, ScenarioError, choose_target,
                                     compact, compare, normalize, overall, parse_scenario,
                                     parse_serial, parse_sim, table)
from tests.unit.test_scripts import run_module

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
# A made-up hv.elf: the core at 0x10ddc0..0x10e77c, two of its functions, one outside.
SYMS = [(0x102b30, "lapic_send_ipi", "T"), (0x10ddc0, "__start_nmi_core_text", "T"),
        (0x10ddc0, "__nmi_core_start", "T"), (0x10ddc0, "handle_one", "t"),
        (0x10e530, "nmi_unmask", "T"), (0x10e6f0, "nmi_host_entry", "T"),
        (0x10e77c, "__stop_nmi_core_text", "T"), (0x10e77c, "__nmi_core_end", "T")]
CORE = CoreSymbols(SYMS)


def form(text, core=CORE):
    return compact(parse_scenario(text), core)


class Compact(unittest.TestCase):
    def test_examples(self):
        """replay: the contract's examples, seed-race and the racy-counter reproducer"""
        os.chdir(ROOT)
        with open("corpus/scenarios/seed-race.nmi") as f:
            self.assertEqual(form(f.read()), "1:0m/0n/0u@*")
        with open("corpus/regressions/racy-counter/seed-race-underflow.nmi") as f:
            self.assertEqual(form(f.read()), "1:0c@12@18")

    def test_every_op(self):
        """replay: every operation's letter, bursts (x1 is plain), flush, several nmi@"""
        text = ("cpus 3\ncpu0 mask\ncpu0 unmask nmi@3 nmi@7\ncpu1 crit\ncpu2 nmi\ncpu2 nmi x1\n"
                "cpu0 nmi x3\ncpu0 enter\ncpu0 exit\ncpu0 giret\ncpu0 block\ncpu0 unblock\n"
                "cpu1 quiesce\ncpu1 quiesce flush nmi@*\ncpu2 run\ncpu0 fault\ncpu0 detach\n")
        self.assertEqual(form(text), "3:0m/0u@3@7/1c/2n/2n/0n3/0e/0x/0i/0b/0o/1q/1q1@*/2r/0f/0d")

    def test_cpus(self):
        """replay: without a cpus line the CPUs are the highest one used plus one"""
        self.assertEqual(form("cpu2 mask # comment\n\n# only a comment\ncpu0 crit\n"), "3:2m/0c")

    def test_address(self):
        """replay: nmi@fn+off[:N] is an offset from the core's start, in hex; :1 is left out"""
        self.assertEqual(form("cpu0 unmask nmi@nmi_unmask+0x36:2\n"), "1:0u@a7a6:2")
        self.assertEqual(form("cpu0 unmask nmi@nmi_unmask+0x36:1\n"), "1:0u@a7a6")
        self.assertEqual(form("cpu0 unmask nmi@handle_one\n"), "1:0u@a0")
        self.assertEqual(form("cpu0 unmask nmi@nmi_unmask+0\n"), "1:0u@a770")
        self.assertEqual(form("cpu0 unmask nmi@nmi_unmask+010\n"), "1:0u@a778")  # strtoul: octal
        self.assertEqual(form("cpu0 unmask nmi@nmi_host_entry+12\n"), "1:0u@a93c")

    def test_address_bracket(self):
        """replay: the core's bracket is either pair of markers; without one nothing converts"""
        old = CoreSymbols([s for s in SYMS if "_nmi_core_text" not in s[1]])
        self.assertEqual((old.start, old.end), (CORE.start, CORE.end))
        with self.assertRaises(CannotReplay):
            CoreSymbols([s for s in SYMS if "core" not in s[1]])

    def test_refusals(self):
        """replay: mode fast, 8 CPUs, two nmi@*, a function outside the core or past its end"""
        cases = {"mode fast\ncpu0 unmask nmi@3\n": "mode fast",
                 "cpus 8\ncpu7 mask\n": "at most 7",
                 "cpu0 unmask nmi@*\ncpu0 crit nmi@*\n": "one wildcard",
                 "cpu0 unmask nmi@lapic_send_ipi+4\n": "outside the NMI core",
                 "cpu0 unmask nmi@nmi_host_entry+0x200\n": "past the end",
                 "# nothing\n": "no steps",
                 "cpu0 unmask nmi@1000 nmi@1001\n" * 100: "characters"}
        for text, words in cases.items():
            with self.assertRaises(CannotReplay, msg=text) as e:
                form(text)
            self.assertIn(words, str(e.exception))

    def test_malformed(self):
        """replay: an unknown operation and other malformed lines, with their line number"""
        cases = {"cpus 2\ncpu0 mask\ncpu0 frobnicate\n": "line 3: unknown operation",
                 "cpus 1\ncpu1 mask\n": "line 2: cpu1 is beyond",
                 "cpu0 mask\ncpus 2\n": "line 2: 'cpus' must come",
                 "cpu0 unmask nmi@0\n": "line 1: 'nmi@0'",
                 "cpu0 nmi x99\n": "burst",
                 "cpus 9\n": "from 1 to 8",
                 "cpu0 nmi nmi@3\n": "unexpected",
                 "cpu0 unmask nmi@1 nmi@2 nmi@3 nmi@4 nmi@5\n": "at most 4",
                 "cpu0 crit\n" * 257: "line 257: more than 256 steps",
                 "cpu0 unmask nmi@no_such_function+4\n": "no such function"}
        for text, words in cases.items():
            with self.assertRaises(ScenarioError, msg=text) as e:
                form(text)
            self.assertIn(words, str(e.exception))

    def test_corpus(self):
        """replay: every scenario and reproducer of the corpus converts; the guest ones go to Bochs"""
        os.chdir(ROOT)
        guest = set()
        for path in sorted(glob.glob("corpus/scenarios/*.nmi") + glob.glob("corpus/regressions/*/*.nmi")):
            with open(path) as f:
                scn = parse_scenario(f.read())
            self.assertRegex(compact(scn, CORE), r"^\d:(\d[a-z]\d*(@[0-9a-f*:]+)*/?)+$", path)
            if choose_target("auto", scn) == "bochs":
                guest.add(os.path.basename(path))
            self.assertEqual(choose_target("auto", scn, trace=True), "bochs")
            self.assertEqual(choose_target("qemu", scn), "qemu")
        self.assertEqual(guest, {"guest-detach.nmi", "guest-nmi-cap.nmi", "quiesce-flush.nmi",
                                 "window-while-masked.nmi"})

    def test_with_at(self):
        """replay: each case is the scenario's text with its nmi@* as nmi@K, comments kept"""
        text = "cpus 1\ncpu0 mask  # nmi@* here is a comment\ncpu0 unmask nmi@3 nmi@*   # two\n"
        scn = parse_scenario(text)
        self.assertEqual(scn.with_at(9), text.replace("nmi@3 nmi@*", "nmi@3 nmi@9"))
        self.assertEqual(scn.with_at(None), text.replace("nmi@3 nmi@*", "nmi@3"))
        self.assertEqual(parse_scenario("cpu0 crit nmi@2\n").with_at(5), "cpu0 crit nmi@2\n")
        self.assertEqual(scn.case("-"), scn.with_at(None))  # the counting run
        self.assertEqual(scn.case("none"), scn.with_at(None))
        self.assertEqual(scn.case("12"), scn.with_at(12))

    def test_fuzz_lines(self):
        """make fuzz: the hypervisor's replay command, ON=qemu named for a host-only finding"""
        args = argparse.Namespace(mode="precise")
        with tempfile.TemporaryDirectory() as d:
            prefix = os.path.join(d, "min-1")
            for text, qemu in (("cpus 1\ncpu0 crit nmi@3\n", True), ("cpu0 enter\ncpu0 nmi\n", False)):
                with open(prefix + ".nmi", "w") as f:
                    f.write(text)
                line = fuzz.hv_replay_command(args, "VARIANT=final", prefix + ".bin", prefix)
                self.assertIn(f"make replay VARIANT=final INPUT={prefix}.bin ON=bochs TRACE=1", line)
                self.assertEqual("ON=qemu" in line, qemu)
        self.assertIn("not for a fast-mode finding", fuzz.hv_replay_command(
            argparse.Namespace(mode="fast"), "VARIANT=final", "x.bin", "x"))


SERIAL = """\
hv: booted via multiboot, NMI core variant racy-counter, cmdline "workload=replay replay=1:0m/0n/0u@*"
smp: 2 CPU(s) online (MADT lists 2)
REPLAY: scenario cpus=1 steps=3 variant=racy-counter wildcard_step=3
REPLAY: count step=3 insns=44
REPLAY: case at=none verdict=pass
REPLAY: case at=1 verdict=pass
REPLAY: state after=3 | cpu0 X mask=0 visited=4294967295 pend=0 vblk=0 win=0
REPLAY: case at=9 verdict=FAIL what=cpu0: NMI core assertion failed at nmi_core.c:410: c->visited != UINT32_MAX
REPLAY: case at=12 verdict=FAIL what=books: FAILED law=wrap cpu=0 drained=2 deferred=1
REPLAY: done cases=3 pass=1 fail=2
RESULT: PASS replay cpus=1 cases=3 pass=1 fail=2 elapsed_ms=12
"""


class Lines(unittest.TestCase):
    def test_serial(self):
        """replay: the hypervisor's REPLAY lines and its RESULT line are read, noise skipped"""
        r = parse_serial(SERIAL.replace("\n", "\r\n"))
        self.assertEqual(r.header["wildcard_step"], "3")
        self.assertEqual(r.counts, {3: 44})
        self.assertEqual([c[:2] for c in r.cases], [("none", "pass"), ("1", "pass"), ("9", "fail"),
                                                     ("12", "fail")])
        self.assertEqual(r.cases[3][2], "books: FAILED law=wrap cpu=0 drained=2 deferred=1")
        self.assertEqual(r.done, {"cases": 3, "pass": 1, "fail": 2})
        self.assertEqual(r.result, "PASS")
        self.assertEqual(len(r.lines), 9)

    def test_results(self):
        """replay: RESULT SKIP and FAIL with their reasons; no RESULT line at all"""
        skip = parse_serial("RESULT: SKIP replay: step 1 needs VMX: CPUID.1:ECX.VMX is 0\n")
        self.assertEqual((skip.result, skip.why), ("SKIP", "step 1 needs VMX: CPUID.1:ECX.VMX is 0"))
        fail = parse_serial("RESULT: FAIL replay: cpu1: token timeout\n")
        self.assertEqual((fail.result, fail.why), ("FAIL", "cpu1: token timeout"))
        none = parse_serial("hv: booted\n")
        self.assertEqual((none.result, none.cases), (None, []))

    def test_normalize(self):
        """replay: normalize() gives pass, assert nmi_core.c:N, law NAME cpuN or the text"""
        self.assertEqual(normalize("pass"), "pass")
        self.assertEqual(normalize("PASS", "ignored"), "pass")
        self.assertEqual(normalize("fail", "cpu0: NMI core assertion failed at nmi_core.c:410: "
                                   "c->visited != UINT32_MAX"), "assert nmi_core.c:410")
        self.assertEqual(normalize("FAIL", "cpu1: NMI core assertion failed at hv/nmi_core.c:77: x"),
                         "assert nmi_core.c:77")
        self.assertEqual(normalize("fail", "books: FAILED law=conserve-deferred cpu=2 deferred=1"),
                         "law conserve-deferred cpu2")
        self.assertEqual(normalize("fail", "cpu0: NMI lost:  2 deferred while masked, 1 drained"),
                         "cpu0: NMI lost: 2 deferred while masked, 1 drained")
        self.assertEqual(normalize("fail", ""), "fail")

    def test_sim_lines(self):
        """replay: nmisim's PASS/FAIL lines, by file, and the table of both sides"""
        out = ("FAIL d/case-9.nmi [racy-counter]: cpu0: NMI core assertion failed at "
               "nmi_core.c:410: c->visited != UINT32_MAX\n"
               "PASS d/case-1.nmi [racy-counter]: 1 schedule, 0.001 s\n"
               "2 schedules in 2 scenarios [racy-counter]: 1 failing (in 1 scenarios), 0.003 s\n")
        sim = {k[len("d/case-"):-4]: v for k, v in parse_sim(out).items()}
        self.assertEqual(sim["1"], ("pass", ""))
        self.assertEqual(sim["9"][0], "fail")
        rows = compare(parse_serial(SERIAL).cases[1:], sim)
        self.assertEqual([r[3] for r in rows], [True, True, False])
        self.assertEqual(rows[2][1:3], ("(not run)", "law wrap cpu0"))
        self.assertEqual(overall(r[1] for r in rows[:1]), "pass")
        self.assertEqual(overall(r[2] for r in rows), "fail")
        self.assertIn("    12  (not run)", table(rows))


def fake_serial(sim, changed=None, result="PASS replay cases"):
    """The hypervisor's lines for seed-race, as if it gave the simulator's verdicts
    (`changed`: {case: what} where it would not)."""
    lines = ["REPLAY: scenario cpus=1 steps=3 variant=racy-counter wildcard_step=3",
             f"REPLAY: count step=3 insns={len(sim)}", "REPLAY: case at=none verdict=pass"]
    for k in range(1, len(sim) + 1):
        verdict, what = sim[str(k)]
        what = (changed or {}).get(k, what)
        lines.append(f"REPLAY: case at={k} " + (f"verdict=FAIL what={what}" if what else "verdict=pass"))
    return "\n".join(lines + [f"RESULT: {result}"]) + "\n"


class EndToEnd(unittest.TestCase):
    """replay() with boot() faked: the simulator side, the table, the exit status."""
    NMISIM = os.path.join(ROOT, "build", "racy-counter", "nmisim")
    ELF = os.path.join(ROOT, "build", "racy-counter", "hv.elf")

    def setUp(self):
        if not (os.path.exists(self.NMISIM) and os.path.exists(self.ELF)):
            self.skipTest("build/racy-counter/nmisim and hv.elf are not built")
        os.chdir(ROOT)
        self.tmp = tempfile.TemporaryDirectory()
        self.saved = replay_hv.boot, replay_hv.missing_tools
        replay_hv.missing_tools = lambda target: []
        with open("corpus/scenarios/seed-race.nmi") as f:
            self.scn = parse_scenario(f.read())
        self.sim = replay_hv.run_sim(self.NMISIM, self.scn, [str(k) for k in range(1, 45)],
                                     self.tmp.name)

    def tearDown(self):
        replay_hv.boot, replay_hv.missing_tools = self.saved
        self.tmp.cleanup()

    def run_with(self, serial, inp="corpus/scenarios/seed-race.nmi"):
        replay_hv.boot = lambda *a, **k: (serial, 1.0, False, None)
        args = argparse.Namespace(input=inp, variant="racy-counter",
                                  build=os.path.dirname(self.NMISIM), on="auto", trace=False,
                                  mode="precise", timeout=None, outdir=self.tmp.name, table=None,
                                  quiet=False)
        out = io.StringIO()
        return replay_hv.replay(args, out), out.getvalue()

    def test_agree(self):
        """replay: the 44 cases of seed-race and its counting run agree with the simulator: exit 0"""
        self.assertEqual(replay_hv.sim_step_insns(self.NMISIM, self.scn, self.tmp.name), 44)
        o, out = self.run_with(fake_serial(self.sim))
        self.assertEqual(o.status, 0, out)
        self.assertIn("45 cases in one boot (1.0 s): 45 agree, 0 disagree; overall sim fail, "
                      "hv fail", o.line)
        self.assertRegex(out, r"\n\s+none\s+pass\s+pass\s+yes\n")
        self.assertIn("nmi@44 and none at nmi@45: agree", out)

    def test_disagree(self):
        """replay: one case the other way: exit 1, the table says NO, both timelines shown"""
        o, out = self.run_with(fake_serial(self.sim, {3: "books: FAILED law=conserve cpu=0"}))
        self.assertEqual(o.status, 1)
        self.assertRegex(out, r"\n\s+3  pass\s+law conserve cpu0\s+NO\n")
        self.assertIn("unmask nmi@3", out)  # the simulator's timeline of case 3
        self.assertIn("REPLAY: case at=3 verdict=FAIL", out.split("-- the hypervisor")[1])

    def test_count(self):
        """replay: a hypervisor that counts another number of instructions disagrees"""
        o, out = self.run_with(fake_serial(self.sim).replace("insns=44", "insns=45"))
        self.assertEqual(o.status, 1)
        self.assertIn("instruction counts disagree", o.line)

    def test_skip_and_failure(self):
        """replay: RESULT SKIP is 77 with the hypervisor's reason; no RESULT line is 2"""
        o, _ = self.run_with("RESULT: SKIP replay: step 1 needs VMX: none\n")
        self.assertEqual(o.status, 77)
        self.assertIn("needs VMX", o.line)
        o, _ = self.run_with("hv: booted\n")
        self.assertEqual(o.status, 2)
        self.assertIn("no RESULT line; it stopped in the run that counts the nmi@* step", o.line)
        o, _ = self.run_with("\n".join(fake_serial(self.sim).split("\n")[:13]))  # cases 1..10
        self.assertIn("it stopped in case 11, where the simulator says assert nmi_core.c:410", o.line)
        o, _ = self.run_with(fake_serial(self.sim).replace("variant=racy-counter", "variant=final"))
        self.assertEqual(o.status, 2)
        self.assertIn("runs variant final", o.line)
        o, _ = self.run_with(fake_serial(self.sim), inp="no/such/file.nmi")
        self.assertEqual(o.status, 2)

    def test_fast(self):
        """replay: a fast-mode scenario is refused before any boot (77, says why)"""
        path = os.path.join(self.tmp.name, "fast.nmi")
        with open(path, "w") as f:
            f.write("mode fast\ncpu0 unmask nmi@2\n")
        o, _ = self.run_with("never booted", inp=path)
        self.assertEqual(o.status, 77)
        self.assertIn("mode fast", o.line)


# Bochs' trace lines (the format scripts/bochs_trace.py reads).
TRACE_LOG = """\
trace on
(0).[100] [0x00000010e700] 0008:000000000010e700 (nmi_host_entry+10): push rbx ; 53
(0).[101] [0x00000010e701] 0008:000000000010e701 (nmi_host_entry+11): iretq ; 48cf
(0).[102] [0x00000010e566] 0008:000000000010e566 (nmi_unmask+36): test eax, eax ; 85c0
(0).[103] [0x000000102b30] 0008:0000000000102b30 (lapic_send_ipi): mov eax, 1 ; b801000000
trace off
(0).[104] [0x000000102b31] 0008:0000000000102b31 (lapic_send_ipi+1): nop ; 90
"""


class Trace(unittest.TestCase):
    def test_symbolize(self):
        """replay trace: lines as function+offset, the arrival marked after the IRET"""
        with tempfile.NamedTemporaryFile("w", suffix=".log") as f:
            f.write(TRACE_LOG)
            f.flush()
            lines = replay_trace.bochs_trace.traced_lines(f.name)
        entries = replay_trace.symbolize(lines, SYMS)
        self.assertEqual([(e[2], e[3]) for e in entries], [
            ("nmi_host_entry", 0x10), ("nmi_host_entry", 0x11), ("nmi_unmask", 0x36),
            ("lapic_send_ipi", 0)])
        sites = replay_trace.arrival_sites(
            "   3 | unmask nmi@9\n     |   NMI arrives (core instruction 9)\n"
            "     |       at nmi_unmask+0x36 (nmi_core.c:405)\n")
        self.assertEqual(sites, [("nmi_unmask", 0x36)])
        marks = replay_trace.mark_arrivals(entries, sites)
        self.assertEqual(marks, {2: ("nmi_unmask", 0x36)})
        rows = replay_trace.render(entries, {0x10e566: "nmi_core.c:405"}, marks, (CORE.start, CORE.end))
        self.assertIn("nmi_core.c:405", rows[2])
        self.assertIn("<== the NMI arrived", rows[2])
        self.assertNotIn("nmi_core.c", rows[3])

    def test_waits(self):
        """replay trace: a waiting loop is cut short, a repeated path is written once"""
        entries = [(0, i, "f", 0, "nop") for i in range(3)] + [(0, i, "spin", 0, "pause")
                                                               for i in range(1000)]
        rows = [str(i) for i in range(len(entries))]
        out = replay_trace.collapse_spins(rows, entries)
        self.assertEqual(len(out), 3 + 40 + 1 + 10)
        self.assertIn("950 more instructions of spin", out[43])
        rows = [f"row {i}" for i in range(1000)]
        rows[700] += "   <== the NMI arrived before this instruction"
        shown = replay_trace.excerpt(rows, "t.txt")
        self.assertEqual(len(shown), replay_trace.PRINTED + 1 + 80 + 1)
        self.assertIn("... 260 lines", shown[replay_trace.PRINTED])
        self.assertIn(rows[700], shown)
        self.assertIn("260 more lines", shown[-1])
        self.assertEqual(replay_trace.compact_path("a b c b c b c d".split()),
                         "a -> (b -> c) x3 -> d")


def main():
    return run_module(__name__)


if __name__ == "__main__":
    sys.exit(main())
