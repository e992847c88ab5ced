"""One PNG per activation set: for every score with a direction, a bar per (architecture, mode)
with the seed spread as error bars and the chance level as a dashed line (matplotlib, Agg)."""

from __future__ import annotations

import math
from pathlib import Path

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
    legend: dict[str, object] = {}
    for ax in axes.flat:  # every mode and the chance line, once
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    handles, labels = list(legend.values()), list(legend)
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 6), fontsize=7, frameon=False)
    fig.suptitle(f"{set_name}: trained vs baselines (mean ± sd over seeds)", fontsize=10)
    # fixed margins instead of tight_layout: it draws the figure twice, doubling the time
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.12 if nrows == 1 else 0.08, top=0.9 if nrows == 1 else 0.93,
                        wspace=0.25, hspace=0.45)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png", dpi=90, metadata={"Software": None})
    plt.close(fig)
    tmp.replace(path)
    return True
