"""``saebench export --results DIR --format saebench --out DIR2``: a results folder's records as
SAEBench eval-output JSON, one file per (cell, eval type) under ``DIR2/<eval_type_id>/``.

Wired into ``saebench`` by ``cli.py`` (``add_parser`` / ``run``). The mapping from our metrics to
SAEBench's eval types, and what has no counterpart, is documented in
``saebench_sanity.saebench_export``. Reads the results folder only.

Exit codes: 0 files written (cells with nothing to export are listed as ``skipped:`` lines);
2 bad input (not a results folder, a damaged record, nothing to export, an ``--out`` that is a
file or cannot be written).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from saebench_sanity.errors import DataError

FORMATS = ("saebench",)


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("export", help="write a results folder's records in another format: saebench = "
                                             "SAEBench eval-output JSON per cell and eval type")
    p.add_argument("--results", required=True, metavar="DIR", help="results directory (a run's output_dir)")
    p.add_argument("--format", default="saebench", choices=FORMATS, help="output format (default: saebench)")
    p.add_argument("--out", required=True, metavar="DIR", help="where to write <eval_type_id>/<cell>_eval_results.json")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    from saebench_sanity.cli import check_writable_dir
    from saebench_sanity.saebench_export import export

    check_writable_dir(args.out, "--out")  # a file or read-only folder: one line, as `leaderboard --out`
    summary = export(args.results, args.out)
    for line in summary.skipped:
        sys.stdout.write(f"skipped: {line}\n")
    if not summary.written:
        raise DataError(f"nothing to export from {args.results}: no cell has scores of a metric with a SAEBench "
                        "eval type (reconstruction, loss_recovered, sparse_probing, autointerp, ravel)")
    sys.stdout.write(f"{len(summary.written)} SAEBench eval-output file(s) for {summary.cells} cell(s) in {args.out}\n")
    return 0
