"""Leaderboard files: ``<out>/<name>.md`` (tabulate), ``.csv``, ``.json``, the plots
``<out>/<name>/<set>.png`` (verdicts) and ``<set>-modes.png`` (every mode), and ``<out>/index.html``
(every board of ``out``, ``leaderboard.html``).

Output is a pure function of the recorded results and deterministic (no timestamps, fixed float
formatting, sorted rows), so ``saebench leaderboard --check`` can recompute the files and compare.
The Markdown starts with the command that regenerates it, then the headline table per set
(``leaderboard.headline``), the full per-score tables (scores with a direction; descriptive ones
stay in the CSV / JSON), and ends with the verdict rule.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from tabulate import tabulate

from saebench_sanity.io import atomic_write_text, stable_hash
from saebench_sanity.leaderboard import headline as H
from saebench_sanity.leaderboard import verdict as V
from saebench_sanity.leaderboard.aggregate import Collected, summary

ARROW = {"higher": "↑", "lower": "↓", None: ""}
log = logging.getLogger(__name__)


def score_labels(part: pd.DataFrame) -> list[str]:
    """Row labels ``score ↑`` for a set's rows, ``metric.score ↑`` where two metrics share a
    score name (``autointerp.score`` and ``ravel.score``)."""
    owners = part.groupby("score")["metric"].nunique().to_dict() if not part.empty else {}
    out = []
    for _, r in part.iterrows():
        name = f"{r['metric']}.{r['score']}" if owners.get(r["score"], 1) > 1 else str(r["score"])
        arrow = ARROW.get(r["direction"] if isinstance(r["direction"], str) else None, "")
        out.append(f"{name} {arrow}".strip())
    return out


def judge_identity(col: Collected, metric: str, params: dict[str, Any]) -> str | None:
    """The judge of a metric's parameter set as its results recorded it (``plugin:model``; several
    joined if records disagree), None for a metric without a judge. Records without a recorded
    identity (written before it was stored) show the judge's name and say so: the leaderboard
    names only what the results hold, never what happens to be installed now."""
    name = params.get("judge")
    if not isinstance(name, str):
        return None
    recorded = col.judges.get(metric, {}).get(stable_hash(params))
    return ", ".join(recorded) if recorded else f"{name} (identity not recorded)"


def settings_lines(col: Collected) -> list[str]:
    """One line per metric: the parameters its recorded scores were computed with (the judge of
    AutoInterp first: scores from different judges are different metrics)."""
    lines = []
    for metric, variants in col.metric_params.items():
        for params in variants:
            judge = judge_identity(col, metric, params)
            shown = ", ".join(f"{k}={json.dumps(v, sort_keys=True)}" for k, v in sorted(params.items()))
            lines.append(f"- `{metric}`" + (f" judged by **{judge}**" if judge else "") + (f": {shown}" if shown else ""))
    return lines


def fmt(v: Any) -> str:
    """Stable short number: 3 decimals in [0.01, 1000), else 3 significant digits."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    v = float(v)
    if v == 0:
        return "0"
    if 0.01 <= abs(v) < 1000:
        return f"{v:.3f}"
    return f"{v:.3g}"


def name_or_dash(v: Any) -> str:
    return v if isinstance(v, str) and v else "—"


def fmt_stats(row: pd.Series, mode: str) -> str:
    n = row.get(f"{mode}_n", 0)
    if not n or pd.isna(n):
        return "—"
    text = fmt(row[f"{mode}_mean"])
    if int(n) > 1:
        text += f" ± {fmt(row[f'{mode}_sd'])}"
    if not bool(row.get(f"{mode}_converged", True)):
        text += "†"
    return text


def fmt_bounds(lower: Any, upper: Any) -> str:
    """``[lower, upper]`` of the comparison shown; ``—`` when it has no interval (constant sides that
    the exact test cannot decide, verdict.py)."""
    if lower is None or upper is None or pd.isna(lower) or pd.isna(upper):
        return "—"
    return f"[{fmt(lower)}, {fmt(upper)}]"


def fmt_training(info: dict[str, Any]) -> str:
    """``steps / L0`` of one mode (mean over seeds); ``—`` for what was not recorded."""
    steps, l0 = info.get("steps"), info.get("l0")
    s = "—" if steps is None or pd.isna(steps) else f"{steps:.0f}"
    z = "—" if l0 is None or pd.isna(l0) else f"{l0:.1f}"
    return f"{s} / {z}"


def training_table(col: Collected, set_name: str, archs: list[str]) -> str:
    """Per architecture of a set: the L0 target and every mode's steps used / final L0."""
    from saebench_sanity.leaderboard.aggregate import mode_training

    info = mode_training(col)
    rows = []
    for arch in archs:
        targets = [info[(set_name, arch, m)]["target_l0"] for m in col.modes if (set_name, arch, m) in info]
        target = next((t for t in targets if t is not None), None)
        rows.append([arch, "—" if target is None else f"{target:g}",
                     *[fmt_training(info.get((set_name, arch, m), {})) for m in col.modes]])
    return tabulate(rows, headers=["arch", "target L0", *col.modes], tablefmt="github", disable_numparse=True)


def _round(v: Any) -> Any:
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, float):
        return None if not math.isfinite(v) else float(f"{v:.6g}")
    if hasattr(v, "item"):  # numpy scalar
        return _round(v.item())
    return v


def _producer(results: str) -> str:
    """The command that re-creates the results under ``results`` (from its recorded run.json)."""
    import json
    from pathlib import Path

    run_file = Path(results) / "run.json"
    source = ""
    if run_file.is_file():
        source = str((json.loads(run_file.read_text(encoding="utf-8")).get("config") or {}).get("source", ""))
    if source.startswith("embedded:"):
        suite = source.split(":", 1)[1]
        if str(Path(results).parent).rstrip("/").endswith("leaderboards/results"):
            return f"bash scripts/regenerate-leaderboards.sh {suite}"
        return "saebench run" + {"default": "", "quick": " --quick"}.get(suite, f" --suite {suite}")
    return f"saebench run --config {source}" if source else "saebench run"


def command_line(results: str, out: str, name: str, family: str | None = None, plots: bool = True) -> str:
    """The command that writes this board (``plots=False``: one written with ``--no-plots``)."""
    return (f"saebench leaderboard --results {results} --out {out} --name {name}"
            + (f" --family {family}" if family else "") + ("" if plots else " --no-plots"))


@dataclass
class Rendered:
    markdown: str
    csv: str
    json: str
    table: pd.DataFrame


def headline_section(rows: list[dict[str, Any]], set_name: str, name: str) -> list[str]:
    """Markdown of one set's headline table (``rows``: the board's JSON rows), its verdict plot
    and which recorded score fills each column."""
    cols, table_rows = H.table(rows, set_name)
    if not cols:
        return ["No headline score recorded for this set (see the full table).", ""]
    lines = [H.count_line(table_rows) + ".", ""]
    body = [[r.arch, *[r.cells[c.title].text for c in cols], r.fails_text] for r in table_rows]
    body = [[f"**{cell}**" if cell.startswith(H.MARK[V.FAILS]) else cell for cell in line] for line in body]
    lines.append(tabulate(body, headers=["SAE", *[f"{c.title} {ARROW.get(c.direction, '')}".strip() for c in cols],
                                         "fails on"], tablefmt="github", disable_numparse=True))
    lines += ["", f"![{set_name}: trained vs best baseline]({name}/{set_name}.png)", "",
              "Columns: " + "; ".join(f"{c.title} = `{c.metric}.{c.score}`" for c in cols) + ".", ""]
    return lines


def render(col: Collected, *, name: str, results: str, out: str, family: str | None = None) -> Rendered:
    """Text of the three leaderboard files for the collected results (``family``: the set family
    they were filtered to, named in the regenerate command). A pure function of ``col``."""
    table = summary(col)
    cmd = command_line(results, out, name, family)
    rule = V.rule_text(col.rule, col.baselines, col.references)
    records = [{k: _round(v) for k, v in rec.items()} for rec in table.to_dict(orient="records")]
    marks = ", ".join(f"{H.MARK[lab]} {lab}" for lab in V.VERDICTS if H.MARK.get(lab))
    md: list[str] = [f"# Leaderboard: {name}", "",
                     f"Regenerate the table with `{cmd}` (`--check` verifies this file is current); "
                     f"re-run the suite that produced the results with `{_producer(results)}`.", ""]
    md.append("Does each trained SAE beat its random baselines on the same data? The headline table answers "
              "it per activation set: one row per SAE (architecture), one column per headline score, each cell "
              "the trained SAE's score (mean over seeds) vs the closest random baseline's (for FAILS: one shown "
              "as good or better) and the verdict; the last column names the headline scores on which the SAE "
              "FAILS (in brackets, other scores of the full table it FAILS on). "
              f"Marks: {marks}; an UNDERTRAINED cell shows in brackets what it would read at equal budget. "
              "Full scores follow; the same boards, sortable and filterable: [index.html](index.html).")
    md.append("")
    if col.missing:
        md += [f"**Partial results**: {len(col.missing)} planned cell(s) or metric(s) have no record, so some cells "
               f"read NO DATA or rest on fewer seeds: {', '.join(col.missing)}.", ""]
    md += ["## Headline", ""]
    for set_name in col.sets:
        md += [f"### {set_name}", ""]
        part = [r for r in records if r.get("set") == set_name]
        md += headline_section(records, set_name, name) if part else ["No scores recorded for this set.", ""]
    md += ["## Full scores", "",
           "Per activation set: steps used / final L0 per mode (mean over seeds; the target L0 where the "
           "architecture aims at one), then one row per (architecture, score with a direction). Columns: the "
           "score's chance level or floor, every training mode as mean ± sd over seeds († some seed did not "
           "converge), the closest baseline, d (trained advantage over it) and its one-sided bounds [lower, upper] "
           f"(lower at {col.confidence:g}, upper Holm-adjusted), and the verdict (rule at the end). Descriptive "
           f"scores (no direction: L0, CE values, outlier shares, parse failures) are in {name}.csv and {name}.json "
           "only, which also add d, se, df and bounds against every baseline.", ""]
    for set_name in col.sets:
        part = table[table["set"] == set_name] if not table.empty else table
        md.append(f"### {set_name}")
        md.append("")
        if part.empty:
            md.append("No scores recorded for this set.")
            md.append("")
            continue
        counts = part["verdict"].value_counts()
        line = "Verdicts: " + ", ".join(f"{lab} {int(counts[lab])}" for lab in V.VERDICTS
                                        if lab in counts and lab != V.DESCRIPTIVE) + "."
        under = part[part["verdict"] == V.UNDERTRAINED]
        if not under.empty:
            budget = under["at_budget"].value_counts()
            line += (" At equal budget, the UNDERTRAINED rows would read: "
                     + ", ".join(f"{lab} {int(budget[lab])}" for lab in V.VERDICTS if lab in budget) + ".")
        md.append(line)
        md.append("")
        md.append("Steps used / final L0:")
        md.append("")
        md.append(training_table(col, set_name, list(part["arch"].drop_duplicates())))
        md.append("")
        headers = ["arch", "score", "chance", *col.modes, "baseline", "d", "bounds", "verdict"]
        rows = []
        for label, (_, r) in zip(score_labels(part), part.iterrows()):
            if not isinstance(r["direction"], str):
                continue  # descriptive: CSV / JSON only
            verdict = r["verdict"]
            if verdict == V.UNDERTRAINED:
                verdict = f"{verdict} [{r['at_budget']}]"
            rows.append([r["arch"], label, fmt(r["chance"]),
                         *[fmt_stats(r, m) for m in col.modes],
                         name_or_dash(r["baseline"]), fmt(r["diff"]), fmt_bounds(r["lower"], r["upper"]),
                         f"**{verdict}**" if r["verdict"] == V.FAILS else verdict])
        if rows:
            md.append(tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True))
            md.append("")
        md.append(f"![{set_name}: every mode]({name}/{set_name}-modes.png)")
        md.append("")
    settings = settings_lines(col)
    if settings:
        md += ["## Metric settings", "", *settings, ""]
    notes = []
    for set_name, metric, reason in col.skipped:
        notes.append(f"- metric `{metric}` skipped on `{set_name}`: {reason}")
    for label, error in col.failed:
        notes.append(f"- cell `{label}` failed: {error}")
    for label, metric, error in col.metric_errors:
        notes.append(f"- metric `{metric}` errored on `{label}`: {error}")
    for label in col.missing:
        notes.append(f"- `{label}` has no record (the run did not finish it)")
    if notes:
        md += ["## Notes", "", *notes, ""]
    md += ["---", "", rule, ""]

    csv_df = table.copy()
    csv_text = csv_df.to_csv(index=False, float_format="%.6g", lineterminator="\n")
    payload = {
        "name": name, "command": cmd, "rule": rule, "min_effect": col.min_effect, "confidence": col.confidence,
        "min_seeds": col.min_seeds, "l0_tolerance": col.l0_tolerance,
        "modes": col.modes, "baselines": col.baselines, "references": col.references, "sets": col.sets,
        "metric_params": col.metric_params,
        "judges": sorted({j for m, variants in col.metric_params.items() for p in variants if (j := judge_identity(col, m, p))}),
        "rows": records,
        "skipped": [{"set": s, "metric": m, "reason": r} for s, m, r in col.skipped],
        "failed": [{"cell": c, "error": e} for c, e in col.failed],
        "metric_errors": [{"cell": c, "metric": m, "error": e} for c, m, e in col.metric_errors],
        "missing": col.missing,
    }
    json_text = json.dumps(payload, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"
    return Rendered(markdown="\n".join(md), csv=csv_text, json=json_text, table=table)


def write(col: Collected, *, name: str, results: str, out: str, plots: bool = True,
          family: str | None = None) -> list[Path]:
    """Write ``<out>/<name>.{md,csv,json}``, (``plots``) ``<out>/<name>/<set>.png`` (verdicts) and
    ``<set>-modes.png`` (every mode), and ``<out>/index.html`` over every board in ``out``."""
    from saebench_sanity.leaderboard import html

    rendered = render(col, name=name, results=results, out=out, family=family)
    if col.missing:
        log.warning("%s is partial: %d planned cell(s) or metric(s) have no record (first: %s); %s.md names them",
                    results, len(col.missing), col.missing[0], Path(out) / name)
    out_dir = Path(out)
    paths = []
    for ext, text in (("md", rendered.markdown), ("csv", rendered.csv), ("json", rendered.json)):
        path = out_dir / f"{name}.{ext}"
        atomic_write_text(path, text)
        paths.append(path)
    if plots:
        from saebench_sanity.leaderboard.plots import plot_headline, plot_set

        rows = json.loads(rendered.json)["rows"]
        for set_name in col.sets:
            path = out_dir / name / f"{set_name}.png"
            if plot_headline(rows, set_name, path):
                paths.append(path)
            path = out_dir / name / f"{set_name}-modes.png"
            if plot_set(col, rendered.table, set_name, path):
                paths.append(path)
    index = out_dir / html.INDEX
    atomic_write_text(index, html.index_html(out_dir))
    paths.append(index)
    return paths


def check(col: Collected, *, name: str, results: str, out: str, family: str | None = None,
          plots: bool = True) -> list[str]:
    """Names of the leaderboard files under ``out`` that differ from a fresh rendering (missing
    files count as differing), ``index.html`` included (rebuilt from this board's fresh JSON and
    the other boards' JSON files in ``out``). PNGs are checked for presence only (their pixels
    depend on the installed matplotlib / freetype), and not at all without ``plots`` (a board
    written with ``plots=False``)."""
    from saebench_sanity.leaderboard import html

    rendered = render(col, name=name, results=results, out=out, family=family)
    out_dir = Path(out)
    differ = []
    for ext, text in (("md", rendered.markdown), ("csv", rendered.csv), ("json", rendered.json)):
        path = out_dir / f"{name}.{ext}"
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            differ.append(str(path))
    rows = json.loads(rendered.json)["rows"]
    for set_name in col.sets if plots else []:  # the plots write() draws: verdicts where a headline score exists,
        expected = []          # every mode where a score has a direction
        if H.columns(rows, set_name):
            expected.append(set_name)
        if any(r.get("set") == set_name and r.get("direction") for r in rows):
            expected.append(f"{set_name}-modes")
        for stem in expected:
            path = out_dir / name / f"{stem}.png"
            if not path.is_file():
                differ.append(str(path))
    index = out_dir / html.INDEX
    if not index.is_file() or index.read_text(encoding="utf-8") != html.index_html(out_dir, {name: rendered.json}):
        differ.append(str(index))
    return differ
