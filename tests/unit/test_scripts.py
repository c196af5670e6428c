# SPDX-License-Identifier: MIT
"""Unit tests of the Python tooling, on sample text (no emulator runs):

  - the books parser (scripts/books.py), in the hypervisor's `books cpu=N key=value`
    format and in the transitional table format;
  - the system-test manifest (tests/system/tests.cfg) and its reader;
  - the system tests' judges: each must be able to fail (tests/system/run.py);
  - the KVM / nested-VMX decision (scripts/qemu.py), on inputs this host lacks;
  - the one list of linker markers against the linker scripts;
  - the seed corpus against the decoder's own operation table.

    python3 -m tests.unit.test_scripts      (tests/run_tests.py: suite `scripts`)

One PASS/FAIL/SKIP line per test (scripts/report.py).
"""
import io
import os
import re
import sys
import types
import unittest

from scripts import books, elfsym, mkseeds, qemu
from scripts.report import Reporter
from tests.system import manifest, run

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

BOOKS_OK = """\
workload selftest: cpus=2 work=200
books cpu=0 nmi_entries=250 exit_nmis=113 handled_direct=0 handled_exit=113 deferred=3 \
drained=3 quiesce_parks=50 guest_accepted=309 guest_coalesced=4 guest_injected=309 \
guest_pending=0 host_consumed=0 tlb_flushes=26 quiesce_rounds=7
books cpu=1 nmi_entries=2 exit_nmis=0 handled_direct=1 handled_exit=0 deferred=1 drained=1 \
quiesce_parks=1 guest_accepted=0 guest_coalesced=0 guest_injected=0 guest_pending=0 \
host_consumed=1 tlb_flushes=26 quiesce_rounds=5
books: ok
"""
BOOKS_FAILED = """\
books cpu=0 nmi_entries=5 deferred=2 drained=1
books cpu=1 nmi_entries=0 deferred=0 drained=0
books: FAILED law=conservation cpu=0 taken=5 handled=4
books: FAILED law=guest_cap cpu=1 pending=2
"""
# The format hypervisors print before the books module: hv/workload.c's table.
BOOKS_TABLE = """\
cpu nmi_entries handled_direct deferred drained quiesce_parks host_consumed tlb_flushes \
quiesce_rounds     iters ipis_sent
  0          18             10        8       8             4            14           3 \
             4       100        25
  1          21             13        8       8             4            17           3 \
             4       100        25
totals: nmi_entries=39 ipis_sent=50 elapsed_ms=33
"""


class Books(unittest.TestCase):
    def test_format(self):
        """books: `books cpu=N key=value` lines are read by field name, `books: ok` balances"""
        b = books.parse(BOOKS_OK)
        self.assertEqual(sorted(b.cpus), [0, 1])
        self.assertEqual(b.cpus[0]["exit_nmis"], 113)
        self.assertEqual(b.cpus[1]["host_consumed"], 1)
        self.assertEqual(b.total("quiesce_rounds"), 12)
        self.assertTrue(b.ok)
        self.assertEqual(b.problems(2), [])

    def test_failed(self):
        """books: each `books: FAILED law=...` line is a failure, with its keys"""
        b = books.parse(BOOKS_FAILED)
        self.assertEqual(b.verdict, "FAILED")
        self.assertEqual([f["law"] for f in b.failures], ["conservation", "guest_cap"])
        self.assertEqual(b.failures[0], {"law": "conservation", "cpu": 0, "taken": 5,
                                         "handled": 4})
        self.assertEqual(len(b.problems(2)), 2)

    def test_missing(self):
        """books: no books, a CPU without books, or no verdict line do not balance"""
        self.assertEqual(books.parse("RESULT: PASS\n").problems(1), ["no books printed"])
        b = books.parse(BOOKS_OK)
        self.assertIn("no books for cpu 2, 3", b.problems(4))
        unfinished = books.parse(BOOKS_OK.replace("books: ok\n", ""))
        self.assertIsNone(unfinished.verdict)
        self.assertEqual(unfinished.problems(2), ["no `books: ok` verdict"])

    def test_table(self):
        """books: the transitional table is read by its header's names"""
        b = books.parse(BOOKS_TABLE)
        self.assertTrue(b.table)
        self.assertEqual(b.cpus[1]["host_consumed"], 17)
        self.assertEqual(b.cpus[0]["ipis_sent"], 25)
        self.assertEqual(b.total("quiesce_rounds"), 8)
        self.assertTrue(b.ok)
        failed = books.parse(BOOKS_TABLE + "check FAILED: deferred == drained + visited "
                             "(cpu 1: 8 vs 7)\n")
        self.assertEqual(failed.failures, [{"law": "deferred == drained + visited", "cpu": 1,
                                            "got": 8, "want": 7}])
        self.assertFalse(failed.ok)


def entry(text):
    """One Test from a manifest snippet (the deviations table added)."""
    tests, deviations = manifest.parse(text + "\n[deviations]\nbochs = 10 13\nqemu =\n")
    return tests[0], types.SimpleNamespace(deviations=deviations)


def boot(output, injected=None, trace=None):
    return types.SimpleNamespace(output=output, exit=1, timed_out=False, wall=1.0, logs="logs",
                                 problem=None, injected=injected, trace=trace)


FLOOD = """
[flood]
emulator = qemu
cpus = 2
cmdline = workload=mask-loop
inject = qmp-flood 100
books = balanced
checks = host-nmis
fails_when = more counted than injected, or the books do not balance
"""
PASSED = "RESULT: PASS mask-loop cpus=2 nmi_entries=52 ipis_sent=0 invariants ok\n"


class Judges(unittest.TestCase):
    def verdicts(self, text, output, **kw):
        t, ctx = entry(text)
        return [(kind, name) for kind, name, _ in run.judge(t, boot(output, **kw), ctx)]

    def test_flood(self):
        """judge: a flood passes with 1..N of N NMIs counted and balanced books"""
        out = BOOKS_OK + "HOST-NMIS: received=50 expected=0\n" + PASSED
        self.assertEqual(self.verdicts(FLOOD, out, injected=100), [("PASS", "flood")])

    def test_flood_overcount(self):
        """judge: a flood fails when more NMIs were counted than injected, or none"""
        for got in (101, 0):
            out = BOOKS_OK + f"HOST-NMIS: received={got} expected=0\n" + PASSED
            self.assertEqual(self.verdicts(FLOOD, out, injected=100), [("FAIL", "flood")])

    def test_flood_books(self):
        """judge: a flood fails when its books do not balance, despite RESULT: PASS"""
        out = BOOKS_FAILED + "HOST-NMIS: received=5 expected=0\n" + PASSED
        self.assertEqual(self.verdicts(FLOOD, out, injected=100), [("FAIL", "flood")])
        out = "HOST-NMIS: received=5 expected=0\n" + PASSED
        self.assertEqual(self.verdicts(FLOOD, out, injected=100), [("FAIL", "flood")])

    def test_no_verdict(self):
        """judge: a run without a RESULT line fails"""
        self.assertEqual(self.verdicts(FLOOD, BOOKS_OK, injected=100), [("FAIL", "flood")])

    def test_expect_fail(self):
        """judge: a failure report passes only with the RESULT: FAIL it expects"""
        text = ("[crash]\nemulator = qemu\ncpus = 1\ncmdline = workload=crash-pf\n"
                "expect = FAIL exception 14\noutput = ^EXCEPTION #PF\nfails_when = x\n")
        report = "EXCEPTION #PF vector=14\n"
        self.assertEqual(self.verdicts(text, report + "RESULT: FAIL exception 14\n"),
                         [("PASS", "crash")])
        for result in ("RESULT: PASS selftest", "RESULT: FAIL exception 1",
                       "RESULT: FAIL exception 13"):
            self.assertEqual(self.verdicts(text, report + result + "\n"), [("FAIL", "crash")])
        self.assertEqual(self.verdicts(text, "RESULT: FAIL exception 14\n"),
                         [("FAIL", "crash")])

    def test_books_words(self):
        """judge: books FIELD>0 and cpuN.FIELD=V words fail on other values"""
        text = ("[stw]\nemulator = qemu\ncpus = 2\ncmdline = workload=quiesce\n"
                "books = balanced quiesce_rounds>0 cpu1.deferred=1\nfails_when = x\n")
        self.assertEqual(self.verdicts(text, BOOKS_OK + PASSED), [("PASS", "stw")])
        none = re.sub(r"quiesce_rounds=\d+", "quiesce_rounds=0", BOOKS_OK)
        self.assertEqual(self.verdicts(text, none + PASSED), [("FAIL", "stw")])
        other = BOOKS_OK.replace("deferred=1 drained=1", "deferred=2 drained=2")
        self.assertEqual(self.verdicts(text, other + PASSED), [("FAIL", "stw")])

    EXP = ("[exp]\nemulator = {emu}\ncpus = 1\ncmdline = workload=vmx-exp\nneeds = vmx\n"
           "expect = PASS vmx-exp\nchecks = experiments\nfails_when = x\n")

    def exp_output(self, outcomes, ran=None, numbers=range(1, 31), not_run=0):
        """EXP lines for `numbers` (all 30 by default), `outcomes` [(n, verdict)]
        overriding "as expected", and the RESULT line."""
        how = dict(outcomes)
        lines = [f"EXP {n} E1V1 setup: expected x; observed y: {how.get(str(n), 'as expected')}"
                 for n in numbers]
        ran = len(lines) - not_run if ran is None else ran
        return "\n".join(lines + [f"RESULT: PASS vmx-exp {ran} experiments ran, 0 as expected, "
                                  f"0 deviate, {not_run} not run"]) + "\n"

    def test_experiments(self):
        """judge: vmx-exp follows the table, per emulator; KVM deviates from nothing"""
        bochs = self.EXP.format(emu="bochs")
        out = self.exp_output([("10", "DEVIATES"), ("13", "DEVIATES")])
        got = self.verdicts(bochs, out)
        self.assertEqual(len(got), 31)
        self.assertTrue(all(kind == "PASS" for kind, _ in got), got)
        self.assertEqual(got[-1], ("PASS", "exp"))
        kvm = self.EXP.format(emu="qemu")
        self.assertEqual(self.verdicts(kvm, out)[9:13:3], [("FAIL", "exp/10"), ("FAIL", "exp/13")])

    def test_experiments_gone(self):
        """judge: a listed deviation that went away fails, and so do missing EXP lines"""
        bochs = self.EXP.format(emu="bochs")
        out = self.exp_output([("10", "as expected"), ("13", "DEVIATES")])
        self.assertEqual(self.verdicts(bochs, out)[9], ("FAIL", "exp/10"))
        short = self.exp_output([("13", "DEVIATES")], ran=30, numbers=range(1, 30))
        self.assertEqual(self.verdicts(bochs, short)[-1], ("FAIL", "exp"))
        # as many lines as the verdict counts, but not the whole catalogue
        partial = self.exp_output([("13", "DEVIATES")], numbers=[1, 2, 13])
        self.assertEqual(self.verdicts(bochs, partial)[-1], ("FAIL", "exp"))

    def test_experiments_not_run_and_only(self):
        """judge: an experiment not run is a SKIP; only=N needs just its line"""
        bochs = self.EXP.format(emu="bochs")
        out = self.exp_output([("1", "not run (no VMX-preemption timer)")], not_run=1)
        got = self.verdicts(bochs, out)
        self.assertEqual((got[0], got[-1]), (("SKIP", "exp/1"), ("PASS", "exp")))
        only = bochs.replace("workload=vmx-exp", "workload=vmx-exp only=13")
        one = self.exp_output([("13", "DEVIATES")], numbers=[13])
        self.assertEqual(self.verdicts(only, one), [("PASS", "exp/13"), ("PASS", "exp")])

    def test_vmx_unavailable(self):
        """judge: needs = vmx turns a run without VMX into one SKIP"""
        out = ("VMX unavailable: CPUID.1:ECX.VMX is 0: running the host-side selftest instead\n"
               + self.exp_output([("10", "DEVIATES")], numbers=[10]))
        self.assertEqual(self.verdicts(self.EXP.format(emu="qemu"), out), [("SKIP", "exp")])

    def test_guest_checks(self):
        """judge: the guest's own checks are verdicts; the guest on too few CPUs fails"""
        text = ("[g]\nemulator = bochs\ncpus = 2\ncmdline = workload=guest guest_smp=1\n"
                "guest = yes\nexpect = PASS vmx-guest\nchecks = guest-checks guest-on-every-cpu\n"
                "fails_when = x\n")
        out = ("GUEST: PASS nmi-self 1/1\nGUEST: FAIL nmi-pair: 1/2\n"
               "RESULT: PASS vmx-guest cpus=2 guest_cpus=2\n")
        self.assertEqual(self.verdicts(text, out), [("PASS", "g/nmi-self"), ("FAIL", "g/nmi-pair"),
                                                    ("PASS", "g")])
        out = out.replace("guest_cpus=2", "guest_cpus=1")
        self.assertEqual(self.verdicts(text, out)[-1], ("FAIL", "g"))

    def test_path(self):
        """judge: a trace path matches the manifest's words in order, ends included"""
        words = "nmi_entry ... nmi_host_entry ... nmi_entry".split()
        good = ["nmi_entry", "nmi_host_entry", "plat_this_cpu", "handle_one", "nmi_entry"]
        self.assertTrue(run.path_matches(words, good))
        self.assertFalse(run.path_matches(words, good[:-1]))
        self.assertFalse(run.path_matches(words, ["nmi_entry", "handle_one", "nmi_entry"]))
        self.assertFalse(run.path_matches(words, ["kmain"] + good))

    def test_paced_exact(self):
        """judge: a paced run must count every NMI; a run without progress says so"""
        text = FLOOD.replace("qmp-flood 100", "qmp-paced 100")
        t, ctx = entry(text)
        paths = types.SimpleNamespace(kernel="hv.elf", guests={})
        self.assertIn("ack=1 nmis=100", run.run_args(t, paths)[1])
        short = "HOST-NMIS: received=97 expected=100\n" + BOOKS_TABLE + \
            "RESULT: PASS mask-loop\n"
        self.assertEqual(run.judge(t, boot(short, injected=100), ctx)[-1][0], "FAIL")
        stuck = boot("workload mask-loop: cpus=2\n")
        stuck.stalled, stuck.timed_out = (30.0, 2.5), False
        note = run.judge(t, stuck, ctx)[-1][2]
        self.assertIn("no progress: no output for 30 s (since 2.5 s)", note)


class Manifest(unittest.TestCase):
    def test_shipped(self):
        """manifest: tests.cfg loads, every entry says what fails it, both emulators"""
        tests, deviations = manifest.load(run.MANIFEST)
        self.assertEqual({t.emulator for t in tests}, {"qemu", "bochs"})
        self.assertEqual(set(deviations), {"qemu", "bochs"})
        for t in tests:
            self.assertGreater(len(t.fails_when.split()), 3, t.name)

    def test_rejects(self):
        """manifest: unknown keys, a missing fails_when, bad words stop the run"""
        base = "[t]\nemulator = qemu\ncpus = 1\nfails_when = x\n"
        for bad in ("timeuot = 5\n", "checks = host-nmi\n", "inject = qmp-paced 10\n"
                    "emulator = bochs\n", "books = balanced quiesce_rounds\n",
                    "trace = nmi\n", "inject = qmp-paced 10 exact\n", "kernel = guest\n"
                    "emulator = bochs\n"):
            text = (base.replace("emulator = qemu\n", "") if "emulator" in bad else base) + bad
            with self.assertRaises(manifest.ManifestError, msg=bad):
                entry(text)
        with self.assertRaises(manifest.ManifestError):
            entry(base.replace("fails_when = x\n", ""))


class Tooling(unittest.TestCase):
    def test_accel(self):
        """qemu: KVM with VMX given nested VMX; KVM without VMX on a hardware KVM or when
        asked for; else TCG; every choice says why"""
        for nested in ("Y", "1"):
            self.assertEqual(qemu.choose_accel(True, nested)[0], qemu.KVM)
        for modules in (("kvm_intel",), ("kvm_amd",)):
            self.assertEqual(qemu.choose_accel(True, "N", modules)[0], qemu.KVM_NO_VMX)
        self.assertEqual(qemu.choose_accel(True, "", ("kvm_pvm",), "kvm")[0], qemu.KVM_NO_VMX)
        for usable, nested, modules, want in (
                (False, "Y", ("kvm_intel",), "auto"), (True, "N", (), "auto"),
                (True, "", ("kvm_pvm",), "auto"), (False, "", (), "kvm"),
                (True, "Y", ("kvm_intel",), "tcg")):
            args, why = qemu.choose_accel(usable, nested, modules, want)
            self.assertEqual(args, qemu.TCG, (usable, nested, modules, want))
            self.assertTrue(why.startswith("TCG, no VMX: "))

    def test_markers(self):
        """elfsym: MARKERS names every symbol the linker scripts define"""
        defined = set()
        for script in ("hv/linker.ld", "tests/guest/guest.ld"):
            with open(os.path.join(ROOT, script)) as f:
                defined |= set(re.findall(r"\b(__\w+)\s*=\s*\.", f.read()))
        self.assertTrue(defined)
        self.assertEqual(defined - elfsym.MARKERS, set())

    def test_seeds(self):
        """mkseeds: the decoder's own table re-encodes corpus/fuzz/ byte for byte"""
        os.chdir(ROOT)
        ops = mkseeds.decoder_ops()
        for name, (ncpus, steps) in mkseeds.SEEDS.items():
            with open(os.path.join("corpus", "fuzz", name + ".bin"), "rb") as f:
                self.assertEqual(mkseeds.encode(ncpus, steps, ops), f.read(), name)

    def test_reporter(self):
        """report: verdict lines, indented continuation lines, the closing count"""
        out = io.StringIO()
        r = Reporter(out)
        r.verdict("PASS", "a", "fine")
        r.verdict("FAIL", "b", "why\nPASS not a verdict")
        r.verdict("SKIP", "c")
        self.assertEqual(r.summary(), 1)
        lines = out.getvalue().splitlines()
        self.assertEqual(lines[:4], ["PASS a (fine)", "FAIL b: why", "    PASS not a verdict",
                                     "SKIP c"])
        self.assertTrue(lines[4].startswith("1 passed, 1 failed, 1 skipped"))


class Relay(unittest.TestResult):
    """unittest's outcomes as Reporter lines."""

    def __init__(self, report):
        super().__init__()
        self.report = report

    def name(self, test):
        return test.shortDescription() or test.id()

    def addSuccess(self, test):
        self.report.verdict("PASS", self.name(test))

    def addFailure(self, test, err):
        self.report.verdict("FAIL", self.name(test),
                            self._exc_info_to_string(err, test).strip().splitlines()[-1])

    addError = addFailure

    def addSkip(self, test, reason):
        self.report.verdict("SKIP", self.name(test), reason)


def run_module(name):
    """Every test of module `name`, one Reporter line each; the summary's exit status."""
    report = Reporter()
    unittest.defaultTestLoader.loadTestsFromModule(sys.modules[name]).run(Relay(report))
    return report.summary()


def main():
    return run_module(__name__)


if __name__ == "__main__":
    sys.exit(main())
