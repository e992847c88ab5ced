"""Which cells of two runs of the same sets ended differently, and by how much.

    python scripts/cell-differences.py RESULTS_A RESULTS_B [--tol 1e-6] [--by-score]

RESULTS_A / RESULTS_B are output folders of `saebench run` (the records of their last run; e.g. the
native and the emulated run of ``bash scripts/other-machine-verdicts.sh SETS FAMILY float64``).
Cells are matched by (set, architecture, mode, seed). For each (set, architecture, mode) it prints
how many seeds differ, in steps trained or in some recorded score by more than ``--tol``, and the
largest score difference; then one line per differing cell with its steps and headline scores.
Descriptive scores that count things (``l0``, ``dead_fraction``) are compared like the others.
``--by-score`` prints instead how many cells trained the same number of steps and, per score,
the largest difference over the trained SAEs and over all cells (docs/results.md, "On another
machine"). Last, for each run, what its cells trained on (processor, torch's CPU capability, the
kernel settings that were set, threads, dtype: the records' ``training`` fields), since
another processor or thread count is the usual reason two runs of a cell end differently.
Used to say which cells training amplified rounding in (docs/results.md, docs/limitations.md).
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

SHOWN = ("reconstruction.explained_variance", "reconstruction.mse", "ground_truth.recovery", "ground_truth.mcc")


def load(folder: Path) -> dict[tuple[str, str, str, int], tuple[int, dict[str, float]]]:
    """(set, arch, mode, seed) -> (steps, {metric.score: value}) of the folder's records, read as
    the leaderboard reads them (``leaderboard.inputs.load``: its last run's cells, each verified)."""
    from saebench_sanity.leaderboard.inputs import load as load_records

    cells = {}
    for record in load_records(folder)[1]:
        cell = record["cell"]
        scores = {f"{m['name']}.{k}": float(v) for m in record["metrics"].values() if m.get("status") == "ok"
                  for k, v in m["scores"].items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        cells[(cell["set"], cell["arch"], cell["mode"], int(cell["seed"]))] = (int(record["training"]["steps"]), scores)
    return cells


def environments(folder: Path) -> str:
    """What the folder's cells trained on, e.g. ``450 cells: AMD EPYC, AVX2, 1 thread, float64``
    (one entry per distinct environment, most cells first)."""
    from collections import Counter

    from saebench_sanity.leaderboard.inputs import load as load_records

    seen: Counter[str] = Counter()
    for record in load_records(folder)[1]:
        training = record.get("training") or {}
        kernels = training.get("cpu_kernels")
        where = (", ".join(str(v) if k in ("cpu", "aten") else f"{k}={v}" for k, v in kernels.items()) if kernels
                 else f"{training.get('device') or 'cpu'} (kernels not recorded)")
        threads = training.get("threads")
        seen[", ".join([where, f"{threads} thread{'s' if threads != 1 else ''}" if threads else "threads not recorded",
                        str(training.get("dtype") or record["cell"].get("dtype") or "float32")])] += 1
    return "; ".join(f"{n} cells: {what}" for what, n in seen.most_common())


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("--tol", type=float, default=1e-6, help="a score difference above this counts (default 1e-6)")
    ap.add_argument("--by-score", action="store_true",
                    help="equal step counts, and the largest difference per score (trained SAEs; all cells)")
    args = ap.parse_args(argv)
    from saebench_sanity.errors import DataError

    try:
        a, b = load(args.a), load(args.b)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    both = sorted(set(a) & set(b))
    if not both:
        print(f"error: no cell is in both {args.a}/results and {args.b}/results", file=sys.stderr)
        return 2
    if args.by_score:
        print(f"{sum(a[k][0] == b[k][0] for k in both)} of {len(both)} cells trained the same number of steps")
        largest: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])  # score -> [trained, all]
        for key in both:
            sa, sb = a[key][1], b[key][1]
            for s in set(sa) & set(sb):
                d = abs(sa[s] - sb[s])
                largest[s][1] = max(largest[s][1], d)
                if key[2] == "trained":
                    largest[s][0] = max(largest[s][0], d)
        print(f"  {'score':<48} {'trained':>10} {'all cells':>10}")
        for s in sorted(largest):
            print(f"  {s:<48} {largest[s][0]:>10.4g} {largest[s][1]:>10.4g}")
        print_environments(args.a, args.b)
        return 0
    groups: dict[tuple[str, str, str], list[tuple[float, bool]]] = defaultdict(list)
    lines = []
    for key in both:
        (steps_a, sa), (steps_b, sb) = a[key], b[key]
        common = set(sa) & set(sb)
        worst = max((abs(sa[s] - sb[s]) for s in common), default=0.0)
        differs = steps_a != steps_b or worst > args.tol
        groups[key[:3]].append((worst, differs))
        if differs:
            shown = "  ".join(f"{s.split('.')[1]} {sa[s]:.4f} / {sb[s]:.4f}" for s in SHOWN if s in common)
            lines.append(f"  {'/'.join(key[:3])}/s{key[3]}: steps {steps_a} / {steps_b}  {shown}")
    print(f"{len(both)} cells in both runs; {len(lines)} differ (steps, or a score by more than {args.tol:g})"
          + (f"; {len(set(a) - set(b))} only in the first, {len(set(b) - set(a))} only in the second"
             if set(a) ^ set(b) else ""))
    for group, seeds in groups.items():
        n = sum(d for _, d in seeds)
        print(f"  {'/'.join(group):<48} {n} of {len(seeds)} seeds differ; largest score difference "
              f"{max(w for w, _ in seeds):.1e}")
    if lines:
        print("\n".join(lines))
    print_environments(args.a, args.b)
    return 0


def print_environments(a: Path, b: Path) -> None:
    print("trained on:")
    for folder in (a, b):
        print(f"  {folder}: {environments(folder)}")


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
