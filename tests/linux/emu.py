# SPDX-License-Identifier: MIT
"""Boot the Linux guest: natively in QEMU TCG or Bochs, or under the hypervisor in
Bochs or in QEMU with KVM (nested VMX).

`Machine` starts one emulator with the guest's serial console on a pipe (QEMU) or a
pseudo-terminal (Bochs' `com1: mode=term`), time-stamps every console line from the
emulator's start, lets a caller type into the console, and stops the emulator
cleanly: QEMU is killed, Bochs gets SIGHUP and then SIGKILL (it ignores SIGTERM).
`Machine.interactive()` bridges the console to the user's terminal instead.

Self-contained on purpose (standard library only, no imports from scripts/ or
qemu/): it reads the top-level `bochsrc` and overrides its COM1 line on the Bochs
command line, and builds its own GRUB ISO, because the hypervisor's ISO script has
no `linux`/`initrd` lines and names its module differently.
"""
import hashlib
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
LINUX_DIR = os.path.join(ROOT, "build", "linux")
KERNEL = os.path.join(LINUX_DIR, "vmlinuz")
INITRD = os.path.join(LINUX_DIR, "initrd.gz")
HV_ELF = os.path.join(ROOT, "build", "final", "hv.elf")
BOCHSRC = os.path.join(ROOT, "bochsrc")

# nmi_watchdog=0: no perf NMIs (Bochs has no PMU anyway), so every NMI Linux counts
# is one a check sent.  panic=-1: a panic reboots, and -no-reboot / Bochs end the run.
# iomem=relaxed: /dev/mem may reach reserved ranges the kernel does not drive (the
# cloud kernel has CONFIG_IO_STRICT_DEVMEM), so the isolation check's write to the
# hypervisor's memory really leaves the guest and meets the EPT.
LINUX_CMDLINE = "console=ttyS0,115200 nmi_watchdog=0 panic=-1 iomem=relaxed"
HV_CMDLINE = "workload=guest guest_smp=1"

EMUS = ("qemu", "bochs")
PTY_RE = re.compile(rb"connected to screen (/dev/pts/\d+)")


def label(emu, native):
    """The runs' name in verdicts: qemu-native, bochs-native, bochs-hv, qemu-hv."""
    return f"{emu}-{'native' if native else 'hv'}"


def nested_vmx():
    """(True, "") when QEMU can use KVM with nested VMX here, else (False, why)."""
    if not os.path.exists("/dev/kvm"):
        return False, "no /dev/kvm here (QEMU TCG has no VMX)"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False, "/dev/kvm is not accessible to this user"
    loaded = []
    for mod in ("kvm_intel", "kvm_amd"):
        try:
            with open(f"/sys/module/{mod}/parameters/nested") as f:
                nested = f.read().strip()
        except OSError:
            continue
        if nested in ("Y", "1"):
            return True, ""
        loaded.append(f"{mod} nested={nested}")
    if not loaded:
        return False, "/dev/kvm is there but no kvm_intel/kvm_amd module is loaded (QEMU TCG has no VMX)"
    return False, f"KVM without nested virtualization ({', '.join(loaded)})"


def _digest(paths, *strings):
    h = hashlib.sha256()
    for p in paths:
        st = os.stat(p)
        h.update(f"{os.path.abspath(p)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    for s in strings:
        h.update(s.encode() + b"\n")
    return h.hexdigest()


def make_iso(out, linux_cmdline, kernel=KERNEL, initrd=INITRD, hv=None, hv_cmdline=HV_CMDLINE):
    """A GRUB rescue ISO booting Linux (`linux` + `initrd`), or with `hv` the
    hypervisor (`multiboot2`) with Linux and its initrd as `module2`s.  Rebuilt only
    when an input or a command line changed."""
    inputs = [kernel, initrd] + ([hv] if hv else [])
    stamp = out + ".inputs"
    key = _digest(inputs, linux_cmdline, hv_cmdline if hv else "")
    try:
        with open(stamp) as f:
            if f.read() == key and os.path.exists(out):
                return out
    except OSError:
        pass
    if hv:
        entry = (f"    multiboot2 /boot/hv.elf {hv_cmdline}\n"
                 f"    module2 /boot/vmlinuz {linux_cmdline}\n"
                 f"    module2 /boot/initrd.gz initrd\n")
    else:
        entry = (f"    linux /boot/vmlinuz {linux_cmdline}\n"
                 f"    initrd /boot/initrd.gz\n")
    cfg = f'set timeout=0\nset default=0\nmenuentry "linux" {{\n{entry}    boot\n}}\n'
    with tempfile.TemporaryDirectory(prefix="linux-iso-") as root:
        boot = os.path.join(root, "boot")
        os.makedirs(os.path.join(boot, "grub"))
        shutil.copy(kernel, os.path.join(boot, "vmlinuz"))
        shutil.copy(initrd, os.path.join(boot, "initrd.gz"))
        if hv:
            shutil.copy(hv, os.path.join(boot, "hv.elf"))
        with open(os.path.join(boot, "grub", "grub.cfg"), "w") as f:
            f.write(cfg)
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        r = subprocess.run(["grub-mkrescue", "-o", out, root],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"grub-mkrescue failed:\n{r.stdout}")
    with open(stamp, "w") as f:
        f.write(key)
    return out


def _qemu_opt(s):
    """A value inside a QEMU option list: commas doubled."""
    return s.replace(",", ",,")


class Machine:
    """One emulator run.  `lines` is [(seconds since start, text)], filled as the
    console prints; `ended` says whether the emulator exited by itself."""

    def __init__(self, emu="qemu", native=True, smp=2, linux_cmdline=LINUX_CMDLINE,
                 workdir=None, kernel=KERNEL, initrd=INITRD, hv=HV_ELF, hv_cmdline=HV_CMDLINE,
                 memory=256):
        if emu not in EMUS:
            raise ValueError(f"emu must be one of {EMUS}")
        self.emu, self.native, self.smp = emu, native, smp
        self.linux_cmdline, self.hv_cmdline = linux_cmdline, hv_cmdline
        self.kernel, self.initrd, self.hv, self.memory = kernel, initrd, hv, memory
        self.workdir = os.path.abspath(workdir or os.path.join(LINUX_DIR, label(emu, native)))
        os.makedirs(self.workdir, exist_ok=True)
        for path, what in ((kernel, "kernel (scripts/deps.sh linux)"),
                           (initrd, "initramfs (tests/linux/mkinitrd.sh)")) + \
                (() if native else ((hv, "hypervisor (make hv)"),)):
            if not os.path.exists(path):
                raise FileNotFoundError(f"no {what}: {path}")
        self.lines = []
        self.proc = None
        self.ended = False
        self.timed_out = False
        self._cv = threading.Condition()
        self._partial = b""
        self._threads = []
        self._stop = threading.Event()
        self._console_fd = None  # Bochs: the pty master
        self._slave_fd = None
        self._serial_log = None

    # ---- starting -----------------------------------------------------------------
    def qemu_args(self, interactive=False):
        args = ["qemu-system-x86_64"]
        if self.native:
            args += ["-accel", "tcg", "-cpu", "max", "-kernel", self.kernel, "-initrd", self.initrd,
                     "-append", self.linux_cmdline]
        else:
            args += ["-enable-kvm", "-cpu", "host,vmx=on", "-kernel", self.hv,
                     "-append", self.hv_cmdline, "-initrd",
                     f"{_qemu_opt(self.kernel)} {_qemu_opt(self.linux_cmdline)},"
                     f"{_qemu_opt(self.initrd)} initrd",
                     "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]
        args += ["-smp", str(self.smp), "-m", str(self.memory), "-no-reboot"]
        if interactive:
            args += ["-nographic"]  # serial and monitor on the terminal: Ctrl-A x quits
        else:
            args += ["-display", "none", "-monitor", "none", "-serial", "stdio"]
        return args

    def bochs_setup(self):
        """The ISO, debugger script and environment for the top-level bochsrc."""
        iso = make_iso(os.path.join(self.workdir, "linux.iso"), self.linux_cmdline, self.kernel,
                       self.initrd, None if self.native else self.hv, self.hv_cmdline)
        rc = os.path.join(self.workdir, "bochs.rc")
        with open(rc, "w") as f:
            f.write("c\nquit\n")
        sym = os.path.join(self.workdir, "hv.sym")
        with open(sym, "w") as f:
            if not self.native:
                out = subprocess.run(["nm", "-n", self.hv], stdout=subprocess.PIPE, text=True)
                for line in out.stdout.splitlines():
                    p = line.split()
                    if len(p) == 3 and p[1] in "Tt":
                        f.write(f"{p[0]} {p[2]}\n")
        env = dict(os.environ, HV_ISO=iso, HV_CPUS=str(self.smp),
                   HV_SERIAL=os.path.join(self.workdir, "com1-unused.txt"),
                   HV_LOG=os.path.join(self.workdir, "bochs.log"),
                   HV_DBGLOG=os.path.join(self.workdir, "debugger.log"), HV_SYMBOLS=sym)
        return rc, env

    def start(self, interactive=False):
        self.started = time.monotonic()
        self._serial_log = open(os.path.join(self.workdir, "serial.txt"), "wb")
        if self.emu == "qemu":
            if interactive:
                self.proc = subprocess.Popen(self.qemu_args(True))
                return self
            self.proc = subprocess.Popen(self.qemu_args(), stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            self._spawn(self._pump_fd, self.proc.stdout.fileno())
            return self
        rc, env = self.bochs_setup()
        # COM1 on a pseudo-terminal of ours, overriding bochsrc's file: it streams
        # (time stamps) and takes input (make linux).
        master, slave = os.openpty()
        self._console_fd = master
        com1 = f"com1: enabled=1, mode=term, dev={os.ttyname(slave)}"
        stdout = open(os.path.join(self.workdir, "stdout.txt"), "wb")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(["bochs", "-q", "-f", BOCHSRC, "-rc", rc, com1],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, env=env, cwd=self.workdir)
        # Our copy of the slave stays open until the end: with no slave open, reads
        # of the master fail (EIO) until Bochs has opened it.
        self._slave_fd = slave
        self._spawn(self._pump_bochs_stdout, stdout)
        if not interactive:
            self._spawn(self._pump_fd, master)
        return self

    def _spawn(self, fn, *args):
        t = threading.Thread(target=fn, args=args, daemon=True)
        t.start()
        self._threads.append(t)

    # ---- console ------------------------------------------------------------------
    def _feed(self, data):
        self._serial_log.write(data)
        self._serial_log.flush()
        now = time.monotonic() - self.started
        with self._cv:
            self._partial += data
            *done, self._partial = self._partial.split(b"\n")
            for raw in done:
                self.lines.append((now, raw.decode(errors="replace").replace("\r", "")))
            self._cv.notify_all()

    def _pump_fd(self, fd):
        while not self._stop.is_set():
            try:
                r, _, _ = select.select([fd], [], [], 0.2)
                if not r:
                    if self.proc.poll() is not None and self.emu == "bochs":
                        break
                    continue
                data = os.read(fd, 65536)
            except OSError:  # EIO: the pty's other side is gone
                break
            if not data:
                break
            self._feed(data)
        with self._cv:
            self._cv.notify_all()

    def _pump_bochs_stdout(self, log):
        """Bochs' own output to stdout.txt; its `term` display's pty drained (Bochs
        blocks in a write to it when nobody reads)."""
        with log:
            for chunk in iter(lambda: self.proc.stdout.read1(65536), b""):
                log.write(chunk)
                log.flush()
                for m in PTY_RE.finditer(chunk):
                    self._spawn(self._drain, m.group(1).decode())

    def _drain(self, path):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError:
            return
        try:
            while not self._stop.is_set():
                r, _, _ = select.select([fd], [], [], 0.2)
                if r and not os.read(fd, 65536):
                    time.sleep(0.2)
        except OSError:
            pass
        finally:
            os.close(fd)

    def send(self, text):
        """Type into the guest's console."""
        data = text.encode() if isinstance(text, str) else text
        if self.emu == "qemu":
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        else:
            os.write(self._console_fd, data)

    def wait_for(self, pattern, timeout):
        """The first console line matching `pattern` (regex) and its time, or None
        on timeout or when the emulator has ended."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cv:
            while True:
                for t, line in self.lines[seen:]:
                    if rx.search(line):
                        return t, line
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    if self.proc.poll() is not None:
                        # Let the pump deliver what is still buffered.
                        self._cv.wait(0.3)
                        if len(self.lines) > seen:
                            continue
                    return None
                self._cv.wait(min(left, 0.5))

    def wait(self, timeout):
        """Wait for the emulator to exit by itself, up to `timeout` seconds; stop it
        otherwise.  Returns True when it ended by itself."""
        try:
            self.proc.wait(timeout=max(0.0, timeout))
            self.ended = True
        except subprocess.TimeoutExpired:
            self.timed_out = True
        self.stop()
        return self.ended

    def stop(self):
        if self.proc and self.proc.poll() is None:
            if self.emu == "bochs":
                self.proc.send_signal(signal.SIGHUP)
                try:
                    self.proc.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
            else:
                self.proc.kill()
            self.proc.wait()
        time.sleep(0.1)
        self._stop.set()
        for t in self._threads:
            t.join(timeout=2)
        with self._cv:
            if self._partial:
                self.lines.append((time.monotonic() - self.started,
                                   self._partial.decode(errors="replace").replace("\r", "")))
                self._partial = b""
        for fd in (self._console_fd, self._slave_fd):
            if fd is not None:
                os.close(fd)
        self._console_fd = self._slave_fd = None
        if self._serial_log:
            self._serial_log.close()
            self._serial_log = None

    def output(self):
        with self._cv:
            return [line for _, line in self.lines]

    # ---- the user's terminal ------------------------------------------------------
    def interactive(self):
        """Boot with the console on this terminal until the guest powers off or the
        user types Ctrl-A x.  Returns the emulator's exit status."""
        if self.emu == "qemu":
            print("linux: QEMU " + " ".join(self.qemu_args(True)), file=sys.stderr)
            print("linux: Ctrl-A x quits, Ctrl-A c is QEMU's monitor", file=sys.stderr)
            self.start(interactive=True)
            try:
                return self.proc.wait()
            except KeyboardInterrupt:
                self.stop()
                return 130
        import termios
        import tty
        print(f"linux: Bochs, {self.smp} CPUs, {'native' if self.native else 'under the hypervisor'}"
              f" (about a minute to the prompt); Ctrl-A x quits", file=sys.stderr)
        self.start(interactive=True)
        fd_in = sys.stdin.fileno()
        is_tty = os.isatty(fd_in)
        saved = termios.tcgetattr(fd_in) if is_tty else None
        if is_tty:
            tty.setraw(fd_in)
        master, escape = self._console_fd, False
        try:
            while self.proc.poll() is None:
                r, _, _ = select.select([master] + ([fd_in] if fd_in >= 0 else []), [], [], 0.2)
                if master in r:
                    try:
                        data = os.read(master, 65536)
                    except OSError:
                        break
                    self._serial_log.write(data)
                    os.write(sys.stdout.fileno(), data)
                if fd_in in r:
                    data = os.read(fd_in, 1024)
                    if not data:
                        fd_in = -1  # stdin closed: keep showing output
                        continue
                    out = bytearray()
                    for b in data:
                        if escape:
                            escape = False
                            if b in b"xX":
                                raise KeyboardInterrupt
                            out.append(b)  # Ctrl-A Ctrl-A: a literal Ctrl-A
                        elif b == 1:
                            escape = True
                        else:
                            out.append(b)
                    if out:
                        os.write(master, bytes(out))
        except KeyboardInterrupt:
            pass
        finally:
            if saved is not None:
                termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, saved)
            self.stop()
        print(f"\r\nlinux: Bochs ended (logs in {self.workdir})", file=sys.stderr)
        return self.proc.returncode
