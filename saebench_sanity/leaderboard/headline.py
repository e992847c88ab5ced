"""The headline table: per activation set, one row per architecture (one trained SAE), one column
per headline score, each cell the trained SAE against its closest random baseline with the verdict.

Which scores are headline scores is declared by each metric (``ScoreInfo.headline`` and
``headline_priority``) and recorded with its results; this module only reads the leaderboard's
summary rows (``aggregate.summary`` as records, or a board's JSON ``rows``), so the Markdown, the
terminal report and the HTML page show the same cells. For records written before a field was
recorded, the caller (the CLI, from the plugin registry) hands down what the installed metrics
declare (:data:`DeclaredScores`): this layer never reads the registry itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from saebench_sanity.leaderboard import verdict as V

#: one mark per label, so a cell reads at a glance even without colour
MARK = {V.BEATS: "✓", V.FAILS: "✗", V.INCONCLUSIVE: "?", V.AT_CHANCE: "≈", V.UNDERTRAINED: "↻",
        V.L0_NOT_MATCHED: "≠", V.SEEDS: "#", V.NO_DATA: "∅", V.DESCRIPTIVE: ""}


#: metric name -> score -> the fields of the ``ScoreInfo`` the installed metric declares, as
#: records store them (``score_info``); ``Registry.declared_scores()`` builds it. A metric that is
#: not installed is absent.
DeclaredScores = Mapping[str, Mapping[str, Mapping[str, Any]]]


def _declared_info(declared: DeclaredScores | None, metric: str, score: str) -> Mapping[str, Any]:
    """The declared ``ScoreInfo`` fields of a score; empty when ``declared`` is None or the metric
    is not installed or has no such score."""
    return (declared or {}).get(metric, {}).get(score) or {}


def recorded_field(metric: str, score: str, info: Mapping[str, Any], field: str,
                   declared: DeclaredScores | None = None) -> Any:
    """A ``ScoreInfo`` field of a recorded score: its recorded ``score_info``, else (records
    written before scores declared the field) the installed metric's declaration in ``declared``;
    None if neither has it."""
    return info[field] if field in info else _declared_info(declared, metric, score).get(field)


def improves_with_training_of(metric: str, score: str, info: Mapping[str, Any],
                              declared: DeclaredScores | None = None) -> bool:
    """A recorded score's ``improves_with_training`` (:func:`recorded_field`); False if none."""
    return bool(recorded_field(metric, score, info, "improves_with_training", declared))


def best_of(metric: str, score: str, info: Mapping[str, Any], declared: DeclaredScores | None = None) -> float | None:
    """A recorded score's ``best``, the best value it can take (:func:`recorded_field`)."""
    value = recorded_field(metric, score, info, "best", declared)
    return None if value is None else float(value)


def headline_of(metric: str, score: str, info: Mapping[str, Any],
                declared: DeclaredScores | None = None) -> tuple[str, int]:
    """``(headline column title or "", priority)`` of a recorded score: its recorded ``score_info``,
    else (records written before scores declared a headline) the installed metric's declaration in
    ``declared``; ``("", 0)`` if none."""
    if "headline" in info:
        return str(info.get("headline") or ""), int(info.get("headline_priority") or 0)
    spec = _declared_info(declared, metric, score)
    return str(spec.get("headline") or ""), int(spec.get("headline_priority") or 0)


def short(v: Any) -> str:
    """Compact number for a headline cell: ``.607``, ``-.012``, ``1.00``, ``12.3``, ``0``; ``—`` when missing."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    v = float(v)
    if v == 0:
        return "0"
    if 0.001 <= abs(v) < 1:
        text = f"{v:.3f}"
        return text.replace("0.", ".", 1)
    if 1 <= abs(v) < 1000:
        return f"{v:#.3g}".rstrip(".")  # 1.00, 12.3, 456 (3 digits as the cells below 1)
    return f"{v:.3g}"


def labels(rows: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], str]:
    """``(metric, score) -> label``: the score's name, ``metric.score`` where two metrics of the
    rows share a score name."""
    owners: dict[str, set[str]] = {}
    for r in rows:
        owners.setdefault(str(r["score"]), set()).add(str(r["metric"]))
    return {(str(r["metric"]), str(r["score"])): (f"{r['metric']}.{r['score']}" if len(owners[str(r["score"])]) > 1
                                                  else str(r["score"])) for r in rows}


@dataclass(frozen=True)
class Column:
    """One headline column of a set: its title and the recorded score that fills it."""

    title: str
    metric: str
    score: str
    direction: str | None


@dataclass(frozen=True)
class Cell:
    """One SAE against its closest baseline on one headline score."""

    verdict: str
    at_budget: str | None
    trained: float | None
    baseline: str | None
    baseline_mean: float | None
    min_effect: float | None

    @property
    def label(self) -> str:
        """Mark and verdict: ``✗ FAILS``; an UNDERTRAINED cell adds its equal-budget verdict in
        brackets (``↻ UNDERTRAINED [BEATS]``)."""
        extra = f" [{self.at_budget}]" if self.verdict == V.UNDERTRAINED and self.at_budget else ""
        return f"{MARK.get(self.verdict, '')} {self.verdict}{extra}".strip()

    @property
    def numbers(self) -> str:
        """``.607 vs .595 frozen_decoder`` (trained mean vs the closest baseline's mean);
        ``(not recorded)`` for a score this SAE has no row for."""
        if self.verdict == V.NO_DATA and self.trained is None:
            return "(not recorded)"
        versus = f" vs {short(self.baseline_mean)} {self.baseline}" if self.baseline else ""
        return f"{short(self.trained)}{versus}"

    @property
    def text(self) -> str:
        """``✗ FAILS .607 vs .595 frozen_decoder``."""
        return f"{self.label} {self.numbers}"


@dataclass
class Row:
    """One SAE (set, architecture): its headline cells, the headline scores it FAILS on (column
    titles) and the other judged scores it FAILS on (score labels, e.g. ``dead_fraction``)."""

    set: str
    arch: str
    cells: dict[str, Cell] = field(default_factory=dict)
    fails_on: list[str] = field(default_factory=list)
    fails_other: list[str] = field(default_factory=list)

    @property
    def fails(self) -> bool:
        """FAILS on some headline score: what the headline counts as a failing SAE."""
        return bool(self.fails_on)

    @property
    def fails_text(self) -> str:
        """``explained variance, MCC (also dead_fraction)``; ``—`` when it FAILS nowhere."""
        text = ", ".join(self.fails_on) or "—"
        if self.fails_other:
            text += f" (also {', '.join(self.fails_other)})"
        return text


def _num(v: Any) -> float | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) and v else None


def best_baseline(row: Mapping[str, Any]) -> str | None:
    """For a row whose verdict named no baseline (SEEDS, NO DATA...): the baseline with the best
    mean in the score's direction, so the cell still reads ``trained vs best baseline``. The
    baselines are the row's ``verdict_vs_<baseline>`` columns."""
    direction = _str(row.get("direction"))
    means = [(m, b) for b in (k[len("verdict_vs_"):] for k in row if str(k).startswith("verdict_vs_"))
             if (m := _num(row.get(f"{b}_mean"))) is not None]
    if not means or direction not in ("higher", "lower"):
        return None
    return (max(means) if direction == "higher" else min(means))[1]


def columns(rows: Iterable[Mapping[str, Any]], set_name: str) -> list[Column]:
    """The headline columns of one set, in the order their scores appear in ``rows`` (metrics as
    configured, scores as declared); per title the score with the highest priority."""
    best: dict[str, tuple[int, Column]] = {}
    order: list[str] = []
    for r in rows:
        title = _str(r.get("headline"))
        if r.get("set") != set_name or not title or not _str(r.get("direction")):
            continue
        prio = int(_num(r.get("headline_priority")) or 0)
        col = Column(title, str(r["metric"]), str(r["score"]), str(r["direction"]))
        if title not in best:
            order.append(title)
            best[title] = (prio, col)
        elif prio > best[title][0]:
            best[title] = (prio, col)
    return [best[t][1] for t in order]


def table(rows: Sequence[Mapping[str, Any]], set_name: str) -> tuple[list[Column], list[Row]]:
    """Headline columns and one :class:`Row` per architecture of ``set_name`` (architectures in
    the order of ``rows``). A column an architecture has no row for is a ``NO DATA`` cell."""
    cols = columns(rows, set_name)
    part = [r for r in rows if r.get("set") == set_name]
    names = labels(part)
    out: dict[str, Row] = {}
    for r in part:
        out.setdefault(str(r["arch"]), Row(set_name, str(r["arch"])))
    by_key = {(str(r["arch"]), str(r["metric"]), str(r["score"])): r for r in part}
    for arch, row in out.items():
        for c in cols:
            rec = by_key.get((arch, c.metric, c.score))
            if rec is None:
                row.cells[c.title] = Cell(V.NO_DATA, None, None, None, None, None)
                continue
            base = _str(rec.get("baseline")) or best_baseline(rec)
            row.cells[c.title] = Cell(str(rec.get("verdict")), _str(rec.get("at_budget")), _num(rec.get("trained_mean")),
                                      base, _num(rec.get(f"{base}_mean")) if base else None, _num(rec.get("min_effect")))
        shown = {(c.metric, c.score): c.title for c in cols}
        failed = [(str(r["metric"]), str(r["score"])) for r in part
                  if str(r["arch"]) == arch and r.get("verdict") == V.FAILS]
        row.fails_on = [c.title for c in cols if (c.metric, c.score) in failed]
        row.fails_other = [names[k] for k in failed if k not in shown]
    return cols, list(out.values())


def failing(rows: Sequence[Mapping[str, Any]], sets: Iterable[str]) -> list[Row]:
    """Every SAE (set, architecture) that FAILS on at least one headline score."""
    return [row for s in sets for row in table(rows, s)[1] if row.fails]


def count_line(table_rows: list[Row]) -> str:
    """``N of M SAEs fail to beat a random baseline on a headline score`` and how many more FAIL
    only on other scores."""
    n_fail = sum(r.fails for r in table_rows)
    n_other = sum(1 for r in table_rows if not r.fails and r.fails_other)
    text = f"{n_fail} of {len(table_rows)} SAEs fail to beat a random baseline on a headline score"
    if n_other:
        text += f"; {n_other} more only on other scores"
    return text


def counts(rows: Sequence[Mapping[str, Any]], sets: Iterable[str]) -> dict[str, int]:
    """How many headline cells carry each label, over ``sets`` (what the HTML page shows)."""
    out: dict[str, int] = {}
    for s in sets:
        for row in table(rows, s)[1]:
            for cell in row.cells.values():
                out[cell.verdict] = out.get(cell.verdict, 0) + 1
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m saebench_sanity.leaderboard.headline [BOARD.json ...]``: per board and set, how
    many SAEs fail a headline score and the headline cells per label (default: leaderboards/*.json)."""
    import argparse
    import json
    from pathlib import Path

    from saebench_sanity.leaderboard.html import BOARD_KEYS

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("boards", nargs="*", help="leaderboard JSON files (default: leaderboards/*.json)")
    args = parser.parse_args(argv)
    for path in [Path(p) for p in args.boards] or sorted(Path("leaderboards").glob("*.json")):
        board = json.loads(path.read_text(encoding="utf-8"))
        if not (isinstance(board, dict) and BOARD_KEYS <= set(board)):
            continue
        for s in board["sets"]:
            _, rows = table(board["rows"], s)
            if rows:
                cells = counts(board["rows"], [s])
                print(f"{board['name']:<14} {s:<22} {count_line(rows)}; cells: "
                      + ", ".join(f"{v} {cells[v]}" for v in V.VERDICTS if v in cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
