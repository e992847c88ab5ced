"""The L0 controller drives a monotone L0(coefficient) response to its target and then holds still."""

import math

import pytest

from saebench_sanity.training.sparsity_control import L0Controller


def l1_response(coef: float) -> float:
    """A made-up but typical L1 response: L0 falls like a power of the coefficient."""
    return 400.0 * coef ** -1.5


@pytest.mark.parametrize("start_coef", [0.05, 1.0, 20.0])
def test_controller_reaches_the_target_from_either_side(start_coef):
    ctl = L0Controller(target=32.0, gain=0.5)
    for step in range(10, 600, 10):
        ctl.observe(step, l1_response(start_coef * ctl.scale))
    l0 = l1_response(start_coef * ctl.scale)
    assert ctl.matched(l0, tolerance=0.02), l0
    assert abs(l0 - 32.0) / 32.0 < 0.02


def test_controller_freezes_and_bounds_each_move():
    ctl = L0Controller(target=10.0, gain=0.5, max_step=1.0, freeze_at=100)
    s = ctl.observe(10, 1e6)  # a huge L0 moves the scale by at most exp(0.5 * 1.0)
    assert s == pytest.approx(math.exp(0.5))
    ctl.observe(20, 0.0)      # a dead interval (L0 0) lowers it by at most the same factor
    assert ctl.scale == pytest.approx(1.0)
    before = ctl.scale
    ctl.observe(100, 1e6)     # frozen from step 100 on
    ctl.observe(110, float("nan"))
    assert ctl.scale == before and [h[0] for h in ctl.history] == [10, 20, 100, 110]


def test_matched_is_plus_minus_tolerance():
    ctl = L0Controller(target=100.0)
    assert ctl.matched(110.0) and ctl.matched(90.0)
    assert not ctl.matched(110.5) and not ctl.matched(89.0)
    with pytest.raises(ValueError):
        L0Controller(target=0.0)
