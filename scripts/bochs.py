# SPDX-License-Identifier: MIT
"""Boot the hypervisor in Bochs 2.7 (top-level bochsrc) and judge the RESULT line.

    python3 -m scripts.bochs --kernel build/final/hv.elf --cpus 4 --cmdline workload=selftest

Bochs is awkward to drive unattended; this module handles all of it:
  - builds a GRUB ISO with the requested command line (scripts/iso.py);
  - its debugger is compiled in and stops before the first instruction: a -rc
    file says `c` (continue) and then `quit` once the kernel's exit magic
    breakpoint (`xchg %bx,%bx`) stops it; stdin is /dev/null;
  - the `term` display writes the VGA screen to its own pseudo-terminal and
    blocks when nobody reads it: a thread drains it;
  - it ignores SIGTERM: a hard timeout sends SIGHUP, then SIGKILL; so does a
    limit on silence (`quiet`: seconds in which neither COM1, nor the debugger's
    log, nor Bochs' own output grew).
run_bochs() is the library entry (system tests, traces, the seed experiment).
"""
import os
import re
import signal
import subprocess
import sys
import threading
import time

from . import elfsym
from .iso import make_iso
from .report import boot_arguments, exit_by_result, result_line

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
PTY_RE = re.compile(rb"connected to screen (/dev/pts/\d+)")
TOOLS = ("bochs", "grub-mkrescue", "xorriso")


def bochsrc_env(iso, cpus, files):
    """The variables the top-level bochsrc reads (it is the one configuration, also
    for runs by hand, docs/booting.md): the ISO, the CPU count and where COM1, the
    log, the debugger's log and the symbol file go."""
    return {"HV_ISO": os.path.abspath(iso), "HV_CPUS": str(cpus),
            "HV_SERIAL": files["serial.txt"], "HV_LOG": files["bochs.log"],
            "HV_DBGLOG": files["debugger.log"], "HV_SYMBOLS": files["hv.sym"]}


def _drain_pty(path, stop):
    """Read the term display's pseudo-terminal until `stop`: unread, Bochs blocks."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return
    try:
        while not stop.is_set():
            try:
                if not os.read(fd, 65536):
                    time.sleep(0.05)
            except BlockingIOError:
                time.sleep(0.05)
            except OSError:
                break
    finally:
        os.close(fd)


def _stop(proc):
    """Bochs ignores SIGTERM: SIGHUP asks it to quit, SIGKILL makes sure."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGHUP)
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _output_size(files):
    size = 0
    for name in ("serial.txt", "debugger.log", "stdout.txt"):
        try:
            size += os.path.getsize(files[name])
        except OSError:
            pass
    return size


def _wait(proc, files, timeout, quiet):
    """Wait for Bochs to exit within `timeout` seconds, and while its output grows:
    (timed out, stalled: (seconds of silence, since which second) or None, the
    longest silence in seconds, to half a second)."""
    start = last = time.monotonic()
    size, longest = -1, 0.0
    while True:
        try:
            proc.wait(timeout=0.5)
            return False, None, max(longest, time.monotonic() - last)
        except subprocess.TimeoutExpired:
            pass
        now = time.monotonic()
        grown = _output_size(files)
        if grown != size:
            size, last = grown, now
        longest = max(longest, now - last)
        if now - start >= timeout:
            return True, None, longest
        if quiet and now - last >= quiet:
            return False, (now - last, last - start), longest


def run_bochs(kernel, cmdline, workdir, cpus=2, timeout=120.0, rc_commands=("c", "quit"),
              iso=None, symbols=None, module=None, module_args="", more_modules=(), quiet=None):
    """Boot `kernel` with `cmdline` (or a ready `iso`), `module` (a guest kernel,
    command line `module_args`) as its boot module; `symbols`: an existing
    debug_symbols file (default: written from the kernel); `quiet`: seconds without
    output after which the run is stopped as stuck.  Returns a dict: result (RESULT
    line or None), serial (COM1 text), wall (seconds), timed_out, stalled ((seconds
    of silence, since when) or None), silence (the longest, seconds), returncode,
    files."""
    workdir = os.path.abspath(workdir)  # Bochs runs inside it
    os.makedirs(workdir, exist_ok=True)
    files = {name: os.path.join(workdir, name) for name in
             ("hv.iso", "serial.txt", "bochs.log", "debugger.log", "hv.sym", "bochs.rc",
              "stdout.txt")}
    if iso is None:
        make_iso(kernel, cmdline, files["hv.iso"], module, module_args, more_modules)
        iso = files["hv.iso"]
    if symbols:
        files["hv.sym"] = os.path.abspath(symbols)
    else:
        elfsym.write_bochs_symbols(files["hv.sym"], kernel)
    with open(files["bochs.rc"], "w") as f:
        f.write("\n".join(rc_commands) + "\n")
    for name in ("serial.txt", "debugger.log"):
        if os.path.exists(files[name]):
            os.unlink(files[name])
    env = dict(os.environ, **bochsrc_env(iso, cpus, files))
    start = time.monotonic()
    with open(files["stdout.txt"], "wb") as out:
        proc = subprocess.Popen(["bochs", "-q", "-f", os.path.join(ROOT, "bochsrc"),
                                 "-rc", files["bochs.rc"]],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, env=env, cwd=workdir)
        stop = threading.Event()
        drainers = []

        def pump():
            # Bochs' own output (debugger, port 0xE9) -> stdout.txt; find the pty.
            for chunk in iter(lambda: proc.stdout.read1(65536), b""):
                out.write(chunk)
                out.flush()
                for m in PTY_RE.finditer(chunk):
                    t = threading.Thread(target=_drain_pty, args=(m.group(1).decode(), stop),
                                         daemon=True)
                    t.start()
                    drainers.append(t)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        timed_out, stalled, silence = False, None, None
        try:
            timed_out, stalled, silence = _wait(proc, files, timeout, quiet)
        finally:
            _stop(proc)
            stop.set()
            reader.join(timeout=5)
    serial = ""
    if os.path.exists(files["serial.txt"]):
        with open(files["serial.txt"], errors="replace") as f:
            serial = f.read().replace("\r", "")
    return {"result": result_line(serial), "serial": serial,
            "wall": time.monotonic() - start, "timed_out": timed_out, "stalled": stalled,
            "silence": silence,
            "returncode": proc.returncode, "files": files}


def main():
    ap = boot_arguments(__doc__, "--cpus", timeout=180)
    ap.add_argument("--workdir", default="build/bochs")
    ap.add_argument("--module", help="guest kernel passed as the boot module (workload=guest)")
    ap.add_argument("--module-args", default="", help="the guest's command line")
    ap.add_argument("--more-modules", nargs="*", default=(),
                    help="files passed after the guest (its environment...)")
    a = ap.parse_args()
    r = run_bochs(a.kernel, a.cmdline, a.workdir, cpus=a.cpus, timeout=a.timeout,
                  module=a.module, module_args=a.module_args, more_modules=a.more_modules)
    sys.stdout.write(r["serial"])
    print(f"bochs: {r['wall']:.1f} s wall, logs in {a.workdir}"
          + (" (TIMEOUT: killed)" if r["timed_out"] else ""))
    exit_by_result("bochs", r["result"], r["timed_out"])


if __name__ == "__main__":
    main()
