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


def test_spikes_bunched_at_the_start_of_the_window_do_not_tilt_a_flat_curve():
    """A third of the window's intervals hold outlier batches (2-20x the loss), all in its first
    half, as measured on the default real set; without dropping them the median slope is
    negative and the flat curve reads as still improving."""
    spikes = {1620: 10.0, 1640: 9.0, 1660: 3.0, 1680: 2.0, 1700: 20.0, 1720: 2.5, 1740: 4.0}
    curve = [(s, spikes.get(s, 1.0 + 0.001 * ((s // 20) % 3))) for s, _ in _curve(lambda s: 1.0)]
    ok, info = assess(curve, 0.2, 0.02)
    assert ok and info["outliers"] == len(spikes) and abs(info["rel_improvement"]) < 0.01


def test_a_falling_curve_with_a_flat_middle_keeps_its_ends():
    """synth-zipf / matryoshka / seed 0 of the default suite, its last 20%: 6.82 -> 6.40 with three
    nearly equal middle points (tiny MAD). A purely statistical outlier test dropped both ends and
    called it converged; the ends are trend, not spikes."""
    window = [(320, 6.8153), (330, 6.7517), (340, 6.6298), (350, 6.6162), (360, 6.6275), (370, 6.6165),
              (380, 6.613), (390, 6.4003), (400, 6.4032)]
    curve = [(s, 9.0 - s / 200) for s in range(10, 320, 10)] + window
    ok, info = assess(curve, 0.2, 0.02)
    assert not ok and info["outliers"] == 0 and info["rel_improvement"] > 0.02


def test_a_straight_trend_loses_no_point_to_spike_removal():
    ok, info = assess(_curve(lambda s: 3.0 - s / 1000), 0.2, 0.02)
    assert not ok and info["outliers"] == 0 and info["points"] == 21


def _training(**kw):
    from saebench_sanity.config import TrainingConfig

    return TrainingConfig(**{"steps": 2000, "batch_size": 8, "curve_every": 20, **kw})


def test_the_lr_decay_phase_is_left_out_plateau_then_anneal_is_converged():
    """Flat at constant lr, then the loss drops 15% while the lr decays (annealing): converged.
    Judged on the whole curve, the decay window would call it UNDERTRAINED."""
    from saebench_sanity.training.convergence import assess_training

    curve = _curve(lambda s: 1.0 if s <= 1600 else 1.0 - 0.15 * (s - 1600) / 400)
    assert not assess(curve, 0.2, 0.02)[0]
    ok, info = assess_training(curve, _training(lr_decay_steps=400))
    assert ok and info["window_end"] == 1600 and info["window_start"] == 1280
    assert info["final_loss"] == pytest.approx(0.85)  # the whole curve's


def test_still_falling_before_the_decay_is_still_undertrained_and_no_decay_judges_the_whole_curve():
    from saebench_sanity.training.convergence import assess_training

    falling = _curve(lambda s: 2.0 - s / 2000)
    ok, info = assess_training(falling, _training(lr_decay_steps=400))
    assert not ok and info["rel_improvement"] == pytest.approx((320 / 2000) / (2.0 - 1440 / 2000), rel=1e-9)
    assert assess_training(falling, _training()) == assess(falling, 0.2, 0.02)
