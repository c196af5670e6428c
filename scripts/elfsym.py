# SPDX-License-Identifier: MIT
"""ELF symbols through `nm -n`: address lookups for traces and the symbol file
Bochs' `debug_symbols` reads ("address name" lines of code symbols).

    python3 -m scripts.elfsym -o build/final/hv.sym build/final/hv.elf [guest.elf]

MARKERS is the one list of linker-script symbols (hv/linker.ld,
tests/guest/guest.ld) that are not functions: each shares its address with the
function or data that follows it and would hide that name in a trace.
"""
import argparse
import bisect
import subprocess

MARKERS = frozenset({
    "__load_start", "__load_end", "__bss_start", "__bss_end",
    "__nmi_core_start", "__nmi_core_end", "__start_nmi_core_text", "__stop_nmi_core_text",
})
CODE = "Tt"


def symbols(elf):
    """[(address, name, nm type letter)] in address order."""
    out = subprocess.run(["nm", "-n", elf], check=True, stdout=subprocess.PIPE,
                         text=True).stdout
    syms = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3:
            syms.append((int(parts[0], 16), parts[2], parts[1]))
    return syms


def code_symbols(syms):
    """The functions of `syms`: code symbols, markers dropped, in address order
    (aliases in nm's order: a lookup names the last of them)."""
    return sorted(((a, n) for a, n, k in syms if k in CODE and n not in MARKERS),
                  key=lambda s: s[0])


def core_range(syms):
    """[start, end) of the NMI core's code (the linker script brackets it)."""
    names = {n: a for a, n, _ in syms}
    return names["__nmi_core_start"], names["__nmi_core_end"]


class Symbolizer:
    """Address -> the function it lies in."""

    def __init__(self, syms):
        self.code = code_symbols(syms)
        self.addrs = [a for a, _ in self.code]

    def function(self, addr):
        i = bisect.bisect_right(self.addrs, addr) - 1
        return self.code[i][1] if i >= 0 else "?"


def write_bochs_symbols(path, *elfs):
    """One Bochs symbol file for several kernels (the hypervisor at 1 MiB, the
    guest at 16 MiB); returns all their symbols, in address order."""
    syms = sorted((s for elf in elfs for s in symbols(elf)), key=lambda s: s[0])
    with open(path, "w") as f:
        f.writelines(f"{addr:016x} {name}\n" for addr, name in code_symbols(syms))
    return syms


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("elf", nargs="+")
    ap.add_argument("-o", "--output", required=True, help="the Bochs symbol file to write")
    a = ap.parse_args()
    write_bochs_symbols(a.output, *a.elf)


if __name__ == "__main__":
    main()
