"""Write a libFuzzer dictionary for fuzz_nmi: the bytes of one schedule step.

    python3 -m scripts.mkdict [--format 0|1] OUT.dict

A fuzz input is a CPU-count byte and then a few bytes per step (fuzz/decode.c), so
the useful tokens are whole steps: every operation on cpu0, those that can hold an
NMI with one and with two NMIs landing inside, bursts, stop-the-world with and
without flush, and the seed race's shape (mask, NMI, unmask with an NMI inside).
The byte for each operation comes from the decoder itself
(scripts.mkseeds.decoder_ops), so the dictionary follows decode.c's table.  Used by
the fuzzing-service build (.clusterfuzzlite/build.sh ships it as fuzz_nmi.dict).

Format 1 (the default): the steps' NMIs are breakpoint placements (`@1` is the
first boundary of the step's path, `@1 @2` that and the next), the form every
mutant of fuzz_nmi's mutator has; no entry holds an index marker, which the
mutator would rewrite anyway.  The magic is not an entry: the mutator keeps it in
front of every input, and in the middle of one it is only four step bytes.
`--format 0` writes the dictionary of the format before (index placements).
"""
import sys

from scripts.mkseeds import MAGIC, decoder_ops, encode

# Operations whose step can hold NMIs landing at core instruction indices.
WITH_NMIS = ["mask", "unmask", "crit", "enter", "exit", "giret", "block", "unblock", "fault"]


def entries(ops, fmt=1):
    """[(name, bytes)]: one step each, without the magic and the CPU-count byte."""
    out = []
    head = len(MAGIC) + 1 if fmt == 1 else 1

    def add(name, steps):
        out.append((name, encode(1, steps, ops, fmt)[head:]))

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
    # Format 0's index 9 and format 1's path boundary 12: inside the drain loop.
    add("seed_race", ["cpu0 mask", "cpu0 nmi", "cpu0 unmask @9" if fmt == 0 else "cpu0 unmask @12"])
    return out


def main():
    args, fmt = sys.argv[1:], 1
    if args[:1] == ["--format"] and len(args) > 1:
        fmt, args = int(args[1]), args[2:]
    if len(args) != 1 or fmt not in (0, 1):
        print(__doc__, file=sys.stderr)
        return 2
    ops = decoder_ops()
    with open(args[0], "w") as f:
        f.write(f"# fuzz_nmi dictionary, input format {fmt}: one schedule step per entry "
                "(python3 -m scripts.mkdict)\n")
        for name, data in entries(ops, fmt):
            f.write(f'{name}="' + "".join(f"\\x{b:02x}" for b in data) + '"\n')
    return 0


if __name__ == "__main__":
    sys.exit(main())
