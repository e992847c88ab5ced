"""From the results store to pandas tables: one long table of per-seed scores, then one row per
(set, architecture, score) with every mode's mean ± sd and the verdict (``leaderboard.verdict``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from saebench_sanity.activations.base import stable_hash
from saebench_sanity.errors import DataError
from saebench_sanity.harness.store import ResultStore
from saebench_sanity.leaderboard import verdict as V

LONG_COLUMNS = ["set", "arch", "mode", "seed", "is_baseline", "trains", "converged", "metric", "score",
                "value", "direction", "chance", "min_effect", "order"]


@dataclass
class Collected:
    """Everything the renderers need from one results directory."""

    long: pd.DataFrame
    min_effect: float
    n_sigma: float
    modes: list[str]            # in run order
    baselines: list[str]
    references: list[str]
    sets: list[str]
    skipped: list[tuple[str, str, str]] = field(default_factory=list)   # (set, metric, reason)
    failed: list[tuple[str, str]] = field(default_factory=list)         # (cell label, error)
    metric_errors: list[tuple[str, str, str]] = field(default_factory=list)  # (cell label, metric, error)
    #: metric name -> the distinct parameter sets its scored entries were computed with
    metric_params: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: metric name -> {stable_hash(params): the judge identities its records name (``details.judge``)}
    judges: dict[str, dict[str, list[str]]] = field(default_factory=dict)


def _ordered(values: list[str]) -> list[str]:
    seen: dict[str, None] = {}
    for v in values:
        seen.setdefault(v, None)
    return list(seen)


def load(results_dir: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``(run.json contents or {}, result records)`` of a results directory: the records of its
    last run's cells when ``run.json`` lists them, else every record."""
    store = ResultStore(results_dir)
    if not store.results.is_dir():
        raise DataError(f"no results under {str(results_dir)!r}; run `saebench run` first or pass --results DIR")
    run = store.load_run() or {}
    cell_keys = run.get("cell_keys")
    if cell_keys is None:
        return run, store.iter_results()
    return run, [rec for rec in (store.load_result(key) for key in cell_keys) if rec is not None]


def collect(results_dir: str | Path, *, min_effect: float | None = None, n_sigma: float | None = None,
            sets: list[str] | None = None) -> Collected:
    """Read a results directory (only the cells and metrics of its last run when ``run.json``
    exists; only the activation sets ``sets`` when given)."""
    run, records = load(results_dir)
    return from_records(run, records, min_effect=min_effect, n_sigma=n_sigma, sets=sets)


def from_records(run: dict[str, Any], records: list[dict[str, Any]], *, min_effect: float | None = None,
                 n_sigma: float | None = None, sets: list[str] | None = None) -> Collected:
    """:func:`collect` on records already read (:func:`load`), so one read serves several
    leaderboards (a run over two set families)."""
    only = None if sets is None else set(sets)
    metric_keys = set(run.get("metric_keys") or [])
    verdict_cfg = (run.get("config") or {}).get("verdict") or {}
    min_eff = float(min_effect if min_effect is not None else verdict_cfg.get("min_effect", 0.01))
    sig = float(n_sigma if n_sigma is not None else verdict_cfg.get("n_sigma", 1.0))
    config_modes = list((run.get("config") or {}).get("modes") or [])
    config_sets = [s for s in (run.get("config") or {}).get("sets") or [] if only is None or s in only]
    config_archs = list((run.get("config") or {}).get("architectures") or [])
    metric_rank = {k.split(":")[0]: i for i, k in enumerate(run.get("metric_keys") or [])}
    if only is not None:
        records = [rec for rec in records if (rec.get("cell") or {}).get("set") in only]

    def arch_rank(arch: str) -> tuple[int, str]:
        return (config_archs.index(arch) if arch in config_archs else len(config_archs), arch)

    rows: list[dict[str, Any]] = []
    skipped: dict[tuple[str, str], str] = {}
    failed, metric_errors = [], []
    metric_params: dict[str, list[dict[str, Any]]] = {}
    judges: dict[str, dict[str, set[str]]] = {}
    baselines, references, modes, sets = [], [], list(config_modes), list(config_sets)
    for rec in records:
        cell = rec.get("cell") or {}
        modes.append(cell.get("mode"))
        sets.append(cell.get("set"))
        (baselines if cell.get("is_baseline") else references if cell.get("mode") != "trained" else []).append(cell.get("mode"))
        if rec.get("status") != "ok":
            failed.append((rec.get("label", "?"), rec.get("error") or "failed"))
            continue
        converged = bool((rec.get("training") or {}).get("converged", False))
        for mkey, entry in sorted((rec.get("metrics") or {}).items()):
            if metric_keys and mkey not in metric_keys:
                continue
            status = entry.get("status")
            if status == "skipped":
                skipped[(cell["set"], entry.get("name", mkey))] = entry.get("reason", "")
                continue
            if status != "ok":
                metric_errors.append((rec.get("label", "?"), entry.get("name", mkey), entry.get("error", "")))
                continue
            mparams = metric_params.setdefault(entry.get("name", mkey.split(":")[0]), [])
            if (entry.get("params") or {}) not in mparams:
                mparams.append(entry.get("params") or {})
            judge = (entry.get("details") or {}).get("judge")
            if isinstance(judge, str) and judge:
                judges.setdefault(entry.get("name", mkey.split(":")[0]), {}).setdefault(
                    stable_hash(entry.get("params") or {}), set()).add(judge)
            infos = entry.get("score_info") or {}
            score_rank = {sc: i for i, sc in enumerate(entry.get("score_order") or sorted(infos))}
            mname = entry.get("name", mkey.split(":")[0])
            for score, value in sorted((entry.get("scores") or {}).items()):
                info = infos.get(score) or {}
                rows.append({
                    "set": cell["set"], "arch": cell["arch"], "mode": cell["mode"], "seed": int(cell["seed"]),
                    "is_baseline": bool(cell.get("is_baseline")), "trains": bool(cell.get("trains", True)),
                    "converged": converged, "metric": entry.get("name", mkey.split(":")[0]), "score": score,
                    "value": value if value is not None else math.nan,
                    "direction": info.get("direction"), "chance": info.get("chance"), "min_effect": info.get("min_effect"),
                    # display order: architectures and metrics as configured, scores as declared
                    "order": (arch_rank(cell["arch"]), metric_rank.get(mname, len(metric_rank)), mname,
                              score_rank.get(score, len(score_rank)), score),
                })
    long = pd.DataFrame(rows, columns=LONG_COLUMNS)
    return Collected(long=long, min_effect=min_eff, n_sigma=sig, modes=[m for m in _ordered(modes) if m],
                     baselines=_ordered(baselines), references=_ordered(references),
                     sets=[s for s in _ordered(sets) if s],
                     skipped=sorted((s, m, r) for (s, m), r in skipped.items()),
                     failed=sorted(failed), metric_errors=sorted(metric_errors),
                     metric_params={m: metric_params[m] for m in sorted(metric_params, key=lambda m: metric_rank.get(m, len(metric_rank)))},
                     judges={m: {p: sorted(ids) for p, ids in by.items()} for m, by in judges.items()})


def summary(col: Collected) -> pd.DataFrame:
    """One row per (set, arch, metric, score): every mode's mean/sd/n/converged, the best
    baseline, d, margin, the verdict, and the verdict against each single baseline."""
    out: list[dict[str, Any]] = []
    if col.long.empty:
        return pd.DataFrame(out)
    order_sets = {s: i for i, s in enumerate(col.sets)}
    # one pass over the long table: per-seed values and convergence of every (group, mode)
    per_mode: dict[tuple, V.Stats] = {}
    for gkey, grp in col.long.groupby(["set", "arch", "metric", "score", "mode"], sort=False):
        per_mode[gkey] = V.Stats.of(grp["value"].tolist(), grp["converged"].tolist())
    empty = V.Stats.of([])
    for (set_name, arch, metric, score), grp in col.long.groupby(["set", "arch", "metric", "score"], sort=False):
        order = grp["order"].iloc[0]
        first = grp.iloc[0]
        direction = first["direction"] if isinstance(first["direction"], str) else None
        chance = first["chance"] if first["chance"] is not None and not pd.isna(first["chance"]) else None
        score_min = first["min_effect"] if first["min_effect"] is not None and not pd.isna(first["min_effect"]) else None
        min_eff = V.effective_min_effect(score_min, col.min_effect)
        stats = {mode: per_mode.get((set_name, arch, metric, score, mode), empty) for mode in col.modes}
        trained = stats.get("trained", empty)
        base_stats = {b: stats[b] for b in col.baselines if b in stats}
        v = V.judge(trained, base_stats, direction, min_eff, col.n_sigma, chance=chance)
        row: dict[str, Any] = {"set": set_name, "arch": arch, "metric": metric, "score": score,
                               "direction": direction, "chance": chance, "min_effect": min_eff}
        for mode in col.modes:
            s = stats[mode]
            row[f"{mode}_mean"] = s.mean
            row[f"{mode}_sd"] = s.sd
            row[f"{mode}_n"] = s.n
            row[f"{mode}_converged"] = s.converged
        row.update(best_baseline=v.best_baseline, diff=v.diff, margin=v.margin, verdict=v.label,
                   at_budget=V.judge(trained, base_stats, direction, min_eff, col.n_sigma, require_converged=False,
                                     chance=chance).label)
        for b in col.baselines:
            row[f"verdict_vs_{b}"] = V.compare(trained, base_stats.get(b, V.Stats.of([])), direction, min_eff, col.n_sigma,
                                               chance=chance).label
        row["_order"] = (order_sets.get(set_name, len(order_sets)), set_name, *order)
        out.append(row)
    out.sort(key=lambda r: r["_order"])
    df = pd.DataFrame(out).drop(columns="_order")
    return df.reset_index(drop=True)
