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
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from saebench_sanity.training.convergence import JUDGED
from saebench_sanity.training.replay import checked_without, replay_stop


def _members(records: list[dict], archs: set[str] | None):
    for rec in records:
        cell, training = rec.get("cell") or {}, rec.get("training") or {}
        convergence = training.get("convergence") or {}
        if not cell.get("trains", True) or not convergence.get("series") or (archs and cell.get("arch") not in archs):
            continue
        yield cell, training, convergence


@dataclass
class _Row:
    """One (set, architecture) of the ``--without`` table, summed over its cohorts (one per seed)."""

    members: int = 0
    run: int = 0  # member-steps as the records ran them
    replayed: int = 0  # member-steps the variant replay takes
    seconds: float = 0.0  # the cohorts' training seconds
    estimate: float = 0.0  # the same scaled by the member-steps kept
    cohort_run: int = 0  # the cohorts' steps (each its longest member's)
    cohort_replayed: int = 0
    changes: Counter = field(default_factory=Counter)  # "state -> state" counts

    def add_cohort(self, members: list[tuple[int, int, float]]) -> None:
        """``members``: ``(steps as run, steps replayed, training seconds)`` of one cohort's members."""
        run, replayed = sum(s for s, _, _ in members), sum(v for _, v, _ in members)
        seconds = max(sec for _, _, sec in members)  # the cohort's wall time (its longest member's)
        self.members += len(members)
        self.run += run
        self.replayed += replayed
        self.seconds += seconds
        self.estimate += seconds * replayed / max(run, 1)
        self.cohort_run += max(s for s, _, _ in members)
        self.cohort_replayed += max(v for _, v, _ in members)


def report(folder: Path, without: frozenset[str], archs: set[str] | None) -> list[str]:
    from saebench_sanity.leaderboard.inputs import load

    same, differ = 0, []
    rows: dict[tuple[str, str], _Row] = defaultdict(_Row)
    cohorts: dict[tuple[str, str, int], list[tuple[int, int, float]]] = defaultdict(list)
    changed: list[str] = []
    for cell, training, convergence in _members(load(folder)[1], archs):
        as_run = replay_stop(cell["training"], convergence["series"], l0_control=convergence.get("l0_control"))
        steps = int(training.get("steps") or 0)
        if as_run["steps"] == steps:
            same += 1
        else:
            froze = (convergence.get("l0_control") or {}).get("frozen_at")
            differ.append(f"{cell['set']}/{cell['arch']}/{cell['mode']}/s{cell['seed']}: "
                          f"record {steps}, replay {as_run['steps']}"
                          + (f" (the L0 controller froze at {froze} in the record, {as_run['l0_frozen_at']} in the replay)"
                             if froze != as_run["l0_frozen_at"] else ""))
        if not without:
            continue
        variant = replay_stop(cell["training"], convergence["series"], l0_control=convergence.get("l0_control"),
                              without=without)
        row = rows[(cell["set"], cell["arch"])]  # table rows in the order the records list them
        state = convergence.get("state", "?")
        if state != variant["state"]:
            row.changes[f"{state} -> {variant['state']}"] += 1
            changed.append(_change_line(cell, convergence, steps, state, variant))
        cohorts[(cell["set"], cell["arch"], int(cell["seed"]))].append(
            (steps, variant["steps"], float(training.get("seconds") or 0)))
    lines = [f"{folder}: {same + len(differ)} members replayed, {same} stop where their records stopped"
             + (f", {len(differ)} do not" if differ else "")]
    lines += [f"  differs: {d}" for d in differ[:20]] + ([f"  ... and {len(differ) - 20} more"] if len(differ) > 20 else [])
    if not without:
        return lines
    for (set_name, arch, _), members in cohorts.items():
        rows[(set_name, arch)].add_cohort(members)
    lines += ["", f"without {', '.join(sorted(without))}:", "",
              "| set | architecture | members | member-steps (run -> replayed) | cohort steps | "
              "training s (run -> estimate) | state changes |", "|---|---|---|---|---|---|---|"]
    for (set_name, arch), row in rows.items():
        changes = ", ".join(f"{k} {v}" for k, v in sorted(row.changes.items())) or "none"
        lines.append(f"| {set_name} | {arch} | {row.members} | {row.run:,} -> {row.replayed:,} ({_pct(row.replayed, row.run)}) | "
                     f"{row.cohort_run:,} -> {row.cohort_replayed:,} | {row.seconds:,.0f} -> {row.estimate:,.0f} | {changes} |")
    run, replayed = sum(r.run for r in rows.values()), sum(r.replayed for r in rows.values())
    lines += ["", f"in all: member-steps {run:,} -> {replayed:,} ({_pct(replayed, run)}), training seconds "
                  f"{sum(r.seconds for r in rows.values()):,.0f} -> about {sum(r.estimate for r in rows.values()):,.0f}"]
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
