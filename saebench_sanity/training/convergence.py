"""The UNDERTRAINED rule, decided on an interval, and the control that trains a cell until it holds.

What must be level
    A cell is judged on what its verdict measures: the total loss (sae-lens ``loss``), the
    reconstruction error (sae-lens ``mse_loss``) and, on a set with ground truth, the recovery
    (fraction of true features whose best decoder row has cosine >= 0.8, exactly
    :func:`saebench_sanity.metrics.ground_truth.recovery`), probed on ``W_dec`` during training.
    On ``study-constant-mini`` (ReLU / Gated, lr 3e-3, batch 256, l1 1.0, d_sae 1024) the total
    loss and the MSE are flat from step ~200 while recovery is still climbing from under 2% of
    the features (tests/test_training_schedule.py, slow): a rule on the loss alone stopped such
    cells before they had found any feature.

How one curve is judged (:func:`decide`)
    * window: the curve points in the last ``convergence_window`` (20%) of the constant-lr steps
      (warm-up and decay left out: annealing the lr lowers the loss at any budget, so a window on
      the decay would call every run still improving). Loss and MSE windows first drop outlier
      intervals (:func:`_without_spikes`: a real residual stream has batches with 2-20x the loss).
    * estimate: a Theil-Sen line (median of pairwise slopes, robust to the remaining noise) turned
      into the improvement over the window: ``-slope * span / |median|`` for loss and MSE (lower is
      better), ``+slope * span / max(median, 0.01)`` for recovery (higher is better; below 1%
      recovery a rise counts against 1%, so a cell that went from 3 to 9 of 1024 features is
      improving, not "level at ~0"). Windows of more than ``MAX_POINTS`` points are averaged in
      consecutive groups down to ``MAX_POINTS`` (the fit is O(points^2)).
    * interval: ``[lo, hi]``, the ``convergence_confidence`` (90%) percentile interval of the
      same estimate over ``N_BOOT`` moving-block residual bootstrap replicates: the residuals
      around the Theil-Sen line are cut into blocks of ``ceil(n^(1/3))`` consecutive points,
      blocks drawn with replacement are laid back on the line (residuals scaled by
      ``sqrt(n / (n - 2))``: a 2-parameter fit leaves residuals smaller than the noise), and the
      line is refitted. Residual
      (not pairs) resampling keeps the curve's evenly spaced steps (a pairs resample repeats
      steps, which makes pairwise slopes degenerate on windows of 5-40 points); blocks (not single
      residuals) keep the serial correlation of interval means of one optimisation run (slow
      oscillations span several intervals; i.i.d. resampling would narrow the interval). The RNG
      is seeded (``BOOT_SEED``) per call: the same curve always gives the same interval. The
      interval is widened to contain the estimate if the percentiles miss it. Measured on
      41-point windows at a true improvement equal to the tolerance: 7.5% ``improving`` / 10%
      ``level`` with i.i.d. noise, 12% / 13.5% with AR(1) 0.5 noise (nominal 5% each;
      tests/test_training_convergence.py).
    * state: ``improving`` when ``lo > tol``, ``level`` when ``hi < tol``, ``undecided``
      otherwise, and ``undecided`` with fewer than ``MIN_POINTS`` (5) points in the window.

The cell (:func:`judge`)
    ``improving`` if any curve is improving (UNDERTRAINED: no verdict), ``level`` if every curve is
    level, ``undecided`` otherwise. Only ``improving`` withholds the verdict; ``undecided`` cells
    are judged and recorded as undecided. Numbers (defaults of ``TrainingConfig``): tolerance 2%
    of the curve's level per window (the long-standing rule: at recovery 50% it means a rise of
    0.01 over the window), confidence 90% (each decision is a 5% one-sided test), window 20%.

Training (:class:`ConvergenceControl`)
    Constant lr (after SAELens's linear warm-up if configured), then a linear decay to 0 over
    ``lr_decay_steps`` (sae-lens's constant + decay schedule: ``get_lr_scheduler("constant", ...)``
    decays from lr to 0) that starts when the rule first says ``level`` (at a curve point at or
    after ``min_steps``; the start moves by < ``curve_every`` steps so the decay ends on a curve
    point; a failed bootstrap check is repeated only after ``RECHECK_GROWTH`` (5%) more steps,
    which bounds its cost) or at ``max_steps - lr_decay_steps``, whichever comes first. The member stops at the end
    of its decay. Every member of a cohort gets the same ``max_steps`` and schedule shape.

Earliest level
    The rule is not allowed to say level before ``MIN_SHARE`` (10%) of ``max_steps``
    (:func:`earliest_level`). The window is a share of the steps taken, so early in training it
    is short, and right after the matched-L0 controller settles an L1 SAE sits on a plateau:
    a ReLU seed of ``study-variable-mini`` (max 12,000) was level on a 100-step window at step 500
    with explained variance .087 (its MSE flat while L0 reached its target), then its MSE fell
    from 6.5 to 4.4 and the same cell on the reference machine ran 9,020 steps to .381. At 1,200
    steps its window is already 240 steps long and the MSE falls ~4% over it. Checks before the
    earliest step still run (a level answer there waits 5% more steps, as a failed check does),
    so a cell whose first level came at or after it trains exactly as before; a stored cell whose
    early stop came before it was trained under an older rule and is trained again
    (:func:`stopped_too_early`, used by the executor).
"""

from __future__ import annotations

import bisect
import math
from typing import Any, Callable, Mapping, Sequence

IMPROVING, LEVEL, UNDECIDED = "improving", "level", "undecided"
#: curves the rule judges, and whether lower is better
JUDGED = {"loss": True, "mse": True, "recovery": False}
#: fewer window points than this cannot show a trend either way: undecided
MIN_POINTS = 5
#: moving-block length ceil(points ** BLOCK_EXPONENT) (Kuensch / Hall's n^(1/3) rule)
BLOCK_EXPONENT = 1.0 / 3.0
#: bootstrap replicates per decision, and their seed
N_BOOT = 1000
BOOT_SEED = 0
#: recovery improvement is relative to max(median recovery, RECOVERY_FLOOR)
RECOVERY_FLOOR = 0.01
#: the recovery probe's cosine threshold: the ground_truth metric's default and the study's
RECOVERY_COS = 0.8
#: a window point is an outlier interval when its loss exceeds the window's median by more than
#: SPIKE_RATIO x the median AND by more than SPIKE_SIGMAS robust sds (1.4826 x MAD)
SPIKE_RATIO = 0.5
SPIKE_SIGMAS = 5.0
#: a window of more points is averaged in consecutive groups down to at most this many (a
#: coarser curve_every; the bootstrap's Theil-Sen is O(points^2): 40 ms at 50 points, 3 s at 300)
MAX_POINTS = 50
#: during training a failed bootstrap check is not repeated before 5% more steps have passed
#: (the decay may start up to 5% of the steps later than the first level point)
RECHECK_GROWTH = 1.05
#: no early stop before this share of ``max_steps``: a short window early in training cannot tell a
#: plateau from convergence (module docstring, "Earliest level")
MIN_SHARE = 0.1
#: pairwise slopes computed per chunk of bootstrap replicates (bounds memory, ~16 MB)
_CHUNK_PAIRS = 2_000_000


# -- one curve -------------------------------------------------------------------------------------
def _window(curve: Sequence[tuple[int, float]], window_fraction: float, end_step: float | None,
            after_step: float = 0.0) -> list[tuple[float, float]]:
    """The finite points at steps ``<= end_step`` in the last ``window_fraction`` of those steps
    (and after ``after_step``, the warm-up); at least the last 2 such points."""
    pts = [(float(s), float(v)) for s, v in curve if math.isfinite(float(v))]
    if end_step is not None:
        pts = [(s, v) for s, v in pts if s <= end_step]
    if len(pts) < 2:
        return pts
    last = pts[-1][0]
    start = max(last - window_fraction * last, float(after_step))
    window = [(s, v) for s, v in pts if s >= start]
    return window if len(window) >= 2 else pts[-2:]


def _without_spikes(window: list[tuple[float, float]]) -> tuple[list[tuple[float, float]], int]:
    """``(window without outlier intervals, how many were dropped)``.

    Theil-Sen alone tolerates about 29% outliers spread evenly; the spikes of a real residual
    stream (intervals holding a massive-activation token, 2-20x the loss) reached a third of a
    window and bunched at one end, which tilts the median slope. Only upward points count (an
    outlier batch raises the loss), and only when they are far above the median both relative to
    the loss (> 50%) and to the window's spread (> 5 robust sds): a statistical test alone
    dropped the ends of plainly falling synthetic curves whose middle points happened to be
    nearly equal (tiny MAD). Keeps at least 2 points."""
    import numpy as np

    ys = np.array([v for _, v in window])
    med = float(np.median(ys))
    mad = float(np.median(np.abs(ys - med)))
    limit = max(SPIKE_RATIO * abs(med), SPIKE_SIGMAS * 1.4826 * mad)
    kept = [(s, v) for s, v in window if v - med <= limit]
    return (kept, len(window) - len(kept)) if len(kept) >= 2 else (window, 0)


def _group_means(v: Any, n: int) -> Any:
    """Means of ``v`` (1-d numpy, ``len(v) >= n``) over ``n`` consecutive groups, split as
    ``np.array_split`` does (the first ``len(v) % n`` groups one longer). Two reshaped row means
    instead of one ``mean`` call per group (which cost more than the rest of a check); numpy sums
    each row as it sums a 1-d array, so the values are the same bit for bit (a test)."""
    import numpy as np

    q, r = divmod(len(v), n)
    cut = r * (q + 1)
    return np.concatenate([v[:cut].reshape(r, q + 1).mean(axis=1), v[cut:].reshape(n - r, q).mean(axis=1)])


def _theil_sen(x: Any, Y: Any) -> Any:
    """Median pairwise slope of each row: ``x`` ``[n]``, ``Y`` ``[B, n]`` -> ``[B]`` (numpy).

    Hand-written because scipy.stats.theilslopes fits one curve per call; the bootstrap needs
    thousands of fits of the same x, which one broadcast median does at once."""
    import numpy as np

    i, j = np.triu_indices(len(x), 1)
    dx = x[j] - x[i]
    keep = dx != 0
    i, j, dx = i[keep], j[keep], dx[keep]
    if len(dx) == 0:
        return np.zeros(Y.shape[0])
    out = np.empty(Y.shape[0])
    step = max(1, _CHUNK_PAIRS // len(dx))
    for a in range(0, Y.shape[0], step):
        out[a:a + step] = np.median((Y[a:a + step, j] - Y[a:a + step, i]) / dx, axis=1)
    return out


def decide(curve: Sequence[tuple[int, float]], *, window_fraction: float, tol: float, confidence: float = 0.9,
           end_step: float | None = None, lower_is_better: bool = True, after_step: float = 0.0,
           point_only: bool = False) -> dict[str, Any]:
    """The interval decision for one curve ``[(step, value), ...]`` (steps increasing); see the
    module docstring.

    ``end_step``: judge only points at steps ``<= end_step`` (the end of the constant-lr phase);
    ``after_step``: the window starts after it (the warm-up). ``lower_is_better``: loss-like (the
    improvement is a relative fall, spikes dropped) or recovery-like (a rise, relative to
    ``max(median, RECOVERY_FLOOR)``). ``point_only``: skip the bootstrap (``lo``/``hi`` NaN, state
    ``undecided`` unless the estimate alone rules out ``level``, i.e. ``estimate >= tol``).

    Returns ``state`` (``improving``/``level``/``undecided``), ``rel_improvement`` (the estimate;
    NaN with < 2 points), ``lo``, ``hi`` (NaN when not computed), ``points``, ``outliers``,
    ``window_start``, ``window_end`` (steps), ``window`` (their difference).
    """
    import numpy as np

    if not 0 < window_fraction <= 1:
        raise ValueError(f"window_fraction = {window_fraction!r} must be in (0, 1]")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence = {confidence!r} must be in (0, 1)")
    window = _window(curve, window_fraction, end_step, after_step)
    info: dict[str, Any] = {"state": UNDECIDED, "rel_improvement": math.nan, "lo": math.nan, "hi": math.nan,
                            "points": len(window), "outliers": 0, "window_start": math.nan, "window_end": math.nan,
                            "window": 0.0}
    if len(window) < 2:
        return info
    n_out = 0
    if lower_is_better:
        window, n_out = _without_spikes(window)
    x = np.array([s for s, _ in window], dtype=np.float64)
    y = np.array([v for _, v in window], dtype=np.float64)
    if len(x) > MAX_POINTS:
        x, y = _group_means(x, MAX_POINTS), _group_means(y, MAX_POINTS)
    n, span = len(x), float(x[-1] - x[0])
    level = float(np.median(y))
    if lower_is_better:
        sign, denom = -1.0, abs(level)
    else:
        sign, denom = 1.0, max(abs(level), RECOVERY_FLOOR)
    slope = float(_theil_sen(x, y[None, :])[0])

    def improvement(s: Any) -> Any:
        if denom == 0:  # an exactly-zero loss level: no relative scale; only the sign of the trend counts
            return np.where(sign * s > 0, np.inf, 0.0)
        return sign * s * span / denom

    rel = float(improvement(np.array([slope]))[0])
    info.update(rel_improvement=rel, points=n, outliers=n_out, window_start=float(x[0]), window_end=float(x[-1]),
                window=span)
    if n < MIN_POINTS or point_only:
        return info
    intercept = float(np.median(y - slope * x))
    fit = intercept + slope * x
    resid = (y - fit) * math.sqrt(n / max(1, n - 2))  # residuals of a 2-parameter fit are smaller than the noise
    rng = np.random.default_rng(BOOT_SEED)
    block = max(1, math.ceil(n ** BLOCK_EXPONENT))
    n_blocks = math.ceil(n / block)
    starts = rng.integers(0, n - block + 1, size=(N_BOOT, n_blocks))
    idx = (starts[:, :, None] + np.arange(block)).reshape(N_BOOT, -1)[:, :n]
    boot = improvement(_theil_sen(x, fit[None, :] + resid[idx]))
    alpha = (1.0 - confidence) / 2.0
    lo, hi = (float(v) for v in np.quantile(boot, [alpha, 1.0 - alpha]))
    lo, hi = min(lo, rel), max(hi, rel)
    state = IMPROVING if lo > tol else LEVEL if hi < tol else UNDECIDED
    info.update(state=state, lo=lo, hi=hi)
    return info


def assess(curve: Sequence[tuple[int, float]], window_fraction: float, rel_tol: float,
           end_step: int | None = None) -> tuple[bool, dict[str, float]]:
    """The point estimate alone (no interval): ``(rel_improvement <= rel_tol, info)`` for a loss
    curve; the rule before the interval decision, kept for scripts/convergence-report.py. Fewer
    than 2 points: not converged. ``info`` has ``rel_improvement``, ``window``, ``window_start``,
    ``points``, ``outliers``, ``final_loss`` (whole curve) and ``window_end`` = ``end_step``."""
    d = decide(curve, window_fraction=window_fraction, tol=rel_tol, end_step=end_step, point_only=True)
    finite = [float(v) for _, v in curve if math.isfinite(float(v))]
    info = {"rel_improvement": d["rel_improvement"], "window": d["window"], "window_start": d["window_start"],
            "points": float(d["points"]), "outliers": float(d["outliers"]),
            "final_loss": finite[-1] if finite else math.nan}
    if end_step is not None:
        info["window_end"] = float(end_step)
    if d["points"] < 2:
        info["window"], info["points"] = 0.0, float(d["points"])
        return False, info
    return bool(d["rel_improvement"] <= rel_tol), info


# -- a cell ------------------------------------------------------------------------------------------
def pack_curve(curve: Sequence[tuple[int, float]]) -> str:
    """``"step:value step:value ..."``: a curve as one JSON string (a list of pairs takes 4 lines
    per point in the indented result records; 800 points x 4 curves per cell added up)."""
    return " ".join(f"{int(s)}:{float(v)!r}" for s, v in curve)


def unpack_curve(text: str) -> list[tuple[int, float]]:
    """Inverse of :func:`pack_curve`."""
    return [(int(a), float(b)) for a, b in (item.split(":") for item in text.split())]


def _as_curves(curves: Mapping[str, Any] | Sequence[Any]) -> dict[str, list[tuple[int, float]]]:
    if not isinstance(curves, Mapping):  # a bare loss curve (the rule before this one)
        curves = {"loss": curves}
    return {k: unpack_curve(c) if isinstance(c, str) else [(int(s), float(v)) for s, v in c] for k, c in curves.items()}


def judge(curves: Mapping[str, Sequence[Any]] | Sequence[Any], training: Any, *, end_step: float | None = None,
          point_only: bool = False) -> tuple[bool, dict[str, Any]]:
    """``(converged, info)``: the rule (module docstring) on a cell's curves ``{"loss": [(step,
    value), ...], "mse": ..., "recovery": ...}`` (the judged ones present; other keys, e.g.
    ``l0``, are ignored) with ``training``'s window / tolerance / confidence. ``end_step``: the end
    of the constant-lr phase (None: the whole curve). ``converged`` is False only for
    ``improving``.

    ``info``: ``state``, ``curves`` (per judged curve: :func:`decide`'s state, rel_improvement,
    lo, hi, points, outliers, window_start, window_end), ``rule`` (the numbers used), ``end_step``,
    and the loss curve's ``rel_improvement`` / ``window`` / ``window_start`` (read by older tools).
    """
    curves = _as_curves(curves)
    decisions: dict[str, dict[str, Any]] = {}
    after = float(getattr(training, "lr_warm_up_steps", 0) or 0)
    for name, lower in JUDGED.items():
        if name in curves:
            decisions[name] = decide(curves[name], window_fraction=float(training.convergence_window),
                                     tol=float(training.convergence_rel_tol),
                                     confidence=float(training.convergence_confidence), end_step=end_step,
                                     lower_is_better=lower, after_step=after, point_only=point_only)
    states = [d["state"] for d in decisions.values()]
    state = IMPROVING if IMPROVING in states else LEVEL if states and all(s == LEVEL for s in states) else UNDECIDED
    loss = decisions.get("loss", {})
    info = {"state": state, "curves": decisions, "end_step": end_step,
            "rule": {"window": float(training.convergence_window), "tol": float(training.convergence_rel_tol),
                     "confidence": float(training.convergence_confidence), "n_boot": N_BOOT,
                     "min_points": MIN_POINTS, "recovery_floor": RECOVERY_FLOOR},
            "rel_improvement": loss.get("rel_improvement", math.nan), "window": loss.get("window", 0.0),
            "window_start": loss.get("window_start", math.nan)}
    return state != IMPROVING, info


def earliest_level(training: Any) -> int:
    """The first step at which the rule may say level: ``MIN_SHARE`` of ``max_steps``, or
    ``min_steps`` if that is later."""
    return max(int(training.min_steps), math.ceil(MIN_SHARE * int(training.max_steps)))


def stopped_too_early(info: Mapping[str, Any] | None, training: Any) -> bool:
    """True when a stored cell's train info (``train.json``) records an early stop (``level_at``)
    before :func:`earliest_level`: it was trained under an older rule, and this code would have
    trained it longer."""
    level_at = ((info or {}).get("convergence") or {}).get("level_at")
    return level_at is not None and int(level_at) < earliest_level(training)


def constant_phase_end(training: Any) -> int | None:
    """Last step of the constant-lr phase of a run that used its whole budget (None: no decay)."""
    decay = int(training.lr_decay_steps)
    return int(training.max_steps) - decay if decay > 0 else None


def assess_training(curves: Mapping[str, Sequence[Any]] | Sequence[Any], training: Any,
                    end_step: float | None = None) -> tuple[bool, dict[str, Any]]:
    """:func:`judge` on stored curves, ending at ``end_step`` (the recorded decay start) or, when
    not given, where a full-budget run's decay starts. Used by the executor on stored records, so
    a cached cell is judged by the rule of the code that reads it."""
    return judge(curves, training, end_step=end_step if end_step is not None else constant_phase_end(training))


def _g7(value: Any) -> float:
    return float(f"{float(value):.7g}")


# -- training -----------------------------------------------------------------------------------------
def recovery_probe(activation_set: Any, cos_threshold: float = RECOVERY_COS) -> Callable[[Any], float] | None:
    """A probe ``member -> recovery`` for ``ConvergenceControl`` when the set has ground truth
    (``activation_set.ground_truth.features`` ``[n_features, d_in]``), else None. ``member``: an
    object with ``param("W_dec")`` (``[d_sae, d_in]``, engine.MemberView) or an sae-lens SAE."""
    truth = getattr(activation_set, "ground_truth", None)
    if truth is None:
        return None
    from saebench_sanity.metrics.ground_truth import recovery

    features = truth.features.detach()

    def probe(member: Any) -> float:
        w = member.param("W_dec") if hasattr(member, "param") else member.W_dec
        return recovery(features, w.detach(), cos_threshold)

    return probe


class ConvergenceControl:
    """A member's schedule and stopping rule (``training.engine.MemberControl``; module docstring).

    Public API:
        ``max_steps``: int, the budget's maximum (``training.max_steps``).
        ``lr_factor(step) -> float``: multiplier of ``training.lr`` for optimizer step ``step``
            (1-based): ``step / lr_warm_up_steps`` during the warm-up, 1.0, then
            ``1 - (step - decay_start - 1) / lr_decay_steps`` during the decay.
        ``observe(step, values, member) -> bool``: after step ``step`` when ``step %
            curve_every == 0`` or ``step == max_steps``; ``values`` holds the interval means of at
            least ``"loss"`` and ``"mse"`` (``"l0"`` and other keys are recorded too); ``member``
            is handed to the probe (``param("W_dec")``). Returns True when the member must stop
            (end of its decay, or ``max_steps``).
        ``result() -> (converged, info)``: the rule (``judge``) on the constant-lr part of the
            curves; ``info`` adds ``steps`` (taken), ``decay_start``, ``level_at`` (step the rule
            first said level, or None), ``stopped_early`` and ``series`` (every recorded curve,
            :func:`pack_curve` strings; values kept to 7 significant digits, the precision of a
            float32 loss, when observed, so a stored record re-judges to the same decision).
        ``decay_start``, ``curves``: the current decay start and recorded curves.
    """

    def __init__(self, training: Any, *, probe: Callable[[Any], float] | None = None) -> None:
        self.training = training
        self.max_steps = int(training.max_steps)
        self.curve_every = int(training.curve_every)
        self.warm_up = int(training.lr_warm_up_steps)
        self.decay = int(training.lr_decay_steps)
        self.early_stop = bool(training.early_stop)
        self.min_steps = int(training.min_steps)
        self.earliest = earliest_level(training)
        every = getattr(training, "recovery_every", None)
        self.recovery_every = int(every) if every else self.curve_every
        self.probe = probe
        self.curves: dict[str, list[tuple[int, float]]] = {"loss": [], "mse": []}
        if probe is not None:
            self.curves["recovery"] = []
        self.decay_start = self.max_steps - self.decay
        self.level_at: int | None = None
        self.steps = 0
        self._next_check = 0.0

    def lr_factor(self, step: int) -> float:
        if self.warm_up > 0 and step <= self.warm_up:
            return step / self.warm_up  # sae-lens LinearLR(1/W -> 1 over W-1 scheduler steps)
        if step > self.decay_start and self.decay > 0:
            return max(0.0, 1.0 - (step - self.decay_start - 1) / self.decay)
        return 1.0

    def observe(self, step: int, values: Mapping[str, float], member: Any) -> bool:
        self.steps = int(step)
        for name, value in values.items():
            self.curves.setdefault(name, []).append((int(step), _g7(value)))
        if self.probe is not None and (step % self.recovery_every == 0 or step >= self.max_steps):
            self.curves["recovery"].append((int(step), _g7(self.probe(member))))
        if (self.early_stop and self.level_at is None and step >= self.min_steps and step > self.warm_up
                and step <= self.max_steps - self.decay and self._level(step)):
            if step < self.earliest:  # too early to trust (module docstring): look again later
                self._next_check = step * RECHECK_GROWTH
            else:
                self.level_at = int(step)
                # start the decay so that it ends on a curve point (where observe is called again)
                self.decay_start = min(step + (-self.decay) % self.curve_every, self.max_steps - self.decay)
        return step >= min(self.decay_start + self.decay, self.max_steps)

    def _level(self, step: int) -> bool:
        """Every judged curve level at ``step``. The bootstrap runs only when every estimate is
        below the tolerance (the interval contains the estimate, so otherwise ``hi >= tol``).

        Called at every curve point, so it reads only each curve's window (:meth:`_windows`) and
        stops at the first curve whose estimate is not below the tolerance: the same answer as
        judging the whole curves, at a cost that does not grow with the steps taken (judging
        whole curves at each point made the checks O(steps^2): 17% of a 16,000-step synth-zipf TopK
        cohort's time under cProfile, docs/performance.md)."""
        if step < self._next_check:
            return False
        t = self.training
        windows = self._windows(step)
        after = float(getattr(t, "lr_warm_up_steps", 0) or 0)
        tol = float(t.convergence_rel_tol)
        for name, curve in windows.items():
            d = decide(curve, window_fraction=float(t.convergence_window), tol=tol, end_step=step,
                       lower_is_better=JUDGED[name], after_step=after, point_only=True)
            if not (d["points"] >= MIN_POINTS and d["rel_improvement"] < tol):
                return False
        if judge(windows, t, end_step=step)[1]["state"] == LEVEL:
            return True
        self._next_check = step * RECHECK_GROWTH
        return False

    def _windows(self, step: int) -> dict[str, list[tuple[int, float]]]:
        """The judged curves cut to the points :func:`_window` can use at ``step``: from the first
        point at or after the window's start (computed from the curve's last finite point, as
        ``_window`` does). Where the window would hold fewer than 2 points ``_window`` falls back
        to the last 2 finite points, which this cut may not hold; such a window has fewer than
        ``MIN_POINTS`` points, so the check fails either way."""
        frac = float(self.training.convergence_window)
        after = float(getattr(self.training, "lr_warm_up_steps", 0) or 0)
        out: dict[str, list[tuple[int, float]]] = {}
        for name in JUDGED:
            curve = self.curves.get(name)
            if curve is None:
                continue
            last = next((s for s, v in reversed(curve) if s <= step and math.isfinite(v)), None)
            if last is None:
                out[name] = curve
                continue
            start = max(last - frac * last, after)
            out[name] = curve[bisect.bisect_left(curve, start, key=lambda p: p[0]):]
        return out

    def result(self) -> tuple[bool, dict[str, Any]]:
        end = min(self.decay_start, self.steps) if self.decay > 0 else self.steps
        converged, info = judge(self.curves, self.training, end_step=end)
        info.update(steps=self.steps, decay_start=self.decay_start, level_at=self.level_at,
                    stopped_early=self.steps < self.max_steps,
                    series={k: pack_curve(c) for k, c in self.curves.items()})
        return converged, info
