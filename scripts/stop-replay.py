"""Replay the early-stop rule on a board's stored curves: where each member stopped, and where it
would have stopped had the rule not judged some curve.

    python scripts/stop-replay.py leaderboards/results/synthetic
    python scripts/stop-replay.py --without loss --archs topk,batchtopk,matryoshka leaderboards/results/synthetic

Every member that takes optimizer steps stores the curves its rule judged (``training.convergence
.series``); feeding them point by point to the controls training used repeats its stop
(``saebench_sanity.training.replay``), so the first line of the report checks the replay: how many
members stop at the step their record says (all of them unless the records were made under another
rule, or a member's L0 sat within rounding of the matched-L0 controller's freeze edge: 2 of 360 on
the committed synthetic board, a few curve points apart). ``--without CURVE`` (loss, mse or
recovery) replays the rule with that curve left out and reports, per activation set and architecture, the member-steps
as run and as replayed, the cohorts' steps (a cohort runs until its longest member stops) and how
many members would change state (level / undecided / improving, the last read as UNDERTRAINED),
then each such member with its MSE and recovery at both stops.

What it cannot say: the scores of a member stopped earlier (its metrics were measured at the step
it really stopped), so the verdicts such a rule would give need a new run. The seconds it prints
are an estimate: each cohort's ``training.seconds`` scaled by the share of its member-steps kept
(a cohort step's cost grows with its members, with some fixed cost per step that this ignores).
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from saebench_sanity.training.convergence import JUDGED
from saebench_sanity.training.replay import checked_without, replay_stop


def _records(folder: Path) -> list[dict]:
    from saebench_sanity.leaderboard.inputs import load

    return load(folder)[1]


def _members(records: list[dict], archs: set[str] | None):
    for rec in records:
        cell, training = rec.get("cell") or {}, rec.get("training") or {}
        convergence = training.get("convergence") or {}
        if not cell.get("trains", True) or not convergence.get("series") or (archs and cell.get("arch") not in archs):
            continue
        yield cell, training, convergence


def report(folder: Path, without: frozenset[str], archs: set[str] | None) -> list[str]:
    records = _records(folder)
    same, differ = 0, []
    # per (set, arch): [members, member-steps run, member-steps replayed, seconds run, seconds estimate,
    # cohort steps run, cohort steps replayed, state changes]
    rows: dict[tuple[str, str], list[Any]] = defaultdict(lambda: [0, 0, 0, 0.0, 0.0, 0, 0, defaultdict(int)])
    cohorts: dict[tuple[str, str, int], list[tuple[int, int, float]]] = defaultdict(list)
    changed: list[str] = []
    for cell, training, convergence in _members(records, archs):
        as_run = replay_stop(cell["training"], convergence["series"], l0_control=convergence.get("l0_control"))
        steps = int(training.get("steps") or 0)
        if as_run["steps"] == steps:
            same += 1
        else:
            differ.append(f"{cell['set']}/{cell['arch']}/{cell['mode']}/s{cell['seed']}: "
                          f"record {steps}, replay {as_run['steps']}")
        if not without:
            continue
        variant = replay_stop(cell["training"], convergence["series"], l0_control=convergence.get("l0_control"),
                              without=without)
        row = rows[(cell["set"], cell["arch"])]
        row[0] += 1
        row[1] += steps
        row[2] += variant["steps"]
        state = (training.get("convergence") or {}).get("state", "?")
        if state != variant["state"]:
            row[7][f"{state} -> {variant['state']}"] += 1
            changed.append(_change_line(cell, convergence, steps, state, variant))
        cohorts[(cell["set"], cell["arch"], int(cell["seed"]))].append(
            (steps, variant["steps"], float(training.get("seconds") or 0)))
    lines = [f"{folder}: {same + len(differ)} members replayed, {same} stop where their records stopped"
             + (f", {len(differ)} do not" if differ else "")]
    lines += [f"  differs: {d}" for d in differ[:20]] + ([f"  ... and {len(differ) - 20} more"] if len(differ) > 20 else [])
    if not without:
        return lines
    for (set_name, arch, _), members in cohorts.items():
        row = rows[(set_name, arch)]
        run = sum(s for s, _, _ in members)
        seconds = max(sec for _, _, sec in members)  # the cohort's wall time (its longest member's)
        row[3] += seconds
        row[4] += seconds * sum(v for _, v, _ in members) / max(run, 1)
        row[5] += max(s for s, _, _ in members)
        row[6] += max(v for _, v, _ in members)
    lines += ["", f"without {', '.join(sorted(without))}:", "",
              "| set | architecture | members | member-steps (run -> replayed) | cohort steps | "
              "training s (run -> estimate) | state changes |", "|---|---|---|---|---|---|---|"]
    total = [0, 0, 0.0, 0.0]
    for (set_name, arch), row in rows.items():
        changes = ", ".join(f"{k} {v}" for k, v in sorted(row[7].items())) or "none"
        lines.append(f"| {set_name} | {arch} | {row[0]} | {row[1]:,} -> {row[2]:,} ({_pct(row[2], row[1])}) | "
                     f"{row[5]:,} -> {row[6]:,} | {row[3]:,.0f} -> {row[4]:,.0f} | {changes} |")
        total = [total[0] + row[1], total[1] + row[2], total[2] + row[3], total[3] + row[4]]
    lines += ["", f"in all: member-steps {total[0]:,} -> {total[1]:,} ({_pct(total[1], total[0])}), "
                  f"training seconds {total[2]:,.0f} -> about {total[3]:,.0f}"]
    if changed:
        lines += ["", "members whose state changes (stored curve values at the record's stop -> at the replay's):"]
        lines += [f"  {c}" for c in changed]
    return lines


def _change_line(cell: dict[str, Any], convergence: dict[str, Any], steps: int, state: str,
                 variant: dict[str, Any]) -> str:
    """One member whose state the variant changes: steps and state, then the MSE and (where
    stored) recovery at the record's stop and at the variant's."""
    from saebench_sanity.training.convergence import unpack_curve

    values = []
    for name in ("mse", "recovery"):
        if name in convergence["series"]:
            curve = dict(unpack_curve(convergence["series"][name]))
            if steps in curve and variant["steps"] in curve:
                values.append(f"{name} {curve[steps]:.4g} -> {curve[variant['steps']]:.4g}")
    return (f"{cell['set']}/{cell['arch']}/{cell['mode']}/s{cell['seed']}: {steps:,} {state} -> "
            f"{variant['steps']:,} {variant['state']}" + (f"; {', '.join(values)}" if values else ""))


def _pct(new: float, old: float) -> str:
    return f"{new - old:+.1%}" if old == 0 else f"{(new - old) / old:+.1%}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--without", default="", help="comma-separated curves the replay leaves out: "
                        + ", ".join(JUDGED))
    parser.add_argument("--archs", default="", help="comma-separated architectures (default: every one)")
    args = parser.parse_args(argv)
    try:
        without = checked_without([c for c in args.without.split(",") if c])
    except ValueError as exc:
        print(f"error: --without {exc}", file=sys.stderr)
        return 2
    from saebench_sanity.leaderboard.inputs import print_reports

    archs = {a for a in args.archs.split(",") if a} or None
    return print_reports(args.folders, lambda folder: report(folder, without, archs))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
