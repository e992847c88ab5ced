"""``saebench verify --results DIR``: check a results folder and list every problem with its file.

Wired into ``saebench`` by ``cli.py`` (``add_parser`` / ``run``). It only reads: damaged items are
moved aside by the next ``saebench run`` on the folder (``ResultStore.heal``), which also redoes
their cells.

Checked: ``run.json``; every result record (parses, is a JSON object of a record's shape, is filed
under its own cell key, matches its ``sha256``, was computed from the checkpoint now stored);
every checkpoint (a ``COMPLETE`` marker whose listed files exist and match their hashes; legacy
checkpoints: the files exist and parse); the planned cells of ``run.json`` that have no usable
record. Records and checkpoints written before hashes existed are accepted when they parse. A
note names each stored set whose records came from more than one build of it (``data_sha256``:
the same recipe, other bytes, e.g. two machines' harvests): not damage, but one board from two
builds.

Exit codes: 0 every file is intact and every planned cell has a record with every planned
metric; 1 at least one damaged or inconsistent file (one ``problem:`` line each on stdout); 3 no
damaged file, but planned cells or metric entries are missing (``missing:`` lines: an interrupted
or partial run, or records kept elsewhere); 2 bad input (``DIR`` is not a results folder, or is a
folder of results folders such as ``leaderboards/``: the error names one).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from saebench_sanity.errors import DataError

EXIT_CLEAN, EXIT_PROBLEMS, EXIT_INPUT, EXIT_INCOMPLETE = 0, 1, 2, 3


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("verify", help="check a results folder: every damaged record or checkpoint with its "
                                             "file, and the planned cells without a record (exit 0 clean, 1 damage, "
                                             "3 incomplete)")
    p.add_argument("--results", required=True, metavar="DIR", help="results directory (a run's output_dir)")
    p.add_argument("--json", action="store_true", help="machine-readable report on stdout")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def build_notes(records: list[dict[str, Any]]) -> list[str]:
    """One note per set whose records carry more than one ``data_sha256`` (records of one cell
    may carry two: trained on one build, scored on another)."""
    from saebench_sanity.harness.run import recorded_data

    builds: dict[str, dict[str, int]] = {}
    for rec in records:
        name = str((rec.get("cell") or {}).get("set"))
        seen = builds.setdefault(name, {})
        for digest in recorded_data(rec):
            seen[digest] = seen.get(digest, 0) + 1
    return [f"set {name!r}: its records came from {len(seen)} builds of it (data sha256 "
            + ", ".join(f"{d[:12]} in {n}" for d, n in sorted(seen.items(), key=lambda kv: (-kv[1], kv[0])))
            + "): numbers from different bytes of one recipe; `saebench run --force` on one store redoes them"
            for name, seen in sorted(builds.items()) if len(seen) > 1]


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from saebench_sanity.harness.store import RUN_FILE, ResultStore
    from saebench_sanity.locks import RUN_LOCK, describe, held_by

    root = Path(args.results)
    store = ResultStore(root)
    if not root.is_dir() or not any(p.exists() for p in (store.results, store.checkpoints, root / RUN_FILE)):
        raise DataError(f"{str(root)!r} is not a results folder (no results/, checkpoints/ or {RUN_FILE}); "
                        "pass the output_dir of a `saebench run`")
    inner = [p for p in sorted(store.results.glob("*/")) if (p / RUN_FILE).is_file() or (p / "results").is_dir()] \
        if store.results.is_dir() else []
    if inner and not (root / RUN_FILE).exists() and not any(store.results.glob("*.json")):
        # a folder of results folders (e.g. leaderboards/, whose results/ holds one per board): checking
        # it would find nothing and exit 0, "clean"
        raise DataError(f"{str(root)!r} holds results folders, not records (e.g. {str(inner[0])!r}); "
                        "pass one of those with --results")
    report = store.verify()
    busy = held_by(root / RUN_LOCK)
    if busy is not None:
        report.notes.insert(0, f"a run is writing here now ({describe(busy)}): files may change while they are read")
    report.notes.extend(build_notes(report.records))
    labels, unscored = report.missing, []
    if report.run is not None:  # named set/arch/mode/seed where run.json's config allows
        from saebench_sanity.leaderboard.inputs import missing_cells, missing_metrics

        if report.missing:
            labels = missing_cells(report.run, report.records) or report.missing
        unscored = missing_metrics(report.run, report.records)
    code = EXIT_PROBLEMS if report.problems else EXIT_INCOMPLETE if report.missing or unscored else EXIT_CLEAN
    if args.json:
        payload = {"results": str(root), "exit_code": code, "records": report.n_records,
                   "checkpoints": report.n_checkpoints, "notes": report.notes, "missing": labels,
                   "missing_metrics": unscored,
                   "problems": [{"path": p.path, "message": p.message, "kind": p.kind, "key": p.key}
                                for p in report.problems]}
        sys.stdout.write(json.dumps(payload, indent=2, sort_keys=True) + "\n")
        return code
    for p in report.problems:
        sys.stdout.write(f"problem: {root / p.path}: {p.message}\n")
    for label in labels:
        sys.stdout.write(f"missing: {label} (planned in {root / RUN_FILE}, no usable record)\n")
    for label in unscored:
        sys.stdout.write(f"missing: {label} (planned in {root / RUN_FILE}, not in the cell's record)\n")
    for note in report.notes:
        sys.stdout.write(f"note: {note}\n")
    summary = (f"{root}: {report.n_records} record(s), {report.n_checkpoints} checkpoint(s) checked; "
               f"{len(report.problems)} problem(s), {len(report.missing)} planned cell(s) without a usable record, "
               f"{len(unscored)} planned metric entr{'y' if len(unscored) == 1 else 'ies'} missing")
    if report.problems:
        summary += "; `saebench run` on this folder moves the damaged items to quarantine/ and redoes their cells"
    sys.stdout.write(summary + "\n")
    return code
