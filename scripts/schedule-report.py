"""How long a run's worker pool would take with the cohorts started in plan order or longest
estimated first, replayed from the per-cell records of finished runs.

    python scripts/schedule-report.py RESULTS [RESULTS ...] [--jobs 2]

The folders are read in the order given, each in its own run's plan order (``run.json``), as
one plan: the default suite's synthetic and real halves are ``leaderboards/results/synthetic
leaderboards/results/real``. A cohort's measured cost is its training time (the longest
member's ``training.seconds``: members count from the cohort's start) plus every metric second
its cells record (a batched metric's cells each record their share); metrics reused from an
earlier run (``cached``) count 0. Each order is replayed by list scheduling on ``--jobs``
workers (a cohort starts on the first free worker, as ``saebench run --jobs N`` hands them out),
and the makespans are printed against the lower bound ``max(total / jobs, longest cohort)``.
What the records do not hold (process start, imports, loading the language model once per
worker, writing results) is left out, so the makespans are below a real run's wall time.
The estimate is ``harness.executor.estimate_seconds``, which ``saebench run`` uses to order the
cohorts (``longest_first``). The last line replays what ``saebench run --jobs N`` does: units
(``harness.executor.unit_order``) of the cohorts that share a (set, seed, batch size) of a set
that replays its streams (the set's ``replays_streams``, the attribute the executor reads; each
unit runs on one worker, which draws the stream once), longest estimated first; a unit counts as
one job (a dry worker's taking of a waiting cohort is not replayed).
"""

from __future__ import annotations

import argparse
import heapq
from pathlib import Path


def cohorts_of(folder: Path) -> list[dict]:
    """The folder's cohorts in plan order: ``{"label", "cells": [record, ...]}``."""
    from saebench_sanity.harness.executor import cohort_key
    from saebench_sanity.leaderboard.inputs import load

    _, records, _ = load(folder)
    groups: dict[str, dict] = {}
    for rec in records:
        cell = rec["cell"]
        groups.setdefault(cohort_key(cell), {"label": f"{cell['set']}/{cell['arch']}/s{cell['seed']}", "cells": []})["cells"].append(rec)
    return list(groups.values())


_REPLAYS: dict[str, bool] = {}  # set name -> replays_streams


def stream_key(group: dict, registry) -> tuple | None:
    """The cohort's shared stream, (set, seed, batch size), when its set replays its streams
    (``replays_streams``, read from the built set as ``harness.executor.stream_units`` reads it;
    building a registered set is cheap, its data are drawn lazily); else None."""
    cell = group["cells"][0]["cell"]
    name = cell["set"]
    if name not in _REPLAYS:
        _REPLAYS[name] = bool(getattr(registry.get("activation_set", name).build(), "replays_streams", False))
    if not _REPLAYS[name]:
        return None
    return (name, cell["seed"], int(cell["training"]["batch_size"]))


def measured(group: dict) -> float:
    train = max(float((r.get("training") or {}).get("seconds") or 0.0) for r in group["cells"])
    metrics = sum(float(m.get("seconds") or 0.0) for r in group["cells"] for m in (r.get("metrics") or {}).values()
                  if isinstance(m, dict) and not m.get("cached"))
    return train + metrics


def estimated(group: dict, registry) -> float:
    from saebench_sanity.activations.base import NEED_MODEL
    from saebench_sanity.harness.executor import OK, estimate_seconds

    cells = [r["cell"] for r in group["cells"]]
    model_metrics = sum(1 for key, m in (group["cells"][0].get("metrics") or {}).items()
                        if isinstance(m, dict) and m.get("status") == OK
                        and NEED_MODEL in registry.get("metric", key.split(":")[0]).needs)
    return estimate_seconds([c for c in cells if c.get("trains", True)],
                            registry.get("activation_set", cells[0]["set"]).d_in, model_metrics, len(cells))


def makespan(costs: list[float], jobs: int) -> float:
    free = [0.0] * jobs
    for c in costs:
        start = heapq.heappop(free)
        heapq.heappush(free, start + c)
    return max(free)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args(argv)
    from saebench_sanity.harness.executor import unit_order
    from saebench_sanity.registry import get_registry

    registry = get_registry()
    groups = [g for folder in args.folders for g in cohorts_of(folder)]
    cost = [measured(g) for g in groups]
    est = [estimated(g, registry) for g in groups]
    lpt_est = [u[0] for u in unit_order([None] * len(groups), est)]  # what longest_first orders
    lpt_true = sorted(range(len(groups)), key=lambda i: -cost[i])
    total, longest = sum(cost), max(cost)
    bound = max(total / args.jobs, longest)
    print(f"{len(groups)} cohorts, {total / 60:.1f} min measured in all, longest {longest / 60:.1f} min "
          f"({groups[lpt_true[0]]['label']}); {args.jobs} workers: lower bound {bound / 60:.1f} min")
    units = unit_order([stream_key(g, registry) for g in groups], est, args.jobs)
    for name, costs in (("plan order", [cost[i] for i in range(len(groups))]),
                        ("longest estimated first", [cost[i] for i in lpt_est]),
                        ("longest measured first (hindsight)", [cost[i] for i in lpt_true]),
                        (f"stream units ({len(units)}), longest estimated first", [sum(cost[i] for i in u) for u in units])):
        span = makespan(costs, args.jobs)
        print(f"  {name:<46} {span / 60:6.1f} min  ({span / bound:.2f} x the bound)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
