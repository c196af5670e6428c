# SPDX-License-Identifier: MIT
"""Trace one region of the hypervisor instruction by instruction in Bochs
(`make trace`; python3 -m scripts.bochs_trace --kernel build/final/hv.elf --region nmi).

Regions (--region, `make trace TRACE=...`):
  nmi              one NMI's journey on CPU 0: vector-2 entry stub, the core,
                   back to the IRET (workload=trace-nmi; CPU 1 sends the NMI)
  mask-nmi-unmask  nmi_mask(), an NMI arriving and being deferred, nmi_unmask()
                   draining it (workload=trace-mask)
  guest-nmi        one guest NMI under VMX: the NMI exit, the core, VMRESUME, the
                   NMI-window exit, the injection, up to the guest handler's first
                   instructions (workload=guest trace_nmi=1, --guest with `trace`)
  vmx-exp          one experiment of the VMX NMI catalogue, host and guest
                   instructions alike (workload=vmx-exp only=N trace_exp=1; --exp N,
                   `make trace TRACE=vmx-exp EXP=N`, 1 CPU)

The kernel brackets the region with magic breakpoints; the debugger script is
`c`, `trace on`, `c`, `trace off`, `c`, `quit`.  The traced lines are written to
WORKDIR/trace.txt and summarized: instructions per function, the total, the
share inside the NMI core (__nmi_core_start..__nmi_core_end), and the path.
"""
import argparse
import collections
import os
import re
import sys

from . import bochs, elfsym

REGIONS = {"nmi": "workload=trace-nmi", "mask-nmi-unmask": "workload=trace-mask",
           "guest-nmi": "workload=guest trace_nmi=1",
           "vmx-exp": "workload=vmx-exp trace_exp=1 only={exp}"}
DEFAULT_EXP = 24  # vmx-exp: traced when none is named (a host NMI: the core runs)
GUEST_ARGS = {"guest-nmi": "trace"}  # regions that run the test guest, its command line
RC = ("c", "trace on", "c", "trace off", "c", "quit")
# (0).[86917733] [0x000000102874] 0008:0000000000102874 (nmi_host_entry+4): push rbx ; 53
LINE_RE = re.compile(r"^\((\d+)\)\.\[(\d+)\] \[0x([0-9a-f]+)\] [0-9a-f]+:([0-9a-f]+) "
                     r"\(([^)]*)\): (.*?)\s*; ([0-9a-f]+)$")


def traced_lines(debugger_log):
    """The instruction lines between the `trace on` and `trace off` commands."""
    out, inside = [], False
    with open(debugger_log, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if line == "trace on":
                inside = True
            elif line == "trace off":
                break
            elif inside and LINE_RE.match(line):
                out.append(line)
    return out


def summarize(lines, syms):
    """(instructions per function, instructions inside the core, function path)."""
    core_lo, core_hi = elfsym.core_range(syms)
    where = elfsym.Symbolizer(syms)

    per_fn = collections.OrderedDict()
    path, in_core = [], 0
    for line in lines:
        m = LINE_RE.match(line)
        linear = int(m.group(4), 16)
        fn = where.function(linear)
        per_fn[fn] = per_fn.get(fn, 0) + 1
        in_core += core_lo <= linear < core_hi
        if not path or path[-1] != fn:
            path.append(fn)
    return per_fn, in_core, path


def trace(kernel, region, workdir, guest=None, timeout=180, symfile=None, cpus=2, exp=None,
          quiet=None):
    """Run `region` in Bochs (the workloads need 2 CPUs): (run_bochs' dict, traced
    lines, symbols).
    Regions with a guest name both kernels in one symbol file; `symfile` is an
    existing one for the others (default: written from the kernel)."""
    module = guest if region in GUEST_ARGS else None
    os.makedirs(workdir, exist_ok=True)
    if module:
        symfile = os.path.join(workdir, "hv+guest.sym")
        syms = elfsym.write_bochs_symbols(symfile, kernel, module)
    else:
        syms = elfsym.symbols(kernel)
    cmdline = REGIONS[region].format(exp=exp or DEFAULT_EXP)
    if region == "vmx-exp":
        cpus = 1
    r = bochs.run_bochs(kernel, cmdline, workdir, cpus=cpus, timeout=timeout,
                        rc_commands=RC, symbols=symfile, module=module,
                        module_args=GUEST_ARGS.get(region, ""), quiet=quiet)
    lines = traced_lines(r["files"]["debugger.log"]) \
        if os.path.exists(r["files"]["debugger.log"]) else []
    return r, lines, syms


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kernel", required=True)
    ap.add_argument("--symbols", help="Bochs symbol file (default: made from the kernel)")
    ap.add_argument("--region", default="nmi", choices=sorted(REGIONS))
    ap.add_argument("--workdir", default="build/trace")
    ap.add_argument("--timeout", type=float, default=180)
    ap.add_argument("--guest", help="the test guest, for regions that run one")
    ap.add_argument("--exp", type=int, help=f"vmx-exp: the experiment (default {DEFAULT_EXP})")
    a = ap.parse_args()

    if a.region in GUEST_ARGS and not a.guest:
        sys.exit(f"trace: region {a.region} needs --guest")
    r, lines, syms = trace(a.kernel, a.region, a.workdir, a.guest, a.timeout, a.symbols,
                           exp=a.exp)
    if not (r["result"] or "").startswith("RESULT: PASS"):
        sys.stdout.write(r["serial"])
        sys.exit(f"trace: the traced run failed ({r['result'] or 'no RESULT line'})")
    if not lines:
        sys.exit(f"trace: no traced instructions in {r['files']['debugger.log']}")
    trace_path = os.path.join(a.workdir, "trace.txt")
    with open(trace_path, "w") as f:
        f.write("\n".join(lines) + "\n")

    per_fn, in_core, path = summarize(lines, syms)
    total = sum(per_fn.values())
    print(f"trace region {a.region}: {total} instructions on CPU "
          f"{LINE_RE.match(lines[0]).group(1)} ({r['wall']:.1f} s wall)")
    print(f"  inside the NMI core: {in_core}; platform and stubs: {total - in_core}")
    print("  instructions per function (first seen first):")
    for fn, n in per_fn.items():
        print(f"    {n:6d}  {fn}")
    print("  path: " + " -> ".join(path))
    print(f"  trace: {trace_path}")


if __name__ == "__main__":
    main()
