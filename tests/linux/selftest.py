# SPDX-License-Identifier: MIT
"""The Linux checks' own tests: can they pass, and can they fail?

    python3 -m tests.linux.selftest [--no-boot]

- the checker's judgement of console logs written by hand: native lines, lines
  with the hypervisor's `guest: ` prefix, the isolation verdict, a DONE line that
  disagrees with the checks, a missing RESULT;
- /init's hypervisor branch, booted in QEMU TCG with tests/linux/fakehv answering
  the test port from inside the guest: every check passes with an honest stand-in,
  and paced-nmis and nmi-accounting fail when it drops one NMI (linuxtest.fakehv=drop).
One `PASS|FAIL linux-self-...` line per test; exits 1 on any failure.
"""
import argparse
import os
import sys

from tests.linux import emu as E
from tests.linux import run as R

FAILURES = []


def verdict(ok, name, detail=""):
    print(f"{'PASS' if ok else 'FAIL'} linux-self-{name}" + (f": {detail}" if detail else ""),
          flush=True)
    if not ok:
        FAILURES.append(name)


def kinds(verdicts):
    return {name: kind for kind, name, _ in verdicts}


def test_judge():
    hv_log = [
        (1.0, "hv: booted via multiboot2, NMI core variant final"),
        (20.0, "guest: LINUX: INIT uptime=5.1 kernel=6.1.0 cpus=0-1"),
        (21.0, "guest: LINUX: PASS nmi-backtrace triggers=3 sender=cpu0:+0 cpu1:+3/bt=3"),
        (22.0, "guest: LINUX: SKIP nmi-flood why not"),
        (22.5, "guest: RESULT: FAIL this is the guest talking, not the hypervisor"),
        (23.0, "guest: LINUX: DONE passed=1 failed=0 skipped=1"),
        (24.0, "guest: LINUX: ISOLATION writing 0x100000 through /dev/mem: ..."),
        (24.5, "vmx: EPT violation: guest-physical 0x100000 (write), guest rip 0x1 (hypervisor memory)"),
        (25.0, "RESULT: PASS vmx-guest cpus=2"),
    ]
    v, times = R.judge("bochs-hv", hv_log, True, False, True)
    k = kinds(v)
    want = {"linux-bochs-hv-nmi-backtrace": "PASS", "linux-bochs-hv-nmi-flood": "SKIP",
            "linux-bochs-hv-boot": "PASS", "linux-bochs-hv-done": "PASS",
            "linux-bochs-hv-isolation": "PASS", "linux-bochs-hv-result": "PASS"}
    verdict(k == want and times["init_s"] == 20.0, "judge-hypervisor-log", str(k))

    survived = hv_log[:7] + [(24.2, "guest: LINUX: ISOLATION survived: the write came back"),
                             (25.0, "RESULT: FAIL vmx-guest: no EPT violation")]
    k = kinds(R.judge("bochs-hv", survived, True, False, True)[0])
    verdict(k["linux-bochs-hv-isolation"] == "FAIL" and k["linux-bochs-hv-result"] == "FAIL",
            "judge-isolation-survived", str(k))

    native = [(3.0, "LINUX: INIT uptime=2.3 kernel=x cpus=0-1"),
              (3.5, "LINUX: FAIL nmi-backtrace cpu1:+2/bt=3"),
              (3.6, "LINUX: DONE passed=0 failed=1 skipped=0")]
    k = kinds(R.judge("qemu-native", native, True, True, True)[0])
    verdict(k == {"linux-qemu-native-nmi-backtrace": "FAIL", "linux-qemu-native-boot": "PASS",
                  "linux-qemu-native-done": "FAIL"}, "judge-native-failure", str(k))

    liar = native[:1] + [(3.5, "LINUX: PASS nmi-backtrace ok"),
                         (3.6, "LINUX: DONE passed=2 failed=0 skipped=0")]
    k = kinds(R.judge("qemu-native", liar, True, True, True)[0])
    verdict(k["linux-qemu-native-done"] == "FAIL", "judge-done-disagrees", str(k))

    k = kinds(R.judge("qemu-native", native[:1], False, True, True)[0])
    verdict(k["linux-qemu-native-done"] == "FAIL", "judge-timeout", str(k))

    k = kinds(R.judge("bochs-hv", hv_log[:6], True, False, False)[0])
    verdict(k.get("linux-bochs-hv-result") == "FAIL" and "linux-bochs-hv-isolation" not in k,
            "judge-no-result-line", str(k))


def boot(cmdline, want):
    """A QEMU TCG boot with the fake hypervisor; `want`: {check: kind}."""
    r = R.run_linux("qemu", True, 2, cmdline, workdir=os.path.join(E.LINUX_DIR, "selftest"), log=lambda s: None)
    k = {name.replace("linux-qemu-native-", ""): kind for kind, name, _ in r["verdicts"]}
    got = {c: k.get(c) for c in want}
    return got == want, got


def test_boots():
    ok, got = boot("linuxtest.fakehv=1 linuxtest.nmis=10 linuxtest.flood=10 linuxtest.rounds=2",
                   {c: "PASS" for c in ("nmi-backtrace", "paced-nmis", "nmi-flood",
                                        "stop-the-world", "nothing-spurious", "nmi-accounting",
                                        "memory-map", "boot", "done")})
    verdict(ok, "fakehv-passes", str(got))
    ok, got = boot("linuxtest.fakehv=drop linuxtest.nmis=5 "
                   "linuxtest.checks=paced-nmis,nmi-accounting,nothing-spurious",
                   {"paced-nmis": "FAIL", "nmi-accounting": "FAIL", "nothing-spurious": "PASS",
                    "done": "FAIL"})
    verdict(ok, "fakehv-drop-fails", str(got))


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m tests.linux.selftest", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-boot", action="store_true", help="the judgement tests only")
    a = ap.parse_args(argv)
    test_judge()
    if not a.no_boot:
        test_boots()
    sys.exit(1 if FAILURES else 0)


if __name__ == "__main__":
    main()
