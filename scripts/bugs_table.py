"""The table of python3 -m scripts.bugs: a row per bug, a column per configuration,
each column's median and maximum, and the goals (docs/fuzzing.md, "The bug
catalogue")."""
import statistics

FUZZ_CONFIGS = ["fuzz-empty-j1", "fuzz-empty-j2", "fuzz-grown-j1", "fuzz-grown-j2"]
GOAL_MEDIAN, GOAL_MAX, GOAL_EXPLORE = 0.5, 5.0, 0.90


def cell(runs, fuzz):
    """One bug's entry in one column, and its time (None: not found or an error).
    A fuzz column is the median over the seeds that found it, with the maximum,
    and 'k/n' when only some seeds found it."""
    if not runs:
        return ".", None
    found = [v for k, v in runs if k == "found"]
    errors = [v for k, v in runs if k == "error"]
    if not found:
        return ("ERR" if errors else "-"), None
    if not fuzz:
        return f"{found[0]:.1f}", found[0]
    med = statistics.median(found)
    text = f"{med:.2f}/{max(found):.2f}"
    if len(found) < len(runs):
        text += f" {len(found)}/{len(runs)}"
    return text, med


def worst(runs):
    """The time a configuration needed for this bug at worst (None when a run of it
    did not find it)."""
    if not runs or any(k != "found" for k, _ in runs):
        return None
    return max(v for _, v in runs)


def table(bugs, configs, results, args):
    """Print the table and the goals; True when every goal measured here is met."""
    width = max([len(b.name) for b in bugs] + [4]) + (2 if any(b.equivalent for b in bugs) else 0)
    cols = {c: max(len(c), 11) for c in configs}
    print("\n" + "bug".ljust(width) + "  " + "  ".join(c.rjust(cols[c]) for c in configs))
    times = {c: [] for c in configs}
    for b in bugs:
        res = results.get(b.name)
        if res is None:
            continue
        row = []
        for c in configs:
            text, t = cell(res.get(c, []), c in FUZZ_CONFIGS)
            if t is not None:
                times[c].append(t)
            row.append(text.rjust(cols[c]))
        name = b.name + (" =" if b.equivalent else "")
        print(name.ljust(width) + "  " + "  ".join(row))
    for label, f in (("median", statistics.median), ("max", max)):
        print(label.ljust(width) + "  " + "  ".join(
            (f"{f(times[c]):.2f}" if times[c] else "-").rjust(cols[c]) for c in configs))
    print(f"(fuzz: median/max over {args.seeds} seeds of the seconds to the finding, "
          f"'k/n' when only k of n seeds found it in {args.budget} s; explore, test-sim: "
          f"wall seconds when found; '-' not found; 'ERR' the tool failed; '.' not measured; '=' equivalent, "
          f"not required; test-sim = suites {' '.join(args.suites)})")

    measured = [b for b in bugs if b.name in results]
    real = [b for b in measured if not b.equivalent]
    ok = True
    print("\ngoals (equivalent bugs left out; each over the bugs its column measured):")

    def goal(met, text):
        nonlocal ok
        ok = ok and met
        print(f"  {'met   ' if met else 'MISSED'} {text}")

    for c in configs:
        runs = {b.name: results[b.name][c] for b in real if results[b.name].get(c)}
        if c in FUZZ_CONFIGS:
            missed = [n for n, r in runs.items() if worst(r) is None]
            meds = [statistics.median([v for _, v in r]) for r in runs.values() if worst(r) is not None]
            maxes = [worst(r) for r in runs.values() if worst(r) is not None]
            goal(not missed, f"{c}: every bug found by every seed"
                 + (f" (not: {', '.join(missed)})" if missed else ""))
            med = statistics.median(meds) if meds else None
            goal(med is not None and med <= GOAL_MEDIAN,
                 f"{c}: median {med:.2f} s <= {GOAL_MEDIAN} s" if med is not None else f"{c}: median: none found")
            top = max(maxes) if maxes else None
            goal(top is not None and top <= GOAL_MAX,
                 f"{c}: max {top:.2f} s <= {GOAL_MAX} s" if top is not None else f"{c}: max: none found")
        elif c == "test-sim":
            missed = [n for n, r in runs.items() if worst(r) is None]
            goal(not missed, f"test-sim catches every bug" + (f" (not: {', '.join(missed)})" if missed else ""))
        elif c == "explore":
            n = sum(1 for r in runs.values() if worst(r) is not None)
            share = n / len(runs) if runs else 0.0
            missed = [k for k, r in runs.items() if worst(r) is None]
            goal(share >= GOAL_EXPLORE, f"explore finds {n} of {len(runs)} ({share:.0%}) >= {GOAL_EXPLORE:.0%}"
                 + (f" (not: {', '.join(missed)})" if missed else ""))
    found_eq = [b.name for b in measured if b.equivalent and any(
        k == "found" for c in configs for k, _ in results[b.name].get(c, []))]
    if found_eq:
        print(f"  NOTE   found although marked equivalent (the argument is wrong): {', '.join(found_eq)}")
    return ok
