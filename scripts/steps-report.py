"""How long the members of a committed board trained, from its records.

    python scripts/steps-report.py leaderboards/results/synthetic [more results folders ...]
    python scripts/steps-report.py --by-mode leaderboards/results/real
    python scripts/steps-report.py --rising leaderboards/results/synthetic
    python scripts/steps-report.py --seconds leaderboards/results/real

For every results folder: per activation set, the members that take optimizer steps (``trains``),
how many ended level / undecided / improving (``training.convergence.state``), the median steps,
how many ran to their ``max_steps`` and how many stopped early before the rule's earliest step
(``convergence.stopped_too_early``: records made before that rule; ``saebench run`` trains those
cells again). ``--by-mode``: instead, per set a markdown table of the mean steps over seeds per
architecture (rows) and training mode (columns), with each cell's maximum. ``--rising``: per set,
how many members stopped early as level while the interval of some curve (loss, MSE, recovery)
still lay wholly above zero: improving for sure, but by less than the rule's tolerance per window
(``training.convergence.curves.NAME.lo``), with the largest such improvement. ``--seconds``: the
records' seconds, per folder: ``training.seconds`` and ``training.steps`` summed over the cells, and
per metric the seconds summed, their share of all metric seconds, the median cell and the two
largest (a worker's first cell pays what it caches for the rest). Reads only the
per-cell records of the folder's last run, read as the leaderboard reads them.
"""

from __future__ import annotations

import statistics
import sys
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

from saebench_sanity.training.convergence import stopped_too_early


def _records(folder: Path) -> tuple[dict, list[dict]]:
    """``(run.json, records)`` as the leaderboard reads them (``leaderboard.inputs.load``: the last
    run's cells, each record verified)."""
    from saebench_sanity.leaderboard.inputs import load

    run, records, _ = load(folder)
    return run, records


def _trained(records: list[dict]):
    """``(record, cell, training)`` of every record whose cell takes optimizer steps."""
    for rec in records:
        cell, training = rec.get("cell") or {}, rec.get("training") or {}
        if cell.get("trains", True) and training:
            yield rec, cell, training


def report(folder: Path) -> list[str]:
    per_set: dict[str, list[tuple[int, int, str]]] = defaultdict(list)
    too_early: dict[str, int] = defaultdict(int)
    for _, cell, training in _trained(_records(folder)[1]):
        state = (training.get("convergence") or {}).get("state", "?")
        per_set[cell["set"]].append((int(training.get("steps", 0)), int(cell["training"]["max_steps"]), state))
        budget = SimpleNamespace(max_steps=cell["training"]["max_steps"], min_steps=cell["training"].get("min_steps", 0))
        too_early[cell["set"]] += stopped_too_early(training, budget)
    lines = []
    for name, rows in per_set.items():
        states = {s: sum(1 for _, _, st in rows if st == s) for s in ("level", "undecided", "improving")}
        at_max = sum(1 for steps, cap, _ in rows if steps >= cap)
        lines.append(f"{folder.name:<14} {name:<22} members {len(rows):>3}  level {states['level']:>3}  "
                     f"undecided {states['undecided']:>3}  improving {states['improving']:>3}  "
                     f"median steps {statistics.median(s for s, _, _ in rows):>7.0f}  at max_steps {at_max:>3} "
                     f"(max {max(c for _, c, _ in rows)})  stopped before the earliest step {too_early[name]:>3}")
    return lines


def rising(folder: Path) -> list[str]:
    """Members stopped early as level although some curve's interval lies above zero."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    largest: dict[str, tuple[float, str]] = {}
    for _, cell, training in _trained(_records(folder)[1]):
        conv = training.get("convergence") or {}
        if conv.get("state") != "level" or int(training.get("steps", 0)) >= int(cell["training"]["max_steps"]):
            continue
        name = cell["set"]
        counts[name][0] += 1
        up = {c: float(v["rel_improvement"]) for c, v in (conv.get("curves") or {}).items()
              if (v.get("lo") or 0) > 0 and v.get("rel_improvement") is not None}
        if up:
            counts[name][1] += 1
            curve, rel = max(up.items(), key=lambda kv: kv[1])
            label = f"{cell['arch']}/{cell['mode']}/s{cell['seed']} {curve} {rel:.1%} at step {training['steps']}"
            if name not in largest or rel > largest[name][0]:
                largest[name] = (rel, label)
    return [f"{folder.name:<14} {name:<22} stopped early as level {n:>3}  of them still improving {k:>3}"
            + (f"  (largest: {largest[name][1]})" if name in largest else "") for name, (n, k) in counts.items()]


def _run_order(run: dict) -> dict[tuple[str, str], int]:
    """Position of each architecture and mode in the run's config (the board's order)."""
    cfg = run.get("config") or {}
    order = {("arch", a): i for i, a in enumerate(cfg.get("architectures") or [])}
    order.update({("mode", m): i for i, m in enumerate(cfg.get("modes") or [])})
    return order


def by_mode(folder: Path) -> list[str]:
    steps: dict[str, dict[tuple[str, str], list[int]]] = defaultdict(lambda: defaultdict(list))
    caps: dict[str, set[tuple[str, int]]] = defaultdict(set)
    # per (set, arch): training wall time of each cohort (its longest member's ``seconds``: a
    # member's seconds run from the cohort's start) and the metric seconds of every cell
    cohort_s: dict[str, dict[tuple[str, int], float]] = defaultdict(lambda: defaultdict(float))
    metric_s: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    run, records = _records(folder)
    for rec in records:
        cell = rec.get("cell") or {}
        metric_s[cell.get("set", "?")][cell.get("arch", "?")] += sum(
            float(e.get("seconds") or 0) for e in (rec.get("metrics") or {}).values())
    order = _run_order(run)
    for _, cell, training in _trained(records):
        steps[cell["set"]][(cell["arch"], cell["mode"])].append(int(training.get("steps", 0)))
        caps[cell["set"]].add((cell["arch"], int(cell["training"]["max_steps"])))
        key = (cell["arch"], int(cell["seed"]))
        cohort_s[cell["set"]][key] = max(cohort_s[cell["set"]][key], float(training.get("seconds") or 0))
    lines = []
    for name, table in steps.items():
        modes = sorted(dict.fromkeys(m for _, m in table), key=lambda m: order.get(("mode", m), 99))
        archs = sorted(dict.fromkeys(a for a, _ in table), key=lambda a: order.get(("arch", a), 99))
        cap = dict(caps[name])
        lines += [f"{name} (mean steps over seeds; maximum per architecture in brackets; seconds: the "
                  "cohorts' training wall times and every cell's metric times, summed over seeds)", "",
                  "| architecture | " + " | ".join(modes) + " | training s | metrics s |",
                  "|---" * (len(modes) + 3) + "|"]
        for arch in archs:
            vals = [table.get((arch, m)) for m in modes]
            train_s = sum(v for (a, _), v in cohort_s[name].items() if a == arch)
            lines.append(f"| {arch} ({cap[arch]:,}) | " + " | ".join(
                f"{statistics.mean(v):.0f}" if v else "" for v in vals)
                + f" | {train_s:,.0f} | {metric_s[name][arch]:,.0f} |")
        lines.append("")
    return lines


def seconds(folder: Path) -> list[str]:
    records = _records(folder)[1]
    train_s = sum(float((r.get("training") or {}).get("seconds") or 0) for r in records)
    steps = sum(int((r.get("training") or {}).get("steps") or 0) for r in records)
    per_metric: dict[str, list[float]] = defaultdict(list)
    for rec in records:
        for m in (rec.get("metrics") or {}).values():
            if m.get("seconds"):
                per_metric[m["name"]].append(float(m["seconds"]))
    total = sum(sum(v) for v in per_metric.values())
    lines = [f"{folder.name}: {len(records)} cells, training.seconds summed {train_s:,.0f} s over {steps:,} steps; "
             f"metric seconds summed {total:,.0f} s"]
    for name, vals in sorted(per_metric.items()):
        top = ", ".join(f"{v:.1f}" for v in sorted(vals)[-2:])
        lines.append(f"  {name:<22} {sum(vals):>9,.0f} s  {100 * sum(vals) / total:>4.0f}%  median {statistics.median(vals):>6.2f} s  "
                     f"largest {top}")
    return lines


def main(argv: list[str]) -> int:
    mode_table, rising_only, seconds_only = "--by-mode" in argv, "--rising" in argv, "--seconds" in argv
    argv = [a for a in argv if a not in ("--by-mode", "--rising", "--seconds")]
    if not argv:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    from saebench_sanity.leaderboard.inputs import print_reports

    return print_reports(argv, lambda folder: by_mode(folder) if mode_table else rising(folder) if rising_only
                         else seconds(folder) if seconds_only else report(folder))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
