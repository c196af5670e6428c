"""Write the fuzzer's seed corpus (corpus/fuzz/) from readable schedules.

    python3 -m scripts.mkseeds [OUTDIR]

The byte format is fuzz/decode.c's.  Which value of a step's first byte selects
which operation is read from the decoder itself: `make build/final/fuzz_ops`
(scripts/fuzz_ops.c) decodes every value and prints the operation it gives, and a
seed uses the first value for each operation.  Each seed is one meaningful
situation, not a finding.
"""
import os
import subprocess
import sys

OPS_TOOL = "build/final/fuzz_ops"


def decoder_ops(tool=OPS_TOOL):
    """{operation name: the smallest `a >> 2` the decoder maps to it}."""
    subprocess.run(["make", "-s", tool], check=True)
    out = subprocess.run([os.path.abspath(tool)], check=True, stdout=subprocess.PIPE,
                         text=True).stdout
    ops = {}
    for line in out.splitlines():
        value, name = line.split()
        ops.setdefault(name, int(value))
    return ops


SEEDS = {
    "crit": (1, ["cpu0 crit"]),
    "crit-nmi-inside": (1, ["cpu0 crit @3"]),
    "masked-nmi-drain": (1, ["cpu0 mask", "cpu0 nmi", "cpu0 unmask"]),
    "masked-burst": (1, ["cpu0 mask", "cpu0 nmi x3", "cpu0 unmask @5"]),
    "guest-nmi": (1, ["cpu0 enter", "cpu0 nmi", "cpu0 giret", "cpu0 nmi x2", "cpu0 giret"]),
    "guest-blocked": (1, ["cpu0 enter", "cpu0 exit", "cpu0 block", "cpu0 enter", "cpu0 nmi",
                          "cpu0 exit", "cpu0 unblock @4", "cpu0 enter"]),
    "quiesce": (2, ["cpu1 crit", "cpu0 quiesce", "cpu1 run", "cpu0 run"]),
    "quiesce-flush-guest": (2, ["cpu1 enter", "cpu0 quiesce flush", "cpu1 run", "cpu0 run"]),
    "quiesce-masked": (2, ["cpu1 mask", "cpu0 quiesce", "cpu1 unmask @2", "cpu0 run"]),
    "two-quiesce": (2, ["cpu0 quiesce", "cpu1 quiesce", "cpu0 run", "cpu1 run"]),
    "delivery-fault": (1, ["cpu0 enter", "cpu0 fault", "cpu0 nmi", "cpu0 nmi", "cpu0 giret"]),
}


def encode(ncpus, steps, ops):
    out = bytearray([ncpus - 1])
    for text in steps:
        words = text.split()
        cpu = int(words[0][3:])
        op = words[1]
        a = (ops[op] << 2) | cpu
        b = 0
        ats = [int(w[1:]) for w in words[2:] if w.startswith("@")]
        if op == "nmi":
            b = int(words[2][1:]) - 1 if len(words) > 2 else 0
        elif op == "quiesce":
            b = 1 if "flush" in words else 0
        elif ats:
            b = 0x80 | (ats[0] - 1) | (0x40 if len(ats) > 1 else 0)
        out += bytes([a, b])
        if len(ats) > 1:
            out.append(ats[1] - 1)
    return bytes(out)


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else "corpus/fuzz"
    os.makedirs(outdir, exist_ok=True)
    ops = decoder_ops()
    for name, (ncpus, steps) in SEEDS.items():
        with open(os.path.join(outdir, name + ".bin"), "wb") as f:
            f.write(encode(ncpus, steps, ops))
    print(f"{len(SEEDS)} seeds in {outdir}/")


if __name__ == "__main__":
    main()
