"""The verdict rule: does a trained SAE beat its random baselines? (The one place the rule lives.)

For one (activation set, architecture, score with a direction), with per-seed values:

* ``trained``: mean ``m_t`` and sample standard deviation ``s_t`` over seeds (``s = 0`` for one seed);
* each baseline mode (``TrainingModeSpec.is_baseline``): ``m_b``, ``s_b``;
* ``d(b) = m_t - m_b`` if higher is better, ``m_b - m_t`` if lower is better (d > 0: trained is better);
* the **best baseline** ``b*`` is the baseline with the smallest ``d(b)`` (the strongest competitor,
  as the study takes the best baseline per metric); ties go to the first name in sorted order;
* ``margin = max(min_effect, n_sigma * sqrt(s_t^2 + s_b*^2))``, ``min_effect`` from the score's
  ``ScoreInfo.min_effect`` or else ``VerdictConfig.min_effect``.

Verdict, first rule that applies:

1. ``NO DATA``       no trained value or no baseline value;
2. ``UNDERTRAINED``  some seed of the trained cell or of ``b*`` did not converge (loss still
                     falling at the end of training): no judgement, train longer;
3. ``AT CHANCE``     the score has a chance level / floor ``c`` (``ScoreInfo.chance``) and both
                     ``|m_t - c|`` and ``|m_b* - c|`` are within the margin: the metric separates
                     nothing here (RAVEL edits that change no answer, a judge that cannot read the
                     explanations, features recovered by nobody), so neither side wins;
4. ``BEATS``         ``d(b*) > margin``;
5. ``FAILS``         ``d(b*) <= 0`` (the best baseline is as good or better);
6. ``INCONCLUSIVE``  ``0 < d(b*) <= margin`` (better, but not by more than the noise / minimum effect).

The same rule against each single baseline gives the per-baseline verdicts also reported.
Reference modes (not baselines, e.g. ``untrained``) are shown but never decide. Scores without a
direction (L0, counts) get no verdict (``—``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

BEATS = "BEATS"
FAILS = "FAILS"
INCONCLUSIVE = "INCONCLUSIVE"
UNDERTRAINED = "UNDERTRAINED"
NO_DATA = "NO DATA"
AT_CHANCE = "AT CHANCE"
DESCRIPTIVE = "—"

VERDICTS = (BEATS, FAILS, INCONCLUSIVE, AT_CHANCE, UNDERTRAINED, NO_DATA, DESCRIPTIVE)


@dataclass(frozen=True)
class Stats:
    """Per-seed values of one (set, arch, mode, score) summarised."""

    mean: float
    sd: float
    n: int
    converged: bool  # every seed converged

    @classmethod
    def of(cls, values: Iterable[float | None], converged: Iterable[bool] = ()) -> "Stats":
        """Mean and sample sd (ddof 1; 0 for a single value) of the finite values."""
        vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
        conv = all(bool(c) for c in converged)
        n = len(vals)
        if n == 0:
            return cls(math.nan, math.nan, 0, conv)
        mean = math.fsum(vals) / n
        sd = math.sqrt(math.fsum((v - mean) ** 2 for v in vals) / (n - 1)) if n > 1 else 0.0
        return cls(mean, sd, n, conv)


@dataclass(frozen=True)
class Verdict:
    label: str
    best_baseline: str | None = None
    diff: float | None = None    # d(b*): > 0 means trained is better
    margin: float | None = None


def advantage(trained_mean: float, baseline_mean: float, direction: str) -> float:
    """``d``: how much better the trained mean is than the baseline mean (positive = better)."""
    if direction == "higher":
        return trained_mean - baseline_mean
    if direction == "lower":
        return baseline_mean - trained_mean
    raise ValueError(f"direction must be 'higher' or 'lower', not {direction!r}")


def margin(trained: Stats, baseline: Stats, min_effect: float, n_sigma: float) -> float:
    return max(float(min_effect), float(n_sigma) * math.sqrt(trained.sd ** 2 + baseline.sd ** 2))


def compare(trained: Stats, baseline: Stats, direction: str | None, min_effect: float, n_sigma: float,
            require_converged: bool = True, chance: float | None = None) -> Verdict:
    """The rule (module docstring) against a single baseline; ``require_converged=False`` skips
    the UNDERTRAINED step (the comparison at equal training budget, shown beside UNDERTRAINED)."""
    if direction is None:
        return Verdict(DESCRIPTIVE)
    if trained.n == 0 or baseline.n == 0:
        return Verdict(NO_DATA)
    d = advantage(trained.mean, baseline.mean, direction)
    m = margin(trained, baseline, min_effect, n_sigma)
    if require_converged and not (trained.converged and baseline.converged):
        label = UNDERTRAINED
    elif chance is not None and abs(trained.mean - chance) <= m and abs(baseline.mean - chance) <= m:
        label = AT_CHANCE
    elif d > m:
        label = BEATS
    elif d <= 0:
        label = FAILS
    else:
        label = INCONCLUSIVE
    return Verdict(label, None, d, m)


def best_baseline(trained: Stats, baselines: dict[str, Stats], direction: str) -> str | None:
    """Name of the baseline with the smallest advantage of the trained SAE (ties: sorted name)."""
    have = sorted(name for name, s in baselines.items() if s.n > 0)
    if not have:
        return None
    ref = trained.mean if trained.n else 0.0
    return min(have, key=lambda name: advantage(ref, baselines[name].mean, direction))


def judge(trained: Stats, baselines: dict[str, Stats], direction: str | None, min_effect: float,
          n_sigma: float, require_converged: bool = True, chance: float | None = None) -> Verdict:
    """The verdict of the trained SAE against its best baseline (module docstring)."""
    if direction is None:
        return Verdict(DESCRIPTIVE)
    best = best_baseline(trained, baselines, direction)
    if trained.n == 0 or best is None:
        return Verdict(NO_DATA, best)
    v = compare(trained, baselines[best], direction, min_effect, n_sigma, require_converged, chance)
    return Verdict(v.label, best, v.diff, v.margin)


def effective_min_effect(score_min_effect: float | None, default: float) -> float:
    return float(default) if score_min_effect is None else float(score_min_effect)


def rule_text(min_effect: float, n_sigma: float, baselines: Sequence[str] = (), references: Sequence[str] = ()) -> str:
    """The rule as printed under every table (deterministic text)."""
    base = ", ".join(baselines) if baselines else "every mode registered with is_baseline"
    lines = [
        "**Verdict rule** (saebench_sanity/leaderboard/verdict.py). Per (set, architecture, score): "
        "m = mean and s = sample sd over seeds; d = m_trained - m_baseline if higher is better, "
        "m_baseline - m_trained if lower is better (d > 0: trained is better). "
        f"Baselines: {base}. The best baseline b* is the one with the smallest d. "
        f"margin = max(min_effect, {n_sigma:g} x sqrt(s_trained^2 + s_b*^2)), "
        f"min_effect = the score's own (ScoreInfo.min_effect) else {min_effect:g}.",
        "",
        "Verdicts, first that applies: NO DATA (missing values); UNDERTRAINED (a seed of the trained "
        "cell or of b* still improving at the end of training: its loss still falling at the training lr, "
        "i.e. before any lr decay, outlier intervals left out (saebench_sanity/training/convergence.py): "
        "not judged, train longer); "
        "AT CHANCE (the score has a chance level or floor c and both m_trained and m_b* are within the margin of c: "
        "the metric separates nothing here, neither side wins); "
        "BEATS (d > margin); FAILS (d <= 0: the best baseline is as good or better); "
        "INCONCLUSIVE (0 < d <= margin). "
        "For an UNDERTRAINED row, the label in brackets is what the rest of the rule gives at the equal "
        "(too short) training budget: a comparison at equal budget, not a verdict. "
        "Values are mean ± sd over seeds; † marks a mode with a non-converged seed. "
        + (f"Reference modes ({', '.join(references)}) are shown but never decide. " if references else "")
        + "Scores without a direction get no verdict (—); read every score against its chance level.",
    ]
    return "\n".join(lines)
