"""Two PNGs per activation set (matplotlib, Agg): :func:`plot_headline` draws the headline verdicts
(trained vs closest baseline per headline score, the margin, the verdict written); :func:`plot_set`
draws, for every score with a direction, a bar per (architecture, mode) with the seed spread as
error bars and the chance level as a dashed line."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from saebench_sanity.leaderboard.aggregate import Collected


def plot_set(col: Collected, table: pd.DataFrame, set_name: str, path: str | Path) -> bool:
    """Write the set's figure to ``path``; False (nothing written) when the set has no judged score."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    if table.empty:
        return False
    part = table[(table["set"] == set_name) & table["direction"].notna()]
    if part.empty:
        return False
    scores = list(dict.fromkeys(zip(part["metric"], part["score"])))
    shared = {sc for sc in {sc for _, sc in scores} if sum(1 for _, other in scores if other == sc) > 1}
    archs = list(dict.fromkeys(part["arch"]))
    modes = col.modes
    ncols = min(3, len(scores))
    nrows = math.ceil(len(scores) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.2 * nrows), squeeze=False)
    width = 0.8 / max(1, len(modes))
    cmap = plt.get_cmap("tab10")
    for ax, (metric, score) in zip(axes.flat, scores):
        rows = part[(part["metric"] == metric) & (part["score"] == score)].set_index("arch")
        for j, mode in enumerate(modes):
            xs, ys, es = [], [], []
            for i, arch in enumerate(archs):
                if arch not in rows.index:
                    continue
                r = rows.loc[arch]
                mean, sd = r.get(f"{mode}_mean"), r.get(f"{mode}_sd")
                if mean is None or pd.isna(mean):
                    continue
                xs.append(i - 0.4 + width * (j + 0.5))
                ys.append(float(mean))
                es.append(0.0 if sd is None or pd.isna(sd) else float(sd))
            ax.bar(xs, ys, width=width, yerr=es, capsize=2, color=cmap(j % 10), label=mode)
        first = rows.iloc[0]
        chance = first.get("chance")
        if chance is not None and not pd.isna(chance):
            ax.axhline(float(chance), color="black", linestyle="--", linewidth=0.8, label="chance")
        arrow = "↑" if first["direction"] == "higher" else "↓"
        ax.set_title(f"{metric + '.' if score in shared else ''}{score} {arrow}", fontsize=9)
        ax.set_xticks(range(len(archs)))
        ax.set_xticklabels(archs, fontsize=7, rotation=30)
        ax.tick_params(axis="y", labelsize=7)
    for ax in list(axes.flat)[len(scores):]:
        ax.axis("off")
    legend: dict[str, Any] = {}  # label -> matplotlib handle
    for ax in axes.flat:  # every mode and the chance line, once
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    handles, labels = list(legend.values()), list(legend)
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 6), fontsize=7, frameon=False)
    fig.suptitle(f"{set_name}: trained vs baselines (mean ± sd over seeds)", fontsize=10)
    # fixed margins instead of tight_layout: it draws the figure twice, doubling the time
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.12 if nrows == 1 else 0.08, top=0.9 if nrows == 1 else 0.93,
                        wspace=0.25, hspace=0.45)
    _save(fig, path)
    plt.close(fig)
    return True


#: verdict colours shared by the plots and the HTML page (colour-blind-safe pairs: blue/orange)
COLOURS = {"BEATS": "#1b7837", "FAILS": "#d6604d", "INCONCLUSIVE": "#b8860b", "AT CHANCE": "#4393c3",
           "UNDERTRAINED": "#8c6bb1", "L0 NOT MATCHED": "#2166ac", "SEEDS": "#888888", "NO DATA": "#aaaaaa"}


def plot_headline(rows: list[dict], set_name: str, path: str | Path) -> bool:
    """The set's verdicts as a figure: one panel per headline score, one line per architecture
    with the trained SAE (filled dot, mean ± sd over seeds, coloured by verdict) and its closest
    baseline (open dot), the margin the trained SAE must clear drawn as a band from the baseline
    (``min_effect`` in the better direction), and the verdict written at the right. ``rows``: the
    board's JSON rows. False (nothing written) when the set has no headline score."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    import matplotlib.transforms as mtransforms

    from saebench_sanity.leaderboard import headline as H

    cols, table = H.table(rows, set_name)
    if not cols or not table:
        return False
    by_key = {(r["arch"], r["metric"], r["score"]): r for r in rows if r.get("set") == set_name}
    ncols = 1 if len(cols) == 1 else 2
    nrows = math.ceil(len(cols) / ncols)
    # layout in inches: 11.2 in at 90 dpi = 1008 px, about the width GitHub shows, so 9-11 pt text
    # stays legible; right of each panel room for its verdict words
    width, left, panel_w, text_w = 11.2, 1.0, 3.1, 1.5
    panel_h, gap, top, bottom = 0.36 * len(table) + 0.3, 0.8, 1.0, 0.45
    height = top + bottom + nrows * panel_h + (nrows - 1) * gap
    fig = plt.figure(figsize=(width, height))
    axes = []
    for k in range(len(cols)):
        i, j = divmod(k, ncols)
        x0 = left + j * (panel_w + text_w + left)
        y0 = height - top - (i + 1) * panel_h - i * gap
        axes.append(fig.add_axes((x0 / width, y0 / height, panel_w / width, panel_h / height)))
    for ax, col in zip(axes, cols):
        trans = mtransforms.blended_transform_factory(ax.transAxes, ax.transData)
        sign = 1.0 if col.direction == "higher" else -1.0
        for i, row in enumerate(table):
            y = len(table) - 1 - i
            cell = row.cells[col.title]
            r = by_key.get((row.arch, col.metric, col.score), {})
            colour = COLOURS.get(cell.verdict, "#444444")
            if cell.trained is not None and cell.baseline_mean is not None:
                m = cell.min_effect or 0.0
                ax.plot([cell.baseline_mean, cell.trained], [y, y], color="#bbbbbb", linewidth=1, zorder=1)
                ax.barh(y, sign * m, left=cell.baseline_mean, height=0.5, color=colour, alpha=0.18, zorder=0)
                sd = r.get(f"{cell.baseline}_sd")
                ax.errorbar(cell.baseline_mean, y, xerr=sd if isinstance(sd, (int, float)) else None, fmt="o",
                            mfc="white", mec="#555555", ecolor="#555555", markersize=6, capsize=2, zorder=2)
            if cell.trained is not None:
                sd = r.get("trained_sd")
                ax.errorbar(cell.trained, y, xerr=sd if isinstance(sd, (int, float)) else None, fmt="o",
                            color=colour, markersize=7, capsize=2, zorder=3)
            # an UNDERTRAINED cell: its mark, then what it would read at equal budget
            word = (f"{H.MARK[cell.verdict]} {cell.at_budget}" if cell.verdict == "UNDERTRAINED" and cell.at_budget
                    else cell.verdict)
            ax.text(1.03, y, word, transform=trans, va="center", ha="left", fontsize=9, color=colour,
                    fontweight="bold" if cell.verdict == "FAILS" else "normal")
        ax.set_yticks(range(len(table)))
        ax.set_yticklabels([row.arch for row in reversed(table)], fontsize=10)
        ax.set_ylim(-0.7, len(table) - 0.3)
        ax.set_title(f"{col.title} ({'higher' if sign > 0 else 'lower'} is better)", fontsize=11, loc="left")
        ax.tick_params(axis="x", labelsize=9)
        ax.grid(axis="x", color="#eeeeee")
        ax.margins(x=0.08)
    fig.text(0.5, 1 - 0.25 / height, f"{set_name}: each trained SAE (filled dot, coloured by verdict) vs its closest "
             "random baseline (open dot)", ha="center", va="center", fontsize=12)
    fig.text(0.5, 1 - 0.55 / height, "mean ± sd over seeds; shaded: the margin (min_effect) the trained SAE must "
             "clear; ↻ X: undertrained, X at equal budget", ha="center", va="center", fontsize=9, color="#555555")
    _save(fig, path)
    plt.close(fig)
    return True


def _save(fig, path: str | Path) -> None:
    """PNG written through the one atomic writer (``io.atomic_path``: a mkstemp file in the target
    folder, never a fixed name two renderers could share or a planted symlink could redirect; the
    umask's mode like every other file), then renamed into place."""
    from saebench_sanity.io import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90, metadata={"Software": None})
