"""Write the fuzzer's seed corpus (corpus/fuzz/) from readable schedules.

    python3 -m scripts.mkseeds [--format 0|1] [OUTDIR]

The byte format is fuzz/decode.c's.  Which value of a step's first byte selects
which operation is read from the decoder itself: `make build/final/fuzz_ops`
(scripts/fuzz_ops.c) decodes every value and prints the operation it gives, and a
seed uses the first value for each operation.  Each seed is one meaningful
situation, not a finding.

Format 1 (the default) writes `v1-<name>.bin`: the placements are breakpoint
placements, which precise mode lands without single-stepping.  A placement `@N`
is the N-th instruction boundary (N <= 64) of the step's path, the core functions
its operation runs in the order it runs them (decode.c's op_funcs); `@N/F` counts
from the path's function F (0 to 2) instead; `@N:2` is the second time the step
reaches it.  A step's second placement is on the same path, at or after the first.
`@iN` is the index form (the N-th instruction the step executes, stepped).  In
fast mode each is the N-th platform call of the step, as `@N` was in format 0.

`--format 0` writes `<name>.bin` in the format before (every placement in the
index form): the seeds corpus/fuzz/ kept from then, which stay as regression
inputs and are never rewritten (tests/run_tests.py checks that this reproduces
them byte for byte).
"""
import os
import re
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


# Format-0 seeds: kept as they were written (corpus/fuzz/<name>.bin).  The name
# and encode()'s default are the format's, as before format 1, for what reads them
# (tests/unit/test_scripts.py re-encodes these byte for byte).
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

# Format-1 seeds (corpus/fuzz/v1-<name>.bin): the same situations, their NMIs at
# boundaries of the functions the step runs (a path through decode.c's op_funcs
# follows the step's own order, so `@N` is where format 0's `@N` was for straight-
# line code), and a few more.
SEEDS_V1 = dict(SEEDS, **{
    # The drain loop with a second NMI inside it (nmi_unmask, then handle_one).
    "drain-nmi": (1, ["cpu0 mask", "cpu0 nmi", "cpu0 unmask @12"]),
    "drain-nmi-handler": (1, ["cpu0 mask", "cpu0 nmi", "cpu0 unmask @6/1"]),  # handle_one
    "drain-two-nmis": (1, ["cpu0 mask", "cpu0 nmi", "cpu0 unmask @10 @12"]),
    # One placement in the index form, so the marker is in the corpus too.
    "index-form": (1, ["cpu0 crit @i3"]),
})



def decode_h(name):
    """A constant of fuzz/decode.h, where the format's bytes are defined once: a C
    string literal as bytes, or an integer."""
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fuzz",
                           "decode.h")) as f:
        m = re.search(r"#define\s+" + name + r"\s+(\"(?:[^\"\\]|\\.)*\"|0x[0-9a-fA-F]+)", f.read())
    text = m.group(1)
    if text.startswith('"'):
        return text[1:-1].encode("latin-1").decode("unicode_escape").encode("latin-1")
    return int(text, 16)


MAGIC = decode_h("FUZZ_MAGIC")                 # b"NMI\x01"
INDEX_MARKER = decode_h("FUZZ_INDEX_MARKER")   # 0x3F


def parse_v1(word):
    """(N, F, O) of a format-1 placement word `@N[/F][:O]`."""
    body, occ, start = word[1:], 1, 0
    if ":" in body:
        body, o = body.split(":")
        occ = int(o)
    if "/" in body:
        body, f = body.split("/")
        start = int(f)
    assert 1 <= int(body) <= 64 and 0 <= start <= 2 and 1 <= occ <= 2, word
    return int(body), start, occ


def placements_v1(words):
    """The bytes of a step's format-1 breakpoint placements (one or two words),
    after its operation byte: b c, or b c x y."""
    (n1, start, occ1), rest = parse_v1(words[0]), [parse_v1(w) for w in words[1:]]
    assert len(rest) <= 1, words
    slot = {0: 0, 1: 2, 2: 3}[start]          # decode.c's path_of: slots 0, 1 start at 0
    oo = {1: 0, 2: 3}                          # decode.c's v1_occ
    out = bytearray([(0xC0 if rest else 0x40) | oo[occ1] << 4 | slot << 2, n1 - 1])
    for n2, start2, occ2 in rest:
        # The second counts on from the first, on the same path.
        assert start2 == start and n2 >= n1, words
        out += bytes([oo[occ2] << 4, n2 - n1])
    return bytes(out)


def encode(ncpus, steps, ops, fmt=0):
    """The input for a schedule of steps: `cpuN op [xK|flush] [@...]`."""
    out = bytearray(MAGIC if fmt == 1 else b"") + bytes([ncpus - 1])
    for text in steps:
        words = text.split()
        cpu = int(words[0][3:])
        op = words[1]
        a = (ops[op] << 2) | cpu
        ats = [w for w in words[2:] if w.startswith("@")]
        if op == "nmi":
            out += bytes([a, int(words[2][1:]) - 1 if len(words) > 2 else 0])
        elif op == "quiesce":
            out += bytes([a, 1 if "flush" in words else 0])
        elif ats and (fmt == 0 or ats[0].startswith("@i")):
            # The index form: format 0's b has bit 7 set, format 1's follows the marker.
            idx = [int(w.lstrip("@i")) for w in ats]
            assert len(idx) <= 2
            b = (idx[0] - 1) | (0x40 if len(idx) > 1 else 0)
            out += bytes([a, 0x80 | b] if fmt == 0 else [a, INDEX_MARKER, b])
            if len(idx) > 1:
                out.append(idx[1] - 1)
        else:
            out += bytes([a]) + (placements_v1(ats) if ats else bytes([0]))
    return bytes(out)


def main():
    args = sys.argv[1:]
    fmt = 1
    if args[:1] == ["--format"]:
        fmt = int(args[1])
        args = args[2:]
    outdir = args[0] if args else "corpus/fuzz"
    os.makedirs(outdir, exist_ok=True)
    ops = decoder_ops()
    seeds, prefix = (SEEDS_V1, "v1-") if fmt == 1 else (SEEDS, "")
    for name, (ncpus, steps) in seeds.items():
        with open(os.path.join(outdir, prefix + name + ".bin"), "wb") as f:
            f.write(encode(ncpus, steps, ops, fmt))
    print(f"{len(seeds)} format-{fmt} seeds in {outdir}/")


if __name__ == "__main__":
    main()
