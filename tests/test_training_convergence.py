"""The UNDERTRAINED rule: the point estimate on hand-made curves, the interval decision on noisy
curves with a known slope, and the rule over loss / MSE / recovery."""

from __future__ import annotations

import math
import random
from collections import Counter

import numpy as np
import pytest

from saebench_sanity.training.convergence import (
    IMPROVING,
    LEVEL,
    UNDECIDED,
    assess,
    assess_training,
    decide,
    judge,
)


def _curve(fn, steps=2000, every=20):
    return [(s, fn(s)) for s in range(every, steps + 1, every)]


# -- the point estimate (Theil-Sen, spikes dropped) ---------------------------------------------
def test_flat_curve_is_converged():
    ok, info = assess(_curve(lambda s: 1.0), 0.2, 0.02)
    assert ok and info["rel_improvement"] == pytest.approx(0.0, abs=1e-12)
    assert info["window"] == pytest.approx(400.0)  # points 1600..2000: the last 20 %


def test_still_falling_curve_is_not_converged():
    # linear fall from 2.0 to 1.0: over the last 20 % (400 steps) it drops 0.2 around a mean of 1.1
    ok, info = assess(_curve(lambda s: 2.0 - s / 2000), 0.2, 0.02)
    assert not ok
    assert info["rel_improvement"] == pytest.approx(0.2 / 1.1, rel=1e-9)


def test_plateaued_exponential_is_converged_but_a_slow_one_is_not():
    fast = _curve(lambda s: 1.0 + math.exp(-s / 100))
    slow = _curve(lambda s: 1.0 + math.exp(-s / 2000))
    assert assess(fast, 0.2, 0.02)[0]
    assert not assess(slow, 0.2, 0.02)[0]


def test_rising_loss_is_converged_not_undertrained():
    assert assess(_curve(lambda s: 1.0 + s / 1e4), 0.2, 0.02)[0]


def test_too_short_a_curve_cannot_show_convergence():
    assert not assess([], 0.2, 0.02)[0]
    assert not assess([(20, 1.0)], 0.2, 0.02)[0]
    ok, info = assess([(20, 1.0), (40, 1.0)], 0.2, 0.02)
    assert ok and info["points"] == 2


def test_tolerance_is_the_decision_boundary():
    curve = _curve(lambda s: 2.0 - s / 2000)
    rel = assess(curve, 0.2, 0.0)[1]["rel_improvement"]
    assert assess(curve, 0.2, rel + 1e-9)[0] and not assess(curve, 0.2, rel - 1e-9)[0]


def test_bad_window_is_rejected():
    with pytest.raises(ValueError):
        assess(_curve(lambda s: 1.0), 0.0, 0.02)


def test_loss_spikes_do_not_decide_convergence():
    """A flat curve with a few tenfold spikes (outlier batches) stays converged, and a falling
    curve with spikes near its end stays not converged."""
    spiky_flat = [(s, 10.0 if s in (1700, 1900, 1980) else 1.0) for s, _ in _curve(lambda s: 1.0)]
    assert assess(spiky_flat, 0.2, 0.02)[0]
    assert decide(spiky_flat, window_fraction=0.2, tol=0.02)["state"] == LEVEL
    falling = [(s, 10.0 if s in (1620, 1640) else v) for s, v in _curve(lambda s: 2.0 - s / 2000)]
    assert not assess(falling, 0.2, 0.02)[0]
    assert decide(falling, window_fraction=0.2, tol=0.02)["state"] == IMPROVING


def test_spikes_bunched_at_the_start_of_the_window_do_not_tilt_a_flat_curve():
    """A third of the window's intervals hold outlier batches (2-20x the loss), all in its first
    half, as measured on the default real set; without dropping them the median slope is
    negative and the flat curve reads as still improving."""
    spikes = {1620: 10.0, 1640: 9.0, 1660: 3.0, 1680: 2.0, 1700: 20.0, 1720: 2.5, 1740: 4.0}
    curve = [(s, spikes.get(s, 1.0 + 0.001 * ((s // 20) % 3))) for s, _ in _curve(lambda s: 1.0)]
    ok, info = assess(curve, 0.2, 0.02)
    assert ok and info["outliers"] == len(spikes) and abs(info["rel_improvement"]) < 0.01
    assert decide(curve, window_fraction=0.2, tol=0.02)["state"] == LEVEL


def test_a_falling_curve_with_a_flat_middle_keeps_its_ends():
    """synth-zipf / matryoshka / seed 0 of the default suite, its last 20%: 6.82 -> 6.40 with three
    nearly equal middle points (tiny MAD). A purely statistical outlier test dropped both ends and
    called it converged; the ends are trend, not spikes."""
    window = [(320, 6.8153), (330, 6.7517), (340, 6.6298), (350, 6.6162), (360, 6.6275), (370, 6.6165),
              (380, 6.613), (390, 6.4003), (400, 6.4032)]
    curve = [(s, 9.0 - s / 200) for s in range(10, 320, 10)] + window
    ok, info = assess(curve, 0.2, 0.02)
    assert not ok and info["outliers"] == 0 and info["rel_improvement"] > 0.02
    assert decide(curve, window_fraction=0.2, tol=0.02)["state"] == IMPROVING


def test_a_straight_trend_loses_no_point_to_spike_removal():
    ok, info = assess(_curve(lambda s: 3.0 - s / 1000), 0.2, 0.02)
    assert not ok and info["outliers"] == 0 and info["points"] == 21


# -- the interval decision ----------------------------------------------------------------------
def _noisy(rel, sd, seed, ar=0.0, steps=2000, every=10):
    """Level 1.0 around the window, true relative improvement ``rel`` over the last 20% of
    ``steps``, AR(1) noise of innovation sd ``sd``."""
    rng = np.random.default_rng(seed)
    xs = np.arange(every, steps + 1, every, dtype=float)
    e = np.zeros(len(xs))
    for i in range(len(xs)):
        e[i] = (ar * e[i - 1] if i else 0.0) + rng.normal(0.0, sd)
    ys = 1.0 - rel / (0.2 * steps) * (xs - 0.9 * steps) + e
    return list(zip(xs.tolist(), ys.tolist()))


def test_a_clearly_falling_noisy_curve_is_improving_with_its_interval_above_tol():
    for seed in range(5):
        d = decide(_noisy(0.10, 0.01, seed, ar=0.5), window_fraction=0.2, tol=0.02)
        assert d["state"] == IMPROVING and 0.02 < d["lo"] <= d["rel_improvement"] <= d["hi"]


def test_a_level_noisy_curve_is_never_improving():
    """True improvement 0 with noise as large as half the tolerance per point: over 100 noise draws
    (i.i.d. and AR(1) 0.5) never improving, and level in most."""
    for ar in (0.0, 0.5):
        states = Counter(decide(_noisy(0.0, 0.01, s, ar=ar), window_fraction=0.2, tol=0.02)["state"]
                         for s in range(100))
        assert states[IMPROVING] == 0
        assert states[LEVEL] >= 75, states


def test_error_rates_at_the_tolerance_are_the_documented_ones():
    """At a true improvement exactly equal to the tolerance each side should be wrong <= 5% of the
    time (90% interval); measured over 200 draws (docs/training-modes.md): i.i.d. noise 7.5%
    improving / 10% level, AR(1) 0.5 noise 12% / 13.5% -- the percentile bootstrap is ~10-25%
    too narrow on 41-point windows. Pinned here so a change of the method shows."""
    for ar, bound in ((0.0, 0.12), (0.5, 0.17)):
        states = Counter(decide(_noisy(0.02, 0.01, s, ar=ar), window_fraction=0.2, tol=0.02)["state"]
                         for s in range(200))
        assert states[IMPROVING] / 200 <= bound and states[LEVEL] / 200 <= bound, (ar, states)


def _with_estimate(target, sd, seed):
    """A noisy level curve plus the trend that makes its Theil-Sen estimate ``target`` (the
    pairwise slopes of trend + noise are the trend's slope plus the noise's)."""
    base = _noisy(0.0, sd, seed)
    d0 = decide(base, window_fraction=0.2, tol=0.02, point_only=True)
    level = float(np.median([v for s, v in base if s >= 1600]))
    slope = -(target - d0["rel_improvement"]) * level / d0["window"]
    return [(s, v + slope * (s - 1800)) for s, v in base]


def test_two_seeds_reading_2_8_and_1_8_percent_with_wide_intervals_are_decided_alike():
    """The real-long BatchTopK seeds read 2.8% and 1.8% with 90% intervals of 0.2-4.5% and
    -0.0-4.5% (README). The committed records hold no loss curves, so these are synthetic curves
    with those numbers: the old point rule split them (UNDERTRAINED / converged); the interval
    rule gives both the same answer (undecided: judged, recorded as such)."""
    a = decide(_with_estimate(0.028, 0.03, 1), window_fraction=0.2, tol=0.02)
    b = decide(_with_estimate(0.018, 0.03, 2), window_fraction=0.2, tol=0.02)
    assert a["rel_improvement"] == pytest.approx(0.028, abs=2e-3)
    assert b["rel_improvement"] == pytest.approx(0.018, abs=2e-3)
    for d in (a, b):
        assert d["lo"] < 0.02 < d["hi"] and d["hi"] - d["lo"] > 0.03  # wide, straddling the line
    assert a["state"] == b["state"] == UNDECIDED
    assert assess(_with_estimate(0.028, 0.03, 1), 0.2, 0.02)[0] != assess(_with_estimate(0.018, 0.03, 2), 0.2, 0.02)[0]


def test_the_decision_is_deterministic_and_contains_its_estimate():
    c = _noisy(0.03, 0.02, 7, ar=0.3)
    a, b = (decide(c, window_fraction=0.2, tol=0.02) for _ in range(2))
    assert a == b and a["lo"] <= a["rel_improvement"] <= a["hi"]


def test_a_noiseless_line_has_a_point_interval():
    d = decide(_curve(lambda s: 2.0 - s / 2000), window_fraction=0.2, tol=0.02)
    assert d["state"] == IMPROVING and d["lo"] == pytest.approx(d["hi"]) == pytest.approx(0.2 / 1.1)


def test_too_few_window_points_are_undecided():
    d = decide([(10, 3.0), (20, 2.0), (30, 1.0)], window_fraction=0.2, tol=0.02)
    assert d["state"] == UNDECIDED and d["points"] == 2 and math.isnan(d["lo"])


def test_confidence_widens_the_interval():
    c = _noisy(0.03, 0.02, 3)
    narrow = decide(c, window_fraction=0.2, tol=0.02, confidence=0.5)
    wide = decide(c, window_fraction=0.2, tol=0.02, confidence=0.99)
    assert wide["lo"] < narrow["lo"] and wide["hi"] > narrow["hi"]


def test_recovery_is_judged_on_its_rise_with_a_one_percent_floor():
    """study-constant-mini ReLU around step 200: 3 -> 9 of 1024 features over 100 steps while the
    loss is flat. A rise of 0.3 points over the window is far more than 2% of the 1% floor:
    improving. A recovery stuck at 0, or one that only falls, is level."""
    rising = [(s, round(s / 22) / 1024) for s in range(10, 201, 10)]
    assert decide(rising, window_fraction=0.2, tol=0.02, lower_is_better=False)["state"] == IMPROVING
    assert decide([(s, 0.0) for s in range(10, 201, 10)], window_fraction=0.2, tol=0.02,
                  lower_is_better=False)["state"] == LEVEL
    falling = [(s, 0.5 - s / 4000) for s in range(10, 201, 10)]
    assert decide(falling, window_fraction=0.2, tol=0.02, lower_is_better=False)["state"] == LEVEL
    # at recovery 0.5, 2% is a rise of 0.01 over the window
    near = [(s, 0.5 + 0.009 * (s - 160) / 40) for s in range(10, 201, 10)]
    above = [(s, 0.5 + 0.011 * (s - 160) / 40) for s in range(10, 201, 10)]
    assert decide(near, window_fraction=0.2, tol=0.02, lower_is_better=False)["state"] == LEVEL
    assert decide(above, window_fraction=0.2, tol=0.02, lower_is_better=False)["state"] == IMPROVING


# -- the rule over a cell's curves ----------------------------------------------------------------
def _training(**kw):
    from saebench_sanity.config import TrainingConfig

    return TrainingConfig(**{"max_steps": 2000, "batch_size": 8, "curve_every": 20, **kw})


def test_a_flat_loss_does_not_hide_a_rising_recovery():
    flat = _curve(lambda s: 5.4)
    rising = _curve(lambda s: s / 4000)
    ok, info = judge({"loss": flat, "mse": flat, "recovery": rising}, _training())
    assert not ok and info["state"] == IMPROVING
    assert {k: d["state"] for k, d in info["curves"].items()} == {"loss": LEVEL, "mse": LEVEL, "recovery": IMPROVING}
    ok, info = judge({"loss": flat, "mse": flat, "recovery": _curve(lambda s: 0.5)}, _training())
    assert ok and info["state"] == LEVEL


def test_a_flat_total_loss_does_not_hide_a_falling_mse():
    ok, info = judge({"loss": _curve(lambda s: 6.0), "mse": _curve(lambda s: 2.0 - s / 2000)}, _training())
    assert not ok and info["curves"]["mse"]["state"] == IMPROVING


def test_undecided_curves_are_judged_but_recorded_as_undecided():
    ok, info = judge({"loss": _with_estimate(0.028, 0.03, 1), "mse": _curve(lambda s: 1.0)},
                     _training(curve_every=10))
    assert ok and info["state"] == UNDECIDED


def test_the_lr_decay_phase_is_left_out_plateau_then_anneal_is_converged():
    """Flat at constant lr, then the loss drops 15% while the lr decays (annealing): converged.
    Judged on the whole curve, the decay window would call it UNDERTRAINED."""
    curve = _curve(lambda s: 1.0 if s <= 1600 else 1.0 - 0.15 * (s - 1600) / 400)
    assert not assess(curve, 0.2, 0.02)[0]
    ok, info = assess_training(curve, _training(lr_decay_steps=400))
    d = info["curves"]["loss"]
    assert ok and info["state"] == LEVEL and d["window_end"] == 1600 and d["window_start"] == 1280
    # a stored run that started its decay early (level at 1000): the window ends there
    ok, info = assess_training(curve, _training(lr_decay_steps=400), end_step=1000)
    assert ok and info["curves"]["loss"]["window_end"] == 1000


def test_still_falling_before_the_decay_is_still_undertrained_and_no_decay_judges_the_whole_curve():
    falling = _curve(lambda s: 2.0 - s / 2000)
    ok, info = assess_training(falling, _training(lr_decay_steps=400))
    assert not ok and info["rel_improvement"] == pytest.approx((320 / 2000) / (2.0 - 1440 / 2000), rel=1e-9)
    ok, info = assess_training(falling, _training())
    assert not ok and info["rel_improvement"] == assess(falling, 0.2, 0.02)[1]["rel_improvement"]


def test_long_windows_are_averaged_down_to_max_points():
    from saebench_sanity.training import convergence

    rng = random.Random(0)
    curve = [(s, 1.0 + rng.gauss(0, 0.01)) for s in range(1, 2001)]  # 400 window points
    d = decide(curve, window_fraction=0.2, tol=0.02)
    assert d["points"] == convergence.MAX_POINTS and d["state"] == LEVEL


def test_long_windows_are_grouped_as_array_split_groups_them_bit_for_bit():
    """_group_means (two reshaped row means) gives np.array_split's groups' means exactly, at group
    sizes where numpy's pairwise summation matters (8 and more)."""
    from saebench_sanity.training.convergence import MAX_POINTS, _group_means

    rng = np.random.default_rng(0)
    for n in list(range(MAX_POINTS, 200)) + [401, 799, 1600, 2399, 4000]:
        v = np.cumsum(rng.standard_normal(n)) * rng.uniform(1e-3, 1e3) + rng.uniform(-10, 10)
        groups = np.array_split(np.arange(n), MAX_POINTS)
        assert np.array_equal(_group_means(v, MAX_POINTS), np.array([v[g].mean() for g in groups])), n
