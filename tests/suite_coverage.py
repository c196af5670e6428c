"""Suite `coverage`: make coverage's page in headless chromium, every count it shows
against an independent replay's, explore's column against its own records."""
import glob
import html.parser
import os
import re
import shutil
import subprocess
import sys
import tempfile

from harness import build, run, verdict

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
