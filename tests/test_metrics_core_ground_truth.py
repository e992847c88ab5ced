"""Ground-truth recovery and MCC against constructed cases, closed forms and sae_lens."""

import math

import pytest
import torch

from saebench_sanity.errors import ConfigError, DataError
from saebench_sanity.metrics import ground_truth as gt


def unit(t):
    return t / t.norm(dim=1, keepdim=True)


@pytest.fixture
def features():
    return unit(torch.randn(20, 16, generator=torch.Generator().manual_seed(0)))


def test_recovery_is_one_when_decoder_contains_the_features_permuted_and_scaled(features):
    g = torch.Generator().manual_seed(1)
    perm = torch.randperm(20, generator=g)
    scales = torch.rand(20, 1, generator=g) * 5 + 0.1
    W_dec = torch.cat([features[perm] * scales, torch.randn(12, 16, generator=g)])
    assert gt.recovery(features, W_dec) == 1.0
    assert gt.n_recovered(features, W_dec) == 20
    assert gt.mean_max_cos(features, W_dec) == pytest.approx(1.0, abs=1e-9)


def test_recovery_is_zero_for_the_orthogonal_complement():
    g = torch.Generator().manual_seed(2)
    features = torch.zeros(10, 12)
    features[:, :6] = torch.randn(10, 6, generator=g)  # features live in the first 6 dims
    W_dec = torch.zeros(30, 12)
    W_dec[:, 6:] = torch.randn(30, 6, generator=g)  # decoder in the complement
    assert gt.recovery(features, W_dec, cos_threshold=0.01) == 0.0
    assert gt.mean_max_cos(features, W_dec) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("c", [0.8, 0.9, 0.5])
def test_threshold_boundary(c):
    f = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
    d = torch.tensor([[c, math.sqrt(1 - c * c), 0.0]], dtype=torch.float64)  # cosine exactly c
    assert gt.recovery(f, d, cos_threshold=c - 1e-6) == 1.0
    assert gt.recovery(f, d, cos_threshold=c + 1e-6) == 0.0
    assert gt.mean_max_cos(f, d) == pytest.approx(c, abs=1e-12)


def test_default_threshold_is_the_studys_0_8():
    f = torch.tensor([[1.0, 0.0]])
    d = torch.tensor([[0.85, math.sqrt(1 - 0.85 ** 2)]])
    assert gt.recovery(f, d) == 1.0  # 0.85 >= 0.8
    assert gt.recovery(f, d, cos_threshold=0.9) == 0.0


def test_recovery_uses_signed_cosine_but_mcc_absolute(features):
    assert gt.recovery(features, -features) == 0.0
    assert gt.mcc(features, -features) == pytest.approx(1.0, abs=1e-9)


def test_mcc_is_one_for_permuted_identical_dictionaries(features):
    perm = torch.randperm(20, generator=torch.Generator().manual_seed(3))
    assert gt.mcc(features, features[perm] * 3.0) == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("n_dec", [12, 20, 35])
def test_mcc_matches_sae_lens(features, n_dec):
    from sae_lens.synthetic import mean_correlation_coefficient

    W_dec = torch.randn(n_dec, 16, generator=torch.Generator().manual_seed(n_dec))
    W_dec[: min(n_dec, 10)] += 2 * features[: min(n_dec, 10)]  # partial alignment
    assert gt.mcc(features, W_dec) == pytest.approx(mean_correlation_coefficient(W_dec, features), abs=1e-5)


def test_summary_agrees_with_the_single_functions(features):
    W_dec = torch.randn(25, 16, generator=torch.Generator().manual_seed(4))
    W_dec[:8] += 3 * features[:8]
    s = gt.summary(features, W_dec, cos_threshold=0.7)
    assert s == pytest.approx({"recovery": gt.recovery(features, W_dec, 0.7),
                               "n_recovered": float(gt.n_recovered(features, W_dec, 0.7)),
                               "mean_max_cos": gt.mean_max_cos(features, W_dec),
                               "mcc": gt.mcc(features, W_dec)})
    assert 0 < s["recovery"] < 1


def test_recovery_chance_closed_form_in_three_dimensions():
    # on the 2-sphere the cosine with a fixed direction is Uniform(-1, 1) (Archimedes)
    assert gt.recovery_chance(3, 1, 0.8) == pytest.approx(0.1, abs=1e-12)
    assert gt.recovery_chance(3, 5, 0.8) == pytest.approx(1 - 0.9 ** 5, abs=1e-12)
    assert gt.recovery_chance(3, 1, -0.5) == pytest.approx(0.75, abs=1e-12)


def test_recovery_chance_matches_random_dictionaries_empirically():
    g = torch.Generator().manual_seed(5)
    d, d_sae, tau = 6, 8, 0.7
    hits = []
    for _ in range(20):
        f = unit(torch.randn(500, d, generator=g))
        w = torch.randn(d_sae, d, generator=g)
        hits.append(gt.recovery(f, w, tau))
    emp = sum(hits) / len(hits)
    expected = gt.recovery_chance(d, d_sae, tau)
    assert abs(emp - expected) < 0.02, (emp, expected)  # se ~ 0.005


def test_random_dictionary_recovers_nothing_at_paper_size():
    assert gt.recovery_chance(100, 3200, 0.8) < 1e-15
    g = torch.Generator().manual_seed(6)
    f = unit(torch.randn(3200, 100, generator=g))
    assert gt.recovery(f, torch.randn(3200, 100, generator=g)) == 0.0


def test_bad_inputs(features):
    with pytest.raises(DataError):
        gt.recovery(features, torch.randn(5, 7))
    with pytest.raises(ConfigError):
        gt.recovery(features, features, cos_threshold=1.5)
    with pytest.raises(ConfigError):
        gt.recovery(features, features, cos_threshold=True)
    bad = features.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(DataError):
        gt.mcc(features, bad)
