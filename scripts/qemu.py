# SPDX-License-Identifier: MIT
"""Boot the hypervisor (or any multiboot kernel) in QEMU.

`Qemu` runs one VM with COM1 on a pipe (output collected line by line, input for
the end-of-injection byte), port 0xE9 to a file, a QMP unix socket,
isa-debug-exit, a hard timeout and cleanup.  accel() decides between KVM with
nested VMX and TCG (which has no VMX).  The command line (qemu/run.py, make qemu):

    python3 -m qemu.run --kernel build/final/hv.elf --smp 4 --cmdline "workload=stress"

runs once and prints COM1, or with --interactive puts the serial port on this
terminal (--gdb: wait for gdb on :1234).
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from .qmp import QMP
from .report import boot_arguments, exit_by_result, result_line

KVM = ["-enable-kvm", "-cpu", "host,vmx=on"]
TCG = ["-accel", "tcg", "-cpu", "max"]
# Nested VMX is kvm_intel's parameter (kvm_amd's `nested` is nested SVM: no VMX).
NESTED_PARAM = "/sys/module/kvm_intel/parameters/nested"


def choose_accel(kvm_usable, nested):
    """The decision alone: (QEMU arguments, None) for KVM with nested VMX, else
    (TCG arguments, why not KVM)."""
    if not kvm_usable:
        return TCG, "no usable /dev/kvm"
    if nested not in ("Y", "1"):
        return TCG, f"/dev/kvm without nested VMX ({NESTED_PARAM}: {nested or 'absent'})"
    return KVM, None


def accel():
    """Probe this host: (QEMU arguments, why not KVM or None)."""
    try:
        with open(NESTED_PARAM) as f:
            nested = f.read().strip()
    except OSError:
        nested = ""
    usable = os.path.exists("/dev/kvm") and os.access("/dev/kvm", os.R_OK | os.W_OK)
    return choose_accel(usable, nested)


def accel_args(announce=True):
    args, why = accel()
    if why and announce:
        print(f"qemu: {why}: TCG, no VMX", file=sys.stderr)
    return args


def qemu_args(kernel=None, cmdline="", smp=1, memory=128, cdrom=None, accelerator=None,
              debugcon=None, qmp=None, extra=()):
    """The QEMU command line every run shares: no display or monitor, COM1 on
    stdio, isa-debug-exit at 0xf4 (the kernel's exit), no reboot."""
    args = ["qemu-system-x86_64", *(accel_args(False) if accelerator is None else accelerator),
            "-smp", str(smp), "-m", str(memory), "-display", "none", "-monitor", "none",
            "-no-reboot", "-serial", "stdio",
            "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]
    if debugcon:
        args += ["-debugcon", "file:" + debugcon]
    if qmp:
        args += ["-qmp", f"unix:{qmp},server=on,wait=off"]
    args += list(extra)
    if cdrom:
        args += ["-cdrom", cdrom, "-boot", "d"]
    else:
        args += ["-kernel", kernel, "-append", cmdline]
    return args


class Qemu:
    def __init__(self, kernel=None, cmdline="", smp=1, timeout=60.0, cdrom=None, workdir=None,
                 memory=128, extra_args=()):
        # The QMP socket lives apart: a workdir's path may be too long for a socket's.
        self._tmp = tempfile.mkdtemp(prefix="hv-qemu-")
        self.workdir = workdir or self._tmp
        os.makedirs(self.workdir, exist_ok=True)
        self.qmp_path = os.path.join(self._tmp, "qmp.sock")
        self.timeout = timeout
        self.args = qemu_args(kernel, cmdline, smp, memory, cdrom,
                              debugcon=os.path.join(self.workdir, "e9.txt"),
                              qmp=self.qmp_path, extra=extra_args)
        self.lines = []
        self._cv = threading.Condition()
        self.proc = None
        self.qmp = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self):
        if os.path.exists(self.qmp_path):
            os.unlink(self.qmp_path)
        self.started = time.monotonic()
        self.proc = subprocess.Popen(self.args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        with open(os.path.join(self.workdir, "serial.txt"), "w") as log:
            for raw in self.proc.stdout:
                line = raw.decode(errors="replace").rstrip("\r\n")
                log.write(line + "\n")
                log.flush()
                with self._cv:
                    self.lines.append((time.monotonic(), line))
                    self._cv.notify_all()
        with self._cv:
            self._cv.notify_all()

    def remaining(self):
        return self.timeout - (time.monotonic() - self.started)

    def wait_for(self, pattern, timeout=None):
        """The first output line matching `pattern` (regex), or None on timeout/exit."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + min(timeout or self.remaining(), self.remaining())
        seen = 0
        with self._cv:
            while True:
                for _, line in self.lines[seen:]:
                    if rx.search(line):
                        return line
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    return None
                self._cv.wait(min(left, 0.5))

    def connect_qmp(self):
        self.qmp = QMP(self.qmp_path, timeout=max(1.0, min(10.0, self.remaining())))
        return self.qmp

    def send_serial(self, data=b"D"):
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def wait_exit(self):
        """Wait for QEMU to exit within the hard timeout; kill it otherwise.
        Returns (exit status or None when killed, RESULT line or None)."""
        try:
            rc = self.proc.wait(timeout=max(0.1, self.remaining()))
        except subprocess.TimeoutExpired:
            rc = None
        self.stop()
        return rc, self.result()

    def result(self):
        return result_line(self.output())

    def output(self):
        with self._cv:
            return "\n".join(line for _, line in self.lines)

    def stop(self):
        if self.qmp:
            self.qmp.close()
            self.qmp = None
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc:
            self._reader.join(timeout=5)
            self.proc.stdin.close()
            self.proc.stdout.close()
        shutil.rmtree(self._tmp, ignore_errors=True)


def main():
    ap = boot_arguments(__doc__, "--smp", timeout=120)
    ap.add_argument("--interactive", action="store_true", help="serial on this terminal")
    ap.add_argument("--gdb", action="store_true", help="-s -S: wait for gdb on :1234")
    a = ap.parse_args()

    if a.interactive:
        args = qemu_args(a.kernel, a.cmdline, a.smp, accelerator=accel_args())
        if a.gdb:
            args += ["-s", "-S"]
            print(f"qemu: waiting for gdb: gdb {a.kernel} -ex 'target remote :1234'",
                  file=sys.stderr)
        print("qemu: " + " ".join(args), file=sys.stderr)
        rc = subprocess.call(args)
        sys.exit(0 if rc in (0, 1) else rc)

    accel_args()
    with Qemu(a.kernel, a.cmdline, smp=a.smp, timeout=a.timeout) as vm:
        rc, result = vm.wait_exit()
        print(vm.output())
    exit_by_result("qemu", result, rc is None)


if __name__ == "__main__":
    main()
