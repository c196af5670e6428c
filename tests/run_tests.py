#!/usr/bin/env python3
"""The project's test runner: every suite, one verdict line per test, and the
closing line `N passed, N failed, N skipped`.

Suites (all by default):
  unit        table-driven tests of each core entry point (tests/unit/test_core.c)
  identity    the core's machine code is byte-identical in every binary
  scenarios   corpus/scenarios/*.nmi on every variant, against their `# expect:` line
  corpus      corpus/fuzz seeds pass on final; corpus/regressions/<variant>/ fail on
              their variant and pass on final; every input stored before format 1
              decodes as it did; NMIs placed by breakpoint land where stepping does
  clang       the core built by clang (make HV_CC=clang): identity in nmisim, fuzz_nmi,
              test_core and hv.elf, told apart from gcc's, unit tests, scenarios
  sanitizers  the harness under ASan + UBSan with the shipped core (make
              SANITIZE=address,undefined): the corpus suite and the scenarios on it
  service     .clusterfuzzlite/build.sh with a fuzzing service's environment; the
              target it builds runs its seed corpus with its options and dictionary
  coverage    make coverage's page in headless chromium: it loads, and every count it
              shows equals an independent replay's (and a page with wrong counts fails)
  input       malformed scenario files are rejected with their line number
  stress      free-running threads + NMI sources on final, up to 1,000,000 NMIs or 60 s:
              0 lost, 0 violations, at least 1,000 delivered (speed is make bench's)
  system      the system tests of tests/system/tests.cfg under QEMU and Bochs
              (make test-qemu, make test-bochs: python3 -m tests.system.run)
  linux       an unmodified Linux kernel as the hypervisor's guest on 2 CPUs (Bochs),
              its own NMI users as checks (make test-linux; docs/linux-guest.md)
  replay      make replay ON=auto: every scenario on every variant and every reproducer
              on its variant and on final, on the hypervisor (QEMU, or Bochs for guest
              steps), each case's verdict the simulator's, the whole the `# expect:`
              line's; and one TRACE=1 replay in Bochs (seed-race, racy-counter)
  scripts     the Python tooling on sample text: books parser, manifest, judges, the
              replay's scenario conversion and parsers (python3 -m tests.unit.test_scripts,
              tests.unit.test_replay_hv)
  style       every C file is formatted by the root .clang-format

Run from anywhere: it works in the repository root.
"""
import argparse
import concurrent.futures
import glob
import html.parser
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile

from suite_bugs import suite_bugs  # noqa: F401 - suite `bugs`: tests/suite_bugs.py

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
VARIANTS = ["final", "coalescing", "racy-counter", "reentrant-loop"]
RESULTS = {"PASS": 0, "FAIL": 0, "SKIP": 0}


def verdict(kind, name, why=""):
    RESULTS[kind] += 1
    print(f"{kind} {name}" + (f": {why}" if why else ""), flush=True)


def run(cmd, timeout=600, env=None):
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                           errors="replace")
        return p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        return 124, out + f"\n(timed out after {timeout} s)"


def build(variant, *targets, flavour=None):
    """Build targets of build/<variant><suffix>/; flavour is one of FLAVOURS (None: the
    shipped build)."""
    suffix, make_vars = FLAVOURS[flavour]
    rc, out = run(["make", "-s", f"VARIANT={variant}"] + make_vars
                  + [f"build/{variant}{suffix}/{t}" for t in targets])
    if rc != 0:
        verdict("FAIL", f"build {variant}{suffix}: {' '.join(targets)}",
                out.strip().splitlines()[-1] if out.strip() else "")
        return False
    return True


# The builds other than the shipped one that make test covers: (directory suffix,
# make variables).  The Makefile names the directories (build/<variant><suffix>/).
FLAVOURS = {
    None: ("", []),
    "clang": ("-clang", ["HV_CC=clang"]),
    "san": ("-address-undefined", ["SANITIZE=address,undefined"]),
}


def relay(out, prefix=""):
    """Count the PASS/FAIL/SKIP lines a sub-suite printed."""
    seen = 0
    for line in out.splitlines():
        m = re.match(r"(PASS|FAIL|SKIP) (.*)", line)
        if m:
            verdict(m.group(1), prefix + m.group(2))
            seen += 1
    return seen


def suite_unit():
    if not build("final", "test_core"):
        return
    rc, out = run(["build/final/test_core"])
    if relay(out) == 0 or (rc != 0 and "FAIL" not in out):
        verdict("FAIL", "unit", f"test_core exited {rc}: {out[-300:]}")
    if not build("final", "test_decode"):
        return
    rc, out = run(["build/final/test_decode"])
    if relay(out) == 0 or (rc != 0 and "FAIL" not in out):
        verdict("FAIL", "unit", f"test_decode exited {rc}: {out[-300:]}")


def suite_identity():
    if not build("final", "nmisim", "fuzz_nmi", "test_core"):
        return
    bins = ["build/final/nmisim", "build/final/fuzz_nmi", "build/final/test_core"]
    if os.path.exists("hv/hv.mk") and build("final", "hv.elf"):
        bins.append("build/final/hv.elf")
    rc, out = run([sys.executable, "-m", "scripts.check_identity", "build/final/nmi_core.o"] + bins)
    relay(out)
    # The check must be able to fail: a core built with other flags differs.  The
    # Makefile builds it (OPT=-O1 builds apart, in build/final-O1/).
    rc1, out1 = run(["make", "-s", "OPT=-O1", "build/final-O1/nmi_core.o"])
    rc2, out2 = run([sys.executable, "-m", "scripts.check_identity", "build/final-O1/nmi_core.o",
                     "build/final/nmisim"])
    if rc1 == 0 and rc2 == 1 and "FAIL identity" in out2:
        verdict("PASS", "identity: a core compiled with -O1 is told apart from the shipped one")
    else:
        verdict("FAIL", "identity: a core compiled with -O1 was not told apart",
                (out1 if rc1 else out2)[-300:])


def expectations(path, flavour=None):
    """The `# expect:` verdicts, overridden for a build flavour by its
    `# expect[flavour]:` line (the machine code, hence the verdict, can differ)."""
    want, override = {}, {}
    with open(path) as f:
        for line in f:
            m = re.match(r"#\s*expect(?:\[([\w-]+)\])?:\s*(.*)", line)
            if m and (m.group(1) is None and not want):
                want = dict(kv.split("=") for kv in m.group(2).split())
            elif m and m.group(1) == flavour:
                override.update(kv.split("=") for kv in m.group(2).split())
    return dict(want, **override)


def suite_scenarios(flavour=None):
    files = sorted(glob.glob("corpus/scenarios/*.nmi"))
    suffix = FLAVOURS[flavour][0]
    for v in VARIANTS:
        if not build(v, "nmisim", flavour=flavour):
            continue
        for f in files:
            want = expectations(f, flavour).get(v)
            name = f"scenario {os.path.basename(f)} [{v}{suffix}]"
            if want not in ("pass", "fail"):
                verdict("FAIL", name, "no '# expect:' entry for this variant")
                continue
            rc, out = run([f"build/{v}{suffix}/nmisim", "run", "--quiet", f])
            got = {0: "pass", 1: "fail"}.get(rc, f"error (exit {rc})")
            first = out.strip().splitlines()[0] if out.strip() else ""
            if got == want:
                how = "passes" if want == "pass" else "fails"
                verdict("PASS", name, f"{how} as expected ({first.split(': ', 1)[-1]})")
            else:
                verdict("FAIL", name, f"expected {want}, got {got}: {first}")
    if flavour is None:
        explore_checks(files)


def explore_checks(files):
    """make explore's search with pruning (sim/explore.c): at NMIS=2 over every
    scenario, and NMIS=3 on the seed's, each historical variant still fails every
    scenario it is expected to fail and final passes them all; pruning changes no
    count (--all, against NMISIM_PRUNE=0); sampled pruned subtrees, explored anyway
    (NMISIM_PRUNE_CHECK), match their twins; schedules placed by address (hardware
    breakpoints) run as they do placed by index (NMISIM_ADDR_CHECK), and the index
    form alone (NMI_NO_HWBP=1) counts the same schedules and failures."""
    seed = "corpus/scenarios/seed-race.nmi"
    final_passes = True
    for v in VARIANTS:
        for k, fs in ((2, files), (3, [seed])):
            rc, out = run([f"build/{v}/nmisim", "run", "--quiet", "--nmis", str(k)] + fs)
            failed = set(re.findall(r"^FAIL (\S+) ", out, re.M))
            want = {f for f in fs if expectations(f).get(v) == "fail"}
            # The totals line when there is one (several files), else the scenario's.
            pruned = re.search(r"; \d+ run, (\d+) pruned$", out, re.M) or re.search(r"(\d+) pruned", out)
            name = f"explore NMIS={k} [{v}]: " + ("every scenario" if len(fs) > 1 else "seed-race")
            if v == "final":
                ok = rc == 0 and not failed
                final_passes = final_passes and ok
                how = "passes"
            else:
                ok = rc == 1 and want <= failed
                how = f"fails {len(failed)} scenarios, every one of the {len(want)} expected"
            verdict("PASS" if ok else "FAIL", name,
                    f"{how} ({pruned[1] if pruned else 0} schedules pruned)" if ok else
                    f"expected to fail {sorted(want)}, failed {sorted(failed)}: {out[-300:]}")
    counts = {}
    for prune in ("1", "0"):
        rc, out = run(["build/racy-counter/nmisim", "run", "--quiet", "--all", "--nmis", "2", seed],
                      env=dict(os.environ, NMISIM_PRUNE=prune))
        m = re.search(r"(\d+) of (\d+) schedules fail", out)
        counts[prune] = (m[1], m[2]) if m else out[-200:]
    verdict("PASS" if counts["1"] == counts["0"] and isinstance(counts["1"], tuple) else "FAIL",
            "explore --all NMIS=2 [racy-counter] seed-race: pruning counts the same failing "
            "schedules", f"pruned {counts['1']}, unpruned {counts['0']}")
    # The checks of the search itself, on every schedule (--all): on final only while
    # final passes.  A broken final has failed above already, and a core that runs
    # away fails thousands of schedules here, each after its 0.1 s of CPU time.
    machinery = ["racy-counter"] + (["final"] if final_passes else [])
    if not final_passes:
        verdict("SKIP", "explore --all checks [final]",
                "final fails make explore above: the search's own checks need a final that passes")
    for v in machinery:
        rc, out = run([f"build/{v}/nmisim", "run", "--quiet", "--all", "--nmis", "2"] + files,
                      env=dict(os.environ, NMISIM_PRUNE_CHECK="5"))
        m = re.search(r"prune check: (\d+) of (\d+) pruned subtrees explored anyway, (\d+) differ", out)
        verdict("PASS" if m and m[3] == "0" and int(m[1]) > 0 else "FAIL",
                f"explore prune check [{v}]: every 5th pruned subtree, explored anyway, matches its twin",
                m[0] if m else out[-300:])
    totals = re.compile(r"^\d+ schedules in \d+ scenarios \[[^]]*\]: \d+ failing \(in \d+ scenarios\)", re.M)
    for v in machinery:
        cmd = [f"build/{v}/nmisim", "run", "--quiet", "--all", "--nmis", "2"] + files
        rc, out = run(cmd, env=dict(os.environ, NMISIM_ADDR_CHECK="3"))
        name = f"explore address check [{v}]: every 3rd schedule placed by address, run by index too, is the same run"
        m = re.search(r"address check: (\d+) of (\d+) schedules placed by address also run by index, (\d+) differ", out)
        if "hardware breakpoints unavailable" in out:
            verdict("SKIP", name, "hardware breakpoints unavailable here: explore places NMIs by index")
        else:
            verdict("PASS" if m and m[3] == "0" and int(m[1]) > 0 else "FAIL", name,
                    m[0] if m else out[-300:])
        rc_i, out_i = run(cmd, env=dict(os.environ, NMI_NO_HWBP="1"))
        a, b = totals.search(out), totals.search(out_i)
        said = out_i.count("explore places each NMI by its instruction index") == 1
        verdict("PASS" if a and b and a[0] == b[0] and said else "FAIL",
                f"explore --all NMIS=2 [{v}]: the index form alone (NMI_NO_HWBP=1) counts the same, said once",
                f"{b[0] if b else out_i[-200:]}" if a and b and a[0] == b[0] and said else
                f"by address: {a[0] if a else out[-200:]}; by index: {b[0] if b else out_i[-200:]}; said once: {said}")


def replay_input(variant, path, suffix=""):
    rc, out = run([f"build/{variant}{suffix}/fuzz_nmi", "-handle_usr1=0", "-handle_usr2=0", path],
                  timeout=120)
    m = re.search(r"NMI VIOLATION \[[^]]*\]: (.*)", out)
    # A sanitizer's report is a failure of the harness, never a verdict on the core.
    san = re.search(r"(ERROR: AddressSanitizer: .*|runtime error: .*)", out)
    return rc, (m.group(1) if m else None), (san.group(1) if san else None)


def suite_corpus(flavour=None):
    suffix = FLAVOURS[flavour][0]
    tag = f" [{flavour}]" if flavour else ""
    if not build("final", "fuzz_nmi", flavour=flavour):
        return
    seeds = sorted(glob.glob("corpus/fuzz/*"))
    results = [(s, replay_input("final", s, suffix)) for s in seeds]
    bad = [s for s, (rc, _, san) in results if rc != 0 or san]
    if seeds and not bad:
        verdict("PASS", f"corpus{tag}: all {len(seeds)} seed inputs pass on final{suffix}")
    else:
        verdict("FAIL", f"corpus{tag}: seed inputs",
                f"{len(bad)} of {len(seeds)} fail on final{suffix}: {bad[:3]} "
                + "; ".join(san for _, (_, _, san) in results if san)[:300])
    # The distilled seeds (scripts/distill.py), in one process as make fuzz runs them.
    distilled = glob.glob("corpus/distilled/*")
    rc, out = run([f"build/final{suffix}/fuzz_nmi", "-runs=0", "-handle_usr1=0", "-handle_usr2=0",
                   "corpus/distilled"], timeout=300)
    m = re.search(r"(NMI VIOLATION .*|ERROR: \w+Sanitizer: .*|runtime error: .*)", out)
    if distilled and rc == 0 and not m:
        verdict("PASS", f"corpus{tag}: all {len(distilled)} distilled seed inputs pass on final{suffix}")
    else:
        verdict("FAIL", f"corpus{tag}: distilled seed inputs",
                f"{len(distilled)} inputs, exit {rc}: {m.group(1) if m else out.strip()[-300:]}")
    for v in VARIANTS[1:]:
        regs = sorted(glob.glob(f"corpus/regressions/{v}/*.bin"))
        if not regs:
            verdict("SKIP", f"regressions{tag} [{v}]", f"corpus/regressions/{v}/ holds no reproducer")
            continue
        if not build(v, "fuzz_nmi", flavour=flavour):
            continue
        for r in regs:
            rc_v, why, san_v = replay_input(v, r, suffix)
            rc_f, why_f, san_f = replay_input("final", r, suffix)
            name = f"regression{tag} {v}/{os.path.basename(r)}"
            if rc_v != 0 and why and rc_f == 0 and not (san_v or san_f):
                verdict("PASS", name, f"fails on {v}{suffix} ({why}), passes on final{suffix}")
            else:
                verdict("FAIL", name, f"on {v}{suffix}: {san_v or why or 'no violation'}; "
                        f"on final{suffix}: {san_f or why_f or 'passes'}")
            # Its decoded form, replayed by the same build's nmisim, must agree.
            text = r[:-4] + ".nmi"
            if os.path.exists(text) and build(v, "nmisim", flavour=flavour) \
                    and build("final", "nmisim", flavour=flavour):
                rc_tv, out_v = run([f"build/{v}{suffix}/nmisim", "run", "--quiet", text])
                rc_tf, out_f = run([f"build/final{suffix}/nmisim", "run", "--quiet", text])
                clean = not re.search(r"ERROR: AddressSanitizer|runtime error:", out_v + out_f)
                verdict("PASS" if (rc_tv, rc_tf) == (1, 0) and clean else "FAIL",
                        f"regression{tag} {v}/{os.path.basename(text)} (as a scenario)",
                        f"nmisim: exit {rc_tv} on {v}{suffix}, {rc_tf} on final{suffix}")

    if flavour is None:
        format_checks()
        hwbp_checks()


# ---- the fuzz input's formats (fuzz/decode.c, docs/fuzzing.md "What an input is") ----
# The decoder as it was before format 1: the last commit that changed fuzz/decode.c
# before it.  Every input stored before then must decode with this tree's decoder to
# exactly the schedule that one gives.
OLD_DECODER = "fd2373f"


def decode_h(name):
    """A constant of fuzz/decode.h (a C string as bytes, or an integer)."""
    text = open("fuzz/decode.h").read()
    m = re.search(r"#define\s+" + name + r"\s+(\"(?:[^\"\\]|\\.)*\"|0x[0-9a-fA-F]+)", text)
    v = m.group(1)
    if v.startswith('"'):
        return v[1:-1].encode("latin-1").decode("unicode_escape").encode("latin-1")
    return int(v, 16)


def dump_tool(out, decoder_dir):
    """Build fuzz/decode_dump.c with the decoder in decoder_dir (decode.c, decode.h)
    against build/final's core, boundary table and simulator; None on failure."""
    rc, log = run(["gcc", "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-Ihv", "-Isim",
                   "-I" + decoder_dir, "-pthread", "fuzz/decode_dump.c",
                   os.path.join(decoder_dir, "decode.c"), "build/final/fuzz/core_bounds.c",
                   "build/final/nmi_core.o", "build/final/libnmisim.a", "-no-pie", "-pthread",
                   "-o", out])
    return out if rc == 0 else (None, log)


def dump(tool, files):
    """{file: the schedules it decodes to, precise and fast} as dump_tool prints them."""
    rc, out = run([tool] + files)
    got, cur = {}, None
    for line in out.splitlines():
        m = re.match(r"(\S+) (precise|fast): ", line)
        if m:
            cur = m.group(1)
        got[cur] = got.get(cur, "") + line + "\n"
    return rc, got


def format_checks():
    """Every input stored before format 1 (the kept seeds, the regression
    reproducers, and any findings/ or grown corpus here) decodes to the schedule the
    decoder before format 1 gives, field by field; none starts with format 1's
    magic, every new seed does; mkseeds reproduces both seed sets; and the mutator
    grows only format-1 inputs, with no index placement."""
    if not build("final", "fuzz_nmi", "nmi_core.o", "libnmisim.a", "fuzz_ops"):
        return
    magic = decode_h("FUZZ_MAGIC")
    stored = sorted(glob.glob("corpus/fuzz/*.bin")) + sorted(glob.glob("corpus/regressions/*/*.bin"))
    new_seeds = [f for f in stored if os.path.basename(f).startswith("v1-")]
    kept = [f for f in stored if f not in new_seeds]
    local = sorted(f for f in glob.glob("findings/**/*", recursive=True)
                   + glob.glob("corpus/grown/**/*", recursive=True)
                   if os.path.isfile(f) and not f.endswith((".txt", ".svg", ".nmi", ".log")))
    starts = lambda f: open(f, "rb").read(len(magic)) == magic
    bad = [f for f in kept if starts(f)] + [f for f in new_seeds if not starts(f)]
    verdict("PASS" if kept and new_seeds and not bad else "FAIL",
            f"format: none of the {len(kept)} inputs kept from before format 1 starts with its "
            f"magic {magic!r}, all {len(new_seeds)} format-1 seeds do", f"{bad}" if bad else "")
    with tempfile.TemporaryDirectory() as d:
        old = os.path.join(d, "old")
        os.makedirs(old)
        ok = True
        for name in ("decode.c", "decode.h"):
            rc, text = run(["git", "show", f"{OLD_DECODER}:fuzz/{name}"])
            ok = ok and rc == 0
            with open(os.path.join(old, name), "w") as f:
                f.write(text)
        if not ok:
            verdict("SKIP", "format: stored inputs decode as before format 1",
                    f"the decoder of commit {OLD_DECODER} is not in this checkout's history")
        else:
            tools = [dump_tool(os.path.join(d, "dump-old"), old),
                     dump_tool(os.path.join(d, "dump-new"), "fuzz")]
            if any(not isinstance(t, str) for t in tools):
                verdict("FAIL", "format: build fuzz/decode_dump.c",
                        next(t[1] for t in tools if not isinstance(t, str))[-300:])
                return
            # Format-1 inputs among the local ones were written by this decoder's
            # campaigns: the old decoder never saw them.
            old_inputs = kept + [f for f in local if not starts(f)]
            (rc_o, o), (rc_n, n) = (dump(t, old_inputs) for t in tools)
            differ = [f for f in old_inputs if o.get(f) != n.get(f) or f not in o]
            placed = sum(n.get(f, "").count("[kind") for f in kept)
            verdict("PASS" if rc_o == rc_n == 0 and not differ else "FAIL",
                    f"format: {len(kept)} stored inputs (and {len(old_inputs) - len(kept)} in "
                    f"findings/ and corpus/grown/) decode as the decoder of {OLD_DECODER} decoded "
                    f"them, precise and fast, every field ({placed} NMI placements)",
                    f"differ: {differ[:3]}" if differ else "")
            # The stored inputs hold no format-0 breakpoint placement: random byte
            # strings (none starting with the magic) try every branch of format 0.
            rnd = random.Random(12)
            files = []
            for i in range(2000):
                data = bytes(rnd.randrange(256) for _ in range(rnd.randrange(40)))
                if data.startswith(magic):
                    continue
                files.append(os.path.join(d, f"r{i}"))
                with open(files[-1], "wb") as f:
                    f.write(data)
            (rc_o, o), (rc_n, n) = (dump(t, files) for t in tools)
            differ = [f for f in files if o.get(f) != n.get(f) or f not in o]
            kinds = "".join(n.values())
            verdict("PASS" if rc_o == rc_n == 0 and not differ else "FAIL",
                    f"format: {len(files)} random format-0 inputs decode as before too "
                    f"({kinds.count('[kind 0')} index and {kinds.count('[kind 1')} breakpoint "
                    "placements)", f"differ: {differ[:3]}" if differ else "")
    with tempfile.TemporaryDirectory() as d:
        ok = True
        for fmt, files in (("0", [f for f in kept if f.startswith("corpus/fuzz/")]),
                           ("1", new_seeds)):
            rc, out = run([sys.executable, "-m", "scripts.mkseeds", "--format", fmt,
                           os.path.join(d, fmt)])
            for f in files:
                made = os.path.join(d, fmt, os.path.basename(f))
                ok = ok and rc == 0 and os.path.exists(made) and \
                    open(made, "rb").read() == open(f, "rb").read()
            ok = ok and rc == 0 and len(os.listdir(os.path.join(d, fmt))) == len(files)
        verdict("PASS" if ok else "FAIL", "format: mkseeds --format 0 writes the kept seeds byte "
                "for byte, mkseeds the format-1 seeds", "" if ok else out.strip()[-300:])
    with tempfile.TemporaryDirectory() as d:
        grown = os.path.join(d, "grown")
        os.makedirs(grown)
        rc, out = run(["build/final/fuzz_nmi", grown, "corpus/fuzz", "-runs=3000", "-seed=1"] +
                      FUZZ_FLAGS, env=dict(os.environ, NMI_FUZZ_MODE="precise"))
        files = [os.path.join(grown, f) for f in sorted(os.listdir(grown))]
        tool = dump_tool(os.path.join(d, "dump-new"), "fuzz")
        rc_d, n = dump(tool, files) if isinstance(tool, str) and files else (1, {})
        fmt0 = [f for f in files if not starts(f)]
        stepped = [f for f in files if "[kind 0" in n.get(f, "").split(" fast: ")[0]]
        bp = sum(n.get(f, "").split(" fast: ")[0].count("[kind 1") for f in files)
        verdict("PASS" if rc == 0 and rc_d == 0 and files and not fmt0 and not stepped and bp
                else "FAIL",
                "format: the mutator grows only format-1 inputs, every NMI placed by breakpoint",
                f"{len(files)} inputs from 3000 runs, {bp} breakpoint placements; "
                f"{len(fmt0)} format 0, {len(stepped)} with an index placement")


FUZZ_FLAGS = ["-handle_usr1=0", "-handle_usr2=0"]


def fails_with_and_without_hwbp(path):
    """The fuzz input at `path` on racy-counter then final, each with hardware
    breakpoints and stepped: [(it failed, times the fallback was said)] x 4."""
    res = []
    for v in ("racy-counter", "final"):
        for env in (None, dict(os.environ, NMI_NO_HWBP="1")):
            rc, out = run([f"build/{v}/fuzz_nmi", "-handle_usr1=0", "-handle_usr2=0", path],
                          env=env)
            res.append((rc != 0 and "NMI VIOLATION" in out,
                        out.count("hardware breakpoints unavailable")))
    return res


def hwbp_checks():
    """The breakpoint placement (address + occurrence, docs/fuzzing.md) lands every NMI
    where the instruction-index placement does; the stepped fallback (NMI_NO_HWBP=1)
    lands it there too and says so once."""
    base = "cpus 1\ncpu0 mask\ncpu0 nmi\ncpu0 crit\ncpu0 unmask nmi@{}\n"
    arrive = re.compile(r"NMI arrives.*\n\s*\|\s+at (\S+)")
    for v in ("racy-counter", "final"):
        if not build(v, "nmisim", "fuzz_nmi"):
            return
        nmisim = f"build/{v}/nmisim"
        with tempfile.TemporaryDirectory() as d:
            def timeline(at, env=None):
                path = os.path.join(d, "s.nmi")
                with open(path, "w") as f:
                    f.write(base.format(at))
                rc, out = run([nmisim, "run", "--timeline", path], env=env)
                where = arrive.search(out)
                # The step's own row and the arrival line name the placement, the
                # summary line the time taken: drop them.
                body = [re.sub(r", [\d.]+ s$", "", ln) for ln in out.splitlines()
                        if "nmi@" not in ln and "NMI arrives" not in ln
                        and "hardware breakpoints unavailable" not in ln]
                return rc, (where.group(1) if where else None), body, out
            seen, same, differ, fallback_ok, i = {}, 0, [], 0, 1
            while i <= 200:
                rc_i, where, body_i, _ = timeline(str(i))
                if where is None:
                    break  # past the end of the step
                seen[where] = seen.get(where, 0) + 1
                at = f"{where}:{seen[where]}"
                rc_b, where_b, body_b, _ = timeline(at)
                rc_s, where_s, body_s, out_s = timeline(at, env=dict(os.environ, NMI_NO_HWBP="1"))
                if (rc_b, where_b, body_b) == (rc_i, where, body_i):
                    same += 1
                else:
                    differ.append(f"nmi@{i} at {where} against nmi@{at} at {where_b}")
                if (rc_s, where_s, body_s) == (rc_i, where, body_i) and \
                        out_s.count("hardware breakpoints unavailable (NMI_NO_HWBP is set)") == 1:
                    fallback_ok += 1
                i += 1
            name = f"hwbp [{v}]: nmi@fn+off:N lands where nmi@index does (unmask after a crit)"
            if same == i - 1 and i > 10:
                verdict("PASS", name, f"all {same} boundaries of the step, timelines identical")
            else:
                verdict("FAIL", name, f"{same} of {i - 1} identical; {differ[:3]}")
            name = f"hwbp [{v}]: the stepped fallback (NMI_NO_HWBP=1) lands them there too, said once"
            verdict("PASS" if fallback_ok == i - 1 and i > 10 else "FAIL", name,
                    f"{fallback_ok} of {i - 1} boundaries")
    # The fuzz input's breakpoint form (b = 01rooppp) finds the seed race on racy-counter
    # and passes on final, with breakpoints and with the fallback.
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "bp.bin")
        found = None
        for c in range(256 * 8):
            with open(path, "wb") as f:
                # 1 CPU; mask; nmi; unmask with the breakpoint form at boundary c.
                f.write(bytes([0, 0 << 2, 0, 4 << 2, 0, 1 << 2, 0x40 | (c >> 8), c & 255]))
            rc, why, _ = replay_input("racy-counter", path)
            if rc != 0 and why:
                found = c
                break
        if found is None:
            verdict("FAIL", "hwbp: a breakpoint-form input finds the seed race on racy-counter",
                    "no boundary fails")
            return
        res = fails_with_and_without_hwbp(path)
        ok = res == [(True, 0), (True, 1), (False, 0), (False, 1)]
        verdict("PASS" if ok else "FAIL",
                "hwbp: a breakpoint-form fuzz input fails on racy-counter and passes on final, "
                "with breakpoints and stepped (said once)", f"boundary {found}: {res}")
    # The same in format 1, whose placements are breakpoint placements by default: 1
    # CPU; mask; nmi; unmask with one NMI at boundary c of its path (nmi_unmask on).
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "v1.bin")
        found = None
        for c in range(64):
            with open(path, "wb") as f:
                f.write(decode_h("FUZZ_MAGIC") + bytes([0, 0 << 2, 0, 4 << 2, 0, 1 << 2, 0x40, c]))
            rc, why, _ = replay_input("racy-counter", path)
            if rc != 0 and why:
                found = c
                break
        res = fails_with_and_without_hwbp(path)
        ok = found is not None and res == [(True, 0), (True, 1), (False, 0), (False, 1)]
        verdict("PASS" if ok else "FAIL",
                "hwbp: a format-1 fuzz input finds the seed race on racy-counter and passes on "
                "final, with breakpoints and stepped (said once)", f"boundary {found} of the "
                f"unmask step's path: {res}")


def suite_clang():
    """The core as clang builds it (make HV_CC=clang, build/<variant>-clang/)."""
    if not build("final", "nmisim", "fuzz_nmi", "test_core", "hv.elf", flavour="clang"):
        return
    bins = [f"build/final-clang/{b}" for b in ("nmisim", "fuzz_nmi", "test_core", "hv.elf")]
    rc, out = run([sys.executable, "-m", "scripts.check_identity", "build/final-clang/nmi_core.o"]
                  + bins)
    if relay(out, "clang ") == 0:
        verdict("FAIL", "clang identity", out.strip()[-300:])
    # The check tells the compilers apart: the gcc core is not what clang built.
    if build("final", "nmi_core.o"):
        rc, out = run([sys.executable, "-m", "scripts.check_identity", "build/final/nmi_core.o",
                       "build/final-clang/nmisim"])
        verdict("PASS" if rc == 1 and "FAIL identity" in out else "FAIL",
                "clang identity: the gcc-built core is told apart from the clang-built one",
                out.strip()[-200:])
    rc, out = run(["build/final-clang/test_core"])
    m = re.search(r"(\d+) passed, (\d+) failed", out)
    verdict("PASS" if rc == 0 and m and m.group(2) == "0" else "FAIL",
            "clang unit: the table-driven tests on the clang-built core",
            m.group(0) if m else out.strip()[-300:])
    suite_scenarios("clang")


def suite_sanitizers():
    """The harness under AddressSanitizer + UndefinedBehaviorSanitizer, the core as
    shipped (make SANITIZE=address,undefined, build/<variant>-address-undefined/)."""
    for v in VARIANTS:
        if not (build(v, "nmi_core.o") and build(v, "fuzz_nmi", "nmisim", flavour="san")):
            continue
        rc, out = run([sys.executable, "-m", "scripts.check_identity", f"build/{v}/nmi_core.o",
                       f"build/{v}-address-undefined/fuzz_nmi",
                       f"build/{v}-address-undefined/nmisim"])
        verdict("PASS" if rc == 0 else "FAIL",
                f"sanitizers: the core in build/{v}-address-undefined/ is the shipped gcc object",
                out.strip().splitlines()[-1] if out.strip() else "")
    suite_corpus("san")
    suite_scenarios("san")


def libfuzzer_options(path):
    """The [libfuzzer] section of a service's .options file, as command-line flags."""
    flags, section = [], None
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("["):
                section = line.strip("[]")
            elif "=" in line and section == "libfuzzer":
                k, v = (x.strip() for x in line.split("=", 1))
                if k == "dict":
                    v = os.path.join(os.path.dirname(path), v)
                flags.append(f"-{k}={v}")
    return flags


def suite_service():
    """.clusterfuzzlite/build.sh with the environment a fuzzing service gives it (no
    Docker here): clang, ASan, libFuzzer, SRC/OUT/WORK in a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="nmi-service-") as tmp:
        src, out, work = (os.path.join(tmp, d) for d in ("src", "out", "work"))
        for d in (src, out, work):
            os.makedirs(d)
        os.symlink(ROOT, os.path.join(src, "nmi-workbench"))
        shutil.copy(".clusterfuzzlite/build.sh", os.path.join(src, "build.sh"))
        flags = ("-O1 -fno-omit-frame-pointer -gline-tables-only -fsanitize=address "
                 "-fsanitize-address-use-after-scope -fsanitize=fuzzer-no-link")
        env = dict(os.environ, CC="clang-14", CXX="clang++-14", CFLAGS=flags, CXXFLAGS=flags,
                   LIB_FUZZING_ENGINE="-fsanitize=fuzzer", SRC=src, OUT=out, WORK=work,
                   SANITIZER="address", FUZZING_ENGINE="libfuzzer", ARCHITECTURE="x86_64",
                   FUZZING_LANGUAGE="c")
        rc, log = run(["bash", "-eu", os.path.join(src, "build.sh")], env=env, timeout=300)
        want = ["fuzz_nmi", "fuzz_nmi_seed_corpus.zip", "fuzz_nmi.dict", "fuzz_nmi.options"]
        missing = [w for w in want if not os.path.exists(os.path.join(out, w))]
        verdict("PASS" if rc == 0 and not missing else "FAIL",
                "service: build.sh builds fuzz_nmi, its seed corpus zip, dictionary and options",
                f"exit {rc}, missing {missing}: {log.strip()[-300:]}" if rc or missing
                else ", ".join(sorted(os.listdir(out))))
        if rc or missing:
            return
        target = os.path.join(out, "fuzz_nmi")
        rc, idout = run([sys.executable, "-m", "scripts.check_identity", "build/final/nmi_core.o",
                         target])
        _, syms = run(["nm", target])
        asan = "__asan_init" in syms
        verdict("PASS" if rc == 0 and asan else "FAIL",
                "service: the harness is built with the service's flags (ASan), the core is "
                "the shipped gcc object", idout.strip().splitlines()[-1][:160]
                + ("" if asan else "; no __asan_init in the target"))
        seeds = sorted(glob.glob("corpus/fuzz/*"))
        corpus = os.path.join(work, "seed_corpus")
        with zipfile.ZipFile(os.path.join(out, "fuzz_nmi_seed_corpus.zip")) as z:
            z.extractall(corpus)
        got = sorted(os.listdir(corpus))
        same = got == [os.path.basename(s) for s in seeds] and all(
            open(s, "rb").read() == open(os.path.join(corpus, os.path.basename(s)), "rb").read()
            for s in seeds)
        verdict("PASS" if same else "FAIL", f"service: the seed corpus zip holds corpus/fuzz/ "
                f"({len(got)} inputs)", "" if same else f"zip has {got}")
        opts = libfuzzer_options(os.path.join(out, "fuzz_nmi.options"))
        rc, runlog = run([target, "-runs=0"] + opts + [corpus], timeout=120)
        dic = re.search(r"Dictionary: (\d+) entries", runlog)
        ran = re.search(r"INITED cov: \d+ ft: \d+ corp: (\d+)", runlog)
        ok = rc == 0 and dic and int(dic.group(1)) > 0 and ran
        verdict("PASS" if ok else "FAIL",
                "service: the target runs the seed corpus with its options and dictionary",
                (f"{' '.join(opts)}: exit 0, dictionary of {dic.group(1)} entries, "
                 f"corpus of {ran.group(1)} inputs kept") if ok else f"exit {rc}: {runlog.strip()[-400:]}")


BAD_SCENARIOS = [
    ("cpus 2\ncpu0 mask\ncpu0 frobnicate\n", 3, "unknown operation"),
    ("cpus 1\ncpu1 mask\n", 2, "beyond the 'cpus' line"),
    ("cpu0 mask\ncpus 2\n", 2, "before the first step"),
    ("cpu0 unmask nmi@0\n", 1, "want nmi@N"),
    ("cpu0 unmask nmi@no_such_function+4\n", 1, "no such function"),
    ("cpu0 nmi x99\n", 1, "burst"),
    ("cpus 9\n", 1, "from 1 to 8"),
]


def suite_input():
    if not build("final", "nmisim"):
        return
    with tempfile.TemporaryDirectory() as d:
        for i, (text, line, words) in enumerate(BAD_SCENARIOS):
            good = os.path.join(d, "a-good.nmi")
            with open(good, "w") as f:
                f.write("cpu0 crit\n")
            bad = os.path.join(d, f"bad{i}.nmi")
            with open(bad, "w") as f:
                f.write(text)
            # The good file comes first: nothing may run when any file is malformed.
            rc, out = run(["build/final/nmisim", "run", good, bad])
            name = f"input: malformed scenario rejected ({words})"
            if rc == 2 and f"line {line}:" in out and words in out and "PASS" not in out:
                verdict("PASS", name, out.strip().splitlines()[-1])
            else:
                verdict("FAIL", name, f"exit {rc}: {out.strip()[:200]}")
        binary = os.path.join(d, "input.bin")
        with open(binary, "wb") as f:
            f.write(b"\x00\x84\x01\x00")
        rc, out = run(["build/final/nmisim", "run", binary])
        verdict("PASS" if rc == 2 and "binary data" in out else "FAIL",
                "input: a binary fuzz input given as a scenario is refused", out.strip()[:200])


# The stress run is judged by its books, not by its speed (make bench measures that):
# it runs until `nmis` NMIs are delivered or STRESS_SECONDS pass, whichever comes
# first, and passes with 0 lost, no violation, and at least STRESS_MIN_NMIS delivered:
# progress any machine makes, loaded or not, in that time.
STRESS_SECONDS = 60
STRESS_MIN_NMIS = 1000


def suite_stress(nmis):
    if not build("final", "nmisim"):
        return
    rc, out = run(["build/final/nmisim", "stress", "--cpus", "2", "--sources", "2", "--nmis", str(nmis),
                   "--seconds", str(STRESS_SECONDS), "--quiet"], timeout=STRESS_SECONDS + 120)
    m = re.search(r"delivered (\d+) .* lost (\d+);.*; ([\d.]+) s,", out)
    name = f"stress: up to {nmis} NMIs or {STRESS_SECONDS} s over 2 CPU threads and 2 sources on final"
    if rc == 0 and m and int(m.group(1)) >= min(nmis, STRESS_MIN_NMIS) and m.group(2) == "0" \
            and "VIOLATION" not in out:
        verdict("PASS", name, out.strip().splitlines()[-1])
    else:
        verdict("FAIL", name, f"exit {rc}: {out.strip()[-400:]}")


def suite_system():
    for target in ("test-qemu", "test-bochs"):
        rc, out = run(["make", "-s", target], timeout=900)
        seen = relay(out, "")
        if seen == 0 or (rc != 0 and "FAIL" not in out):
            verdict("FAIL", f"system: make {target}", f"exit {rc}: {out.strip()[-400:]}")


def suite_linux():
    """The Linux guest (tests/linux/, docs/linux-guest.md): the checks' own tests
    (QEMU TCG), then Linux 6.1 under the hypervisor in Bochs on 2 CPUs, then under
    KVM with nested VMX (skipped, with the reason, where there is none)."""
    for args in (["test-linux-self"], ["test-linux", "SMP=2"], ["test-linux", "EMU=qemu"]):
        rc, out = run(["make", "-s"] + args, timeout=1500)
        seen = relay(out)
        if seen == 0 or (rc != 0 and "FAIL" not in out):
            verdict("FAIL", f"linux: make {' '.join(args)}", f"exit {rc}: {out.strip()[-400:]}")


# ---- coverage: the NMI coverage map in a real browser ---------------------------------
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"]


def chromium_dom(page):
    """The DOM of a page after its scripts ran, as headless chromium dumps it."""
    tool = shutil.which("chromium")
    with tempfile.TemporaryDirectory() as profile:
        rc, out = run([tool] + CHROMIUM_FLAGS + [f"--user-data-dir={profile}", "--dump-dom",
                                                 "file://" + os.path.abspath(page)], timeout=120)
    return rc, out


class CoverageDom(html.parser.HTMLParser):
    """What a rendered coverage page shows: its summary's data attributes and every
    instruction row's (data-off, data-execs, data-nmis, data-classes)."""

    def __init__(self):
        super().__init__()
        self.rendered, self.summary, self.rows, self.xrows = False, None, {}, {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "body" and a.get("data-rendered") == "1":
            self.rendered = True
        if a.get("id") == "summary":
            self.summary = {k[5:]: v for k, v in a.items() if k.startswith("data-")}
        if tag == "tr" and "insn" in (a.get("class") or "").split() and "data-off" in a:
            self.rows[int(a["data-off"])] = (int(a["data-execs"]), int(a["data-nmis"]),
                                             a.get("data-classes", ""))
            if "data-xexecs" in a:
                self.xrows[int(a["data-off"])] = int(a["data-xexecs"])


def coverage_expected(records):
    """The replay's counts, aggregated here independently of scripts/coverage.py:
    {offset: (executions, NMIs, "class:executions/NMIs,...")} and the run count."""
    runs, nmis, execs, cls = 0, {}, {}, {}
    for line in open(records):
        if line == "R\n":
            runs += 1
            continue
        if not line.startswith("N "):
            continue  # explore's executed boundaries (E lines)
        off, c = line.split()[1:]
        if off == "-":
            continue
        off, c = int(off, 16), int(c)
        nmis[off] = nmis.get(off, 0) + 1
        execs.setdefault(off, set()).add(runs)
        cls.setdefault(off, {}).setdefault(c, []).append(runs)
    name = lambda c: "".join(l for b, l in ((1, "M"), (2, "V"), (4, "P"), (8, "B"), (16, "G"))
                             if c & b) or "\u2013"
    return runs, {o: (len(execs[o]), nmis[o],
                      ",".join(f"{name(c)}:{len(set(r))}/{len(r)}" for c, r in sorted(cls[o].items())))
                  for o in nmis}


def coverage_compare(dom, boundaries, runs, want):
    """Every difference between what the page shows and the replay's counts."""
    bad = []
    if not dom.rendered or dom.summary is None:
        return ["the page's script did not render (no body[data-rendered], no summary)"]
    if len(dom.rows) != boundaries:
        bad.append(f"{len(dom.rows)} instruction rows, objdump lists {boundaries}")
    for off, (e, n, c) in sorted(dom.rows.items()):
        w = want.get(off, (0, 0, ""))
        if (e, n, c) != w:
            bad.append(f"boundary {off:#x}: page {e} executions, {n} NMIs, {c!r}; replay {w}")
    for off in want:
        if off not in dom.rows:
            bad.append(f"boundary {off:#x}: NMIs landed there, the page has no row")
    s = dom.summary
    masks = {"masked": lambda c: "M" in c, "unmasked": lambda c: "M" not in c,
             "visited_0": lambda c: "V" in c, "guest_pending_0": lambda c: "P" in c,
             "guest_vnmi_blocked": lambda c: "B" in c}
    figures = {"boundaries": boundaries, "hit": len(want), "unreached": boundaries - len(want),
               "runs": runs, "nmis": sum(w[1] for w in want.values())}
    for k, pred in masks.items():
        figures["class_" + k] = sum(1 for w in want.values()
                                    if any(pred(p.split(":")[0]) for p in w[2].split(",")))
    for k, v in figures.items():
        if s.get(k) != str(v):
            bad.append(f"summary {k}: page {s.get(k)}, replay {v}")
    return bad


def suite_coverage():
    if not build("final", "fuzz_nmi", "nmi_core.o"):
        return
    if not shutil.which("chromium"):
        verdict("FAIL", "coverage", "chromium is missing (scripts/deps.sh browser installs it)")
        return
    b = "build/final"
    # One boundary per instruction (raw bytes off: long ones continue on a second line).
    objdump = subprocess.run(["objdump", "-d", "--no-show-raw-insn", b + "/nmi_core.o"],
                             capture_output=True, text=True).stdout
    boundaries = len(re.findall(r"^\s*[0-9a-f]+:\t", objdump, re.M))
    # The seeds and the regressions' reproducers (which pass on final): more boundaries.
    seeds = sorted(glob.glob("corpus/fuzz/*")) + sorted(glob.glob("corpus/regressions/*/*.bin"))
    with tempfile.TemporaryDirectory() as tmp:
        # The replay's counts: the fuzz target over the seeds, records kept here.
        records = os.path.join(tmp, "replay.records")
        rc, out = run([b + "/fuzz_nmi", "-handle_usr1=0", "-handle_usr2=0"] + seeds,
                      env=dict(os.environ, NMI_COVERAGE=records, NMI_FUZZ_MODE="precise"))
        if rc != 0 or not os.path.exists(records):
            verdict("FAIL", "coverage: replay of corpus/fuzz", f"exit {rc}: {out.strip()[-300:]}")
            return
        runs, want = coverage_expected(records)
        # The page, exactly as make coverage writes it (CORPUS=corpus/fuzz).
        page = os.path.join(tmp, "final.html")
        rc, out = run([sys.executable, "-m", "scripts.coverage", "--binary", b + "/fuzz_nmi",
                       "--object", b + "/nmi_core.o", "--variant", "final", "--out", page]
                      + seeds)
        m = re.search(r"boundaries hit (\d+) of (\d+)", out)
        ok = rc == 0 and m and (int(m.group(1)), int(m.group(2))) == (len(want), boundaries) \
            and runs == len(seeds)
        verdict("PASS" if ok else "FAIL", "coverage: make coverage's summary line agrees with "
                "the replay", out.strip().splitlines()[0] if out.strip() else f"exit {rc}")
        if rc != 0:
            return
        rc, dom = chromium_dom(page)
        p = CoverageDom()
        p.feed(dom)
        bad = coverage_compare(p, boundaries, runs, want)
        verdict("PASS" if rc == 0 and not bad else "FAIL",
                f"coverage: chromium renders the page and shows the replay's counts ({len(p.rows)} "
                f"boundaries, {len(want)} hit, {sum(w[1] for w in want.values())} NMIs, "
                f"{runs} executions)", f"exit {rc}; " + "; ".join(bad[:4]) if bad or rc else "")
        # The check itself must fail on a page that shows other counts, and on one
        # whose script does not run.
        text = open(page).read()
        first = min(want) if want else None
        broken = {
            "one boundary's executions off by one":
                re.sub(r'("hits":\{"%d":\{"execs":)(\d+)' % first,
                       lambda m: m.group(1) + str(int(m.group(2)) + 1), text) if want else None,
            "its script removed": text.replace('"use strict";', "throw 0;", 1),
        }
        for why, bad_text in broken.items():
            if bad_text is None or bad_text == text:
                verdict("FAIL", f"coverage: a page with {why}", "could not make such a page")
                continue
            bad_page = os.path.join(tmp, "broken.html")
            with open(bad_page, "w") as f:
                f.write(bad_text)
            rc, dom = chromium_dom(bad_page)
            q = CoverageDom()
            q.feed(dom)
            bad = coverage_compare(q, boundaries, runs, want)
            verdict("PASS" if bad else "FAIL", f"coverage: the check fails on a page with {why}",
                    bad[0] if bad else "the check found no difference")
        coverage_explore_check(b, seeds, tmp, want)


def coverage_explore_check(b, seeds, tmp, want):
    """make coverage with explore (--nmisim): the page's explore and either columns are
    the explore records' own counts, aggregated here, and every boundary neither source
    hit has a reason."""
    page = os.path.join(tmp, "final-x.html")
    rc, out = run([sys.executable, "-m", "scripts.coverage", "--binary", b + "/fuzz_nmi",
                   "--object", b + "/nmi_core.o", "--variant", "final", "--out", page,
                   "--nmisim", b + "/nmisim", "--explore-seconds", "120"] + seeds, timeout=600)
    xrec = os.path.join(tmp, "final-x.explore.records")
    m = re.search(r"boundaries hit: fuzz (\d+) / explore (\d+) / either (\d+) of (\d+)", out)
    if rc != 0 or not m or not os.path.exists(xrec):
        verdict("FAIL", "coverage: make coverage with explore", f"exit {rc}: {out.strip()[-300:]}")
        return
    xruns, xwant = coverage_expected(xrec)
    rc, dom = chromium_dom(page)
    p = CoverageDom()
    p.feed(dom)
    s = p.summary or {}
    either = set(want) | set(xwant)
    bad = [f"{k}: page {s.get(k)}, records {v}" for k, v in
           (("explore_hit", len(xwant)), ("either_hit", len(either))) if s.get(k) != str(v)]
    bad += [f"{k}: summary line {v}, records {w}" for k, v, w in
            (("explore", m[2], len(xwant)), ("either", m[3], len(either))) if int(v) != w]
    rows = p.xrows
    bad += [f"boundary {o:#x}: page {rows.get(o)} explore executions, records {xwant[o][0]}"
            for o in xwant if rows.get(o) != xwant[o][0]]
    whys = sum(int(s.get(k, 0)) for k in s if k.startswith("why_"))
    if whys != int(m[4]) - len(either):
        bad.append(f"reasons for {whys} boundaries, {int(m[4]) - len(either)} have no NMI")
    verdict("PASS" if rc == 0 and not bad else "FAIL",
            f"coverage: explore's column and the either figures agree with explore's records "
            f"(fuzz {m[1]}, explore {m[2]}, either {m[3]} of {m[4]}; every other boundary "
            "has a reason)", "; ".join(bad[:4]))


def replay_hv(path, variant, *extra, timeout=600):
    """python3 -m scripts.replay_hv (make replay ON=...): (exit status, output)."""
    return run([sys.executable, "-m", "scripts.replay_hv", "--input", path, "--variant", variant,
                "--build", f"build/{variant}", "--quiet"] + list(extra), timeout=timeout)


def judge_replay(path, variant, want, rc, out):
    """One replay's verdict: every case as the simulator says, the whole as `# expect:`."""
    last = out.strip().splitlines()[-1] if out.strip() else f"no output (exit {rc})"
    on = re.search(r"\] on (\w+)", out)
    where = os.path.relpath(path, "corpus") if path.startswith("corpus/") else path
    name = f"replay {where} [{variant}] on {on[1] if on else '?'}"
    got = re.search(r"overall sim (\w+), hv (\w+)", last)
    if rc == 77:
        verdict("SKIP", name, last.split(": ", 1)[-1])
    elif rc == 0 and got and got[2] == want:
        verdict("PASS", name, last.split(": ", 1)[-1] + f"; {want}, as expected")
    else:
        why = f"expected {want}, " + (f"both say {got[2]}" if rc == 0 and got else f"exit {rc}")
        body = out.strip().splitlines()[-40:]
        verdict("FAIL", name, why + "\n    " + "\n    ".join(body))


def suite_replay():
    """make replay ON=auto: each scenario of corpus/scenarios/ on every variant and each
    reproducer of corpus/regressions/<v>/ on v and on final, on the hypervisor (QEMU
    for host-only scenarios, Bochs for those with guest steps), nmi@* expanded in one
    boot: every case's verdict is the simulator's, and the whole (any case failing is
    a failure) is the `# expect:` line's.  REPLAY_JOBS (2) replays run at once (Bochs
    is single-threaded).  Then one TRACE=1 replay in Bochs."""
    for v in VARIANTS:
        if not build(v, "nmisim", "hv.elf"):
            return
    jobs = [(f, v, expectations(f).get(v)) for f in sorted(glob.glob("corpus/scenarios/*.nmi"))
            for v in VARIANTS]
    for v in VARIANTS[1:]:
        for f in sorted(glob.glob(f"corpus/regressions/{v}/*.nmi")):
            jobs += [(f, v, "fail"), (f, "final", "pass")]
    # The address form: the seed race's NMI placed at racy-counter's nmi_unmask+0x36
    # (its 9th boundary), the second time there after a second deferred NMI.
    os.makedirs("build/replay-suite", exist_ok=True)
    addr = "build/replay-suite/seed-race-at-address.nmi"
    with open(addr, "w") as f:
        f.write("cpus 1\ncpu0 mask\ncpu0 nmi\ncpu0 nmi\ncpu0 unmask nmi@nmi_unmask+0x36:2\n")
    jobs += [(addr, "racy-counter", "fail"), (addr, "final", "pass")]
    workers = int(os.environ.get("REPLAY_JOBS", "2"))
    with concurrent.futures.ThreadPoolExecutor(max(1, workers)) as pool:
        runs = pool.map(lambda job: replay_hv(job[0], job[1]), jobs)
        for (f, v, want), (rc, out) in zip(jobs, runs):
            judge_replay(f, v, want, rc, out)
    replay_trace_check()


def replay_trace_check():
    """TRACE=1: seed-race on racy-counter in Bochs; the traced case (the simulator's first
    failing one) fails on the hypervisor with the same assertion line as in the simulator,
    and its trace runs through nmi_host_entry and nmi_unmask, the arrival marked."""
    name = "replay-trace scenarios/seed-race.nmi [racy-counter] on bochs"
    rc, out = replay_hv("corpus/scenarios/seed-race.nmi", "racy-counter", "--on", "bochs", "--trace")
    last = out.strip().splitlines()[-1] if out.strip() else ""
    if rc == 77:
        verdict("SKIP", name, last.split(": ", 1)[-1])
        return
    m = re.search(r"trace: case (\d+): (\d+) instructions, (\d+) in the NMI core, in (\S+)", out)
    row, text = None, ""
    if m and os.path.exists(m[4]):
        with open(m[4]) as f:
            text = f.read()
        with open(os.path.join(os.path.dirname(m[4]), "table.txt")) as f:
            row = re.search(rf"^\s*{m[1]}\s+(.+?)\s{{2,}}(.+?)\s+(yes|NO)$", f.read(), re.M)
    problems = [p for p, bad in (
        (f"exit {rc}", rc != 0),
        ("no trace", not m),
        ("the traced case is not an assertion on both sides, the same line",
         not (row and row[1].startswith("assert nmi_core.c:") and row[1] == row[2])),
        ("nmi_host_entry or nmi_unmask missing from the trace",
         "nmi_host_entry+" not in text or "nmi_unmask+" not in text),
        ("no arrival marked", "<== the NMI arrived" not in text)) if bad]
    if problems:
        verdict("FAIL", name, "; ".join(problems) + "\n    "
                + "\n    ".join(out.strip().splitlines()[-30:]))
    else:
        verdict("PASS", name, f"case {m[1]}: {row[1]} on both sides; {m[2]} instructions traced, "
                f"{m[3]} in the core, through nmi_host_entry and nmi_unmask")


def suite_scripts():
    for module in ("tests.unit.test_scripts", "tests.unit.test_replay_hv"):
        rc, out = run([sys.executable, "-m", module])
        if relay(out) == 0 or (rc != 0 and "FAIL" not in out):
            verdict("FAIL", f"scripts: {module}", f"exit {rc}: {out.strip()[-400:]}")


def suite_style():
    rc, out = run(["git", "ls-files", "*.c", "*.h"])
    files = out.split()
    if rc != 0 or not files:
        verdict("SKIP", "style", "not a git checkout: no list of the project's C files")
        return
    tool = shutil.which("clang-format") or shutil.which("clang-format-14")
    if not tool:
        verdict("FAIL", "style", "clang-format is missing (scripts/deps.sh installs it)")
        return
    rc, out = run([tool, "--dry-run", "--Werror"] + files)
    bad = sorted({line.split(":")[0] for line in out.splitlines() if ": error:" in line})
    if rc == 0:
        verdict("PASS", f"style: {len(files)} C files match .clang-format")
    else:
        verdict("FAIL", "style", f"not formatted (make format): {' '.join(bad)}")


SUITES = ["unit", "identity", "scenarios", "corpus", "input", "clang", "sanitizers", "service",
          "stress", "system", "linux", "coverage", "replay", "scripts", "style", "bugs"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("suites", nargs="*", choices=SUITES + [[]], default=[])
    ap.add_argument("--stress-nmis", type=int, default=1000000)
    args = ap.parse_args()
    os.chdir(ROOT)
    for s in args.suites or SUITES:
        print(f"== {s}", flush=True)
        if s == "stress":
            suite_stress(args.stress_nmis)
        else:
            globals()[f"suite_{s}"]()
    print(f"{RESULTS['PASS']} passed, {RESULTS['FAIL']} failed, {RESULTS['SKIP']} skipped")
    return 1 if RESULTS["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main())
