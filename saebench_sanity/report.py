"""Terminal output of ``saebench run``: rich live progress per cell, then the time each cell spent
training and in each metric, and last the headline verdict tables (FAILS in red), the count of SAEs
that fail and where the leaderboard files are (the HTML page among them)."""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
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
        self.cells_task: TaskID  # both tasks are added by start()
        self.step_task: TaskID
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


def headline_tables(table: Any, col: Any) -> list[Table]:
    """One rich table per set: the leaderboard's headline table (one row per SAE, one column per
    headline score: verdict with its mark, then trained vs closest baseline; the scores it FAILS on)."""
    from saebench_sanity.leaderboard import headline as H

    out: list[Table] = []
    if table is None or table.empty:
        return out
    rows = table.to_dict(orient="records")
    for set_name in col.sets:
        cols, sae_rows = H.table(rows, set_name)
        if not sae_rows:
            continue
        t = Table(title=f"{set_name}: trained SAE vs closest random baseline", title_justify="left", show_lines=True)
        t.add_column("SAE", no_wrap=True)
        for c in cols:
            t.add_column(c.title)
        t.add_column("fails on", style="red")
        for r in sae_rows:
            cells = [f"[{STYLE.get(r.cells[c.title].verdict, '')}]{escape(r.cells[c.title].label)}[/]\n"
                     f"{escape(r.cells[c.title].numbers)}" for c in cols]
            t.add_row(r.arch, *cells, escape(r.fails_text))
        out.append(t)
    return out


def failing_line(table: Any, col: Any) -> str:
    """``N of M SAEs fail to beat a random baseline on a headline score: set/arch (scores); ...``."""
    from saebench_sanity.leaderboard import headline as H

    if table is None or table.empty:
        return "No scores recorded."
    rows = table.to_dict(orient="records")
    all_rows = [r for s in col.sets for r in H.table(rows, s)[1]]
    failing = [r for r in all_rows if r.fails]
    text = H.count_line(all_rows)
    if failing:
        text += ": " + "; ".join(f"{r.set}/{r.arch} ({', '.join(r.fails_on)})" for r in failing)
    return text + "."


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
    """After a run: time per cell, skipped metrics, the rule, the run's counts, then the headline
    table of every set, the count of SAEs that fail and the paths of the leaderboard files."""
    from saebench_sanity.leaderboard.verdict import rule_text

    console.print(timing_table(result.outcomes, [m.name for m in result.plan.metrics]))
    col = result.collected
    for set_name, metric, reason in col.skipped:
        console.print(f"[dim]skipped {metric} on {set_name}: {escape(reason)}[/dim]")
    console.print(rule_text(col.rule, col.baselines, col.references).replace("**", ""))
    s = result.summary
    console.print(f"{s['cells']} cells: trained {s['trained_now']} now ({s['train_seconds']:.1f} s), "
                  f"{s['cells'] - s['trained_now'] - s['failed']} from cache, {s['failed']} failed, "
                  f"{s['metric_errors']} metric errors, {s.get('metric_skipped', 0)} metrics skipped"
                  f"{' (reasons above)' if s.get('metric_skipped') else ''}.")
    if col.missing:
        console.print(f"[yellow]partial: {len(col.missing)} planned cell(s) have no record[/yellow]")
    for t in headline_tables(result.table, col):
        console.print(t)
    line = failing_line(result.table, col)
    console.print(f"[green]{escape(line)}[/]" if line.startswith("0 of") else f"[bold red]{escape(line)}[/]")
    paths = [p for p in result.leaderboard_paths if p.suffix == ".md"]
    html = [p for p in result.leaderboard_paths if p.suffix == ".html"]
    console.print("Leaderboard: " + ", ".join(str(p) for p in paths)
                  + (f"; open in a browser: {html[0]}" if html else ""))
