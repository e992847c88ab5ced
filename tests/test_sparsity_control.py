"""The L0 controller drives a monotone L0(coefficient) response to its target and then holds still."""

import math

import pytest

from saebench_sanity.training.sparsity_control import L0Controller


def l1_response(coef: float) -> float:
    """A made-up but typical L1 response: L0 falls like a power of the coefficient."""
    return 400.0 * coef ** -1.5


@pytest.mark.parametrize("start_coef", [0.1, 1.0, 20.0])  # scale needed: 54, 5.4, 0.27 (bounds 1e-2..1e2)
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


def lagged_response(coefs, rate):
    """L0 that follows its coefficient's equilibrium with a lag (Adam bounds each update by the lr):
    log L0 moves towards log(400 c^-1.5) by at most ``rate`` per observation."""
    l0 = 500.0
    out = []
    for c in coefs:
        goal = math.log(400.0 * c ** -1.5)
        cur = math.log(l0)
        cur += max(-rate, min(rate, goal - cur))
        l0 = math.exp(cur)
        out.append(l0)
    return l0


def test_a_lagging_response_neither_winds_up_nor_oscillates():
    """The measured failure of a plain integrator: with a slow L0 the scale ran away to 1e10 (frozen
    encoder) or oscillated. Holding the scale while L0 approaches keeps it bounded and settles."""
    ctl = L0Controller(target=6.0)
    l0 = 500.0
    coefs = []
    trace = []
    for step in range(10, 4000, 10):
        coefs.append(ctl.scale)
        l0 = lagged_response(coefs, rate=0.05)
        ctl.observe(step, l0)
        trace.append((l0, ctl.scale))
    needed = (400.0 / 6.0) ** (2 / 3)                  # the scale at which L0 settles at 6: 16.4
    assert max(s for _, s in trace) < 1.5 * needed     # no windup
    assert all(ctl.matched(l0_, 0.1) for l0_, _ in trace[-50:])  # settled and stays
    plain = L0Controller(target=6.0, approach=1.0)    # never holds: the old integrator
    coefs = []
    for step in range(10, 4000, 10):
        coefs.append(plain.scale)
        plain.observe(step, lagged_response(coefs, rate=0.05))
    assert max(s for _, _, s in plain.history) >= 3 * needed  # it winds up on the same response


def test_matched_control_blocks_level_until_settled_and_reopens():
    from types import SimpleNamespace

    from saebench_sanity.training.sparsity_control import MatchedL0Control

    training = SimpleNamespace(convergence_window=0.2)
    inner = SimpleNamespace(max_steps=1000, min_steps=0, curve_every=10, training=training, level_at=None,
                            curves={"l0": []}, observe=lambda step, values, member: False,
                            lr_factor=lambda step: 1.0, result=lambda: (True, {}))
    ctl = MatchedL0Control(inner, 10.0, ("l1",), settle=3)
    assert inner.min_steps == 1001                     # nothing is level while adapting
    for step in (10, 20, 30):
        ctl.observe(step, {"l0": 10.2}, None)
    assert ctl.frozen_at == 30 and inner.min_steps == 48  # ceil(30 / 0.8) + 10
    for step in (40, 50, 60):
        ctl.observe(step, {"l0": 13.0}, None)          # drifted out of the 10% band
    assert ctl.frozen_at is None and ctl.reopened == 1 and inner.min_steps == 1001
    assert ctl.coefficient_scale == ctl.controller.scale and ctl.scaled_coefficients == ("l1",)
