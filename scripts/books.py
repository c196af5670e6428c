# SPDX-License-Identifier: MIT
"""The hypervisor's books, read from a run's output: every CPU's NMI accounting
(the fields of struct nmi_cpu, hv/nmi_core.h) and the verdict on the laws those
fields obey (hv/books.c).  Tools read fields by name, never by column.

The format, one line per CPU and then the verdict:

    books cpu=0 nmi_entries=250 exit_nmis=113 handled_direct=0 ... tlb_flushes=26
    books cpu=1 nmi_entries=2 exit_nmis=0 ...
    books: ok

or, instead of `books: ok`, one line per violated law:

    books: FAILED law=<name> cpu=<n> <key>=<value> ...

Transitional: hypervisors older than that format print a table (a header line
`cpu <field> <field> ...`, then one row of numbers per CPU) and a line
`check FAILED: <law> (cpu N: A vs B)` per violation, with no verdict line.  parse()
reads those too, by the header's names; a table with no failure counts as ok.
"""
import re

LINE_RE = re.compile(r"^\s*books cpu=(\d+)((?:\s+\w+=\S+)*)\s*$")
VERDICT_RE = re.compile(r"^\s*books: (ok|FAILED)\b(.*)$")
KV_RE = re.compile(r"(\w+)=(\S+)")
# The transitional table and failure lines.
HEADER_RE = re.compile(r"^\s*cpu((?:\s+[a-z_]+)+)\s*$")
ROW_RE = re.compile(r"^\s*\d+(?:\s+\d+)+\s*$")
CHECK_RE = re.compile(r"^check FAILED: (.*) \(cpu (\d+): (\d+) vs (\d+)\)\s*$")


def _value(text):
    try:
        return int(text, 0)
    except ValueError:
        return text


def _fields(text):
    return {k: _value(v) for k, v in KV_RE.findall(text)}


class Books:
    """cpus: {cpu: {field: value}}; failures: [{"law": ..., "cpu": ..., ...}];
    verdict: "FAILED" (any failure), "ok", or None when the run printed neither a
    verdict nor a (transitional) table."""

    def __init__(self):
        self.cpus = {}
        self.failures = []
        self.said_ok = False
        self.table = False  # read from the transitional table

    @property
    def verdict(self):
        if self.failures:
            return "FAILED"
        return "ok" if self.said_ok or self.table else None

    @property
    def ok(self):
        return self.verdict == "ok"

    def total(self, field):
        """The sum of `field` over the CPUs (0 where a CPU lacks it)."""
        return sum(c.get(field, 0) for c in self.cpus.values())

    def problems(self, ncpus):
        """Why these books do not balance for a run on `ncpus` CPUs ([] when they do)."""
        if not self.cpus:
            return ["no books printed"]
        out = []
        missing = [i for i in range(ncpus) if i not in self.cpus]
        if missing:
            out.append(f"no books for cpu {', '.join(map(str, missing))}")
        if self.failures:
            out += ["FAILED " + " ".join(f"{k}={v}" for k, v in f.items())
                    for f in self.failures]
        elif not self.ok:
            out.append("no `books: ok` verdict")
        return out


def parse(text):
    books = Books()
    header = None
    for line in text.splitlines():
        m = LINE_RE.match(line)
        if m:
            books.cpus[int(m.group(1))] = _fields(m.group(2))
            continue
        m = VERDICT_RE.match(line)
        if m:
            if m.group(1) == "FAILED":
                books.failures.append(_fields(m.group(2)))
            else:
                books.said_ok = True
            continue
        m = HEADER_RE.match(line)
        if m:
            header = m.group(1).split()
            continue
        if header and ROW_RE.match(line):
            values = [int(v) for v in line.split()]
            if len(values) == len(header) + 1:
                books.cpus[values[0]] = dict(zip(header, values[1:]))
                books.table = True
                continue
        header = None
        m = CHECK_RE.match(line)
        if m:
            books.failures.append({"law": m.group(1), "cpu": int(m.group(2)),
                                   "got": int(m.group(3)), "want": int(m.group(4))})
    return books
