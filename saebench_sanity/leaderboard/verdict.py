"""The verdict rule: does a trained SAE beat its random baselines? (The one place the rule lives.)

For one (activation set, architecture, score with a direction), with per-seed values:

* ``trained``: mean ``m_t``, sample sd ``s_t`` (ddof 1) over ``n_t`` seeds; each baseline mode
  ``b`` (``TrainingModeSpec.is_baseline``): ``m_b``, ``s_b``, ``n_b``;
* ``d_b = m_t - m_b`` if higher is better, ``m_b - m_t`` if lower is better (``d_b > 0``: trained
  is better); ``m`` = ``min_effect`` (the score's ``ScoreInfo.min_effect``, else ``VerdictConfig``);
* Welch's standard error ``se_b = sqrt(s_t^2/n_t + s_b^2/n_b)`` with Welch-Satterthwaite degrees of
  freedom ``df_b``; ``alpha = 1 - confidence``; ``k`` = number of baselines;
* one-sided bounds ``lower_b = d_b - t(1 - alpha; df_b) * se_b`` and
  ``upper_b = d_b + t(1 - alpha/k; df_b) * se_b`` (Student t quantiles from ``scipy.stats.t``).

Tests behind the labels:

* **BEATS** ``lower_b > m`` for every baseline: rejects every ``H0_b: delta_b <= m`` at level alpha.
  This is an intersection-union test (Berger 1982): the claim needs *all* k rejections, so its
  false-BEATS rate is at most alpha with no multiplicity correction (and below alpha when k > 1).
* **FAILS** ``upper_b < m`` for some baseline: rejects some ``H0_b: delta_b >= m`` (that baseline is
  as good as the trained SAE within ``m``, or better). "Some baseline" is a union of k tests, so it
  is corrected by Holm; Holm rejects at least one hypothesis exactly when the smallest p-value is
  below alpha/k, hence the ``alpha/k`` quantile in ``upper_b``. ``fails_vs`` lists every baseline
  Holm's step-down procedure rejects. The false-FAILS rate is at most alpha.
* **INCONCLUSIVE** neither. BEATS and FAILS exclude each other (``lower_b <= d_b <= upper_b``).

A comparison with ``se_b = 0`` (both sides constant over seeds) has no t-interval. It is decided by
the exact permutation test instead (:func:`exact_p`): when every one of the ``n_t`` trained values
lies strictly above (below) every one of the ``n_b`` baseline values shifted by ``m``, a relabelling
of the seeds puts them there with probability ``1 / C(n_t + n_b, n_t)`` under the null (1/20 at 3 +
3 seeds), distribution-free, ties included. So ``lower_b = d_b`` when that probability is at most
``alpha`` (the test rejects ``delta_b <= delta_0`` for every ``delta_0 < d_b``) and ``upper_b = d_b``
when it is at most ``alpha/k``; NaN otherwise (too few seeds for the level: 3 + 3 seeds BEATS at
confidence 0.95, but cannot FAIL against 3 baselines, ``0.05 > 0.05/3``). Two equal constant sides
(e.g. ``dead_fraction`` 0 ± 0 vs 0 ± 0) stay undecided, NaN bounds: the score gave every SAE of both
recipes the same value, so it separates nothing here (as AT CHANCE withholds on a chance level), and
such a row is never FAILS.

Labels, first that applies:

1. ``NO DATA``        no trained value, no baseline, or a baseline without values;
2. ``SEEDS``          fewer than ``min_seeds`` seeds on the trained side or some baseline: no interval
                      worth the name, no verdict;
3. ``UNDERTRAINED``   some seed of the trained cell, or of a baseline, did not converge (records'
                      ``training.converged``): no verdict, train longer. The rest of the rule applied
                      anyway gives the comparison *at equal budget*, shown in brackets;
4. ``L0 NOT MATCHED`` the cell targets an L0 (its training steered it there, or its architecture's
                      sparsity knob targets one, ``architectures.sparsity.targets_l0``) and the
                      trained SAE's or a baseline's final L0 is unknown or outside
                      ``target * (1 ± l0_tolerance)``: not compared at equal sparsity, no verdict.
                      One exception to 3 and 4 for baselines: a FAILS that a *settled* baseline
                      (converged, L0 matched) supports on its own (Holm rejects it) stands even when
                      another baseline is unsettled: the settled one is final and already as good.
                      Two more for scores that declare ``ScoreInfo.improves_with_training`` (they
                      measure what the convergence rule follows: reconstruction error, explained
                      variance, recovery of true features), on which more training moves a side
                      only in its own favour: a BEATS against baselines that are all settled stands
                      while the trained SAE is still improving (it already beats every final
                      baseline; training on widens its lead), and a FAILS supported by a baseline
                      that is still improving (L0 matched) stands when the trained SAE is settled
                      (that baseline is already as good and only gets better). And for scores
                      that declare ``ScoreInfo.best`` (the best value the score can take: a dead
                      fraction of 0, a recovery of 1): a FAILS supported by a settled baseline
                      whose interval ``mean ± t(confidence; n-1) * sd/sqrt(n)`` lies within
                      ``min_effect`` of ``best`` stands while the trained SAE still improves,
                      since no trained value can be more than ``min_effect`` better than it.
                      Every other combination waits: a trained SAE still improving can still
                      overtake, a baseline still improving can still catch up;
5. ``AT CHANCE``      the score has a chance level / floor ``c`` and the trained SAE's and every
                      baseline's one-sided-bound interval ``mean ± t(confidence; n-1) * sd/sqrt(n)``
                      lies within ``[c - m, c + m]`` (an equivalence test, TOST, per side; all sides
                      must pass, again an intersection-union test): the metric separates nothing here;
6. ``BEATS`` / ``FAILS`` / ``INCONCLUSIVE`` as above.

The same rule against one baseline (k = 1, no correction) gives the per-baseline verdicts also
reported. Reference modes (not baselines, e.g. ``untrained``) are shown but never decide. Scores
without a direction (L0, counts) get no verdict (``—``).

``saebench check`` judges one given SAE (``fixed_trained=True``): its score is a single fixed
value, not a sample of training runs, so the trained side contributes no variance
(``se = s_b/sqrt(n_b)``, ``df = n_b - 1``, a one-sample t interval) and ``min_seeds`` applies to
the baselines only.

Error rates: :func:`error_rates` simulates the rule (normal seed noise); ``python -m
saebench_sanity.leaderboard.verdict --rates`` prints them, and :func:`rule_text` states them under
every table, computed at render time with a fixed RNG seed.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Iterable, Sequence

import numpy as np
from scipy import stats as sps

BEATS = "BEATS"
FAILS = "FAILS"
INCONCLUSIVE = "INCONCLUSIVE"
UNDERTRAINED = "UNDERTRAINED"
NO_DATA = "NO DATA"
AT_CHANCE = "AT CHANCE"
SEEDS = "SEEDS"
L0_NOT_MATCHED = "L0 NOT MATCHED"
DESCRIPTIVE = "—"

VERDICTS = (BEATS, FAILS, INCONCLUSIVE, AT_CHANCE, UNDERTRAINED, L0_NOT_MATCHED, SEEDS, NO_DATA, DESCRIPTIVE)
#: labels that carry a verdict (the rest withhold one)
JUDGED = (BEATS, FAILS, INCONCLUSIVE, AT_CHANCE)

DEFAULT_MIN_EFFECT = 0.01
DEFAULT_CONFIDENCE = 0.95
MIN_SEEDS = 3
L0_TOLERANCE = 0.10
#: a seed sd below this times max(1, |mean|) is float rounding of equal values, counted as 0
SD_ROUNDING = 1e-12


def _rounding(*values: float) -> float:
    """What float rounding leaves between equal quantities of this size: ``SD_ROUNDING * max(1,
    |values|)`` (a constant side's spread, two constant sides' difference)."""
    return SD_ROUNDING * max(1.0, *(abs(v) for v in values))

#: the seed counts and true effects (in standard errors of the difference beyond min_effect)
#: whose simulated rates the rule text states
RATE_SEEDS = (3, 5)
RATE_EFFECTS = (0.0, 1.0, 3.0)
RATE_DRAWS = 20_000
RATE_SEED = 20_241


@dataclass(frozen=True)
class Rule:
    """The rule's parameters (``VerdictConfig`` in a run configuration)."""

    min_effect: float = DEFAULT_MIN_EFFECT
    confidence: float = DEFAULT_CONFIDENCE
    min_seeds: int = MIN_SEEDS
    l0_tolerance: float = L0_TOLERANCE

    def __post_init__(self) -> None:
        check_confidence(self.confidence)


def check_confidence(confidence: float) -> float:
    if not (isinstance(confidence, (int, float)) and 0.5 <= float(confidence) < 1):
        raise ValueError(f"confidence = {confidence!r} must be in [0.5, 1), e.g. 0.95")
    return float(confidence)


@dataclass(frozen=True)
class Stats:
    """Per-seed values of one (set, arch, mode, score) summarised; ``l0``: the mode's final L0
    (mean over seeds, latents per sample) when known, for the L0-matching step."""

    mean: float
    sd: float
    n: int
    converged: bool  # every seed converged
    l0: float | None = None

    @classmethod
    def of(cls, values: Iterable[float | None], converged: Iterable[bool] = (), l0: float | None = None) -> "Stats":
        """Mean and sample sd (ddof 1; 0 for a single value) of the finite values."""
        vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
        conv = all(bool(c) for c in converged)
        n = len(vals)
        if n == 0:
            return cls(math.nan, math.nan, 0, conv, l0)
        mean = math.fsum(vals) / n
        sd = math.sqrt(math.fsum((v - mean) ** 2 for v in vals) / (n - 1)) if n > 1 else 0.0
        if sd <= _rounding(mean):
            # equal values up to float rounding (e.g. 0.5 computed two ways): a constant side, whose
            # 1e-17 "spread" would otherwise give an interval of zero width
            sd = 0.0
        return cls(mean, sd, n, conv, l0)


@dataclass(frozen=True)
class Comparison:
    """The trained SAE against one baseline: ``d`` (> 0: trained better), Welch ``se`` and ``df``,
    ``lower`` at ``confidence`` and ``upper`` at ``1 - alpha/k``. When ``se = 0`` (both sides
    constant) the bounds come from the exact permutation test (module docstring): ``p_exact`` is
    its p-value, NaN when the two constant values are equal (no test)."""

    baseline: str
    d: float
    se: float
    df: float
    lower: float
    upper: float
    p_exact: float | None = None  # None: a t-interval (se > 0)


@dataclass(frozen=True)
class Verdict:
    label: str
    baseline: str | None = None        # FAILS: smallest upper bound; else smallest d
    diff: float | None = None          # its d: > 0 means trained is better
    lower: float | None = None
    upper: float | None = None
    comparisons: dict[str, Comparison] = field(default_factory=dict)
    fails_vs: tuple[str, ...] = ()     # baselines Holm finds as good or better


def advantage(trained_mean, baseline_mean, direction: str):
    """``d``: how much better the trained mean is than the baseline mean (positive = better);
    scalars or numpy arrays."""
    if direction == "higher":
        return trained_mean - baseline_mean
    if direction == "lower":
        return baseline_mean - trained_mean
    raise ValueError(f"direction must be 'higher' or 'lower', not {direction!r}")


def welch(var_t, n_t, var_b, n_b):
    """Welch's standard error of a difference of means and its Welch-Satterthwaite degrees of
    freedom; arrays broadcast. A side with zero variance adds nothing to either (so a fixed
    trained value gives the one-sample ``se = s_b/sqrt(n_b)``, ``df = n_b - 1``); ``se = 0`` gives
    ``df = nan``. (scipy's ``ttest_ind(equal_var=False)`` wants raw samples and returns no df for
    bounds at chosen quantiles, hence these two lines.)"""
    a = np.asarray(var_t, dtype=float) / np.asarray(n_t, dtype=float)
    b = np.asarray(var_b, dtype=float) / np.asarray(n_b, dtype=float)
    se = np.sqrt(a + b)
    with np.errstate(divide="ignore", invalid="ignore"):
        da = np.where(a > 0, a ** 2 / np.maximum(np.asarray(n_t, dtype=float) - 1, 1e-300), 0.0)
        db = np.where(b > 0, b ** 2 / np.maximum(np.asarray(n_b, dtype=float) - 1, 1e-300), 0.0)
        df = np.where(se > 0, (a + b) ** 2 / (da + db), np.nan)
    return se, df


def bounds(d, se, df, confidence: float, k: int):
    """``(lower, upper)``: ``d - t(conf; df) se`` and ``d + t(1 - alpha/k; df) se``; NaN where
    ``se = 0`` (no interval). Arrays broadcast."""
    d, se, df = (np.asarray(x, dtype=float) for x in (d, se, df))
    alpha = 1.0 - confidence
    ok = (se > 0) & np.isfinite(df)
    dfs = np.where(ok, df, 1.0)
    lower = np.where(ok, d - sps.t.ppf(confidence, dfs) * se, np.nan)
    upper = np.where(ok, d + sps.t.ppf(1.0 - alpha / k, dfs) * se, np.nan)
    return lower, upper


def exact_p(n_t: int, n_b: int) -> float:
    """The one-sided p-value of the permutation test when all ``n_t`` trained values lie strictly
    on one side of all ``n_b`` baseline values (shifted by ``min_effect``): only one of the
    ``C(n_t + n_b, n_t)`` equally likely relabellings of the seeds does that, so ``1 / C``. Under a
    null in which the trained side is stochastically no better (worse) than the shifted baseline
    the probability is at most that, with or without ties. Written out because the sides here are
    constants, where the closed form is exact; ``scipy.stats.permutation_test`` would enumerate
    the same ``C`` relabellings to find it."""
    return 1.0 / math.comb(int(n_t) + int(n_b), int(n_t))


def _exact_bounds(d: float, mean_t: float, mean_b: float, n_t: int, n_b: int, min_effect: float,
                  confidence: float, k: int) -> tuple[float, float, float]:
    """``(lower, upper, p)`` of a comparison whose two sides are constant (module docstring)."""
    rounding = _rounding(mean_t, mean_b)
    if abs(d) <= rounding:
        return math.nan, math.nan, math.nan      # equal constants: the score separates nothing
    if abs(d - min_effect) <= rounding:
        # the shifted sides tie (1.01 - 0.01 against 1.0): neither lies beyond the other, so the
        # test rejects neither way, whatever float rounding left in d - min_effect
        return math.nan, math.nan, math.nan
    alpha = 1.0 - confidence
    p = exact_p(n_t, n_b)
    eps = 1e-12                                  # 1/20 against 1 - 0.95 computed in floats
    lower = d if p <= alpha + eps else math.nan
    upper = d if p <= alpha / k + eps else math.nan
    return lower, upper, p


def decide(lower, upper, min_effect: float):
    """Codes 0 = BEATS, 1 = FAILS, 2 = INCONCLUSIVE over the last axis (the k baselines) of the
    bounds. NaN bounds compare False: a comparison without an interval neither BEATS nor FAILS."""
    lower, upper = np.asarray(lower, dtype=float), np.asarray(upper, dtype=float)
    with np.errstate(invalid="ignore"):
        beats = np.all(lower > min_effect, axis=-1)
        fails = np.any(upper < min_effect, axis=-1)
    return np.where(beats, 0, np.where(fails, 1, 2))


_CODES = (BEATS, FAILS, INCONCLUSIVE)


def holm(pvalues: dict[str, float], alpha: float) -> tuple[str, ...]:
    """Names whose hypotheses Holm's step-down procedure rejects at family-wise level ``alpha``
    (written out: scipy has no Holm, and statsmodels is not a dependency). NaN p-values never reject."""
    order = sorted((p, name) for name, p in pvalues.items() if math.isfinite(p))
    k = len(pvalues)
    out = []
    for i, (p, name) in enumerate(order):
        if p > alpha / (k - i):
            break
        out.append(name)
    return tuple(sorted(out))


def _compare_all(trained: Stats, baselines: dict[str, Stats], direction: str, confidence: float,
                 fixed_trained: bool, min_effect: float) -> dict[str, Comparison]:
    names = sorted(baselines)
    k = len(names)
    out = {}
    var_t = 0.0 if fixed_trained else trained.sd ** 2
    for name in names:
        b = baselines[name]
        d = float(advantage(trained.mean, b.mean, direction))
        se, df = welch(var_t, max(trained.n, 1), b.sd ** 2, b.n)
        if float(se) > 0:
            lo, up = bounds(d, se, df, confidence, k)
            out[name] = Comparison(name, d, float(se), float(df), float(lo), float(up))
        else:
            n_t = 1 if fixed_trained else max(trained.n, 1)
            lo, up, p = _exact_bounds(d, trained.mean, b.mean, n_t, b.n, min_effect, confidence, k)
            out[name] = Comparison(name, d, 0.0, math.nan, lo, up, p)
    return out


def _side_near(s: Stats, value: float, min_effect: float, confidence: float, fixed: bool = False) -> bool:
    """TOST equivalence of one side's mean with ``value`` (a chance level, or the score's best)
    within ``min_effect``: the interval ``mean ± t(confidence; n-1) * sd/sqrt(n)`` lies inside
    ``[value - m, value + m]``."""
    half = 0.0
    if not fixed and s.n > 1 and s.sd > 0:
        half = float(sps.t.ppf(confidence, s.n - 1)) * s.sd / math.sqrt(s.n)
    return abs(s.mean - value) + half <= min_effect


def l0_matched(l0: float | None, target: float, tolerance: float) -> bool:
    return l0 is not None and math.isfinite(l0) and abs(l0 - target) <= tolerance * target


def judge(trained: Stats, baselines: dict[str, Stats], direction: str | None, min_effect: float,
          confidence: float = DEFAULT_CONFIDENCE, *, min_seeds: int = MIN_SEEDS, require_converged: bool = True,
          chance: float | None = None, target_l0: float | None = None, l0_tolerance: float = L0_TOLERANCE,
          fixed_trained: bool = False, improves_with_training: bool = False, best: float | None = None) -> Verdict:
    """The verdict of the trained SAE against all its baselines (module docstring).

    ``target_l0``: the cell's L0 target when its architecture targets one (else None: the L0 step
    is skipped). ``require_converged=False`` skips the UNDERTRAINED step (the comparison at equal
    training budget, shown beside UNDERTRAINED). ``fixed_trained``: the trained side is one given
    SAE (``saebench check``), not seeds of a recipe. ``improves_with_training``: the score's
    ``ScoreInfo.improves_with_training`` (the exceptions for still-improving sides, module
    docstring). ``best``: the score's ``ScoreInfo.best``, the best value it can take (a FAILS
    supported by a settled baseline already there is final, module docstring)."""
    if direction is None:
        return Verdict(DESCRIPTIVE)
    check_confidence(confidence)
    if trained.n == 0 or not baselines or any(b.n == 0 for b in baselines.values()):
        return Verdict(NO_DATA)
    if (not fixed_trained and trained.n < min_seeds) or any(b.n < min_seeds for b in baselines.values()):
        return Verdict(SEEDS)
    comps = _compare_all(trained, baselines, direction, confidence, fixed_trained, min_effect)
    alpha = 1.0 - confidence
    # p-values of H0_b: delta_b >= m (baseline within m or better), for Holm's list; a comparison
    # of two constant sides has the exact test's p when the trained value is below the shifted
    # baseline's (equal constants: NaN, never rejected)
    pvals = {c.baseline: (float(sps.t.cdf((c.d - min_effect) / c.se, c.df)) if c.se > 0
                          else c.p_exact if c.p_exact is not None and c.d < min_effect else math.nan)
             for c in comps.values()}
    fails_vs = holm(pvals, alpha)
    code = int(decide([c.lower for c in comps.values()], [c.upper for c in comps.values()], min_effect))
    label = _CODES[code]
    # the baseline shown: for FAILS the strongest evidence (smallest upper bound), else the closest
    # competitor (smallest d; ties: first name), as the study takes the best baseline per metric
    if label == FAILS:
        key = min((c for c in comps.values() if math.isfinite(c.upper)), key=lambda c: (c.upper, c.baseline))
    else:
        key = min(comps.values(), key=lambda c: (c.d, c.baseline))
    base: dict[str, Any] = dict(baseline=key.baseline, diff=key.d, lower=key.lower, upper=key.upper, comparisons=comps, fails_vs=fails_vs)

    def l0_ok(s: Stats) -> bool:
        return target_l0 is None or l0_matched(s.l0, target_l0, l0_tolerance)

    def settled(s: Stats) -> bool:
        return (s.converged or not require_converged) and l0_ok(s)

    unsettled = [b for b, s in baselines.items() if not settled(s)]
    trained_improving = require_converged and not trained.converged
    # a settled baseline that Holm finds as good and that already sits at the score's best value
    # (within min_effect, TOST): no amount of training puts the trained SAE more than min_effect
    # ahead of it, so the FAILS it supports is final whatever the trained SAE still does
    at_best = [] if best is None or label != FAILS else [
        b for b in fails_vs if settled(baselines[b]) and _side_near(baselines[b], best, min_effect, confidence)]
    # a still-improving trained SAE that already beats every final baseline on a score that only
    # gets better with training keeps its BEATS (module docstring); otherwise it must converge
    if trained_improving and not (improves_with_training and label == BEATS and not unsettled) and not at_best:
        return Verdict(UNDERTRAINED, **base)
    if target_l0 is not None and not l0_matched(trained.l0, target_l0, l0_tolerance):
        return Verdict(L0_NOT_MATCHED, **base)

    if unsettled:
        # A FAILS that a settled baseline supports on its own stands: that baseline is final and
        # already as good, whatever the unsettled ones would do. On a score that only improves with
        # training, so does one a still-improving baseline (L0 matched) supports against a settled
        # trained SAE: it is already as good and only gets better. Anything else waits for them.
        support = [b for b in fails_vs if b not in unsettled
                   or (improves_with_training and not trained_improving and l0_ok(baselines[b]))]
        if label != FAILS or not support:
            first = UNDERTRAINED if any(require_converged and not baselines[b].converged for b in unsettled) else L0_NOT_MATCHED
            return Verdict(first, **base)
        at_chance_sides = [baselines[b] for b in support]
    else:
        at_chance_sides = list(baselines.values())
    if chance is not None and _side_near(trained, chance, min_effect, confidence, fixed_trained) and all(
            _side_near(b, chance, min_effect, confidence) for b in at_chance_sides):
        return Verdict(AT_CHANCE, **base)
    return Verdict(label, **base)


def compare(trained: Stats, baseline: Stats, direction: str | None, min_effect: float,
            confidence: float = DEFAULT_CONFIDENCE, **kwargs) -> Verdict:
    """The rule against a single baseline (k = 1: no correction)."""
    return judge(trained, {"baseline": baseline}, direction, min_effect, confidence, **kwargs)


def effective_min_effect(score_min_effect: float | None, default: float) -> float:
    return float(default) if score_min_effect is None else float(score_min_effect)


# -- error rates ------------------------------------------------------------------------------------
def error_rates(n_seeds: int, k_baselines: int, effect_in_se: float, n_draws: int = RATE_DRAWS,
                seed: int = RATE_SEED, confidence: float = DEFAULT_CONFIDENCE) -> dict[str, float]:
    """P(BEATS), P(FAILS), P(INCONCLUSIVE) of the rule by Monte Carlo.

    Each draw: ``n_seeds`` values of the trained score and of each of ``k_baselines`` baselines, all
    N(mean, 1) (equal seed sd); every baseline has the same true mean, below the trained one by
    ``min_effect + effect_in_se * SE`` with ``SE = sqrt(2 / n_seeds)`` the standard error of the
    difference of two means. The labels depend on the data only through ``(d - min_effect) / se``,
    so ``min_effect`` and the seed sd drop out: ``effect_in_se = 0`` is a trained SAE better by
    exactly ``min_effect`` (the hardest case: BEATS and FAILS are both wrong there; a smaller true
    advantage only lowers P(BEATS)), ``effect_in_se > 0`` one whose BEATS is right and FAILS wrong.
    The bounds and the decision are the functions :func:`judge` uses. Deterministic for a ``seed``."""
    return error_rates_many(n_seeds, k_baselines, (effect_in_se,), n_draws, seed, confidence)[0]


def error_rates_many(n_seeds: int, k_baselines: int, effects: Sequence[float], n_draws: int = RATE_DRAWS,
                     seed: int = RATE_SEED, confidence: float = DEFAULT_CONFIDENCE) -> list[dict[str, float]]:
    """:func:`error_rates` for several effects on the same draws (an effect shifts every d by
    ``effect * SE`` and leaves se and df alone, so the noise is drawn once)."""
    if n_seeds < 2 or k_baselines < 1 or n_draws < 1:
        raise ValueError("error_rates needs n_seeds >= 2, k_baselines >= 1, n_draws >= 1")
    check_confidence(confidence)
    rng = np.random.default_rng(seed)
    trained = rng.standard_normal((n_draws, 1, n_seeds))                       # [draws, 1, n]
    base = rng.standard_normal((n_draws, k_baselines, n_seeds))                # [draws, k, n]
    d0 = advantage(trained.mean(-1), base.mean(-1), "higher")                  # [draws, k]; min_effect = 0
    se, df = welch(trained.var(-1, ddof=1), n_seeds, base.var(-1, ddof=1), n_seeds)
    lower0, upper0 = bounds(d0, se, df, confidence, k_baselines)
    se_true = math.sqrt(2.0 / n_seeds)
    out = []
    for effect in effects:
        shift = float(effect) * se_true
        codes = decide(lower0 + shift, upper0 + shift, 0.0)
        counts = np.bincount(codes.ravel(), minlength=3) / n_draws
        out.append({BEATS: float(counts[0]), FAILS: float(counts[1]), INCONCLUSIVE: float(counts[2])})
    return out


@lru_cache(maxsize=64)
def _rates_cached(n_seeds: int, k: int, confidence: float) -> tuple[tuple[float, float, float], ...]:
    """Rates at RATE_EFFECTS: ((P(BEATS), P(FAILS), P(INCONCLUSIVE)), ...) for one seed count."""
    return tuple((r[BEATS], r[FAILS], r[INCONCLUSIVE])
                 for r in error_rates_many(n_seeds, k, RATE_EFFECTS, confidence=confidence))


def _pct(p: float) -> str:
    return f"{100 * p:.1f}%"


def rates_sentence(k: int, confidence: float) -> str:
    """The simulated rates stated under every table (deterministic: fixed RNG seed)."""
    parts = []
    for n in RATE_SEEDS:
        r0, r1, r3 = _rates_cached(n, k, confidence)
        parts.append(f"{n} seeds: false BEATS {_pct(r0[0])} and false FAILS {_pct(r0[1])} with no effect; "
                     f"false FAILS {_pct(r1[1])} / {_pct(r3[1])} and BEATS {_pct(r1[0])} / {_pct(r3[0])} "
                     f"with a true effect of 1 / 3 SE")
    return (f"Error rates against {k} baseline{'s' if k != 1 else ''} of equal true mean (Monte Carlo, "
            f"{RATE_DRAWS:,} draws, normal seed noise; 'no effect' = trained better by exactly min_effect, "
            "'effect e SE' = better by min_effect + e standard errors of the difference; "
            "`python -m saebench_sanity.leaderboard.verdict --rates`): " + "; ".join(parts) + ".")


def rule_text(rule: Rule, baselines: Sequence[str] = (), references: Sequence[str] = ()) -> str:
    """The rule as printed under every table (deterministic text)."""
    base = ", ".join(baselines) if baselines else "every mode registered with is_baseline"
    k = max(len(baselines), 1)
    conf = f"{rule.confidence:g}"
    alpha = 1 - rule.confidence
    lines = [
        "**Verdict rule** (saebench_sanity/leaderboard/verdict.py, docs/verdict-rule.md). Per (set, architecture, "
        "score) and baseline b: m = mean and s = sample sd over seeds; d_b = m_trained - m_b if higher is better, "
        "m_b - m_trained if lower is better (d > 0: trained is better); Welch se_b = sqrt(s_t^2/n_t + s_b^2/n_b) "
        "with Welch-Satterthwaite df; "
        f"lower_b = d_b - t({conf}; df) se_b, upper_b = d_b + t(1 - {alpha:.3g}/k; df) se_b (Holm over the "
        f"k = {len(baselines) or 'all'} baselines: {base}); "
        f"min_effect = the score's own (ScoreInfo.min_effect) else {rule.min_effect:g}.",
        "",
        f"Verdicts, first that applies: NO DATA (missing values); SEEDS (fewer than {rule.min_seeds} seeds on a "
        "side: no verdict); UNDERTRAINED (a seed of the trained cell or of a baseline still improving at the end "
        "of training (saebench_sanity/training/convergence.py): not judged, train longer); "
        f"L0 NOT MATCHED (the cell targets an L0 and the trained SAE's or a baseline's final L0 is outside "
        f"±{100 * rule.l0_tolerance:g}% of the target: not compared at equal sparsity); except that a FAILS "
        "supported by a settled baseline (converged, L0 matched) stands when another baseline is unsettled, and "
        "on scores that only improve with training (ScoreInfo.improves_with_training: reconstruction, recovery) "
        "a BEATS against settled baselines stands while the trained SAE still improves, and a FAILS supported "
        "by a still-improving baseline stands against a settled trained SAE; and a FAILS supported by a settled "
        "baseline already within min_effect of the score's best possible value (ScoreInfo.best: a dead fraction "
        "of 0, a recovery of 1) stands while the trained SAE still improves, since nothing can beat it by more; "
        f"AT CHANCE (the score has a chance level or floor c and every side's mean, ± t({conf}; n-1) sd/sqrt(n), "
        "lies within min_effect of c: the metric separates nothing here); "
        "BEATS (lower_b > min_effect for every baseline: an intersection-union test, no correction needed); "
        "FAILS (upper_b < min_effect for some baseline: that baseline is as good within min_effect, or better); "
        "INCONCLUSIVE (neither). "
        "A comparison whose two sides are constant over seeds (no spread, no t-interval) uses the exact "
        "permutation test instead: all trained seeds beyond all baseline seeds shifted by min_effect has "
        "probability 1/C(n_t + n_b, n_t) under its null (1/20 at 3 + 3 seeds), so lower_b = d_b when that is at "
        f"most {alpha:.3g} and upper_b = d_b when it is at most {alpha:.3g}/k; two equal constant sides (e.g. "
        "0 ± 0 vs 0 ± 0) decide nothing and never FAIL. "
        "For an UNDERTRAINED row, the label in brackets is what the rest of the rule gives at the equal "
        "(too short) training budget: a comparison at equal budget, not a verdict. "
        "Values are mean ± sd over seeds; † marks a mode with a non-converged seed; 'baseline' is the one shown "
        "(FAILS: the one with the smallest upper bound; else the closest, smallest d), [lower, upper] its bounds. "
        + (f"Reference modes ({', '.join(references)}) are shown but never decide. " if references else "")
        + "Scores without a direction get no verdict (—).",
        "",
        rates_sentence(k, rule.confidence) + " Read every score against its chance level.",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m saebench_sanity.leaderboard.verdict",
                                description="Simulated error rates of the verdict rule (error_rates).")
    p.add_argument("--rates", action="store_true", help="print P(BEATS), P(FAILS), P(INCONCLUSIVE) per case")
    p.add_argument("--seeds", default="3,5", help="seed counts (default 3,5)")
    p.add_argument("--baselines", default="1,3", help="numbers of baselines (default 1,3)")
    p.add_argument("--effects", default="0,1,3", help="true effects beyond min_effect in SE (default 0,1,3)")
    p.add_argument("--confidence", type=float, default=DEFAULT_CONFIDENCE)
    p.add_argument("--draws", type=int, default=RATE_DRAWS)
    p.add_argument("--seed", type=int, default=RATE_SEED)
    args = p.parse_args(argv)
    if not args.rates:
        p.print_help()
        return 0
    print(f"confidence {args.confidence:g}, {args.draws:,} draws, RNG seed {args.seed}")
    print(f"{'seeds':>5} {'baselines':>9} {'effect(SE)':>10} {'P(BEATS)':>9} {'P(FAILS)':>9} {'P(INCONCL)':>10}")
    for n in (int(x) for x in args.seeds.split(",")):
        for k in (int(x) for x in args.baselines.split(",")):
            effects = [float(x) for x in args.effects.split(",")]
            for e, r in zip(effects, error_rates_many(n, k, effects, args.draws, args.seed, args.confidence)):
                print(f"{n:>5} {k:>9} {e:>10g} {r[BEATS]:>9.4f} {r[FAILS]:>9.4f} {r[INCONCLUSIVE]:>10.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
