"""The study's generator (Korznikov et al. 2026, Finding 1): statistics against the paper's
closed forms, with tolerances of several standard errors."""

import math

import pytest
import torch

from saebench_sanity.activations.study_synthetic import PAPER, StudySyntheticSet, bernoulli_positions, loguniform_mean
from saebench_sanity.builtin.synthetic_sets import SETS

SPECS = {s.name: s for s in SETS}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def constant():
    return SPECS["study-constant"].build(n_eval=8192)


@pytest.fixture(scope="module")
def variable():
    return SPECS["study-variable"].build(n_eval=8192)


def test_paper_sizes(constant, variable):
    for s in (constant, variable):
        assert (s.d_in, s.n_features) == (100, 3200)
        assert SPECS[s.name].training["d_sae"] == 3200 and SPECS[s.name].training["target_l0"] == 20


def test_constant_regime_has_about_20_active_features_per_sample(constant):
    codes = constant.eval_codes()
    per_sample = torch.bincount(codes.indices()[0], minlength=8192).double()
    # Binomial(3200, 0.00625): mean 20, sd 4.46; the mean over 8192 samples has se 0.05
    assert abs(per_sample.mean().item() - 20.0) < 0.25
    assert abs(per_sample.std().item() - math.sqrt(3200 * 0.00625 * (1 - 0.00625))) < 0.2
    torch.testing.assert_close(constant.firing_probabilities, torch.full((3200,), 0.00625))


def test_variable_regime_probabilities_are_loguniform(variable):
    p = variable.firing_probabilities.double()
    assert p.min() >= 10 ** -5.5 * (1 - 1e-6) and p.max() <= 10 ** -1.2 * (1 + 1e-6)
    # log10 p ~ Uniform(-5.5, -1.2): mean -3.35, sd 4.3/sqrt(12) = 1.241; se of the mean 0.022
    logp = p.log10()
    assert abs(logp.mean().item() + 3.35) < 0.1
    assert abs(logp.std().item() - 4.3 / math.sqrt(12)) < 0.05
    # expected active count: 3200 * E[p] = 20.4 (sd of the realised sum ~0.7)
    assert abs(p.sum().item() - 3200 * loguniform_mean(10 ** -5.5, 10 ** -1.2)) < 2.5


def test_variable_regime_active_count_matches_its_probabilities(variable):
    codes = variable.eval_codes()
    mean_active = codes.indices().shape[1] / 8192
    assert abs(mean_active - variable.expected_l0()) < 0.25
    assert 18 < mean_active < 23  # "about 20 active features per sample"


def test_magnitudes_are_lognormal_0_025(constant):
    logc = constant.eval_codes().values().double().log()
    assert logc.numel() > 100_000
    assert abs(logc.mean().item()) < 0.005  # se 0.25/sqrt(160k) = 6e-4
    assert abs(logc.std().item() - 0.25) < 0.005
    from scipy import stats

    sample = logc[:20000].numpy() / 0.25
    assert stats.kstest(sample, "norm").pvalue > 1e-3


def test_features_are_uniform_on_the_sphere(constant):
    f = constant.features.double()
    torch.testing.assert_close(f.norm(dim=1), torch.ones(3200, dtype=torch.float64))
    # the mean of 3200 uniform unit vectors in R^100 has norm ~ 1/sqrt(3200) = 0.018
    assert f.mean(dim=0).norm().item() < 0.05
    # each coordinate of a uniform unit vector has variance 1/d
    assert abs(f.pow(2).mean().item() - 1 / 100) < 1e-4
    # squared cosines between independent features: mean 1/d
    c = (f[:1000] @ f[1000:2000].T).pow(2)
    assert abs(c.mean().item() - 1 / 100) < 5e-4


def test_mini_sets_keep_the_paper_ratios():
    for name, expected in (("study-constant-mini", 6.4), ("study-variable-mini", 1024 * loguniform_mean(10 ** -5.5, 10 ** -1.2))):
        s = SPECS[name].build(n_eval=4096)
        assert s.n_features / s.d_in == PAPER["n_features"] / PAPER["d_in"] == 32
        assert abs(s.expected_l0() - expected) < (0.01 if "constant" in name else 1.5)
        active = s.eval_codes().indices().shape[1] / 4096
        assert abs(active - s.expected_l0()) < 0.2
        assert SPECS[name].training["d_sae"] == 1024


def test_sparse_bernoulli_sampler_matches_per_feature_probabilities():
    probs = torch.tensor([1.0, 0.5, 0.1, 0.01, 0.3, 1e-4])
    g = torch.Generator().manual_seed(0)
    n = 40000
    rows, cols = bernoulli_positions(n, probs, g)
    counts = torch.bincount(cols, minlength=6).double()
    expected = n * probs.double()
    sd = (n * probs.double() * (1 - probs.double())).sqrt().clamp_min(1.0)
    assert bool(((counts - expected).abs() <= 5 * sd).all()), (counts, expected)
    assert counts[0] == n  # p = 1 always fires
    # row-major order and no duplicates
    flat = rows * 6 + cols
    assert bool((flat[1:] > flat[:-1]).all())


def test_sparse_bernoulli_sampler_is_independent_across_features():
    probs = torch.full((4,), 0.5)
    rows, cols = bernoulli_positions(20000, probs, torch.Generator().manual_seed(1))
    dense = torch.zeros(20000, 4)
    dense[rows, cols] = 1
    corr = torch.corrcoef(dense.T)
    off = corr - torch.eye(4)
    assert off.abs().max().item() < 0.04  # se of a correlation = 1/sqrt(20000) = 0.007


def test_seed_changes_dictionary_and_probabilities():
    a = StudySyntheticSet(name="a", regime="variable", d_in=16, n_features=64, seed=0, n_eval=16)
    b = StudySyntheticSet(name="a", regime="variable", d_in=16, n_features=64, seed=1, n_eval=16)
    assert not torch.equal(a.features, b.features)
    assert not torch.equal(a.firing_probabilities, b.firing_probabilities)


def test_constant_manifest_omits_variable_only_parameters():
    a = StudySyntheticSet(name="a", d_in=16, n_features=64, n_eval=16)
    b = StudySyntheticSet(name="a", d_in=16, n_features=64, n_eval=16, p_log10_min=-4.0)
    assert a.manifest_hash() == b.manifest_hash()
