"""From the results store to pandas tables: one long table of per-seed scores, one table of cells
(steps used, final training L0, L0 target), then one row per (set, architecture, score) with every
mode's mean ± sd, steps and final L0, the interval numbers and the verdict (``leaderboard.verdict``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from saebench_sanity.io import stable_hash
from saebench_sanity.leaderboard import verdict as V
from saebench_sanity.leaderboard.headline import DeclaredScores, best_of, headline_of, improves_with_training_of

LONG_COLUMNS = ["set", "arch", "mode", "seed", "is_baseline", "trains", "converged", "metric", "score",
                "value", "direction", "chance", "min_effect", "headline", "headline_priority", "improves", "best", "order"]
CELL_COLUMNS = ["set", "arch", "mode", "seed", "steps", "l0_train", "target_l0"]
#: the score whose per-seed mean is a mode's final L0 (else the training's ``l0_train``)
L0_SCORE = ("reconstruction", "l0")


@dataclass
class Collected:
    """Everything the renderers need from one results directory."""

    long: pd.DataFrame
    min_effect: float
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
    #: cells the run planned that have no record (``set/arch/mode/sSEED``): the board is partial
    missing: list[str] = field(default_factory=list)
    #: one row per ok cell: steps used, the training's final L0, the L0 target (CELL_COLUMNS)
    cells: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=CELL_COLUMNS))
    confidence: float = V.DEFAULT_CONFIDENCE
    min_seeds: int = V.MIN_SEEDS
    l0_tolerance: float = V.L0_TOLERANCE

    @property
    def rule(self) -> V.Rule:
        return V.Rule(self.min_effect, self.confidence, self.min_seeds, self.l0_tolerance)


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
        return None
    return float(v)


def cell_target_l0(cell: dict[str, Any], training: dict[str, Any] | None = None) -> float | None:
    """The L0 a cell aims at: the target its training steered it to (``convergence.l0_control``:
    the matched-L0 controller on an L1 or JumpReLU penalty), else its architecture's ``k`` or
    ``target_l0`` parameter, else the cell's ``target_l0``; None when its sparsity does not target
    an L0 (ReLU and Gated trained without the controller). A record targets an L0 when its
    recorded parameters carry ``k`` or ``target_l0`` (what ``ArchitectureSpec.target_l0_params``
    sets for every architecture that targets one; records do not store the spec)."""
    control = ((training or {}).get("convergence") or {}).get("l0_control") or {}
    if _number(control.get("target")) is not None:
        return _number(control.get("target"))
    params = cell.get("arch_params") or {}
    knob = "k" if "k" in params else "target_l0" if "target_l0" in params else ""
    if not knob:
        return None
    for value in (params.get("k"), params.get("target_l0"), cell.get("target_l0")):
        if _number(value) is not None:
            return _number(value)
    return None


def _ordered(values: list[str]) -> list[str]:
    seen: dict[str, None] = {}
    for v in values:
        seen.setdefault(v, None)
    return list(seen)


def load(results_dir: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``(run.json contents or {}, result records)`` of a results directory: the records of its
    last run's cells when ``run.json`` lists them, else every record."""
    from saebench_sanity.leaderboard import inputs

    run, records, _ = inputs.load(results_dir)  # strict: an empty or corrupted folder is a DataError
    return run, records


def collect(results_dir: str | Path, *, min_effect: float | None = None, confidence: float | None = None,
            sets: list[str] | None = None, declared: DeclaredScores | None = None) -> Collected:
    """Read a results directory (only the cells and metrics of its last run when ``run.json``
    exists; only the activation sets ``sets`` when given). ``declared``: :func:`from_records`."""
    run, records = load(results_dir)
    return from_records(run, records, min_effect=min_effect, confidence=confidence, sets=sets, declared=declared)


def from_records(run: dict[str, Any], records: list[dict[str, Any]], *, min_effect: float | None = None,
                 confidence: float | None = None, sets: list[str] | None = None,
                 declared: DeclaredScores | None = None) -> Collected:
    """:func:`collect` on records already read (:func:`load`), so one read serves several
    leaderboards (a run over two set families). The rule's parameters come from the run's
    recorded ``[verdict]`` table, else the defaults (a recorded ``n_sigma`` of the retired rule is
    ignored). ``declared``: the installed metrics' ``ScoreInfo`` fields
    (``Registry.declared_scores()``), read for a score whose record predates a field (its headline,
    ``improves_with_training``, ``best``); None reads the records alone."""
    only = None if sets is None else set(sets)
    metric_keys = set(run.get("metric_keys") or [])
    verdict_cfg = (run.get("config") or {}).get("verdict") or {}
    min_eff = float(min_effect if min_effect is not None else verdict_cfg.get("min_effect", 0.01))
    conf = V.check_confidence(confidence if confidence is not None else verdict_cfg.get("confidence", V.DEFAULT_CONFIDENCE))
    min_seeds = int(verdict_cfg.get("min_seeds", V.MIN_SEEDS))
    l0_tol = float(verdict_cfg.get("l0_tolerance", V.L0_TOLERANCE))
    config_modes = list((run.get("config") or {}).get("modes") or [])
    config_sets = [s for s in (run.get("config") or {}).get("sets") or [] if only is None or s in only]
    config_archs = list((run.get("config") or {}).get("architectures") or [])
    metric_rank = {k.split(":")[0]: i for i, k in enumerate(run.get("metric_keys") or [])}
    from saebench_sanity.leaderboard.inputs import missing_cells, missing_metrics

    missing = [m for m in missing_cells(run, records) + missing_metrics(run, records)
               if only is None or "/" not in m or m.split("/")[0] in only]
    if only is not None:
        records = [rec for rec in records if (rec.get("cell") or {}).get("set") in only]

    def arch_rank(arch: str) -> tuple[int, str]:
        return (config_archs.index(arch) if arch in config_archs else len(config_archs), arch)

    rows: list[dict[str, Any]] = []
    cells: list[dict[str, Any]] = []
    skipped: dict[tuple[str, str], str] = {}
    failed, metric_errors = [], []
    metric_params: dict[str, list[dict[str, Any]]] = {}
    judges: dict[str, dict[str, set[str]]] = {}
    baselines: list[str] = []
    references: list[str] = []
    modes, sets = list(config_modes), list(config_sets)
    for rec in records:
        cell: Any = rec.get("cell") or {}  # a validated record's cell (saebench_sanity.records)
        modes.append(cell.get("mode"))
        sets.append(cell.get("set"))
        (baselines if cell.get("is_baseline") else references if cell.get("mode") != "trained" else []).append(cell.get("mode"))
        if rec.get("status") != "ok":
            failed.append((rec.get("label", "?"), rec.get("error") or "failed"))
            continue
        training = rec.get("training") or {}
        converged = bool(training.get("converged", False))
        cells.append({"set": cell["set"], "arch": cell["arch"], "mode": cell["mode"], "seed": int(cell["seed"]),
                      "steps": _number(training.get("steps")), "l0_train": _number(training.get("l0_train")),
                      "target_l0": cell_target_l0(cell, training)})
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
                headline, headline_priority = headline_of(mname, score, info, declared)
                rows.append({
                    "set": cell["set"], "arch": cell["arch"], "mode": cell["mode"], "seed": int(cell["seed"]),
                    "is_baseline": bool(cell.get("is_baseline")), "trains": bool(cell.get("trains", True)),
                    "converged": converged, "metric": entry.get("name", mkey.split(":")[0]), "score": score,
                    "value": value if value is not None else math.nan,
                    "direction": info.get("direction"), "chance": info.get("chance"), "min_effect": info.get("min_effect"),
                    "headline": headline, "headline_priority": headline_priority,
                    "improves": improves_with_training_of(mname, score, info, declared),
                    "best": best_of(mname, score, info, declared),
                    # display order: architectures and metrics as configured, scores as declared
                    "order": (arch_rank(cell["arch"]), metric_rank.get(mname, len(metric_rank)), mname,
                              score_rank.get(score, len(score_rank)), score),
                })
    long = pd.DataFrame(rows, columns=LONG_COLUMNS)
    return Collected(long=long, min_effect=min_eff, confidence=conf, min_seeds=min_seeds, l0_tolerance=l0_tol,
                     cells=pd.DataFrame(cells, columns=CELL_COLUMNS), modes=[m for m in _ordered(modes) if m],
                     baselines=_ordered(baselines), references=_ordered(references),
                     sets=[s for s in _ordered(sets) if s],
                     skipped=sorted((s, m, r) for (s, m), r in skipped.items()),
                     failed=sorted(failed), metric_errors=sorted(metric_errors), missing=missing,
                     metric_params={m: metric_params[m] for m in sorted(metric_params, key=lambda m: metric_rank.get(m, len(metric_rank)))},
                     judges={m: {p: sorted(ids) for p, ids in by.items()} for m, by in judges.items()})


def _mean(values: list[Any]) -> float:
    vals = [float(v) for v in values if _number(v) is not None]
    return math.fsum(vals) / len(vals) if vals else math.nan


def mode_training(col: Collected) -> dict[tuple[str, str, str], dict[str, Any]]:
    """``(set, arch, mode) -> {"steps", "l0", "target_l0"}``: steps used (mean over seeds), the final
    L0 (mean over seeds of the ``reconstruction.l0`` score, else of the training's ``l0_train``;
    NaN when neither is recorded) and the cell's L0 target (None if its architecture targets none)."""
    out: dict[tuple[str, str, str], dict[str, Any]] = {}
    if col.cells.empty:
        return out
    scored: dict[tuple[str, str, str], float] = {}
    if not col.long.empty:
        l0_rows = col.long[(col.long["metric"] == L0_SCORE[0]) & (col.long["score"] == L0_SCORE[1])]
        for key, grp in l0_rows.groupby(["set", "arch", "mode"], sort=False):
            scored[key] = _mean(grp["value"].tolist())
    for key, grp in col.cells.groupby(["set", "arch", "mode"], sort=False):
        l0 = scored.get(key, math.nan)
        if not math.isfinite(l0):
            l0 = _mean(grp["l0_train"].tolist())
        targets = [t for t in grp["target_l0"].tolist() if _number(t) is not None]
        out[key] = {"steps": _mean(grp["steps"].tolist()), "l0": l0, "target_l0": targets[0] if targets else None}
    return out


def summary(col: Collected) -> pd.DataFrame:
    """One row per (set, arch, metric, score): every mode's mean/sd/n/converged, steps used and
    final L0; the baseline shown (FAILS: smallest upper bound, else smallest d) with its d and
    bounds; the verdict; the comparison at equal budget; the baselines Holm finds as good or
    better; per baseline d, se, df, bounds and the verdict against that baseline alone."""
    out: list[dict[str, Any]] = []
    if col.long.empty:
        return pd.DataFrame(out)
    rule = col.rule
    order_sets = {s: i for i, s in enumerate(col.sets)}
    training = mode_training(col)
    # one pass over the long table: per-seed values and convergence of every (group, mode)
    per_mode: dict[tuple, V.Stats] = {}
    for gkey, grp in col.long.groupby(["set", "arch", "metric", "score", "mode"], sort=False):
        l0 = training.get((gkey[0], gkey[1], gkey[4]), {}).get("l0")
        per_mode[gkey] = V.Stats.of(grp["value"].tolist(), grp["converged"].tolist(),
                                    l0=l0 if l0 is not None and math.isfinite(l0) else None)
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
        targets = [training[(set_name, arch, m)]["target_l0"] for m in col.modes
                   if (set_name, arch, m) in training and training[(set_name, arch, m)]["target_l0"] is not None]
        target = targets[0] if targets else None
        improves = bool(first["improves"])
        best = float(first["best"]) if first["best"] is not None and not pd.isna(first["best"]) else None
        kw: dict[str, Any] = dict(min_seeds=rule.min_seeds, chance=chance, target_l0=target, l0_tolerance=rule.l0_tolerance,
                  improves_with_training=improves, best=best)
        v = V.judge(trained, base_stats, direction, min_eff, rule.confidence, **kw)
        row: dict[str, Any] = {"set": set_name, "arch": arch, "metric": metric, "score": score,
                               "direction": direction, "chance": chance, "min_effect": min_eff, "target_l0": target,
                               "headline": first["headline"] or None, "headline_priority": int(first["headline_priority"]),
                               "improves_with_training": improves, "best": best}
        for mode in col.modes:
            s = stats[mode]
            info = training.get((set_name, arch, mode), {})
            row[f"{mode}_mean"] = s.mean
            row[f"{mode}_sd"] = s.sd
            row[f"{mode}_n"] = s.n
            row[f"{mode}_converged"] = s.converged
            row[f"{mode}_steps"] = info.get("steps", math.nan)
            row[f"{mode}_l0"] = info.get("l0", math.nan)
        row.update(baseline=v.baseline, diff=v.diff, lower=v.lower, upper=v.upper, verdict=v.label,
                   at_budget=V.judge(trained, base_stats, direction, min_eff, rule.confidence,
                                     require_converged=False, **kw).label,
                   fails_vs=";".join(v.fails_vs))
        for b in col.baselines:
            c = v.comparisons.get(b)
            row[f"d_vs_{b}"] = c.d if c else None
            row[f"se_vs_{b}"] = c.se if c else None
            row[f"df_vs_{b}"] = c.df if c else None
            row[f"lower_vs_{b}"] = c.lower if c else None
            row[f"upper_vs_{b}"] = c.upper if c else None
            row[f"verdict_vs_{b}"] = V.compare(trained, base_stats.get(b, empty), direction, min_eff, rule.confidence,
                                               **kw).label
        row["_order"] = (order_sets.get(set_name, len(order_sets)), set_name, *order)
        out.append(row)
    out.sort(key=lambda r: r["_order"])
    df = pd.DataFrame(out).drop(columns="_order")
    return df.reset_index(drop=True)
