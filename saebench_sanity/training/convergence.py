"""The UNDERTRAINED rule: a cell whose loss is still falling at the end of training is not judged.

``assess`` fits a robust line (Theil-Sen: the median of all pairwise slopes) to the loss curve over
the last ``window_fraction`` of the training steps and converts its slope into the relative
improvement over that window::

    rel_improvement = -slope * window_steps / |median loss in the window|

A cell is converged when ``rel_improvement <= rel_tol``. A line fit (rather than first-vs-last
point) keeps one noisy interval from deciding the verdict, and the medians, after far-above-median
intervals are dropped (:func:`_without_spikes`), keep loss spikes (a batch of outlier tokens in
a real residual stream can raise one interval's mean loss tenfold) from deciding it either way.
Fewer than 2 curve points in the
window (a run shorter than two ``curve_every`` intervals at the end) cannot show convergence and
is reported not converged.

With a learning-rate decay at the end (``training.lr_decay_steps``, SAELens's linear decay to
lr/10) the rule looks at the constant-lr part of the curve only (:func:`assess_training`). Annealing
the lr lowers the loss at any budget (less gradient noise, not more learning): measured on the
default real set (one-off 1,500-step run), BatchTopK's loss fell from 29.0 to 25.6 over a 300-step decay after 1,200
constant-lr steps, while the trend over the last 20% of those constant-lr steps was 2.0%. A window that
sits on the decay phase would call every such run UNDERTRAINED whatever its budget. The question
the rule answers is "would more steps at this learning rate still lower the loss?".
"""

from __future__ import annotations

import math
from typing import Any, Sequence


def assess(curve: Sequence[tuple[int, float]], window_fraction: float, rel_tol: float,
           end_step: int | None = None) -> tuple[bool, dict[str, float]]:
    """``(converged, info)`` for a loss curve ``[(step, loss), ...]`` (steps increasing).

    ``end_step``: judge only the points at steps ``<= end_step`` (the window is the last
    ``window_fraction`` of those steps); None judges the whole curve.

    ``info``: ``rel_improvement`` (NaN if it cannot be computed), ``window`` (steps in the window),
    ``window_start`` (first step in it), ``points`` (curve points used), ``final_loss`` (of the
    whole curve), and ``window_end`` = ``end_step`` when given.
    """
    if not 0 < window_fraction <= 1:
        raise ValueError(f"window_fraction = {window_fraction!r} must be in (0, 1]")
    every = [(float(s), float(v)) for s, v in curve if math.isfinite(float(v))]
    pts = every if end_step is None else [(s, v) for s, v in every if s <= end_step]
    info = {"rel_improvement": math.nan, "window": 0.0, "window_start": math.nan,
            "points": 0.0, "final_loss": every[-1][1] if every else math.nan}
    if end_step is not None:
        info["window_end"] = float(end_step)
    if len(pts) < 2:
        return False, info
    last = pts[-1][0]
    start = last - window_fraction * last
    window = [(s, v) for s, v in pts if s >= start]
    if len(window) < 2:
        window = pts[-2:]
    window, n_outliers = _without_spikes(window)
    xs, ys = [s for s, _ in window], [v for _, v in window]
    n = len(xs)
    slopes = sorted((ys[j] - ys[i]) / (xs[j] - xs[i]) for i in range(n) for j in range(i + 1, n) if xs[j] != xs[i])
    slope = _median(slopes) if slopes else 0.0
    level = _median(sorted(ys))
    span = xs[-1] - xs[0]
    rel = -slope * span / abs(level) if level != 0 else (0.0 if slope >= 0 else math.inf)
    info.update(rel_improvement=rel, window=span, window_start=xs[0], points=float(n), outliers=float(n_outliers))
    return bool(rel <= rel_tol), info


#: a window point is an outlier interval when its loss exceeds the window's median by more than
#: SPIKE_RATIO x the median AND by more than SPIKE_SIGMAS robust sds (1.4826 x MAD)
SPIKE_RATIO = 0.5
SPIKE_SIGMAS = 5.0


def _without_spikes(window: list[tuple[float, float]]) -> tuple[list[tuple[float, float]], int]:
    """``(window without outlier intervals, how many were dropped)``.

    Theil-Sen alone tolerates about 29% outliers spread evenly; the spikes of a real residual
    stream (intervals holding a massive-activation token, 2-20x the loss) reached a third of a
    window and bunched at one end, which tilts the median slope. Only upward points count (an
    outlier batch raises the loss), and only when they are far above the median both relative to
    the loss (> 50%) and to the window's spread (> 5 robust sds): a statistical test alone
    dropped the ends of plainly falling synthetic curves whose middle points happened to be
    nearly equal (tiny MAD). Keeps at least 2 points."""
    ys = sorted(v for _, v in window)
    med = _median(ys)
    mad = _median(sorted(abs(v - med) for v in ys))
    limit = max(SPIKE_RATIO * abs(med), SPIKE_SIGMAS * 1.4826 * mad)
    kept = [(s, v) for s, v in window if v - med <= limit]
    return (kept, len(window) - len(kept)) if len(kept) >= 2 else (window, 0)


def assess_training(curve: Sequence[tuple[int, float]], training: Any) -> tuple[bool, dict[str, float]]:
    """:func:`assess` as a cell's ``TrainingConfig`` asks for it: window ``convergence_window``,
    tolerance ``convergence_rel_tol``, on the steps before ``lr_decay_steps`` begin (module
    docstring). Used by the trainer and again by the executor on stored curves, so a cached cell is
    judged by the rule of the code that reads it."""
    decay = int(training.lr_decay_steps)
    end = int(training.steps) - decay if decay > 0 else None
    return assess(curve, float(training.convergence_window), float(training.convergence_rel_tol), end_step=end)


def _median(sorted_values: list[float]) -> float:
    n = len(sorted_values)
    mid = n // 2
    return sorted_values[mid] if n % 2 else 0.5 * (sorted_values[mid - 1] + sorted_values[mid])
