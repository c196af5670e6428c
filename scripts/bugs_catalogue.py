"""The bug catalogue (tests/bugs/*.patch): reading it, and a scratch copy of the
repository in which one bug at a time is applied to hv/nmi_core.c and built.

A bug is a unified diff against hv/nmi_core.c (patch -p1 from the repository root)
with a header before the diff, one field a line:

    Thinking: what its author might have been thinking
    Caught-by: the law of hv/nmi_books.c, NMI_ASSERT or simulator check that should catch it
    Entry: the entry point(s) it touches
    Equivalent: (optional) why no execution can tell it from final

Used by python3 -m scripts.bugs (make bench-bugs) and tests/suite_bugs.py.
"""
import glob
import hashlib
import os
import shutil
import subprocess

BUGS_DIR = os.path.join("tests", "bugs")
REQUIRED = ("Thinking", "Caught-by", "Entry")
OPTIONAL = ("Equivalent",)
CORE = os.path.join("hv", "nmi_core.c")


class Bug:
    def __init__(self, path):
        self.path = os.path.abspath(path)
        self.name = os.path.basename(path)[:-len(".patch")]
        self.fields, self.problems = read_header(path)

    @property
    def equivalent(self):
        return "Equivalent" in self.fields


def read_header(path):
    """The header's fields and what is wrong with them: every line before the diff
    (the first '--- ' or 'diff ' line) is 'Field: value' with a known field, each
    required field once, the optional ones at most once."""
    fields, problems = {}, []
    with open(path) as f:
        lines = f.read().splitlines()
    body = False
    for line in lines:
        if line.startswith(("--- ", "diff ")):
            body = True
            break
        if not line.strip():
            continue
        key, sep, value = line.partition(": ")
        if not sep or key not in REQUIRED + OPTIONAL:
            problems.append(f"not a header field: {line[:60]!r}")
        elif key in fields:
            problems.append(f"{key} twice")
        elif not value.strip():
            problems.append(f"{key} is empty")
        else:
            fields[key] = value.strip()
    problems += [f"no {k} field" for k in REQUIRED if k not in fields]
    if not body:
        problems.append("no diff")
    return fields, problems


def load(root, names=None):
    """Every bug of the catalogue (sorted by name), or the named ones; an unknown
    name is a ValueError."""
    bugs = [Bug(p) for p in sorted(glob.glob(os.path.join(root, BUGS_DIR, "*.patch")))]
    if names:
        known = {b.name: b for b in bugs}
        missing = [n for n in names if n not in known]
        if missing:
            raise ValueError(f"no such bug in {BUGS_DIR}/: {', '.join(missing)}")
        bugs = [known[n] for n in names]
    return bugs


def run(cmd, cwd, timeout=900, env=None):
    """(exit status, stdout + stderr); 124 on a timeout."""
    try:
        p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, errors="replace",
                           timeout=timeout, env=env)
        return p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired:
        return 124, f"(timed out after {timeout} s)"


class Scratch:
    """A copy of the repository's tracked files under `path` (made once, kept between
    runs), in which hv/nmi_core.c is the repository's own or one bug's."""

    def __init__(self, root, path):
        self.root = os.path.abspath(root)
        self.path = os.path.abspath(path)
        with open(os.path.join(self.root, CORE), "rb") as f:
            self.pristine = f.read()
        self.core_hash = hashlib.sha256(self.pristine).hexdigest()[:16]
        self._copy()

    def _copy(self):
        """Bring the copy up to date with the repository's tracked files (their
        working-tree contents), leaving build/, corpus/grown/ and findings/ alone."""
        out = subprocess.run(["git", "ls-files", "-z"], cwd=self.root, capture_output=True,
                             check=True).stdout.decode()
        for rel in filter(None, out.split("\0")):
            src, dst = os.path.join(self.root, rel), os.path.join(self.path, rel)
            if not os.path.isfile(src):
                continue  # deleted in the working tree
            if os.path.isfile(dst) and same(src, dst):
                continue  # unchanged: keep its mtime, so make rebuilds nothing
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copy(src, dst)  # a new mtime: newer than anything built from the old copy

    def reset(self):
        """The repository's hv/nmi_core.c, written afresh (a new mtime, so make
        rebuilds the core after a bug's)."""
        with open(os.path.join(self.path, CORE), "wb") as f:
            f.write(self.pristine)

    def apply(self, bug):
        """Reset, then apply the bug: (ok, patch's output)."""
        self.reset()
        rc, out = run(["patch", "-p1", "--forward", "--batch", "--no-backup-if-mismatch",
                       "-i", bug.path], self.path)
        for junk in glob.glob(os.path.join(self.path, "hv", "nmi_core.c.r*")):
            os.remove(junk)
        return rc == 0, out.strip()

    def build(self, *targets):
        """make -s build/final/<target>...: (ok, the last lines of its output)."""
        rc, out = run(["make", "-s", "VARIANT=final"] + [f"build/final/{t}" for t in targets],
                      self.path)
        return rc == 0, "\n".join(out.strip().splitlines()[-5:])


def same(a, b):
    if os.path.getsize(a) != os.path.getsize(b):
        return False
    with open(a, "rb") as f, open(b, "rb") as g:
        return f.read() == g.read()
