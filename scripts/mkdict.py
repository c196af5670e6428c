"""Write a libFuzzer dictionary for fuzz_nmi: the byte pairs of one schedule step.

    python3 -m scripts.mkdict OUT.dict

A fuzz input is a CPU-count byte and then two bytes per step (fuzz/decode.c), so the
useful tokens are whole steps: every operation on cpu0, those that can hold an NMI
with one and with two NMIs landing inside, bursts, stop-the-world with and without
flush, and the seed race's shape (mask, NMI, unmask with an NMI inside).  The byte
for each operation comes from the decoder itself (scripts.mkseeds.decoder_ops), so
the dictionary follows decode.c's table.  Used by the fuzzing-service build
(.clusterfuzzlite/build.sh ships it as fuzz_nmi.dict).
"""
import sys

from scripts.mkseeds import decoder_ops, encode

# Operations whose step can hold NMIs landing at core instruction indices.
WITH_NMIS = ["mask", "unmask", "crit", "enter", "exit", "giret", "block", "unblock", "fault"]


def entries(ops):
    """[(name, bytes)]: one step each, without the leading CPU-count byte."""
    out = []

    def add(name, steps):
        out.append((name, encode(1, steps, ops)[1:]))

    for op in sorted(ops):
        if op in ("nmi", "quiesce"):
            continue
        add(op, [f"cpu0 {op}"])
        if op in WITH_NMIS:
            add(f"{op}_nmi", [f"cpu0 {op} @1"])
            add(f"{op}_2nmis", [f"cpu0 {op} @1 @2"])
    for n in range(1, 5):
        add(f"nmi_x{n}", [f"cpu0 nmi x{n}"])
    add("quiesce", ["cpu0 quiesce"])
    add("quiesce_flush", ["cpu0 quiesce flush"])
    add("seed_race", ["cpu0 mask", "cpu0 nmi", "cpu0 unmask @9"])
    return out


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    ops = decoder_ops()
    with open(sys.argv[1], "w") as f:
        f.write("# fuzz_nmi dictionary: one schedule step per entry (python3 -m scripts.mkdict)\n")
        for name, data in entries(ops):
            f.write(f'{name}="' + "".join(f"\\x{b:02x}" for b in data) + '"\n')
    return 0


if __name__ == "__main__":
    sys.exit(main())
