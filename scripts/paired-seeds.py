"""Would a paired comparison over seeds give the verdict rule more power? Measured on stored results.

    python scripts/paired-seeds.py [--confidence C] FOLDER [FOLDER ...]

The rule compares the trained SAE's seeds with a baseline's seeds as two independent samples
(Welch, ``leaderboard/verdict.py``). The seeds of a cohort are not independent of each other:
the trained SAE and its baselines of one seed train on the same data stream from the same
initial weights (a baseline freezes or constrains part of them). A paired comparison uses the
per-seed differences ``d_s`` instead (``se = sd(d_s) / sqrt(n)``, ``n - 1`` degrees of freedom),
which is narrower when the two sides move together across seeds and wider when they do not.

For every comparison of a directional score (trained against one baseline, the seeds both sides
have, at least 3, both sides with spread) the script prints, per results folder: how often the
paired standard error is below Welch's, the quartiles of their ratio and of the seeds'
correlation, and how many per-baseline bounds would cross the rule's thresholds differently:
``lower > min_effect`` at ``confidence`` (that baseline is beaten) and ``upper < min_effect`` at
``1 - alpha/k`` (that baseline is as good; k = the baselines of the row). It changes nothing
and writes nothing.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np


def comparisons(folder: Path, confidence: float | None = None) -> list[dict[str, float]]:
    """One dict per comparison (module docstring); ``confidence`` None: the run's (the board's)."""
    import pandas as pd

    from saebench_sanity.leaderboard import aggregate
    from saebench_sanity.leaderboard.verdict import Stats, advantage, bounds, effective_min_effect, welch

    col = aggregate.collect(folder)
    confidence = col.confidence if confidence is None else confidence
    long = col.long[col.long["direction"].isin(["higher", "lower"])]
    out = []
    for (set_name, arch, metric, score), rows in long.groupby(["set", "arch", "metric", "score"], sort=False):
        direction = rows["direction"].iloc[0]
        score_min = rows["min_effect"].iloc[0]
        m = effective_min_effect(None if score_min is None or pd.isna(score_min) else score_min, col.min_effect)
        trained = rows[rows["mode"] == "trained"].set_index("seed")["value"]
        bases = [b for b in rows.loc[rows["is_baseline"], "mode"].unique()]
        for base in bases:
            b = rows[rows["mode"] == base].set_index("seed")["value"]
            seeds = sorted(set(trained.index) & set(b.index))
            t_v = np.array([trained[s] for s in seeds], dtype=float)
            b_v = np.array([b[s] for s in seeds], dtype=float)
            ok = np.isfinite(t_v) & np.isfinite(b_v)
            t_v, b_v = t_v[ok], b_v[ok]
            n = len(t_v)
            if n < 3 or Stats.of(t_v).sd == 0 or Stats.of(b_v).sd == 0:  # the rule's "constant" (float rounding)
                continue
            d_s = advantage(t_v, b_v, direction)
            d = float(d_s.mean())
            se_w, df_w = welch(t_v.var(ddof=1), n, b_v.var(ddof=1), n)
            se_p = float(d_s.std(ddof=1) / math.sqrt(n))
            k = len(bases)
            lo_w, up_w = bounds(d, se_w, df_w, confidence, k)
            lo_p, up_p = bounds(d, se_p, n - 1, confidence, k) if se_p > 0 else (d, d)
            out.append({"set": set_name, "arch": arch, "metric": metric, "score": score, "baseline": base,
                        "ratio": se_p / float(se_w), "r": float(np.corrcoef(t_v, b_v)[0, 1]),
                        "beats_w": bool(lo_w > m), "beats_p": bool(lo_p > m),
                        "fails_w": bool(up_w < m), "fails_p": bool(up_p < m)})
    return out


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--confidence", type=float, default=None, help="default: the run's (the board's)")
    args = ap.parse_args(argv)
    for folder in args.folders:
        c = comparisons(folder, args.confidence)
        if not c:
            print(f"{folder}: no comparison with 3 common seeds and spread on both sides")
            continue
        ratio = np.array([x["ratio"] for x in c])
        r = np.array([x["r"] for x in c])
        q = lambda a: "/".join(f"{v:.2f}" for v in np.quantile(a, [0.25, 0.5, 0.75]))  # noqa: E731
        changed = {key: (sum(x[key + "_w"] and not x[key + "_p"] for x in c), sum(x[key + "_p"] and not x[key + "_w"] for x in c),
                         sum(x[key + "_w"] for x in c))
                   for key in ("beats", "fails")}
        print(f"{folder}: {len(c)} comparisons; paired se below Welch's in {int((ratio < 1).sum())} "
              f"({(ratio < 1).mean():.0%}); se ratio paired/Welch quartiles {q(ratio)}; correlation over seeds {q(r)}")
        for key, (lost, gained, before) in changed.items():
            print(f"  baseline {'beaten (lower > min_effect)' if key == 'beats' else 'as good (upper < min_effect)'}: "
                  f"{before} with Welch; paired loses {lost}, gains {gained}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
