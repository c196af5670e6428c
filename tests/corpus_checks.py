"""The corpus suite's checks of the fuzz input's formats (every stored input decodes
as the decoder before format 1 did) and of the breakpoint placement (NMIs land where
stepping puts them)."""
import glob
import os
import random
import re
import sys
import tempfile

from harness import build, replay_input, run, verdict

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
