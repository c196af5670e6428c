# SPDX-License-Identifier: MIT
"""Boot the hypervisor (or any multiboot kernel) in QEMU.

`Qemu` runs one VM with COM1 on a pipe (output collected line by line, input for
the end-of-injection byte), port 0xE9 to a file, a QMP unix socket,
isa-debug-exit, a hard timeout, a limit on silence (no output line for `quiet`
seconds ends the run as stuck) and cleanup.  accel() decides between KVM (with
nested VMX where the host offers it) and TCG (which has no VMX); the environment
variable HV_QEMU_ACCEL=kvm|tcg overrides it.  The command line (qemu/run.py, make qemu):

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
# KVM without VMX for the guest: the hypervisor says `VMX unavailable` and runs its
# host-side workloads.  IA32_ARCH_CAPABILITIES is left out: a KVM that does not
# emulate it (kvm_pvm) refuses the whole vCPU otherwise.
KVM_NO_VMX = ["-accel", "kvm", "-cpu", "host,-arch-capabilities"]
TCG = ["-accel", "tcg", "-cpu", "max"]
# Nested VMX is kvm_intel's parameter (kvm_amd's `nested` is nested SVM: no VMX).
NESTED_PARAM = "/sys/module/kvm_intel/parameters/nested"
# The KVMs that run a guest on the CPU's own virtualization extensions.  Another
# /dev/kvm (kvm_pvm: KVM in a VM without them) was measured here to take 12-40 s
# to get through the BIOS and about 10 ms per NMI IPI: slower than TCG for every
# system test, so it is not chosen unless asked for.
HARDWARE_KVM = ("kvm_intel", "kvm_amd")
ACCEL_ENV = "HV_QEMU_ACCEL"


def choose_accel(kvm_usable, nested, kvm_modules=(), want="auto"):
    """The decision alone, from whether /dev/kvm is usable, kvm_intel's `nested`,
    the loaded kvm modules and HV_QEMU_ACCEL (auto, kvm or tcg): (QEMU arguments,
    what was chosen and why, for the run's header line)."""
    if want == "tcg":
        return TCG, f"TCG, no VMX: {ACCEL_ENV}=tcg"
    if not kvm_usable:
        return TCG, "TCG, no VMX: no usable /dev/kvm"
    if nested in ("Y", "1"):
        return KVM, "KVM with nested VMX"
    no_vmx = f"no nested VMX ({NESTED_PARAM}: {nested or 'absent'})"
    hardware = [m for m in kvm_modules if m in HARDWARE_KVM]
    if want == "kvm" or hardware:
        how = f"{ACCEL_ENV}=kvm" if want == "kvm" and not hardware else ", ".join(hardware)
        return KVM_NO_VMX, f"KVM ({how}), {no_vmx}: the host-side workloads"
    return TCG, (f"TCG, no VMX: /dev/kvm is {', '.join(kvm_modules) or 'unknown'}, not "
                 f"{' or '.join(HARDWARE_KVM)}: slower than TCG here ({ACCEL_ENV}=kvm "
                 "uses it anyway)")


def accel():
    """Probe this host: (QEMU arguments, what was chosen and why)."""
    try:
        with open(NESTED_PARAM) as f:
            nested = f.read().strip()
    except OSError:
        nested = ""
    usable = os.path.exists("/dev/kvm") and os.access("/dev/kvm", os.R_OK | os.W_OK)
    try:
        modules = sorted(m for m in os.listdir("/sys/module") if m.startswith("kvm_"))
    except OSError:
        modules = []
    want = os.environ.get(ACCEL_ENV, "auto")
    if want not in ("auto", "kvm", "tcg"):
        sys.exit(f"qemu: {ACCEL_ENV}={want}: auto, kvm or tcg")
    return choose_accel(usable, nested, modules, want)


def accel_args(announce=True):
    args, how = accel()
    if announce:
        print(f"QEMU: {' '.join(args)} ({how})", file=sys.stderr)
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
                 memory=128, extra_args=(), quiet=None):
        # The QMP socket lives apart: a workdir's path may be too long for a socket's.
        self._tmp = tempfile.mkdtemp(prefix="hv-qemu-")
        self.workdir = workdir or self._tmp
        os.makedirs(self.workdir, exist_ok=True)
        self.qmp_path = os.path.join(self._tmp, "qmp.sock")
        self.timeout = timeout
        self.quiet = quiet  # seconds without an output line that end the run as stuck
        self.stalled = None  # (seconds of silence, since which second of the run)
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

    def wait_for(self, pattern, timeout=None, after=0):
        """The first output line matching `pattern` (regex), or None on timeout/exit;
        `after`: look only at the lines from that index on (see line_count())."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + min(timeout or self.remaining(), self.remaining())
        seen = after
        with self._cv:
            while True:
                for _, line in self.lines[seen:]:
                    if rx.search(line):
                        return line
                seen = max(seen, len(self.lines))
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    return None
                self._cv.wait(min(left, 0.5))

    def line_count(self):
        with self._cv:
            return len(self.lines)

    def connect_qmp(self):
        self.qmp = QMP(self.qmp_path, timeout=max(1.0, min(10.0, self.remaining())))
        return self.qmp

    def send_serial(self, data=b"D"):
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def last_output(self):
        """When the last output line came (the start when none has)."""
        with self._cv:
            return self.lines[-1][0] if self.lines else self.started

    def silent_for(self):
        return time.monotonic() - self.last_output()

    def wait_exit(self):
        """Wait for QEMU to exit within the hard timeout, and while it prints: after
        `quiet` seconds without an output line it is killed as stuck (self.stalled
        says since when).  Returns (exit status or None when killed, RESULT line or
        None)."""
        rc = None
        while True:
            wait = self.remaining()
            if self.quiet:
                wait = min(wait, self.quiet - self.silent_for())
            try:
                rc = self.proc.wait(timeout=max(0.1, wait))
                break
            except subprocess.TimeoutExpired:
                pass
            if self.remaining() <= 0:
                break
            if self.quiet and self.silent_for() >= self.quiet:
                self.stalled = (self.silent_for(), self.last_output() - self.started)
                break
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
