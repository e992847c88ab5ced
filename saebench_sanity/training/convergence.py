"""The UNDERTRAINED rule: a cell whose loss is still falling at the end of training is not judged.

``assess`` fits a robust line (Theil-Sen: the median of all pairwise slopes) to the loss curve over
the last ``window_fraction`` of the training steps and converts its slope into the relative
improvement over that window::

    rel_improvement = -slope * window_steps / |median loss in the window|

A cell is converged when ``rel_improvement <= rel_tol``. A line fit (rather than first-vs-last
point) keeps one noisy interval from deciding the verdict, and the medians keep loss spikes
(a batch of outlier tokens in a real residual stream can raise one interval's mean loss
tenfold) from deciding it either way. Fewer than 2 curve points in the
window (a run shorter than two ``curve_every`` intervals at the end) cannot show convergence and
is reported not converged.
"""

from __future__ import annotations

import math
from typing import Sequence


def assess(curve: Sequence[tuple[int, float]], window_fraction: float, rel_tol: float) -> tuple[bool, dict[str, float]]:
    """``(converged, info)`` for a loss curve ``[(step, loss), ...]`` (steps increasing).

    ``info``: ``rel_improvement`` (NaN if it cannot be computed), ``window`` (steps in the window),
    ``window_start`` (first step in it), ``points`` (curve points used), ``final_loss``.
    """
    if not 0 < window_fraction <= 1:
        raise ValueError(f"window_fraction = {window_fraction!r} must be in (0, 1]")
    pts = [(float(s), float(v)) for s, v in curve if math.isfinite(float(v))]
    info = {"rel_improvement": math.nan, "window": 0.0, "window_start": math.nan,
            "points": 0.0, "final_loss": pts[-1][1] if pts else math.nan}
    if len(pts) < 2:
        return False, info
    last = pts[-1][0]
    start = last - window_fraction * last
    window = [(s, v) for s, v in pts if s >= start]
    if len(window) < 2:
        window = pts[-2:]
    xs, ys = [s for s, _ in window], [v for _, v in window]
    n = len(xs)
    slopes = sorted((ys[j] - ys[i]) / (xs[j] - xs[i]) for i in range(n) for j in range(i + 1, n) if xs[j] != xs[i])
    slope = _median(slopes) if slopes else 0.0
    level = _median(sorted(ys))
    span = xs[-1] - xs[0]
    rel = -slope * span / abs(level) if level != 0 else (0.0 if slope >= 0 else math.inf)
    info.update(rel_improvement=rel, window=span, window_start=xs[0], points=float(n))
    return bool(rel <= rel_tol), info


def _median(sorted_values: list[float]) -> float:
    n = len(sorted_values)
    mid = n // 2
    return sorted_values[mid] if n % 2 else 0.5 * (sorted_values[mid - 1] + sorted_values[mid])
