"""Reconstruction / sparsity metrics against closed forms and against sae_lens's calculators."""

import math

import pytest
import torch

from saebench_sanity.errors import DataError
from saebench_sanity.metrics import reconstruction as rec


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(600, 12, generator=g) * torch.linspace(0.5, 3.0, 12) + 2.0  # nonzero mean
    x_hat = x + 0.7 * torch.randn(600, 12, generator=g)
    return x, x_hat


def test_perfect_reconstruction_explains_all_variance(data):
    x, _ = data
    assert rec.explained_variance(x, x) == pytest.approx(1.0, abs=1e-12)
    assert rec.mse(x, x) == 0.0


def test_predicting_the_mean_explains_nothing(data):
    x, _ = data
    mean = x.double().mean(0, keepdim=True).expand_as(x)
    assert rec.explained_variance(x, mean) == pytest.approx(0.0, abs=1e-9)
    # and predicting zero is worse than the mean for data with a nonzero mean
    assert rec.explained_variance(x, torch.zeros_like(x)) < -0.5


def test_explained_variance_matches_sae_lens_calculator(data):
    from sae_lens.evals import ExplainedVarianceCalculator

    x, x_hat = data
    calc = ExplainedVarianceCalculator()
    for xs, hs in zip(x.split(128), x_hat.split(128)):  # uneven last batch
        calc.add_batch(sae_output=hs, hidden_acts=xs)
    assert rec.explained_variance(x, x_hat) == pytest.approx(calc.compute(), abs=1e-6)


def test_explained_variance_matches_sae_trainer_log_formula(data):
    # SAETrainer.build_train_step_log_dict: 1 - per_token_l2.mean() / total_variance.mean()
    x, x_hat = data
    per_token_l2 = (x_hat - x).pow(2).sum(-1)
    total_variance = (x - x.mean(0)).pow(2).sum(-1)
    expected = 1 - per_token_l2.mean() / total_variance.mean()
    assert rec.explained_variance(x, x_hat) == pytest.approx(expected.item(), abs=1e-5)


def test_explained_variance_closed_form_for_isotropic_noise():
    # x ~ N(0, I_d) and x_hat = x + sigma * noise: EV -> 1 - sigma^2
    g = torch.Generator().manual_seed(1)
    x = torch.randn(200_000, 4, generator=g)
    x_hat = x + 0.5 * torch.randn(200_000, 4, generator=g)
    assert rec.explained_variance(x, x_hat) == pytest.approx(0.75, abs=0.01)


def test_saebench_explained_variance_closed_form():
    # rows of +-1: ||x||^2 = d for every sample, so the SAEBench denominator is d - (d/d)^2 = d - 1
    d = 8
    g = torch.Generator().manual_seed(2)
    x = torch.randint(0, 2, (1000, d), generator=g).float() * 2 - 1
    assert rec.explained_variance_saebench(x, torch.zeros_like(x)) == pytest.approx(1 - d / (d - 1), abs=1e-12)
    assert rec.explained_variance_saebench(x, x) == pytest.approx(1.0, abs=1e-12)


def test_saebench_explained_variance_matches_saebench_batched_accumulation(data):
    """Re-run SAEBench core's accumulation loop (get_sparsity_and_variance_metrics, v0.6.0) on
    equal-size batches and compare."""
    x, x_hat = data
    mean_sum_of_squares, mean_act_per_dimension, mean_sum_of_resid_squared = [], [], []
    for xs, hs in zip(x.split(100), x_hat.split(100)):
        resid = (xs - hs).pow(2).sum(dim=-1)
        mean_sum_of_squares.append(xs.pow(2).sum(dim=-1).mean(dim=0))
        mean_act_per_dimension.append(xs.pow(2).mean(dim=0))
        mean_sum_of_resid_squared.append(resid.mean(dim=0))
    total_variance = torch.stack(mean_sum_of_squares).mean(0) - torch.cat(mean_act_per_dimension).mean(0) ** 2
    expected = 1 - torch.stack(mean_sum_of_resid_squared).mean(0) / total_variance
    assert rec.explained_variance_saebench(x, x_hat) == pytest.approx(expected.item(), abs=1e-5)
    # it is a different number from the textbook EV on data with a mean
    assert abs(rec.explained_variance_saebench(x, x_hat) - rec.explained_variance(x, x_hat)) > 0.02


def test_per_sample_explained_variance_matches_sae_lens_legacy(data):
    x, x_hat = data
    legacy = 1 - (x - x_hat).pow(2).sum(-1) / (x - x.mean(0)).pow(2).sum(-1)
    assert rec.explained_variance_per_sample(x, x_hat) == pytest.approx(legacy.mean().item(), abs=1e-4)


def test_mse_closed_form(data):
    x, _ = data
    shifted = x.clone()
    shifted[:, 3] += 0.5
    assert rec.mse(x, shifted) == pytest.approx(0.25, abs=1e-6)


def test_l0_and_dead_fraction_closed_form():
    acts = torch.zeros(4, 5)
    acts[0, :3] = 1.0
    acts[1, 0] = -2.0  # nonzero counts (bidirectional latents)
    acts[3, 1] = 0.5
    assert rec.l0(acts) == pytest.approx((3 + 1 + 0 + 1) / 4)
    assert rec.dead_fraction(acts) == pytest.approx(2 / 5)  # latents 3 and 4 never fire
    assert rec.dead_fraction(torch.zeros(3, 7)) == 1.0
    assert rec.dead_fraction(torch.ones(3, 7)) == 0.0


def test_sparsity_metrics_match_sae_lens_calculators():
    from sae_lens.synthetic import DeadLatentsCalculator, L0Calculator, ShrinkageCalculator

    g = torch.Generator().manual_seed(3)
    acts = torch.relu(torch.randn(300, 40, generator=g) - 1.5)
    acts[:, :5] = 0
    l0c, dead = L0Calculator(), DeadLatentsCalculator(40)
    l0c.add_batch(acts)
    dead.add_batch(acts)
    assert rec.l0(acts) == pytest.approx(l0c.compute(), abs=1e-9)
    assert rec.dead_fraction(acts) == pytest.approx(dead.compute() / 40)
    x = torch.randn(300, 6, generator=g)
    x[0] = 0.0  # skipped by both
    x_hat = 0.5 * x + 0.01 * torch.randn(300, 6, generator=g)
    sc = ShrinkageCalculator()
    sc.add_batch(x_hat, x)
    assert rec.shrinkage(x, x_hat) == pytest.approx(sc.compute(), abs=1e-6)
    assert rec.shrinkage(x, 0.5 * x) == pytest.approx(0.5, abs=1e-9)


def test_bad_inputs_raise_data_error(data):
    x, x_hat = data
    with pytest.raises(DataError):
        rec.explained_variance(x, x_hat[:, :5])
    with pytest.raises(DataError):
        rec.mse(x[0], x_hat[0])
    bad = x.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(DataError):
        rec.explained_variance(bad, x_hat)
    with pytest.raises(DataError):
        rec.explained_variance(torch.ones(10, 3), torch.ones(10, 3))
    with pytest.raises(DataError):
        rec.l0(torch.zeros(0, 3))


def test_diverged_reconstruction_gives_nan_not_an_error(data):
    x, x_hat = data
    x_hat = x_hat.clone()
    x_hat[0, 0] = float("nan")
    assert math.isnan(rec.explained_variance(x, x_hat))


def test_bulk_ev_ignores_one_massive_token_that_dominates_textbook_ev():
    import torch

    from saebench_sanity.metrics.reconstruction import bulk_mask, bulk_scores, explained_variance

    g = torch.Generator().manual_seed(0)
    x = torch.randn(1000, 8, generator=g)
    x[17] = 500.0  # one token with norm ~1400 vs a median ~2.7
    x_hat = x.clone()
    x_hat[17] = 0.0  # an SAE that reconstructs everything but the outlier
    assert explained_variance(x, x_hat) < 0.2  # textbook EV says "bad SAE": the outlier is most of the variance
    out = bulk_scores(x, x_hat)
    assert out["explained_variance"] == pytest.approx(1.0)
    assert out["outlier_fraction"] == pytest.approx(1 / 1000)
    dev = (x.double() - x.double().mean(0)).pow(2).sum(1)
    assert out["outlier_variance_share"] == pytest.approx(float(dev[17] / dev.sum()))
    assert out["outlier_variance_share"] > 0.8
    # and the other way round: perfect on the outlier, the mean elsewhere -> textbook EV looks good, bulk EV is ~0
    y_hat = x.mean(0).expand_as(x).clone()
    y_hat[17] = x[17]
    assert explained_variance(x, y_hat) > 0.8
    bulk = bulk_scores(x, y_hat)["explained_variance"]
    keep = bulk_mask(x, 10.0)
    assert int((~keep).sum()) == 1 and not bool(keep[17])
    # closed form: predicting the mean of ALL samples on the bulk costs ||mean_all - mean_bulk||^2 extra
    xb = x[keep].double()
    expected = 1 - float((xb - x.double().mean(0)).pow(2).sum(1).mean()) / float((xb - xb.mean(0)).pow(2).sum(1).mean())
    assert bulk == pytest.approx(expected, rel=1e-6) and bulk < 0.0  # y_hat holds a float32 mean


def test_bulk_mask_keeps_everything_without_outliers_and_rejects_bad_ratios():
    import torch

    from saebench_sanity.errors import DataError
    from saebench_sanity.metrics.reconstruction import bulk_mask

    x = torch.randn(200, 4, generator=torch.Generator().manual_seed(1))
    assert bool(bulk_mask(x, 10.0).all())
    with pytest.raises(DataError, match="max_norm_ratio"):
        bulk_mask(x, 0.0)
