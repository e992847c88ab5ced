"""Terminal output of ``saebench run``: rich live progress per cell, then the verdict tables (FAILS
in red) and the time each cell spent training and in each metric."""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.markup import escape
from rich.table import Table

from saebench_sanity.leaderboard import verdict as V

STYLE = {V.BEATS: "green", V.FAILS: "bold red", V.INCONCLUSIVE: "yellow", V.UNDERTRAINED: "magenta", V.AT_CHANCE: "cyan",
         V.L0_NOT_MATCHED: "blue", V.SEEDS: "dim magenta", V.NO_DATA: "dim", V.DESCRIPTIVE: "dim"}


def table_console(width: int = 180, **kwargs: Any) -> Console:
    """A console for printing tables: the terminal's width on a terminal; when piped or captured,
    at least ``width`` columns, so names, hashes and verdicts are not folded into 80."""
    console = Console(**kwargs)
    if not console.is_terminal:
        console.width = max(console.width, width)
    return console


class RichReporter:
    """Live progress: one bar over cells, one for the current cell's training steps."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=self.console, transient=False)
        self.cells_task = None
        self.step_task = None
        self.n_trained = self.n_cached = self.n_failed = 0

    def start(self, plan: Any) -> None:
        self.progress.start()
        self.cells_task = self.progress.add_task("cells", total=len(plan.cells))
        self.step_task = self.progress.add_task("", total=1, visible=False)

    def cell_start(self, cell: Any, index: int) -> None:
        self.progress.update(self.step_task, description=f"  {cell.label}", completed=0, total=1, visible=True)

    def train_progress(self, cell: Any, step: int, total: int, loss: float) -> None:
        desc = f"  {cell.label} training" + (f" loss {loss:.4g}" if isinstance(loss, float) and math.isfinite(loss) else "")
        self.progress.update(self.step_task, description=desc, completed=step, total=max(total, 1))

    def phase(self, cell: Any, text: str) -> None:
        self.progress.update(self.step_task, description=f"  {cell.label} {text}")

    def cell_done(self, cell: Any, outcome: Any) -> None:
        if outcome.status != "ok":
            self.n_failed += 1
            self.progress.console.print(f"[red]failed[/red] {cell.label}: {outcome.error}")
        elif outcome.trained_now:
            self.n_trained += 1
        else:
            self.n_cached += 1
        self.progress.update(self.cells_task, advance=1,
                             description=f"cells (trained {self.n_trained}, cached {self.n_cached}, failed {self.n_failed})")

    def finish(self) -> None:
        self.progress.update(self.step_task, visible=False)
        self.progress.stop()


def verdict_tables(table: Any, col: Any) -> list[Table]:
    """One rich table per set: the judged scores of the Markdown leaderboard (descriptive scores
    such as L0 are in the Markdown file only, to keep the terminal table narrow)."""
    from saebench_sanity.leaderboard.render import fmt, fmt_bounds, fmt_stats, name_or_dash, score_labels

    out = []
    if table is None or table.empty:
        return out
    for set_name in col.sets:
        part = table[(table["set"] == set_name) & table["direction"].notna()]
        if part.empty:
            continue
        t = Table(title=f"{set_name}", title_justify="left", show_lines=False)
        for h in ["arch", "score", "chance", *col.modes, "baseline", "d", "bounds", "verdict"]:
            t.add_column(h.replace("_", " "), no_wrap=h in ("score", "verdict"), overflow="fold")
        for label, (_, r) in zip(score_labels(part), part.iterrows()):
            verdict = r["verdict"]
            shown = f"{verdict} [{r['at_budget']}]" if verdict == V.UNDERTRAINED and "at_budget" in r else verdict
            t.add_row(r["arch"], label, fmt(r["chance"]),
                      *[fmt_stats(r, m) for m in col.modes], name_or_dash(r["baseline"]), fmt(r["diff"]),
                      fmt_bounds(r["lower"], r["upper"]), f"[{STYLE.get(verdict, '')}]{escape(shown)}[/]")
        out.append(t)
    return out


def timing_table(outcomes: list[Any], metric_names: list[str]) -> Table:
    """Seconds per cell: training (``cached`` when the checkpoint existed) and each metric."""
    t = Table(title="time per cell (s)", title_justify="left")
    t.add_column("cell")
    t.add_column("status")
    t.add_column("train", justify="right")
    for m in metric_names:
        t.add_column(m, justify="right")
    for o in outcomes:
        train = f"{o.train_seconds:.2f}" + ("" if o.trained_now else " (cached)")
        cols = []
        for m in metric_names:
            info = o.metrics.get(m)
            if info is None:
                cols.append("—")
            elif info["status"] == "skipped":
                cols.append("skipped")
            elif info["status"] == "error":
                cols.append("[red]error[/red]")
            else:
                cols.append(f"{info['seconds']:.2f}" + (" (cached)" if info.get("cached") else ""))
        status = "ok" if o.status == "ok" else f"[red]{o.status}[/red]"
        t.add_row(o.label, status, train if o.status == "ok" else "—", *cols)
    return t


def print_final(console: Console, result: Any) -> None:
    from saebench_sanity.leaderboard.verdict import rule_text

    console.print(timing_table(result.outcomes, [m.name for m in result.plan.metrics]))
    for t in verdict_tables(result.table, result.collected):
        console.print(t)
    col = result.collected
    for set_name, metric, reason in col.skipped:
        console.print(f"[dim]skipped {metric} on {set_name}: {reason}[/dim]")
    console.print(rule_text(col.rule, col.baselines, col.references).replace("**", ""))
    s = result.summary
    console.print(f"{s['cells']} cells: trained {s['trained_now']} now ({s['train_seconds']:.1f} s), "
                  f"{s['cells'] - s['trained_now'] - s['failed']} from cache, {s['failed']} failed, "
                  f"{s['metric_errors']} metric errors. Leaderboard: "
                  + ", ".join(str(p) for p in result.leaderboard_paths if p.suffix == ".md"))
