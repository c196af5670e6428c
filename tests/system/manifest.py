# SPDX-License-Identifier: MIT
"""Reading tests/system/tests.cfg (its header is the format): one Test per entry,
every key checked, so a mistyped entry stops the run instead of testing less."""
import configparser
import re
import types

from scripts.bochs_trace import GUEST_ARGS, REGIONS

KEYS = {"emulator", "cpus", "kernel", "boot", "cmdline", "guest", "guest_args", "modules",
        "inject", "trace", "timeout", "quiet", "needs", "expect", "output", "books", "checks", "path",
        "fails_when"}
REQUIRED = ("emulator", "cpus", "fails_when")
CHECKS = {"host-nmis", "guest-checks", "idt-vectoring", "ept-report", "guest-on-every-cpu",
          "experiments", "exit-code"}
GUESTS = ("guest", "guest2")  # the test kernels: tests/guest/, tests/guest2/
BOOKS_WORD_RE = re.compile(r"balanced|\w+>0|cpu\d+\.\w+=\d+")
INJECT_RE = re.compile(r"(qmp-paced|qmp-flood) (\d+)")
# The defaults: the outer limit, and seconds without output per emulator (Bochs
# writes COM1 to its file in blocks, and its BIOS and GRUB print nothing there:
# silences of 30 s were measured on a loaded host in runs that passed).
TIMEOUT, QUIET = "300", {"qemu": "30", "bochs": "120"}
TABLE = "deviations"


class ManifestError(Exception):
    pass


def _test(name, s):
    def bad(why):
        raise ManifestError(f"[{name}]: {why}")

    if not re.fullmatch(r"[\w.+-]+", name):
        bad("a test name is letters, digits and - _ . + only")
    unknown = set(s) - KEYS
    if unknown:
        bad(f"unknown key(s) {', '.join(sorted(unknown))}")
    for key in REQUIRED:
        if not s.get(key, "").strip():
            bad(f"`{key}` is required")
    t = types.SimpleNamespace(
        name=name, emulator=s["emulator"], kernel=s.get("kernel", "hv"),
        boot=s.get("boot", "iso" if s["emulator"] == "bochs" else "kernel"),
        cmdline=s.get("cmdline", ""), guest=s.get("guest", "no"),
        guest_args=s.get("guest_args", ""), modules=s.get("modules", "").split(),
        inject=None, trace=s.get("trace"),
        needs=s.get("needs"), expect=s.get("expect", "PASS"),
        output=s.get("output", "").split("\n") if s.get("output") else [],
        books=s.get("books", "").split(), checks=s.get("checks", "").split(),
        path=s.get("path", "").split(), fails_when=" ".join(s["fails_when"].split()))
    try:
        t.cpus, t.timeout = int(s["cpus"]), float(s.get("timeout", TIMEOUT))
        t.quiet = float(s.get("quiet", QUIET.get(s["emulator"], "30")))
    except ValueError as e:
        bad(str(e))
    if t.emulator not in ("qemu", "bochs"):
        bad(f"emulator {t.emulator!r}: qemu or bochs")
    if t.kernel not in ("hv",) + GUESTS or (t.kernel != "hv" and t.emulator != "qemu"):
        bad(f"kernel {t.kernel!r}: hv, or guest/guest2 (QEMU only)")
    if t.boot not in ("kernel", "iso") or (t.emulator == "bochs" and t.boot != "iso"):
        bad(f"boot {t.boot!r}: kernel or iso (Bochs: iso)")
    if t.guest not in ("yes", "no") + GUESTS:
        bad(f"guest {t.guest!r}: yes (the test guest), guest2 or no")
    t.guest = {"yes": "guest", "no": None}.get(t.guest, t.guest)
    if t.modules and not (t.guest or t.kernel != "hv"):
        bad("modules go with a guest kernel (guest = ..., or kernel = guest/guest2)")
    if "exit-code" in t.checks and not (t.guest or t.kernel != "hv"):
        bad("exit-code goes with a guest kernel")
    if t.needs not in (None, "vmx"):
        bad(f"needs {t.needs!r}: vmx")
    if not re.fullmatch(r"(PASS|FAIL)\b.*", t.expect):
        bad(f"expect {t.expect!r}: PASS... or FAIL...")
    if "inject" in s:
        m = INJECT_RE.fullmatch(s["inject"])
        if not m or t.emulator != "qemu":
            bad(f"inject {s['inject']!r}: qmp-paced N | qmp-flood N, QEMU only")
        t.inject = types.SimpleNamespace(kind=m.group(1), count=int(m.group(2)))
    if t.trace is not None:
        if t.trace not in REGIONS or t.emulator != "bochs" or t.cmdline:
            bad(f"trace {t.trace!r}: one of {', '.join(REGIONS)}, Bochs only, no cmdline")
        if bool(t.guest) != (t.trace in GUEST_ARGS) or t.guest_args:
            bad(f"trace {t.trace}: guest = yes exactly for {', '.join(GUEST_ARGS)}, "
                "which set the guest's arguments")
        if not t.path or t.path[0] == "..." or t.path[-1] == "...":
            bad("trace needs a path whose first and last words are functions")
    elif t.path:
        bad("path goes with trace")
    for word in t.books:
        if not BOOKS_WORD_RE.fullmatch(word):
            bad(f"books word {word!r}: balanced, FIELD>0 or cpuN.FIELD=V")
    for word in t.checks:
        if word not in CHECKS:
            bad(f"check {word!r}: one of {', '.join(sorted(CHECKS))}")
    if "host-nmis" in t.checks and not t.inject:
        bad("host-nmis goes with inject")
    for rx in t.output:
        try:
            re.compile(rx)
        except re.error as e:
            bad(f"output {rx!r}: {e}")
    return t


def parse(text, source="<manifest>"):
    """([Test], {emulator: {experiments that deviate}}) from a manifest's text."""
    cfg = configparser.ConfigParser(interpolation=None, default_section="no default section")
    try:
        cfg.read_string(text, source)
    except configparser.Error as e:
        raise ManifestError(str(e)) from None
    if TABLE not in cfg:
        raise ManifestError(f"{source}: no [{TABLE}] table")
    deviations = {emu: set(v.split()) for emu, v in cfg[TABLE].items()}
    tests = [_test(name, cfg[name]) for name in cfg.sections() if name != TABLE]
    if not tests:
        raise ManifestError(f"{source}: no tests")
    return tests, deviations


def load(path):
    try:
        with open(path) as f:
            return parse(f.read(), path)
    except OSError as e:
        raise ManifestError(str(e)) from None
