"""What every suite of tests/run_tests.py shares: the verdict lines and their count,
running a command, building a variant, a scenario's expected verdicts, one fuzz
input's verdict."""
import os
import re
import subprocess

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
VARIANTS = ["final", "coalescing", "racy-counter", "reentrant-loop"]
RESULTS = {"PASS": 0, "FAIL": 0, "SKIP": 0}


def verdict(kind, name, why=""):
    RESULTS[kind] += 1
    print(f"{kind} {name}" + (f": {why}" if why else ""), flush=True)


def run(cmd, timeout=600, env=None):
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                           errors="replace")
        return p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        return 124, out + f"\n(timed out after {timeout} s)"


def build(variant, *targets, flavour=None):
    """Build targets of build/<variant><suffix>/; flavour is one of FLAVOURS (None: the
    shipped build)."""
    suffix, make_vars = FLAVOURS[flavour]
    rc, out = run(["make", "-s", f"VARIANT={variant}"] + make_vars
                  + [f"build/{variant}{suffix}/{t}" for t in targets])
    if rc != 0:
        verdict("FAIL", f"build {variant}{suffix}: {' '.join(targets)}",
                out.strip().splitlines()[-1] if out.strip() else "")
        return False
    return True


# The builds other than the shipped one that make test covers: (directory suffix,
# make variables).  The Makefile names the directories (build/<variant><suffix>/).
FLAVOURS = {
    None: ("", []),
    "clang": ("-clang", ["HV_CC=clang"]),
    "san": ("-address-undefined", ["SANITIZE=address,undefined"]),
}


def relay(out, prefix=""):
    """Count the PASS/FAIL/SKIP lines a sub-suite printed."""
    seen = 0
    for line in out.splitlines():
        m = re.match(r"(PASS|FAIL|SKIP) (.*)", line)
        if m:
            verdict(m.group(1), prefix + m.group(2))
            seen += 1
    return seen


def expectations(path, flavour=None):
    """The `# expect:` verdicts, overridden for a build flavour by its
    `# expect[flavour]:` line (the machine code, hence the verdict, can differ)."""
    want, override = {}, {}
    with open(path) as f:
        for line in f:
            m = re.match(r"#\s*expect(?:\[([\w-]+)\])?:\s*(.*)", line)
            if m and (m.group(1) is None and not want):
                want = dict(kv.split("=") for kv in m.group(2).split())
            elif m and m.group(1) == flavour:
                override.update(kv.split("=") for kv in m.group(2).split())
    return dict(want, **override)


def replay_input(variant, path, suffix=""):
    rc, out = run([f"build/{variant}{suffix}/fuzz_nmi", "-handle_usr1=0", "-handle_usr2=0", path],
                  timeout=120)
    m = re.search(r"NMI VIOLATION \[[^]]*\]: (.*)", out)
    # A sanitizer's report is a failure of the harness, never a verdict on the core.
    san = re.search(r"(ERROR: AddressSanitizer: .*|runtime error: .*)", out)
    return rc, (m.group(1) if m else None), (san.group(1) if san else None)
