"""The UNDERTRAINED rule on hand-made loss curves."""

from __future__ import annotations

import math
import random

import pytest

from saebench_sanity.training.convergence import assess


def _curve(fn, steps=2000, every=20):
    return [(s, fn(s)) for s in range(every, steps + 1, every)]


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


def test_noise_on_a_flat_curve_does_not_count_as_improvement():
    rng = random.Random(0)
    noisy = _curve(lambda s: 1.0 + rng.gauss(0, 0.05))
    ok, info = assess(noisy, 0.2, 0.02)
    assert ok and abs(info["rel_improvement"]) < 0.02


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
    falling = [(s, 10.0 if s in (1620, 1640) else v) for s, v in _curve(lambda s: 2.0 - s / 2000)]
    assert not assess(falling, 0.2, 0.02)[0]
