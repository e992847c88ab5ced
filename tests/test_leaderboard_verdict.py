"""The verdict rule on hand-made numbers: every branch, both directions, the margin."""

import math
import statistics

import pytest

from saebench_sanity.leaderboard import verdict as V


def S(values, converged=True):
    return V.Stats.of(values, [converged] * len(values))


def test_stats_are_mean_and_sample_sd_of_finite_values():
    s = V.Stats.of([1.0, 2.0, 4.0, None, float("nan")], [True, True, True])
    assert s.n == 3
    assert s.mean == pytest.approx(7 / 3)
    assert s.sd == pytest.approx(statistics.stdev([1.0, 2.0, 4.0]))
    assert V.Stats.of([0.5]).sd == 0.0
    assert V.Stats.of([]).n == 0 and math.isnan(V.Stats.of([]).mean)
    assert not V.Stats.of([1.0, 2.0], [True, False]).converged


def test_beats_when_better_than_best_baseline_by_more_than_margin():
    v = V.judge(S([0.80, 0.82, 0.84]), {"a": S([0.50, 0.52]), "b": S([0.70, 0.71])}, "higher", 0.01, 1.0)
    assert v.label == V.BEATS
    assert v.best_baseline == "b"  # the strongest competitor decides
    assert v.diff == pytest.approx(0.82 - 0.705)
    assert v.margin == pytest.approx(math.sqrt(0.02 ** 2 + statistics.stdev([0.70, 0.71]) ** 2))


def test_fails_when_best_baseline_is_better_or_equal():
    assert V.judge(S([0.5, 0.5]), {"a": S([0.6, 0.6])}, "higher", 0.01, 1.0).label == V.FAILS
    equal = V.judge(S([0.5, 0.5]), {"a": S([0.5, 0.5])}, "higher", 0.01, 1.0)
    assert equal.label == V.FAILS and equal.diff == 0.0


def test_inconclusive_when_better_but_within_margin():
    # d = 0.005 > 0 but below min_effect 0.01 (no spread)
    assert V.judge(S([0.505, 0.505]), {"a": S([0.5, 0.5])}, "higher", 0.01, 1.0).label == V.INCONCLUSIVE
    # d = 0.05 > min_effect but the seed spread is larger: sqrt(0.1^2 + 0.1^2) = 0.141
    noisy = V.judge(S([0.45, 0.65]), {"a": S([0.4, 0.6])}, "higher", 0.01, 1.0)
    assert noisy.label == V.INCONCLUSIVE and noisy.margin == pytest.approx(math.sqrt(2) * statistics.stdev([0.4, 0.6]))
    # the same d with n_sigma 0 only has to clear min_effect
    assert V.judge(S([0.45, 0.65]), {"a": S([0.4, 0.6])}, "higher", 0.01, 0.0).label == V.BEATS


def test_margin_is_the_larger_of_min_effect_and_spread():
    t, b = S([1.0, 1.0]), S([0.0, 0.0])
    assert V.margin(t, b, 0.2, 1.0) == 0.2
    assert V.margin(S([1.0, 3.0]), S([0.0, 0.0]), 0.2, 2.0) == pytest.approx(2 * math.sqrt(2))


def test_lower_is_better_flips_the_sign():
    # mse: trained 0.1, baseline 0.3 -> trained better by 0.2
    v = V.judge(S([0.1, 0.1]), {"a": S([0.3, 0.3]), "b": S([0.2, 0.2])}, "lower", 0.01, 1.0)
    assert v.label == V.BEATS and v.best_baseline == "b" and v.diff == pytest.approx(0.1)
    assert V.judge(S([0.3, 0.3]), {"a": S([0.2, 0.2])}, "lower", 0.01, 1.0).label == V.FAILS


def test_undertrained_trained_or_best_baseline_is_not_judged():
    base = {"a": S([0.9, 0.9]), "b": S([0.1, 0.1])}
    assert V.judge(S([0.5, 0.5], converged=False), base, "higher", 0.01, 1.0).label == V.UNDERTRAINED
    unconverged_best = {"a": S([0.9, 0.9], converged=False), "b": S([0.1, 0.1])}
    assert V.judge(S([0.5, 0.5]), unconverged_best, "higher", 0.01, 1.0).label == V.UNDERTRAINED
    # a non-best baseline that did not converge does not block the verdict
    other = {"a": S([0.9, 0.9]), "b": S([0.1, 0.1], converged=False)}
    assert V.judge(S([0.5, 0.5]), other, "higher", 0.01, 1.0).label == V.FAILS
    # one unconverged seed is enough
    mixed = V.Stats.of([0.5, 0.5], [True, False])
    assert V.judge(mixed, {"b": S([0.1, 0.1])}, "higher", 0.01, 1.0).label == V.UNDERTRAINED


def test_no_data_and_descriptive_scores():
    assert V.judge(V.Stats.of([]), {"a": S([0.1])}, "higher", 0.01, 1.0).label == V.NO_DATA
    assert V.judge(S([0.1]), {}, "higher", 0.01, 1.0).label == V.NO_DATA
    assert V.judge(S([0.1]), {"a": V.Stats.of([])}, "higher", 0.01, 1.0).label == V.NO_DATA
    assert V.judge(S([0.1]), {"a": S([0.2])}, None, 0.01, 1.0).label == V.DESCRIPTIVE


def test_best_baseline_ties_go_to_first_sorted_name():
    assert V.best_baseline(S([0.5]), {"zeta": S([0.4]), "alpha": S([0.4])}, "higher") == "alpha"


def test_per_score_min_effect_overrides_default():
    assert V.effective_min_effect(None, 0.01) == 0.01
    assert V.effective_min_effect(0.05, 0.01) == 0.05
    assert V.judge(S([0.53, 0.53]), {"a": S([0.5, 0.5])}, "higher", V.effective_min_effect(0.05, 0.01), 1.0).label == V.INCONCLUSIVE


def test_rule_text_states_margin_and_every_verdict():
    text = V.rule_text(0.02, 2.0, ["frozen_decoder"], ["untrained"])
    for word in ("BEATS", "FAILS", "INCONCLUSIVE", "UNDERTRAINED", "NO DATA", "0.02", "2 x sqrt", "untrained",
                 "frozen_decoder", "chance"):
        assert word in text


def test_at_chance_when_trained_and_best_baseline_both_sit_at_the_chance_level():
    from saebench_sanity.leaderboard import verdict as V

    floor = V.Stats.of([0.5, 0.5, 0.5])
    # RAVEL: every edit a no-op, trained and baselines exactly at the 0.5 floor
    assert V.judge(floor, {"fd": floor}, "higher", 0.01, 1.0, chance=0.5).label == V.AT_CHANCE
    # without a chance level the same numbers are a tie: FAILS
    assert V.judge(floor, {"fd": floor}, "higher", 0.01, 1.0).label == V.FAILS
    # a noisy judge around 0.5: within the margin of chance on both sides
    t, b = V.Stats.of([0.58, 0.50, 0.67]), V.Stats.of([0.42, 0.58, 0.67])
    assert V.judge(t, {"fd": b}, "higher", 0.01, 1.0, chance=0.5).label == V.AT_CHANCE
    # trained clearly above chance while the baseline sits at it: judged as usual
    assert V.judge(V.Stats.of([0.9, 0.91, 0.92]), {"fd": floor}, "higher", 0.01, 1.0, chance=0.5).label == V.BEATS
    # baseline clearly above chance while trained sits at it: FAILS, not AT CHANCE
    assert V.judge(floor, {"fd": V.Stats.of([0.8, 0.8, 0.8])}, "higher", 0.01, 1.0, chance=0.5).label == V.FAILS
    # unconverged still comes first
    unconv = V.Stats.of([0.5, 0.5], [False, True])
    assert V.judge(unconv, {"fd": floor}, "higher", 0.01, 1.0, chance=0.5).label == V.UNDERTRAINED
