"""Reading a results folder for a leaderboard, strictly: an empty, corrupted or partial folder is
named in one line (``DataError``), or, when only some cells or metric entries are missing, the
board is rendered and says which ones (never a silently partial table).

The store's own readers treat an unreadable record as absent (what a resuming run wants: the cell
is recomputed); a leaderboard must not, so it parses the files itself, at the store's paths.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

from saebench_sanity.errors import DataError
from saebench_sanity.harness.store import ResultStore, unseal

RERUN = "re-run the `saebench run` that wrote it to recompute it"


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: {what} is not valid JSON ({exc.msg} at line {exc.lineno}); {RERUN}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read {what} ({exc}); {RERUN}") from None


def _check_record(path: Path, rec: Any) -> dict[str, Any]:
    """The record if it has what the leaderboard reads (``cell.set/arch/mode/seed``, ``status``,
    ``metrics`` as a mapping), else a DataError naming the first missing field."""
    if not isinstance(rec, dict):
        raise DataError(f"{path}: a result record must be a JSON object, found {type(rec).__name__}; {RERUN}")
    cell = rec.get("cell")
    if not isinstance(cell, dict):
        raise DataError(f"{path}: result record has no 'cell' object; {RERUN}")
    for key in ("set", "arch", "mode", "seed"):
        if cell.get(key) is None:
            raise DataError(f"{path}: result record has no 'cell.{key}'; {RERUN}")
    if not isinstance(rec.get("status"), str):
        raise DataError(f"{path}: result record has no 'status'; {RERUN}")
    if not isinstance(rec.get("metrics") or {}, dict):
        raise DataError(f"{path}: 'metrics' of the result record is not an object; {RERUN}")
    return rec


def _unsealed(path: Path, rec: dict[str, Any]) -> dict[str, Any]:
    """The record without the store's seal fields, after checking its ``sha256`` (an edited or
    damaged record is a DataError; a legacy record without a hash is accepted)."""
    body, why, _ = unseal(rec)
    if why is not None:
        raise DataError(f"{path}: the result record's {why}; {RERUN}")
    return body


def load(results_dir: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]], list[str]]:
    """``(run.json contents or {}, result records, missing)`` of a results folder: the records of
    its last run's cells when ``run.json`` lists them (``cell_keys``), else every record.
    ``missing`` names what the run planned but the folder lacks (:func:`missing_cells`,
    :func:`missing_metrics`). Raises DataError for a folder without records, an unreadable or
    malformed ``run.json`` or record."""
    store = ResultStore(results_dir)
    root = Path(results_dir)
    if not root.is_dir():
        raise DataError(f"no results under {str(root)!r}: the folder does not exist; run `saebench run` first or pass --results DIR")
    if not store.results.is_dir():
        raise DataError(f"no results under {str(root)!r}: it has no results/ folder of result records; run `saebench run` first or pass --results DIR")
    run_path = root / "run.json"
    run: dict[str, Any] = {}
    if run_path.is_file():
        run = _read_json(run_path, "the run manifest")
        if not isinstance(run, dict):
            raise DataError(f"{run_path}: the run manifest must be a JSON object; {RERUN}")
    keys = run.get("cell_keys")
    if keys is not None and not (isinstance(keys, list) and all(isinstance(k, str) for k in keys)):
        raise DataError(f"{run_path}: 'cell_keys' must be a list of cell keys; {RERUN}")
    if keys is None:
        paths = sorted(p for p in store.results.glob("*.json") if not p.name.startswith("."))
    else:
        paths = [store.result_path(k) for k in keys if store.result_path(k).is_file()]
    records = [_unsealed(p, _check_record(p, _read_json(p, "the result record"))) for p in paths]
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
