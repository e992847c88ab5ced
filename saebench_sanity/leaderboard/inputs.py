"""Reading a results folder for a leaderboard, strictly: an empty, corrupted or partial folder is
named in one line (``DataError``), or, when only some cells or metric entries are missing, the
board is rendered and says which ones (never a silently partial table).

The store's ``load_result`` treats a damaged record as absent (what a resuming run wants: the cell
is scored again); a leaderboard must not, so it reads through ``read_result``, which says why.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Callable, Sequence

from saebench_sanity.errors import DataError
from saebench_sanity.results import ResultStore

RERUN = "`saebench verify --results` lists every problem; `saebench run` on this folder scores the cell again"


def _check_record(path: Path, rec: dict[str, Any]) -> dict[str, Any]:
    """The record if it names its cell (``cell.set/arch/mode``, an integer ``cell.seed``), its
    ``status``, and its scores are numbers (or null), else a DataError naming the first problem
    (the store checks the types of the containers)."""
    cell = rec.get("cell")
    if not isinstance(cell, dict):
        raise DataError(f"{path}: result record has no 'cell' object; {RERUN}")
    for key in ("set", "arch", "mode", "seed"):
        if cell.get(key) is None:
            raise DataError(f"{path}: result record has no 'cell.{key}'; {RERUN}")
    if isinstance(cell["seed"], bool) or not isinstance(cell["seed"], int):
        raise DataError(f"{path}: 'cell.seed' is {cell['seed']!r}, not an integer; {RERUN}")
    if not isinstance(rec.get("status"), str):
        raise DataError(f"{path}: result record has no 'status'; {RERUN}")
    for mkey, entry in (rec.get("metrics") or {}).items():
        for score, value in ((entry or {}).get("scores") or {}).items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise DataError(f"{path}: score {mkey}/{score} is {str(value)[:40]!r}, not a number; {RERUN}")
    return rec


def load(results_dir: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]], list[str]]:
    """``(run.json contents or {}, result records, missing)`` of a results folder: the records of
    its last run's cells when ``run.json`` lists them (``cell_keys``), else every record.
    ``missing`` names what the run planned but the folder lacks (:func:`missing_cells`,
    :func:`missing_metrics`). Raises DataError naming the file for a folder without records, or a
    damaged, stale or malformed ``run.json`` or record (the store's checks: ``ResultStore.read_result``)."""
    store = ResultStore(results_dir)
    root = Path(results_dir)
    if not root.is_dir():
        raise DataError(f"no results under {str(root)!r}: the folder does not exist; run `saebench run` first or pass --results DIR")
    if not store.results.is_dir():
        raise DataError(f"no results under {str(root)!r}: it has no results/ folder of result records; run `saebench run` first or pass --results DIR")
    run = store.load_run() or {}  # a damaged run.json is a DataError naming it
    keys = run.get("cell_keys")
    if keys is None:
        keys_read = sorted(p.stem for p in store.results.glob("*.json") if not p.name.startswith("."))
    else:
        keys_read = [k for k in keys if isinstance(k, str) and store.result_path(k).is_file()]
    records = []
    for key in keys_read:
        rec, why = store.read_result(key)
        if why is not None:
            raise DataError(f"{store.result_path(key)} {why}; {RERUN}")
        if rec is not None:
            records.append(_check_record(store.result_path(key), rec))
    if not records:
        listed = f" of the {len(keys)} cells run.json lists" if keys else ""
        raise DataError(f"{store.results}: no result record{listed}; run `saebench run` first (an interrupted run "
                        "resumes where it stopped)")
    return run, records, missing_cells(run, records) + missing_metrics(run, records)


def missing_cells(run: dict[str, Any], records: list[dict[str, Any]]) -> list[str]:
    """Labels ``set/arch/mode/sSEED`` of the cells ``run.json`` plans (its config's sets x
    architectures x modes x seeds, the plan's product) that have no record; when the config does
    not spell out that product, one line with the count."""
    cfg = run.get("config") or {}
    keys = run.get("cell_keys") or []
    have = {(str(c.get("set")), str(c.get("arch")), str(c.get("mode")), str(c.get("seed")))
            for c in (rec.get("cell") or {} for rec in records)}
    try:
        planned = [tuple(str(x) for x in t) for t in itertools.product(
            cfg["sets"], cfg["architectures"], cfg["modes"], cfg["seeds"])]
    except (KeyError, TypeError):
        planned = []
    n_missing = len(keys) - len(records)
    if n_missing <= 0:
        return []
    if len(planned) != len(keys):
        return [f"{n_missing} of the {len(keys)} cells run.json lists (names not recoverable from its config)"]
    return [f"{s}/{a}/{m}/s{seed}" for s, a, m, seed in planned if (s, a, m, seed) not in have]


def missing_metrics(run: dict[str, Any], records: list[dict[str, Any]]) -> list[str]:
    """``set/arch/mode/sSEED: metric m`` for every finished cell whose record lacks a metric the
    run lists (``metric_keys``): the run stopped while scoring it."""
    wanted = [k for k in run.get("metric_keys") or [] if isinstance(k, str)]
    out = []
    for rec in records:
        if rec.get("status") != "ok":
            continue
        c = rec.get("cell") or {}
        for key in wanted:
            if key not in (rec.get("metrics") or {}):
                out.append(f"{c.get('set')}/{c.get('arch')}/{c.get('mode')}/s{c.get('seed')}: metric {key.split(':')[0]}")
    return out


def print_reports(folders: Sequence[str | Path], render: Callable[[Path], list[str]]) -> int:
    """For the report scripts (scripts/steps-report.py, scripts/stop-replay.py): every folder
    must hold a ``results`` folder (checked for all of them first, before any is read), then
    ``render(folder)``'s lines are printed per folder. A missing folder or a record ``load``
    refuses is one ``error:`` line on stderr and exit status 2; else 0."""
    import sys

    paths = [Path(f) for f in folders]
    for folder in paths:
        if not (folder / "results").is_dir():
            sys.stderr.write(f"error: {folder}/results is not a folder; pass a results folder such as "
                             "leaderboards/results/synthetic\n")
            return 2
    for folder in paths:
        try:
            lines = render(folder)
        except DataError as exc:
            sys.stderr.write(f"error: {exc}\n")
            return 2
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()
    return 0
