"""The verdict rule: its intervals against scipy's own Welch t-test, every label, and its error
rates by Monte Carlo (the numbers printed under every table)."""

import math
import re
import statistics

import numpy as np
import pytest
from scipy import stats

from saebench_sanity.leaderboard import verdict as V

CONF = 0.95
ALPHA = 1 - CONF


def S(values, converged=True, l0=None):
    return V.Stats.of(values, [converged] * len(values), l0=l0)


T3 = [0.80, 0.82, 0.84]


def test_stats_are_mean_and_sample_sd_of_finite_values():
    s = V.Stats.of([1.0, 2.0, 4.0, None, float("nan")], [True, True, True])
    assert s.n == 3
    assert s.mean == pytest.approx(7 / 3)
    assert s.sd == pytest.approx(statistics.stdev([1.0, 2.0, 4.0]))
    assert V.Stats.of([0.5]).sd == 0.0
    assert V.Stats.of([]).n == 0 and math.isnan(V.Stats.of([]).mean)
    assert not V.Stats.of([1.0, 2.0], [True, False]).converged


# -- the intervals, against an independent computation -----------------------------------------------
def test_welch_bounds_equal_scipys_welch_t_interval():
    rng = np.random.default_rng(0)
    for _ in range(30):
        n_t, n_b = rng.integers(3, 7, size=2)
        t = rng.normal(0.5, rng.uniform(0.01, 0.2), n_t)
        b = rng.normal(0.45, rng.uniform(0.01, 0.2), n_b)
        for k in (1, 3):
            others = {f"z{i}": S(list(b + 10)) for i in range(k - 1)}  # far-away extra baselines only set k
            v = V.judge(S(list(t)), {"a": S(list(b)), **others}, "higher", 0.0, CONF)
            c = v.comparisons["a"]
            ref = stats.ttest_ind(t, b, equal_var=False, alternative="greater")
            assert c.d == pytest.approx(t.mean() - b.mean(), abs=1e-12)
            assert c.df == pytest.approx(ref.df, rel=1e-9)
            assert c.lower == pytest.approx(ref.confidence_interval(CONF).low, rel=1e-9, abs=1e-12)
            up = stats.ttest_ind(t, b, equal_var=False, alternative="less").confidence_interval(1 - ALPHA / k).high
            assert c.upper == pytest.approx(up, rel=1e-9, abs=1e-12)


def test_labels_equal_scipys_t_tests_with_holm_on_random_rows():
    """BEATS = every one-sided Welch test of delta_b <= m rejected at alpha (no correction);
    FAILS = Holm rejects some test of delta_b >= m (smallest p below alpha/k)."""
    rng = np.random.default_rng(1)
    seen = set()
    for i in range(400):
        k = int(rng.integers(1, 4))
        n = int(rng.integers(3, 6))
        m = float(rng.choice([0.0, 0.01, 0.05]))
        sd = float(rng.uniform(0.005, 0.05))
        t = rng.normal(0.5, sd, n)
        bs = {f"b{j}": rng.normal(0.5 - rng.uniform(-0.06, 0.12), sd * rng.uniform(0.5, 2), n) for j in range(k)}
        direction = "higher" if i % 2 else "lower"
        sign = 1 if direction == "higher" else -1
        v = V.judge(S(list(sign * t)), {name: S(list(sign * b)) for name, b in bs.items()}, direction, m, CONF)
        p_beat = [stats.ttest_ind(t - m, b, equal_var=False, alternative="greater").pvalue for b in bs.values()]
        p_fail = [stats.ttest_ind(t - m, b, equal_var=False, alternative="less").pvalue for b in bs.values()]
        expected = V.BEATS if max(p_beat) < ALPHA else V.FAILS if min(p_fail) < ALPHA / k else V.INCONCLUSIVE
        assert v.label == expected, (i, v, p_beat, p_fail)
        seen.add(v.label)
    assert seen == {V.BEATS, V.FAILS, V.INCONCLUSIVE}


def test_a_fixed_trained_value_gets_the_one_sample_t_interval_of_the_baselines():
    b = [0.60, 0.63, 0.61, 0.66]
    v = V.judge(S([0.70]), {"a": S(b)}, "higher", 0.01, CONF, fixed_trained=True)
    ref = stats.ttest_1samp(b, 0.70, alternative="less").confidence_interval(CONF)  # interval for mean(b)
    c = v.comparisons["a"]
    assert c.df == 3 and c.lower == pytest.approx(0.70 - ref.high)
    assert v.label == V.BEATS
    # the same single value as a seed of a recipe: too few seeds
    assert V.judge(S([0.70]), {"a": S(b)}, "higher", 0.01, CONF).label == V.SEEDS


def test_holm_step_down():
    assert V.holm({"a": 0.01, "b": 0.02, "c": 0.03}, 0.05) == ("a", "b", "c")   # .01<.0167, .02<.025, .03<.05
    assert V.holm({"a": 0.01, "b": 0.03, "c": 0.04}, 0.05) == ("a",)             # .03 > .025 stops
    assert V.holm({"a": 0.02, "b": 0.001}, 0.05) == ("a", "b")
    assert V.holm({"a": 0.03, "b": 0.04, "c": 0.01}, 0.02) == ()
    assert V.holm({"a": math.nan, "b": 0.001}, 0.05) == ("b",)


# -- the labels ---------------------------------------------------------------------------------------
def test_beats_needs_every_baseline_beaten_by_more_than_min_effect():
    base = {"a": S([0.50, 0.52, 0.51]), "b": S([0.70, 0.71, 0.72])}
    v = V.judge(S(T3), base, "higher", 0.01, CONF)
    assert v.label == V.BEATS and v.baseline == "b" and v.diff == pytest.approx(0.82 - 0.71)
    assert v.lower > 0.01
    # an equal third baseline keeps it from BEATS: within the seed noise, INCONCLUSIVE
    assert V.judge(S(T3), {**base, "c": S([0.81, 0.83, 0.82])}, "higher", 0.01, CONF).label == V.INCONCLUSIVE
    # and with seeds tight enough to show it equivalent within min_effect, FAILS
    tight = [0.820, 0.821, 0.822]
    v = V.judge(S(tight), {**base, "c": S([0.8205, 0.8215, 0.8225])}, "higher", 0.01, CONF)
    assert v.label == V.FAILS and v.fails_vs == ("c",) and v.baseline == "c"
    # a min_effect above the advantage: not BEATS
    assert V.judge(S(T3), base, "higher", 0.2, CONF).label != V.BEATS


def test_fails_is_equivalence_within_min_effect_or_worse_with_confidence():
    tight = [0.500, 0.501, 0.502]
    assert V.judge(S(tight), {"a": S([0.5005, 0.5015, 0.5025])}, "higher", 0.01, CONF).label == V.FAILS  # tie
    assert V.judge(S(tight), {"a": S([0.60, 0.61, 0.62])}, "higher", 0.01, CONF).label == V.FAILS        # worse
    # ties under seed noise as large as min_effect: no confidence either way
    noisy = V.judge(S([0.49, 0.50, 0.52]), {"a": S([0.48, 0.51, 0.52])}, "higher", 0.01, CONF)
    assert noisy.label == V.INCONCLUSIVE


def test_rows_whose_sides_are_all_constant_never_fail():
    zero = S([0.0, 0.0, 0.0])
    v = V.judge(zero, {"a": zero, "b": zero}, "lower", 0.01, CONF)
    assert v.label == V.INCONCLUSIVE and v.diff == 0 and math.isnan(v.lower) and math.isnan(v.upper)
    same = S([0.9513] * 3)
    assert V.judge(same, {"a": same}, "higher", 0.01, CONF).label == V.INCONCLUSIVE
    # however many seeds: equal constants decide nothing (the exact test is not applied to them)
    many = S([0.0] * 12)
    for k in (1, 3):
        v = V.judge(many, {f"b{i}": many for i in range(k)}, "lower", 0.01, CONF)
        assert v.label == V.INCONCLUSIVE and math.isnan(v.upper) and v.fails_vs == ()


def test_exact_p_is_scipys_permutation_test_on_constant_sides():
    for n_t, n_b in ((3, 3), (3, 5), (2, 4), (5, 5)):
        res = stats.permutation_test(([1.0] * n_t, [0.0] * n_b), lambda x, y: np.mean(x) - np.mean(y),
                                     permutation_type="independent", alternative="greater", n_resamples=10**6)
        assert V.exact_p(n_t, n_b) == pytest.approx(res.pvalue, rel=1e-12)
    assert V.exact_p(3, 3) == pytest.approx(1 / 20)


def test_constant_sides_that_differ_are_decided_by_the_exact_permutation_test():
    one, zero = S([1.0] * 3), S([0.0] * 3)
    # 3 + 3 seeds: p = 1/20, exactly alpha at 0.95: BEATS, with the bounds at d itself
    v = V.judge(one, {"a": zero, "b": S([0.70, 0.74, 0.78])}, "higher", 0.01, CONF)
    assert v.label == V.BEATS
    c = v.comparisons["a"]
    assert c.se == 0 and c.p_exact == pytest.approx(0.05) and c.lower == 1.0
    assert math.isnan(c.upper)  # k = 2: the upper bound needs 1/20 <= alpha/2
    # not at a level the exact test cannot reach with these seeds
    assert V.judge(one, {"a": zero}, "higher", 0.01, 0.96).label == V.INCONCLUSIVE
    assert math.isnan(V.judge(one, {"a": zero}, "higher", 0.01, 0.96).lower)
    # lower is better: the sign flips
    assert V.judge(zero, {"a": one}, "lower", 0.01, CONF).label == V.BEATS
    # a constant baseline clearly better: FAILS against one baseline (p 1/20 <= alpha) ...
    low, high = S([0.1] * 3), S([0.9] * 3)
    assert V.judge(low, {"a": high}, "higher", 0.01, CONF).label == V.FAILS
    # ... but not against three at 3 seeds (1/20 > alpha/3, Holm), and again at 5 seeds (1/252)
    others = {"b": S([0.0, 0.02, 0.04]), "c": S([0.0, 0.03, 0.05])}  # worse than the trained SAE
    v3 = V.judge(low, {"a": high, **others}, "higher", 0.01, CONF)
    assert v3.label == V.INCONCLUSIVE and v3.fails_vs == ()
    v5 = V.judge(S([0.1] * 5), {"a": S([0.9] * 5), "b": S([0.0, 0.01, 0.02, 0.03, 0.04]),
                                "c": S([0.0, 0.01, 0.02, 0.03, 0.05])}, "higher", 0.01, CONF)
    assert v5.label == V.FAILS and v5.fails_vs == ("a",) and v5.baseline == "a"
    # within min_effect but not equal: as good within min_effect, FAILS (k = 1)
    assert V.judge(S([0.500] * 3), {"a": S([0.505] * 3)}, "higher", 0.01, CONF).label == V.FAILS
    # shifted sides that tie (better by exactly min_effect, up to float rounding): undecided
    assert V.judge(S([1.01] * 3), {"a": S([1.0] * 3)}, "higher", 0.01, CONF).label == V.INCONCLUSIVE
    # one given SAE (saebench check) against 3 constant baseline seeds: p = 1/4, no verdict
    assert V.judge(one, {"a": zero}, "higher", 0.01, CONF, fixed_trained=True).label == V.INCONCLUSIVE
    assert V.judge(one, {"a": S([0.0] * 19)}, "higher", 0.01, CONF, fixed_trained=True).label == V.BEATS


@pytest.mark.parametrize("support,probs", [((0.0, 1.0), (0.1, 0.9)), ((0.0, 0.5, 1.0), (0.2, 0.3, 0.5))])
def test_on_a_score_with_point_masses_the_error_rates_stay_below_alpha(support, probs):
    """A discrete score (counts of features, 0/1 outcomes) often gives constant sides, which the
    exact branch decides: at the hardest case, the trained SAE better by exactly min_effect (its
    values are the baseline's distribution shifted by it), neither BEATS nor FAILS may exceed alpha."""
    rng = np.random.default_rng(7)
    m, draws = 0.01, 2000
    counts = {V.BEATS: 0, V.FAILS: 0}
    for _ in range(draws):
        trained = S(rng.choice(support, size=3, p=probs) + m)
        label = V.judge(trained, {"a": S(rng.choice(support, size=3, p=probs))}, "higher", m, CONF).label
        if label in counts:
            counts[label] += 1
    assert counts[V.BEATS] / draws <= 1 - CONF and counts[V.FAILS] / draws <= 1 - CONF


def test_lower_is_better_flips_the_sign():
    v = V.judge(S([0.10, 0.11, 0.12]), {"a": S([0.30, 0.31, 0.32]), "b": S([0.20, 0.21, 0.22])}, "lower", 0.01, CONF)
    assert v.label == V.BEATS and v.baseline == "b" and v.diff == pytest.approx(0.1)
    assert V.judge(S([0.30, 0.31, 0.32]), {"a": S([0.20, 0.21, 0.22])}, "lower", 0.01, CONF).label == V.FAILS


def test_seeds_no_data_and_descriptive():
    assert V.judge(S([0.9, 0.9]), {"a": S([0.1, 0.2, 0.3])}, "higher", 0.01, CONF).label == V.SEEDS
    assert V.judge(S(T3), {"a": S([0.1, 0.2])}, "higher", 0.01, CONF).label == V.SEEDS
    assert V.judge(S([0.9, 0.9]), {"a": S([0.1, 0.2])}, "higher", 0.01, CONF, min_seeds=2).label == V.BEATS
    assert V.judge(V.Stats.of([]), {"a": S(T3)}, "higher", 0.01, CONF).label == V.NO_DATA
    assert V.judge(S(T3), {}, "higher", 0.01, CONF).label == V.NO_DATA
    assert V.judge(S(T3), {"a": S(T3), "b": V.Stats.of([])}, "higher", 0.01, CONF).label == V.NO_DATA
    assert V.judge(S(T3), {"a": S(T3)}, None, 0.01, CONF).label == V.DESCRIPTIVE
    with pytest.raises(ValueError, match="confidence"):
        V.judge(S(T3), {"a": S(T3)}, "higher", 0.01, 1.5)


def test_undertrained_when_the_trained_cell_or_any_baseline_did_not_converge():
    low, high = S([0.1, 0.11, 0.12]), S([0.5, 0.51, 0.52])
    assert V.judge(S([0.5, 0.51, 0.52], converged=False), {"a": low}, "higher", 0.01, CONF).label == V.UNDERTRAINED
    assert V.judge(high, {"a": low, "b": S([0.1, 0.11, 0.12], converged=False)}, "higher", 0.01, CONF).label == V.UNDERTRAINED
    at_budget = V.judge(high, {"a": S([0.1, 0.11, 0.12], converged=False)}, "higher", 0.01, CONF, require_converged=False)
    assert at_budget.label == V.BEATS
    mixed = V.Stats.of([0.5, 0.51, 0.52], [True, False, True])
    assert V.judge(mixed, {"b": low}, "higher", 0.01, CONF).label == V.UNDERTRAINED


def test_l0_not_matched_when_a_side_misses_the_target_by_more_than_the_tolerance():
    t, b = [0.9, 0.91, 0.92], [0.5, 0.51, 0.52]
    ok = V.judge(S(t, l0=31.0), {"a": S(b, l0=34.0)}, "higher", 0.01, CONF, target_l0=32)
    assert ok.label == V.BEATS  # 31 and 34 are within 10% of 32
    assert V.judge(S(t, l0=22.8), {"a": S(b, l0=32.0)}, "higher", 0.01, CONF, target_l0=32).label == V.L0_NOT_MATCHED
    assert V.judge(S(t, l0=32.0), {"a": S(b, l0=87.4)}, "higher", 0.01, CONF, target_l0=32).label == V.L0_NOT_MATCHED
    assert V.judge(S(t), {"a": S(b, l0=32.0)}, "higher", 0.01, CONF, target_l0=32).label == V.L0_NOT_MATCHED  # unknown
    # no target (an L1 architecture): no L0 step
    assert V.judge(S(t, l0=62.0), {"a": S(b, l0=141.0)}, "higher", 0.01, CONF).label == V.BEATS
    # a looser tolerance
    assert V.judge(S(t, l0=22.8), {"a": S(b, l0=32.0)}, "higher", 0.01, CONF, target_l0=32, l0_tolerance=0.3).label == V.BEATS


def test_at_chance_needs_every_side_within_min_effect_of_chance_with_confidence():
    floor = S([0.5, 0.5, 0.5])
    assert V.judge(floor, {"fd": floor, "fe": floor}, "higher", 0.01, CONF, chance=0.5).label == V.AT_CHANCE
    # without a chance level the same numbers have no interval: INCONCLUSIVE
    assert V.judge(floor, {"fd": floor}, "higher", 0.01, CONF).label == V.INCONCLUSIVE
    # a tight cloud at chance: its TOST interval 0.5 ± t(.95;2)*0.001/sqrt(3) lies inside 0.5 ± 0.01
    near = S([0.499, 0.500, 0.501])
    assert V.judge(near, {"fd": near}, "higher", 0.01, CONF, chance=0.5).label == V.AT_CHANCE
    # a noisy judge around 0.5: not shown to be at chance (and no side shown better)
    t, b = S([0.58, 0.50, 0.67]), S([0.42, 0.58, 0.67])
    assert V.judge(t, {"fd": b}, "higher", 0.01, CONF, chance=0.5).label == V.INCONCLUSIVE
    # trained clearly above chance while the baseline sits at it: judged as usual
    assert V.judge(S([0.9, 0.91, 0.92]), {"fd": floor}, "higher", 0.01, CONF, chance=0.5).label == V.BEATS
    # baseline clearly above chance while trained sits at it: FAILS, not AT CHANCE
    assert V.judge(near, {"fd": S([0.8, 0.81, 0.82])}, "higher", 0.01, CONF, chance=0.5).label == V.FAILS
    # unconverged still comes first
    assert V.judge(V.Stats.of([0.5] * 3, [False, True, True]), {"fd": floor}, "higher", 0.01, CONF,
                   chance=0.5).label == V.UNDERTRAINED


def test_compare_is_the_rule_against_one_baseline_without_correction():
    t, b = S(T3), S([0.70, 0.72, 0.71])
    one = V.compare(t, b, "higher", 0.01, CONF)
    assert one.label == V.BEATS
    assert one.comparisons["baseline"].upper < V.judge(t, {"a": b, "z": S([0.0, 0.01, 0.02])}, "higher", 0.01,
                                                        CONF).comparisons["a"].upper  # k = 2 widens the upper bound


def test_per_score_min_effect_overrides_default():
    assert V.effective_min_effect(None, 0.01) == 0.01
    assert V.effective_min_effect(0.05, 0.01) == 0.05


# -- error rates -------------------------------------------------------------------------------------
def _mc_tol(p, n):
    return 4 * math.sqrt(max(p, 0.002) * (1 - p) / n) + 1e-9


@pytest.mark.parametrize("k", [1, 3])
def test_false_beats_and_false_fails_under_no_effect_stay_below_alpha(k):
    """The old rule (FAILS whenever d <= 0 against the best of k noisy baselines) gave P(FAILS) of
    0.50 (k = 1) to 0.75 (k = 3) here: this fails for it."""
    n = 20_000
    r = V.error_rates(3, k, 0.0, n_draws=n, seed=7)
    assert r[V.BEATS] <= ALPHA + _mc_tol(ALPHA, n)
    assert r[V.FAILS] <= ALPHA + _mc_tol(ALPHA, n)
    assert sum(r.values()) == pytest.approx(1.0)
    if k == 1:  # one baseline at the boundary: the level is (nearly) attained
        assert r[V.BEATS] > 0.02


def test_error_rates_move_the_right_way_with_the_effect():
    r0, r1, r3 = (V.error_rates(3, 3, e, n_draws=20_000, seed=3) for e in (0, 1, 3))
    assert r0[V.BEATS] < r1[V.BEATS] < r3[V.BEATS]
    assert r0[V.FAILS] > r1[V.FAILS] > r3[V.FAILS]
    assert r3[V.FAILS] < 0.001
    # a clearly worse trained SAE is found out
    assert V.error_rates(3, 3, -6, n_draws=5_000, seed=3)[V.FAILS] > 0.5


def test_error_rates_match_scipys_welch_tests_on_an_independent_simulation():
    """Independent Monte Carlo: per draw, scipy's ttest_ind p-values (BEATS: all below alpha;
    FAILS: the smallest below alpha/k), different RNG stream."""
    n_draws, n, k, effect = 6_000, 3, 2, 1.0
    rng = np.random.default_rng(99)
    se_true = math.sqrt(2 / n)
    t = rng.standard_normal((n_draws, 1, n))
    b = rng.standard_normal((n_draws, k, n)) - effect * se_true
    p_beat = stats.ttest_ind(t, b, axis=-1, equal_var=False, alternative="greater").pvalue  # [draws, k]
    p_fail = stats.ttest_ind(t, b, axis=-1, equal_var=False, alternative="less").pvalue
    beats = (p_beat < ALPHA).all(-1).mean()
    fails = ((p_fail < ALPHA / k).any(-1) & ~(p_beat < ALPHA).all(-1)).mean()
    r = V.error_rates(n, k, effect, n_draws=40_000, seed=5)
    assert r[V.BEATS] == pytest.approx(beats, abs=_mc_tol(beats, n_draws))
    assert r[V.FAILS] == pytest.approx(fails, abs=_mc_tol(fails, n_draws) + 0.002)


def test_rule_text_states_rates_that_a_fresh_monte_carlo_reproduces():
    rule = V.Rule(min_effect=0.02)
    text = V.rule_text(rule, ["frozen_decoder", "soft_frozen_decoder", "frozen_encoder"], ["untrained"])
    for word in ("BEATS", "FAILS", "INCONCLUSIVE", "UNDERTRAINED", "NO DATA", "SEEDS", "L0 NOT MATCHED",
                 "AT CHANCE", "0.02", "Holm", "intersection-union", "untrained", "frozen_decoder", "chance",
                 "--rates"):
        assert word in text
    assert text == V.rule_text(rule, ["frozen_decoder", "soft_frozen_decoder", "frozen_encoder"], ["untrained"])
    for n in V.RATE_SEEDS:
        m = re.search(rf"{n} seeds: false BEATS ([\d.]+)% and false FAILS ([\d.]+)% with no effect; "
                      r"false FAILS ([\d.]+)% / ([\d.]+)% and BEATS ([\d.]+)% / ([\d.]+)%", text)
        assert m, text
        fb0, ff0, ff1, ff3, b1, b3 = (float(x) / 100 for x in m.groups())
        draws = 20_000
        fresh = {e: V.error_rates(n, 3, e, n_draws=draws, seed=12345) for e in (0, 1, 3)}
        for stated, prob in ((fb0, fresh[0][V.BEATS]), (ff0, fresh[0][V.FAILS]), (ff1, fresh[1][V.FAILS]),
                             (ff3, fresh[3][V.FAILS]), (b1, fresh[1][V.BEATS]), (b3, fresh[3][V.BEATS])):
            assert stated == pytest.approx(prob, abs=_mc_tol(prob, draws) + 0.0006)


def test_rates_command_prints_the_table(capsys):
    assert V.main(["--rates", "--seeds", "3", "--baselines", "1", "--effects", "0", "--draws", "2000"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].split() == ["seeds", "baselines", "effect(SE)", "P(BEATS)", "P(FAILS)", "P(INCONCL)"]
    n, k, e, pb, pf, pi = out[2].split()
    assert (n, k) == ("3", "1") and float(pb) + float(pf) + float(pi) == pytest.approx(1.0, abs=2e-4)


# -- configuration --------------------------------------------------------------------------------------
def test_verdict_config_validates_and_refuses_the_retired_n_sigma():
    from saebench_sanity import config
    from saebench_sanity.errors import ConfigError

    base = {"run": {"sets": ["synth-easy"], "architectures": ["topk"], "modes": ["trained"]}}
    cfg = config.from_dict({**base, "verdict": {"confidence": 0.9, "min_seeds": 5, "l0_tolerance": 0.2}})
    assert (cfg.verdict.confidence, cfg.verdict.min_seeds, cfg.verdict.l0_tolerance) == (0.9, 5, 0.2)
    with pytest.raises(ConfigError, match="n_sigma was retired.*confidence"):
        config.from_dict({**base, "verdict": {"min_effect": 0.01, "n_sigma": 1.0}})
    for bad, name in (({"confidence": 1.0}, "confidence"), ({"confidence": 0.3}, "confidence"),
                      ({"min_seeds": 1}, "min_seeds"), ({"l0_tolerance": 0}, "l0_tolerance")):
        with pytest.raises(ConfigError, match=f"verdict.{name}"):
            config.from_dict({**base, "verdict": bad})
    for suite in ("default", "quick", "real-resid24"):
        assert config.embedded(suite).verdict.confidence == 0.95


def test_fails_supported_by_a_settled_baseline_stands_when_another_is_unsettled():
    """A converged baseline that is already as good is final: the trained SAE fails whatever a
    still-improving baseline would do. BEATS (or INCONCLUSIVE) must wait for every baseline."""
    from saebench_sanity.leaderboard.verdict import FAILS, UNDERTRAINED, L0_NOT_MATCHED, Stats, judge

    trained = Stats.of([0.80, 0.81, 0.79])
    as_good = Stats.of([0.82, 0.83, 0.81])             # converged, better: supports FAILS
    weak_improving = Stats.of([0.50, 0.52, 0.51], [True, False, True])
    assert judge(trained, {"a": as_good, "b": weak_improving}, "higher", 0.01).label == FAILS
    # the same FAILS supported only by the unconverged baseline waits
    assert judge(trained, {"a": Stats.of([0.82, 0.83, 0.81], [False, True, True]),
                           "b": Stats.of([0.5, 0.52, 0.51])}, "higher", 0.01).label == UNDERTRAINED
    # BEATS the settled baseline, an unsettled one remains: no verdict
    assert judge(trained, {"a": Stats.of([0.5, 0.52, 0.51]), "b": weak_improving}, "higher", 0.01).label == UNDERTRAINED
    # the trained SAE itself unconverged: never judged
    assert judge(Stats.of([0.8, 0.81, 0.79], [False, True, True]), {"a": as_good}, "higher", 0.01).label == UNDERTRAINED
    # L0: a settled, L0-matched baseline supports FAILS although another misses the target L0
    l0 = dict(target_l0=32.0)
    t = Stats.of([0.80, 0.81, 0.79], l0=32.0)
    good = Stats.of([0.82, 0.83, 0.81], l0=31.0)
    off = Stats.of([0.5, 0.52, 0.51], l0=60.0)
    assert judge(t, {"a": good, "b": off}, "higher", 0.01, **l0).label == FAILS
    assert judge(t, {"a": Stats.of([0.5, 0.52, 0.51], l0=31.0), "b": off}, "higher", 0.01, **l0).label == L0_NOT_MATCHED


def test_on_a_score_that_improves_with_training_a_still_improving_side_moves_only_in_its_favour():
    """ScoreInfo.improves_with_training: a still-improving trained SAE that already beats every
    final baseline keeps BEATS; a still-improving baseline that is already as good as a settled
    trained SAE makes it FAIL. Every other unsettled combination still waits, and a score without
    the declaration keeps the plain rule."""
    from saebench_sanity.leaderboard.verdict import BEATS, FAILS, L0_NOT_MATCHED, UNDERTRAINED, Stats, judge

    improving_high = Stats.of([0.80, 0.81, 0.79], [True, False, True])
    settled_low = Stats.of([0.50, 0.52, 0.51])
    kw = dict(improves_with_training=True)
    assert judge(improving_high, {"a": settled_low}, "higher", 0.01, **kw).label == BEATS
    assert judge(improving_high, {"a": settled_low}, "higher", 0.01).label == UNDERTRAINED  # not declared
    # still improving and not (yet) ahead: it could still overtake, so it waits
    improving_low = Stats.of([0.50, 0.51, 0.49], [True, False, True])
    as_good = Stats.of([0.80, 0.81, 0.82])
    assert judge(improving_low, {"a": as_good}, "higher", 0.01, **kw).label == UNDERTRAINED
    # ahead of a baseline that is itself still improving: it could catch up, so it waits
    low_improving = Stats.of([0.50, 0.52, 0.51], [False, True, True])
    assert judge(improving_high, {"a": settled_low, "b": low_improving}, "higher", 0.01, **kw).label == UNDERTRAINED
    # a settled trained SAE that an improving baseline already matches fails
    settled_mid = Stats.of([0.60, 0.61, 0.59])
    good_improving = Stats.of([0.80, 0.82, 0.81], [False, True, True])
    assert judge(settled_mid, {"a": good_improving}, "higher", 0.01, **kw).label == FAILS
    assert judge(settled_mid, {"a": good_improving}, "higher", 0.01).label == UNDERTRAINED
    # ... but not when that baseline's L0 is off target (not compared at equal sparsity)
    off = Stats(good_improving.mean, good_improving.sd, good_improving.n, False, 20.0)
    on = Stats(settled_mid.mean, settled_mid.sd, settled_mid.n, True, 32.0)
    assert judge(on, {"a": off}, "higher", 0.01, target_l0=32, **kw).label == UNDERTRAINED
    # and the trained SAE's own L0 is still checked after the BEATS exception
    far = Stats(improving_high.mean, improving_high.sd, improving_high.n, False, 20.0)
    base_on = Stats(settled_low.mean, settled_low.sd, settled_low.n, True, 32.0)
    assert judge(far, {"a": base_on}, "higher", 0.01, target_l0=32, **kw).label == L0_NOT_MATCHED


def test_core_scores_declare_that_they_improve_with_training_and_interp_scores_do_not():
    from saebench_sanity.registry import get_registry

    reg = get_registry()
    declared = {(m, s) for m in ("reconstruction", "reconstruction_bulk", "ground_truth", "sparse_probing",
                                 "autointerp", "ravel", "loss_recovered")
                for s, i in reg.get("metric", m).scores.items() if i.improves_with_training}
    assert ("reconstruction", "explained_variance") in declared and ("ground_truth", "recovery") in declared
    assert ("reconstruction_bulk", "explained_variance") in declared and ("ground_truth", "mcc") in declared
    assert not {d for d in declared if d[0] in ("sparse_probing", "autointerp", "ravel", "loss_recovered")}


def test_a_fails_against_a_settled_baseline_at_the_scores_best_value_stands_while_the_trained_sae_improves():
    """ScoreInfo.best: nothing can be more than min_effect better than a baseline at the score's
    best value, so a FAILS it supports is final even while the trained SAE still improves. A
    baseline merely near it (interval wider than min_effect), not settled, or a row that is not a
    FAILS keeps the plain rule (UNDERTRAINED)."""
    from saebench_sanity.leaderboard.verdict import FAILS, L0_NOT_MATCHED, UNDERTRAINED, Stats, judge

    # committed synth-zipf ReLU dead_fraction: trained 0.0176 ± 0.0034 (a seed at max_steps),
    # frozen encoder 0 ± 0, the other baselines converged
    trained = Stats.of([0.0156, 0.0215, 0.0156], [True, False, True], l0=6.9)
    at_zero = Stats.of([0.0, 0.0, 0.0], l0=6.7)
    other = Stats.of([0.044, 0.041, 0.047], l0=6.8)
    kw = dict(target_l0=7.0)
    assert judge(trained, {"fe": at_zero, "fd": other}, "lower", 0.01, best=0.0, **kw).label == FAILS
    assert judge(trained, {"fe": at_zero, "fd": other}, "lower", 0.01, **kw).label == UNDERTRAINED
    # near 0 but not within min_effect with confidence: 0.0052 ± 0.0045 over 3 seeds reaches 0.0128
    near = Stats.of([0.0026, 0.0026, 0.0104], l0=6.7)
    assert judge(trained, {"fe": near, "fd": other}, "lower", 0.01, best=0.0, **kw).label == UNDERTRAINED
    # a baseline at 0 that has not converged itself is not final
    at_zero_improving = Stats(0.0, 0.0, 3, False, 6.7)
    assert judge(trained, {"fe": at_zero_improving, "fd": other}, "lower", 0.01, best=0.0, **kw).label == UNDERTRAINED
    # ... nor one off the L0 target; and the trained SAE's own L0 is still checked
    assert judge(trained, {"fe": Stats(0.0, 0.0, 3, True, 3.0), "fd": other}, "lower", 0.01, best=0.0,
                 **kw).label == UNDERTRAINED
    far = Stats(trained.mean, trained.sd, trained.n, False, 3.0)
    assert judge(far, {"fe": at_zero, "fd": other}, "lower", 0.01, best=0.0, **kw).label == L0_NOT_MATCHED
    # a higher-is-better score: a baseline at recovery 1 makes a still-improving trained SAE fail
    t_hi = Stats.of([0.90, 0.93, 0.91], [False, True, True])
    assert judge(t_hi, {"b": Stats.of([1.0, 1.0, 0.999])}, "higher", 0.01, best=1.0).label == FAILS
    # a row that is not a FAILS at the current values still waits
    t_top = Stats.of([0.999, 1.0, 1.0], [False, True, True])
    assert judge(t_top, {"b": Stats.of([0.5, 0.52, 0.51])}, "higher", 0.01, best=1.0).label == UNDERTRAINED


def test_declared_best_values_are_bounds_on_the_committed_records():
    """Every built-in score that declares a best value never scores past it in the committed
    results (a declared best beyond the attainable range would let the rule call a FAILS final
    that training could still overturn), and only scores with a direction declare one."""
    import json
    from pathlib import Path

    from saebench_sanity.registry import get_registry

    reg = get_registry()
    bests = {(m, s): (i.best, i.direction) for m in reg.names("metric")
             for s, i in reg.get("metric", m).scores.items() if i.best is not None}
    assert ("reconstruction", "dead_fraction") in bests and ("ground_truth", "recovery") in bests
    assert all(direction is not None for _, direction in bests.values())
    root = Path(__file__).resolve().parents[1] / "leaderboards" / "results"
    seen = 0
    for path in root.glob("*/results/*.json"):
        rec = json.loads(path.read_text())
        for key, entry in (rec.get("metrics") or {}).items():
            for score, value in (entry.get("scores") or {}).items():
                best, direction = bests.get((entry.get("name", key.split(":")[0]), score), (None, None))
                if best is None or value is None:
                    continue
                seen += 1
                assert (value <= best + 1e-9) if direction == "higher" else (value >= best - 1e-9), (path.name, score, value)
    assert seen > 1000
