# SPDX-License-Identifier: MIT
"""Linux boot time to /init in Bochs: natively, and under the hypervisor, as a ratio.

    python3 -m tests.linux.bench [--smp 2] [--hv build/final/hv.elf] [--runs 1] [--no-hv]

prints `linux-boot native_bochs_s=... hv_bochs_s=... ratio=...` (and the
hypervisor's VM-exit counts when it printed them).  The time is wall time from
Bochs' start to the guest's first line from /init (`LINUX: INIT`), BIOS and GRUB
included on both sides; /init runs no checks (linuxtest.checks=none).  For
scripts/bench.py: `linux_boot_figures()` returns the same figures as a dict.
"""
import argparse
import os
import re
import statistics

from tests.linux import emu as E

INIT_RE = r"(?:^|\bguest\S*: )LINUX: INIT\b"
EXITS_RE = re.compile(r"vmx: exits: .*")


def boot_time(native, smp=2, hv=E.HV_ELF, timeout=None, workdir=None, wait_end=False):
    """(seconds to `LINUX: INIT`, or None; the hypervisor's `vmx: exits:` line or
    None; the last console line, for a reason when there is no time)."""
    run = E.label("bochs", native)
    workdir = workdir or os.path.join(E.LINUX_DIR, f"bench-{run}")
    cmdline = f"{E.LINUX_CMDLINE} linuxtest.checks=none"
    m = E.Machine("bochs", native, smp, cmdline, workdir, hv=hv,
                  hv_cmdline=f"{E.HV_CMDLINE} guest_expect=done")
    m.start()
    try:
        hit = m.wait_for(INIT_RE, timeout or (300 if native else 900))
        exits = None
        if hit and wait_end:
            # The hypervisor prints its exit counts when the guest is done.
            m.wait_for(EXITS_RE.pattern, 300)
        out = m.output()
        for line in out:
            if EXITS_RE.search(line) and not line.startswith("guest"):
                exits = EXITS_RE.search(line).group(0)
    finally:
        m.stop()
    last = next((line for line in reversed(out) if line.strip()), "") if out else ""
    return (hit[0] if hit else None), exits, last


def linux_boot_figures(smp=2, hv=E.HV_ELF, runs=1, with_hv=True, log=None):
    """{native_bochs_s, hv_bochs_s, ratio, hv_exits, hv_note}: medians over `runs`
    boots; under the hypervisor only when `with_hv` and `hv` exists (else None,
    with the reason in hv_note)."""
    native = []
    for _ in range(runs):
        t, _, last = boot_time(True, smp)
        if log:
            log(f"linux-boot: native Bochs: " + (f"/init at {t:.1f} s" if t else f"no /init (last line: {last})"))
        if t:
            native.append(t)
    fig = {"native_bochs_s": statistics.median(native) if native else None,
           "hv_bochs_s": None, "ratio": None, "hv_exits": None, "hv_note": None}
    if not with_hv:
        fig["hv_note"] = "not asked"
    elif not os.path.exists(hv):
        fig["hv_note"] = f"no hypervisor at {hv}"
    else:
        under = []
        for _ in range(runs):
            t, exits, last = boot_time(False, smp, hv, wait_end=True)
            if log:
                log(f"linux-boot: Bochs under the hypervisor: "
                    + (f"/init at {t:.1f} s" if t else f"no /init (last line: {last})"))
            if t:
                under.append(t)
                fig["hv_exits"] = exits
            else:
                fig["hv_note"] = f"no LINUX: INIT under the hypervisor; last line: {last}"
        if under:
            fig["hv_bochs_s"] = statistics.median(under)
    if fig["native_bochs_s"] and fig["hv_bochs_s"]:
        fig["ratio"] = fig["hv_bochs_s"] / fig["native_bochs_s"]
    return fig


def format_figures(fig):
    def f(x, spec):
        return "none" if x is None else format(x, spec)

    line = (f"linux-boot native_bochs_s={f(fig['native_bochs_s'], '.1f')} "
            f"hv_bochs_s={f(fig['hv_bochs_s'], '.1f')} ratio={f(fig['ratio'], '.2f')}")
    if fig.get("hv_exits"):
        line += f"\nlinux-boot hv {fig['hv_exits']}"
    if fig.get("hv_note"):
        line += f"\nlinux-boot ({fig['hv_note']})"
    return line


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m tests.linux.bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smp", type=int, default=2)
    ap.add_argument("--hv", default=E.HV_ELF)
    ap.add_argument("--runs", type=int, default=1, help="boots per side (median)")
    ap.add_argument("--no-hv", action="store_true", help="the native boot only")
    a = ap.parse_args(argv)
    fig = linux_boot_figures(a.smp, a.hv, a.runs, not a.no_hv, log=print)
    print(format_figures(fig))


if __name__ == "__main__":
    main()
