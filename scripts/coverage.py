"""The NMI coverage map: replay a corpus through the fuzz target and show, for every
instruction boundary of nmi_core.c's machine code, how many executions had an NMI land
there and in which NMI state (make coverage; docs/fuzzing.md).

    python3 -m scripts.coverage --binary build/final/fuzz_nmi --object build/final/nmi_core.o \\
        --variant final --out build/coverage/final.html [CORPUS...]

The fuzz target runs every input once (libFuzzer's "run these files" mode) with
NMI_COVERAGE set, so the simulator appends one record per run and one per NMI that
lands (sim/coverage.c).  A boundary is the point before one instruction of the core's
object (objdump -d -l of nmi_core.o, whose section nmi_core_text starts the linked
section at the same offset).  The page is one self-contained HTML file: the source,
its instructions, and the counts as inline JSON that the page's script renders.

Prints one summary line: boundaries hit, of how many, for each state class.
"""
import argparse
import html
import json
import os
import re
import subprocess
import sys
import tempfile

from scripts import coverage_explore as cx

LIBFUZZER_FLAGS = ["-handle_usr1=0", "-handle_usr2=0", "-timeout=10", "-rss_limit_mb=2048"]

# The class bits sim/coverage.c writes.
MASKED, VISITED, PENDING, VBLOCKED, GUEST = 1, 2, 4, 8, 16
# The summary's state classes: name, predicate on a class value.
CLASSES = [
    ("masked", lambda c: c & MASKED),
    ("unmasked", lambda c: not c & MASKED),
    ("visited>0", lambda c: c & VISITED),
    ("guest-pending>0", lambda c: c & PENDING),
    ("guest-vNMI-blocked", lambda c: c & VBLOCKED),
]
CHUNK = 400  # inputs per fuzz target process


def corpus_files(paths):
    files = []
    for p in paths:
        if os.path.isdir(p):
            for root, dirs, names in os.walk(p):
                dirs.sort()
                files += [os.path.join(root, n) for n in sorted(names) if not n.startswith(".")]
        elif os.path.isfile(p):
            files.append(p)
        else:
            print(f"coverage: {p}: no such file or directory", file=sys.stderr)
    return files


def replay(binary, files, mode, records):
    """Run every input once with NMI_COVERAGE=records.  An input that fails stops its
    process (libFuzzer aborts): the rest of its chunk is run by the next process.
    Returns the inputs that failed."""
    env = dict(os.environ, NMI_COVERAGE=records, NMI_FUZZ_MODE=mode)
    env.pop("NMI_TIMELINE", None)
    env.pop("NMI_FUZZ_RECHECK", None)
    failed, i = [], 0
    open(records, "w").close()
    while i < len(files):
        chunk = files[i:i + CHUNK]
        before = count_runs(records)
        p = subprocess.run([binary] + LIBFUZZER_FLAGS + chunk, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                           errors="replace")
        ran = count_runs(records) - before
        if p.returncode == 0 and ran == len(chunk):
            i += len(chunk)
            continue
        if ran == 0 or ran > len(chunk):
            sys.exit(f"coverage: {binary} exited {p.returncode} after {ran} runs of "
                     f"{len(chunk)}: {p.stderr.strip()[-400:]}")
        failed.append(chunk[ran - 1])  # the last input that ran is the one that failed
        i += ran
    return failed


def count_runs(records):
    with open(records) as f:
        return sum(1 for line in f if line == "R\n")


def read_records(records):
    """(runs, NMIs outside the core, {offset: {class: [NMIs, executions]}},
    {offset: executions}): an execution counts once per boundary (and once per
    boundary and class) however many of its NMIs landed there."""
    runs, outside = 0, 0
    per, execs, last = {}, {}, {}
    with open(records) as f:
        for line in f:
            if line == "R\n":
                runs += 1
                continue
            if not line.startswith("N "):
                continue  # E lines: explore's executed boundaries (coverage_explore.py)
            _, off, cls = line.split()
            if off == "-":
                outside += 1
                continue
            off, cls = int(off, 16), int(cls)
            cell = per.setdefault(off, {}).setdefault(cls, [0, 0])
            cell[0] += 1
            if last.get((off, cls)) != runs:
                last[(off, cls)] = runs
                cell[1] += 1
            if last.get(off) != runs:
                last[off] = runs
                execs[off] = execs.get(off, 0) + 1
    return runs, outside, per, execs


INSN = re.compile(r"^\s*([0-9a-f]+):\t(.*)$")
RELOC = re.compile(r"^\s*([0-9a-f]+): (R_\S+)\t(.*)$")
WHERE = re.compile(r"^(/?\S+):(\d+)(?: \(discriminator \d+\))?$")
FUNC = re.compile(r"^(\S+)\(\):$")
SYM = re.compile(r"^[0-9a-f]+ <(\S+)>:$")


def disassemble(obj):
    """[{off, asm, line, file, func, sym}] of the core object's code, in address order."""
    out = subprocess.run(["objdump", "-d", "-l", "-r", "--no-show-raw-insn", obj],
                         capture_output=True, text=True, check=True).stdout
    insns, where, func, sym = [], (None, 0), None, None
    for line in out.splitlines():
        m = RELOC.match(line)
        if m and insns:
            insns[-1]["asm"] += f"  ; {m.group(2)} {m.group(3)}"
            continue
        m = INSN.match(line)
        if m:
            insns.append({"off": int(m.group(1), 16), "asm": re.sub(r"\s+", " ", m.group(2)).strip(),
                          "file": where[0], "line": where[1], "func": func, "sym": sym})
            continue
        m = SYM.match(line)
        if m:
            sym = func = m.group(1)
            continue
        m = FUNC.match(line)
        if m:
            func = m.group(1)
            continue
        m = WHERE.match(line)
        if m:
            where = (os.path.basename(m.group(1)), int(m.group(2)))
    return insns


def summarize(insns, per):
    """{class name: boundaries hit in that class}, and boundaries hit at all."""
    offs = {i["off"] for i in insns}
    hit = {o for o in per if o in offs}
    by = {name: sum(1 for o in hit if any(pred(c) for c in per[o])) for name, pred in CLASSES}
    return len(hit), by


def page(args, insns, source, runs, outside, per, execs, failed, ninputs, ex=None):
    ex = ex or {"per": {}, "execs": {}, "why": {}, "runs": 0, "label": ""}
    data = {
        "explore": {"runs": ex["runs"], "label": ex["label"], "why": ex["why"],
                    "whynames": dict(cx.WHY),
                    "hits": {str(o): {"execs": ex["execs"].get(o, 0),
                                      "classes": {str(c): v for c, v in sorted(cl.items())}}
                             for o, cl in sorted(ex["per"].items())}},
        "variant": args.variant, "mode": args.mode, "tag": args.tag,
        "inputs": ninputs, "runs": runs, "outside": outside, "failed": len(failed),
        "corpus": args.corpus_label,
        "object": args.object,
        "source": source,
        "insns": insns,
        "hits": {str(o): {"execs": execs.get(o, 0),
                          "classes": {str(c): v for c, v in sorted(cl.items())}}
                 for o, cl in sorted(per.items())},
    }
    blob = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    title = html.escape(f"NMI coverage: {args.tag}, {args.mode}")
    return TEMPLATE.replace("@TITLE@", title).replace("@DATA@", blob)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", required=True, help="the fuzz target (build/<b>/fuzz_nmi)")
    ap.add_argument("--object", required=True, help="the core object (build/<b>/nmi_core.o)")
    ap.add_argument("--source", default="hv/nmi_core.c")
    ap.add_argument("--variant", required=True)
    ap.add_argument("--tag", help="build name (default: the variant)")
    ap.add_argument("--mode", choices=["precise", "fast"], default="precise")
    ap.add_argument("--out", required=True, help="the page to write")
    ap.add_argument("--records", help="keep the raw records here (default: next to --out)")
    ap.add_argument("--nmisim", help="explore with it too (build/<b>/nmisim): make explore's "
                    "landings beside the replay's")
    ap.add_argument("--nmis", type=int, default=2, help="explore: NMIs per canonical scenario")
    ap.add_argument("--corpus-nmis", type=int, default=1, help="explore: NMIs per corpus input")
    ap.add_argument("--explore-seconds", type=float, default=60, help="explore's budget")
    ap.add_argument("corpus", nargs="*", help="corpus directories or files (default: "
                    "corpus/fuzz, corpus/distilled and corpus/grown/<tag>-<mode> if they exist)")
    args = ap.parse_args()
    args.tag = args.tag or args.variant
    if not args.corpus:
        args.corpus = ["corpus/fuzz"] + [d for d in ["corpus/distilled"] if os.path.isdir(d)]
        grown = os.path.join("corpus", "grown", f"{args.tag}-{args.mode}")
        if os.path.isdir(grown):
            args.corpus.append(grown)
    args.corpus_label = " ".join(args.corpus)
    files = corpus_files(args.corpus)
    if not files:
        print("coverage: the corpus is empty", file=sys.stderr)
        return 2
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    records = args.records or os.path.splitext(args.out)[0] + ".records"
    failed = replay(args.binary, files, args.mode, records)
    runs, outside, per, execs = read_records(records)
    insns = disassemble(args.object)
    with open(args.source) as f:
        source = f.read().splitlines()
    ex = explore(args, insns, per, records) if args.nmisim else None
    with open(args.out, "w") as f:
        f.write(page(args, insns, source, runs, outside, per, execs, failed, len(files), ex))
    nhit, by = summarize(insns, per)
    total = len(insns)
    nmis = sum(v[0] for cl in per.values() for v in cl.values())
    print(f"coverage [{args.tag}, {args.mode}]: {runs} executions of {len(files)} inputs"
          + (f" ({len(failed)} failing)" if failed else "")
          + f", {nmis} NMIs landed in the core ({outside} outside it): "
          f"boundaries hit {nhit} of {total}; "
          + ", ".join(f"{name} {n} of {total}" for name, n in by.items())
          + f"; {total - nhit} never reached")
    if ex:
        for line in ex["lines"]:
            print(f"coverage: explore: {line}")
        (xhit, xby), (ehit, eby) = ex["sum"], ex["either"]
        print(f"coverage: boundaries hit: fuzz {nhit} / explore {xhit} / either {ehit} of "
              f"{total}; per state class (fuzz / explore / either / executed where an NMI "
              "can land): " + ", ".join(f"{n} {by[n]} / {xby[n]} / {eby[n]} / {ex['byexec'][n]}"
                                        for n in by))
        counts = {k: sum(1 for w in ex["why"].values() if w == k) for k, _ in cx.WHY}
        print(f"coverage: no NMI on {total - ehit}: "
              + ", ".join(f"{counts[k]} {text}" for k, text in cx.WHY))
    print(f"coverage: page {args.out}, records {records}")
    return 0


def explore(args, insns, per, records):
    """make explore over the same corpus, recorded: its landings, executed boundaries,
    and why each boundary neither source hit stays so."""
    xrec = os.path.splitext(records)[0] + ".explore.records"
    corpus = list(args.corpus)
    rc, lines = cx.run_explore(args.nmisim, corpus, xrec, args.nmis, args.explore_seconds,
                               args.corpus_nmis)
    xruns, _, xper, xexecs = read_records(xrec)
    either = {o: {**per.get(o, {}), **xper.get(o, {})} for o in set(per) | set(xper)}
    executed = cx.read_exec(xrec)
    offs = {i["off"] for i in insns}
    why = cx.classify(insns, {o for o in either if o in offs}, executed)
    return {"per": xper, "execs": xexecs, "runs": xruns, "lines": lines, "why": why,
            "label": f"make explore (NMIS={args.nmis}, corpus {args.corpus_nmis}, "
                     f"{args.explore_seconds:g} s): " + "; ".join(lines),
            "sum": summarize(insns, xper), "either": summarize(insns, either),
            "byexec": cx.executed_by_class(insns, executed, CLASSES), "records": xrec}


TEMPLATE = r"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>@TITLE@</title>
<style>
body{font:13px/1.35 system-ui,sans-serif;margin:0;color:#222;background:#fff}
header{position:sticky;top:0;background:#f4f6f8;border-bottom:1px solid #ccd;padding:8px 14px;z-index:1}
h1{font-size:16px;margin:0 0 4px}
#summary span.k{display:inline-block;margin:2px 10px 2px 0}
#summary b{font-variant-numeric:tabular-nums}
.controls label{margin-right:14px}
table{border-collapse:collapse;font:12px/1.3 ui-monospace,Menlo,Consolas,monospace}
td{padding:0 6px;vertical-align:top;white-space:pre}
tr.src td{color:#444}
tr.src.code td{background:#eef1f5;color:#000;border-top:1px solid #dde}
tr.src td.n{color:#889;text-align:right;width:3em}
tr.insn td{color:#333}
tr.insn td.off{color:#778;text-align:right}
tr.insn.hit td.cnt{background:#c8efc8}
tr.insn.hit.h2 td.cnt{background:#8fdb8f}
tr.insn.hit.h3 td.cnt{background:#4cbf4c;color:#fff}
tr.insn.miss td.cnt{background:#fde2e2;color:#a33}
td.cnt{text-align:right;width:5em;font-weight:bold}
td.cls{white-space:nowrap;min-width:6em}
td.xcnt{text-align:right;color:#a33}td.xcnt.xhit{color:#262;background:#dff3ff}
td.fn{color:#667}
.chip{display:inline-block;border-radius:3px;padding:0 4px;margin:0 3px 1px 0;background:#e8e8f4;font-size:11px}
.chip.M{background:#fde7c7}.chip.V{background:#dbe9ff}.chip.P{background:#e4d8fb}.chip.B{background:#ffd6e4}
.legend{color:#555;font-size:12px}
body.hitonly tr.insn.miss,body.hitonly tr.src:not(.hot){display:none}
body.codeonly tr.src:not(.code){display:none}
</style></head>
<body class="codeonly">
<header>
<h1>@TITLE@</h1>
<div id="summary">loading…</div>
<div class="controls"><label><input type="checkbox" id="codeonly" checked> only lines with machine code</label>
<label><input type="checkbox" id="hitonly"> only boundaries an NMI landed on</label>
<span class="legend">count = executions with an NMI landing before that instruction (NMIs in brackets);
states: <span class="chip M">M</span>masked <span class="chip V">V</span>visited&gt;0
<span class="chip P">P</span>guest pending&gt;0 <span class="chip B">B</span>guest vNMI-blocked,
<span class="chip">–</span>none of them (unmasked, nothing owed); red: no NMI has landed there;
second column (with explore): make explore's executions, or why no NMI landed there</span></div>
</header>
<table id="map"><tbody></tbody></table>
<script type="application/json" id="data">@DATA@</script>
<script>
"use strict";
const D = JSON.parse(document.getElementById("data").textContent);
const BITS = [[1, "M"], [2, "V"], [4, "P"], [8, "B"], [16, "G"]];
const CLASSES = [["masked", c => c & 1], ["unmasked", c => !(c & 1)], ["visited>0", c => c & 2],
  ["guest-pending>0", c => c & 4], ["guest-vNMI-blocked", c => c & 8]];
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}
function clsName(c) {
  const s = BITS.filter(b => c & b[0]).map(b => b[1]).join("");
  return s || "–";
}
const total = D.insns.length;
const offs = new Set(D.insns.map(i => i.off));
let hit = 0, nmis = 0;
const byClass = Object.fromEntries(CLASSES.map(c => [c[0], 0]));
for (const [o, h] of Object.entries(D.hits)) {
  if (!offs.has(Number(o))) continue;
  hit++;
  const cs = Object.keys(h.classes).map(Number);
  for (const v of Object.values(h.classes)) nmis += v[0];
  for (const [name, pred] of CLASSES) if (cs.some(pred)) byClass[name]++;
}
// The summary: every figure is also a data attribute, for the browser test.
const sum = document.getElementById("summary");
sum.textContent = "";
sum.dataset.boundaries = total;
sum.dataset.hit = hit;
sum.dataset.unreached = total - hit;
sum.dataset.runs = D.runs;
sum.dataset.nmis = nmis;
function fig(label, key, value) {
  const s = el("span", "k");
  s.append(label + " ");
  const b = el("b", "", String(value));
  b.id = "sum-" + key.replace(/[^a-z0-9]+/gi, "-");
  b.dataset.value = value;
  s.append(b);
  sum.append(s);
}
fig("executions", "runs", D.runs);
fig("inputs", "inputs", D.inputs);
if (D.failed) fig("failing inputs", "failed", D.failed);
fig("NMIs in the core", "nmis", nmis);
fig("outside it", "outside", D.outside);
fig("boundaries hit", "hit", hit + " of " + total);
for (const [name] of CLASSES) {
  fig(name, name, byClass[name] + " of " + total);
  sum.dataset["class_" + name.toLowerCase().replace(/[^a-z0-9]+/g, "_")] = byClass[name];
}
fig("never reached", "unreached", total - hit);
// make explore's landings beside the replay's, and why the rest has none.
const X = D.explore, xhits = X.hits;
if (X.runs) {
  let xhit = 0, either = 0;
  const xby = Object.fromEntries(CLASSES.map(c => [c[0], 0]));
  for (const i of D.insns) {
    const a = D.hits[String(i.off)], b = xhits[String(i.off)];
    if (b) xhit++;
    if (a || b) either++;
    const cs = [a, b].filter(Boolean).flatMap(h => Object.keys(h.classes).map(Number));
    for (const [name, pred] of CLASSES) if (cs.some(pred)) xby[name]++;
  }
  sum.dataset.explore_hit = xhit;
  sum.dataset.either_hit = either;
  fig("explore: boundaries hit", "xhit", xhit + " of " + total);
  fig("either", "either", either + " of " + total);
  for (const [name] of CLASSES) {
    fig("either " + name, "either-" + name, xby[name]);
    sum.dataset["either_" + name.toLowerCase().replace(/[^a-z0-9]+/g, "_")] = xby[name];
  }
  for (const [k, text] of Object.entries(X.whynames)) {
    const n = Object.values(X.why).filter(w => w === k).length;
    fig("no NMI: " + text, "why-" + k, n);
    sum.dataset["why_" + k] = n;
  }
  sum.append(el("div", "legend", "explore: " + X.label));
}
sum.append(el("div", "legend", "corpus: " + D.corpus + " · object: " + D.object +
  " · variant " + D.variant + ", " + D.mode + " mode"));

// Source lines, each followed by its instructions in address order.
const byLine = new Map(), other = [];
for (const i of D.insns) {
  if (i.file === "nmi_core.c" && i.line > 0) {
    if (!byLine.has(i.line)) byLine.set(i.line, []);
    byLine.get(i.line).push(i);
  } else other.push(i);
}
const maxExecs = Math.max(1, ...Object.values(D.hits).map(h => h.execs));
const tbody = document.querySelector("#map tbody");
function insnRow(i) {
  const h = D.hits[String(i.off)];
  const tr = el("tr", "insn " + (h ? "hit" : "miss"));
  tr.dataset.off = i.off;
  let n = 0;
  const cls = el("td", "cls");
  if (h) {
    const parts = [];
    for (const [c, v] of Object.entries(h.classes)) {
      n += v[0];
      const name = clsName(Number(c));
      const chip = el("span", "chip " + name[0], name + " ×" + v[1]);
      chip.title = v[1] + " executions, " + v[0] + " NMIs";
      cls.append(chip);
      parts.push(name + ":" + v[1] + "/" + v[0]);
    }
    tr.dataset.classes = parts.join(",");
    if (h.execs * 3 > maxExecs * 2) tr.classList.add("h3");
    else if (h.execs * 3 > maxExecs) tr.classList.add("h2");
  }
  tr.dataset.execs = h ? h.execs : 0;
  tr.dataset.nmis = n;
  tr.append(el("td", "cnt", h ? h.execs + (n !== h.execs ? " (" + n + ")" : "") : "0"));
  if (X.runs) {
    const x = xhits[String(i.off)], why = X.why[String(i.off)];
    const td = el("td", "xcnt" + (x ? " xhit" : ""), x ? String(x.execs) : "0");
    td.title = x ? "make explore: " + Object.keys(x.classes).map(c => clsName(Number(c))).join(" ")
      : "make explore: none";
    tr.dataset.xexecs = x ? x.execs : 0;
    if (why) {
      tr.dataset.why = why;
      td.title = X.whynames[why];
      td.textContent = why;
    }
    tr.append(td);
  }
  tr.append(cls);
  tr.append(el("td", "off", i.off.toString(16)));
  tr.append(el("td", "fn", (i.func || "") + (i.func !== i.sym ? " in " + i.sym : "")));
  tr.append(el("td", "", i.asm));
  return tr;
}
D.source.forEach((text, k) => {
  const n = k + 1, insns = byLine.get(n) || [];
  const tr = el("tr", "src" + (insns.length ? " code" : ""));
  tr.dataset.line = n;
  if (insns.some(i => D.hits[String(i.off)])) tr.classList.add("hot");
  tr.append(el("td", "n", String(n)));
  const t = el("td", "", text);
  t.colSpan = 4;
  tr.append(t);
  tbody.append(tr);
  for (const i of insns) tbody.append(insnRow(i));
});
if (other.length) {
  const tr = el("tr", "src code hot");
  tr.append(el("td", "n", ""));
  const t = el("td", "", "(instructions attributed to no line of nmi_core.c)");
  t.colSpan = 4;
  tr.append(t);
  tbody.append(tr);
  for (const i of other) tbody.append(insnRow(i));
}
// page.html#hitonly (or #all: every source line) opens with that view, and a
// checkbox changes it.
for (const id of ["codeonly", "hitonly"]) {
  const box = document.getElementById(id);
  if (location.hash === "#" + id) box.checked = true;
  if (location.hash === "#all") box.checked = false;
  document.body.classList.toggle(id, box.checked);
  box.addEventListener("change", e => document.body.classList.toggle(id, e.target.checked));
}
// page.html#L<n> starts the listing at source line n (a link to a place, and a
// fixed view for screenshots); page.html shows it all again.
const at = /^#L(\d+)$/.exec(location.hash);
if (at) {
  let before = true;
  for (const tr of tbody.rows) {
    if (tr.dataset.line && Number(tr.dataset.line) >= Number(at[1])) before = false;
    if (!tr.dataset.line && tr.classList.contains("src")) before = false;
    if (before) tr.style.display = "none";
  }
}
document.body.dataset.rendered = "1";
</script>
</body></html>
"""

if __name__ == "__main__":
    sys.exit(main())
