"""Prove that the core's machine code is the same in every binary that links it.

Usage: python3 -m scripts.check_identity CORE_OBJECT BINARY...

For every function of CORE_OBJECT's nmi_core_text section, finds it in each
BINARY and compares its bytes.  Fields the linker patches (the object's
relocations) are compared by meaning instead: each must resolve to the symbol
the relocation names (directly or through the PLT stub of a shared library's
function), or, for string constants, to the same bytes.  Prints one
PASS/FAIL line per binary; exits 1 on any difference.
"""
import struct
import sys

SHT_SYMTAB, SHT_RELA, SHT_DYNSYM = 2, 4, 11
R_X86_64_GLOB_DAT, R_X86_64_JUMP_SLOT = 6, 7
STT_FUNC = 2
R_X86_64_64, R_X86_64_PC32, R_X86_64_32, R_X86_64_32S, R_X86_64_PLT32 = 1, 2, 10, 11, 4
FIELD = {R_X86_64_64: 8, R_X86_64_PC32: 4, R_X86_64_32: 4, R_X86_64_32S: 4, R_X86_64_PLT32: 4}


class Elf:
    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:
            self.data = f.read()
        d = self.data
        if d[:4] != b"\x7fELF" or d[4] != 2:
            raise ValueError(f"{path}: not an ELF64 file")
        self.etype = struct.unpack_from("<H", d, 16)[0]
        shoff, = struct.unpack_from("<Q", d, 40)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", d, 58)
        self.sections = []
        for i in range(shnum):
            name, typ, flags, addr, off, size, link, info, align, entsize = \
                struct.unpack_from("<IIQQQQIIQQ", d, shoff + i * shentsize)
            self.sections.append(dict(name=name, type=typ, addr=addr, off=off, size=size,
                                      link=link, info=info, entsize=entsize))
        strtab = self.sections[shstrndx]
        for s in self.sections:
            s["name"] = self.cstr(strtab["off"] + s["name"])
        self.symbols = []
        for s in self.sections:
            if s["type"] != SHT_SYMTAB:
                continue
            names = self.sections[s["link"]]
            for k in range(s["size"] // 24):
                n, info, other, shndx, value, size = struct.unpack_from("<IBBHQQ", d, s["off"] + k * 24)
                self.symbols.append(dict(name=self.cstr(names["off"] + n), type=info & 15,
                                         shndx=shndx, value=value, size=size))

        # Dynamic relocations: which GOT slot holds which shared-library symbol, so a
        # call through the PLT (a core built by clang calls memset, memcpy) can be
        # followed to the name it reaches.
        self.got = {}
        for s in self.sections:
            if s["type"] != SHT_RELA or self.sections[s["link"]]["type"] != SHT_DYNSYM:
                continue
            dynsym = self.sections[s["link"]]
            names = self.sections[dynsym["link"]]
            for k in range(s["size"] // 24):
                off, info, _ = struct.unpack_from("<QQq", d, s["off"] + k * 24)
                if info & 0xffffffff in (R_X86_64_GLOB_DAT, R_X86_64_JUMP_SLOT):
                    n, = struct.unpack_from("<I", d, dynsym["off"] + (info >> 32) * 24)
                    self.got[off] = self.cstr(names["off"] + n)

    def plt_target(self, addr):
        """The symbol a PLT stub at addr jumps to (jmp *slot(%rip), possibly after
        endbr64 and a bnd prefix), or None."""
        stub = self.read(addr, 16) or b""
        i = stub.find(b"\xff\x25")
        if i < 0 or i > 6:
            return None
        disp, = struct.unpack_from("<i", stub, i + 2)
        return self.got.get(addr + i + 6 + disp)

    def cstr(self, off):
        return self.data[off:self.data.index(b"\0", off)].decode()

    def section(self, name):
        return next((i, s) for i, s in enumerate(self.sections) if s["name"] == name)

    def read(self, addr, n):
        """Bytes at a virtual address of a linked binary."""
        for s in self.sections:
            if s["addr"] and s["addr"] <= addr and addr + n <= s["addr"] + s["size"] and s["type"] != 8:
                o = s["off"] + addr - s["addr"]
                return self.data[o:o + n]
        return None


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    obj = Elf(sys.argv[1])
    idx, text = obj.section("nmi_core_text")
    code = obj.data[text["off"]:text["off"] + text["size"]]
    funcs = [s for s in obj.symbols if s["type"] == STT_FUNC and s["shndx"] == idx]
    relocs = []
    for s in obj.sections:
        if s["type"] == SHT_RELA and s["info"] == idx:
            symtab = s["link"]
            for k in range(s["size"] // 24):
                off, info, addend = struct.unpack_from("<QQq", obj.data, s["off"] + k * 24)
                sym = obj.symbols[info >> 32]
                relocs.append((off, info & 0xffffffff, addend, sym))
    bad = 0
    for path in sys.argv[2:]:
        binary = Elf(path)
        problems = []
        for fn in funcs:
            cands = [s for s in binary.symbols if s["name"] == fn["name"] and s["type"] == STT_FUNC
                     and s["size"] == fn["size"]]
            if not cands:
                problems.append(f"{fn['name']}: missing")
                continue
            base = cands[0]["value"]
            got = binary.read(base, fn["size"])
            want = bytearray(code[fn["value"]:fn["value"] + fn["size"]])
            got = bytearray(got or b"")
            mine = [r for r in relocs if fn["value"] <= r[0] < fn["value"] + fn["size"]]
            for off, typ, addend, sym in mine:
                n = FIELD.get(typ)
                if n is None:
                    problems.append(f"{fn['name']}: relocation type {typ} not understood")
                    continue
                at = off - fn["value"]
                field = int.from_bytes(got[at:at + n], "little", signed=typ in (R_X86_64_PC32, R_X86_64_PLT32, R_X86_64_32S))
                place = base + at
                target = field - addend + (place if typ in (R_X86_64_PC32, R_X86_64_PLT32) else 0)
                if sym["name"] and sym["type"] != 3:  # a named symbol, not a section
                    addrs = {s["value"] for s in binary.symbols if s["name"] == sym["name"]}
                    if target not in addrs and binary.plt_target(target) != sym["name"]:
                        problems.append(f"{fn['name']}+{at:#x}: does not reach {sym['name']}")
                else:  # section-relative: compare what it points at (string constants)
                    # The datum is at section + addend (+4 for a PC-relative field,
                    # whose addend is taken from the end of the 4-byte field).
                    adj = 4 if typ in (R_X86_64_PC32, R_X86_64_PLT32) else 0
                    sec = obj.sections[sym["shndx"]]
                    o = sec["off"] + addend + adj
                    expect = obj.data[o:obj.data.index(b"\0", o) + 1] if sec["name"].startswith(".rodata.str") \
                        else obj.data[o:o + 8]
                    if sec["type"] != 8 and binary.read(target + addend + adj, len(expect)) != expect:
                        problems.append(f"{fn['name']}+{at:#x}: points at other data than in the object")
                got[at:at + n] = want[at:at + n] = b"\0" * n
            if got != want:
                first = next(i for i in range(min(len(got), len(want))) if got[i] != want[i]) \
                    if len(got) == len(want) else 0
                problems.append(f"{fn['name']}: bytes differ at +{first:#x}")
        total = sum(f["size"] for f in funcs)
        if problems:
            bad += 1
            print(f"FAIL identity: {path}: " + "; ".join(problems[:5]))
        else:
            print(f"PASS identity: {path}: {len(funcs)} core functions, {total} bytes, "
                  f"{len(relocs)} linker-patched fields, identical to {sys.argv[1]}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
