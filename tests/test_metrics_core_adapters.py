"""Registered core metrics through MetricContext, cross-checked against
sae_lens.synthetic.eval_sae_on_synthetic_data on the same tensors."""

import pytest
import torch

from saebench_sanity.builtin.metrics_core import METRICS
from saebench_sanity.builtin.synthetic_sets import SETS
from saebench_sanity.errors import DataError
from saebench_sanity.metrics.base import MetricContext
from saebench_sanity.registry import Registry

SPECS = {s.name: s for s in SETS}


def topk_sae_from_dictionary(features, k, noise=0.0, seed=0):
    """A sae_lens TopK SAE whose encoder/decoder are the given dictionary (+ noise)."""
    from sae_lens import TopKSAE, TopKSAEConfig

    n, d = features.shape
    sae = TopKSAE(TopKSAEConfig(d_in=d, d_sae=n, k=k))
    g = torch.Generator().manual_seed(seed)
    w = features + noise * torch.randn(n, d, generator=g)
    with torch.no_grad():
        sae.W_dec.copy_(w)
        sae.W_enc.copy_(w.T)
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae.eval()


@pytest.fixture(scope="module")
def easy():
    return SPECS["synth-easy"].build(n_eval=2048)


def test_registered_metrics_declare_the_agreed_scores():
    by_name = {m.name: m for m in METRICS}
    rec = by_name["reconstruction"]
    assert {"explained_variance", "explained_variance_saebench", "mse", "l0", "dead_fraction"} <= set(rec.scores)
    assert rec.scores["explained_variance"].direction == "higher" and rec.scores["explained_variance"].chance == 0.0
    assert rec.scores["mse"].direction == "lower" and rec.scores["dead_fraction"].direction == "lower"
    assert rec.scores["l0"].direction is None and not rec.needs
    g = by_name["ground_truth"]
    assert g.needs == frozenset({"ground_truth"}) and g.params == {"cos_threshold": 0.8}
    assert set(g.scores) == {"recovery", "mcc", "mean_max_cos", "n_recovered"}
    assert g.scores["n_recovered"].direction is None and g.scores["recovery"].chance == 0.0
    assert all(info.definition for m in METRICS for info in m.scores.values())


def test_scores_through_the_registry_match_the_spec_keys(easy):
    reg = Registry(load_entry_points=False)
    sae = topk_sae_from_dictionary(easy.features, k=4, noise=0.05)
    ctx = MetricContext(sae, easy, easy.eval_activations(), batch_size=512)
    for name in ("reconstruction", "ground_truth"):
        spec = reg.get("metric", name)
        out = spec.compute(ctx)
        assert set(out) == set(spec.scores)
        assert all(isinstance(v, float) for v in out.values())
    strict = reg.get("metric", "ground_truth").compute(ctx, cos_threshold=0.9999)
    loose = reg.get("metric", "ground_truth").compute(ctx)
    assert loose["recovery"] == 1.0 and strict["recovery"] < 1.0


def test_core_metrics_agree_with_sae_lens_eval_on_synthetic_data(easy):
    from sae_lens.synthetic import eval_sae_on_synthetic_data

    from saebench_sanity.metrics.core_adapters import ground_truth_scores, reconstruction_scores

    model = easy._model
    sae = topk_sae_from_dictionary(easy.features, k=3, noise=0.1, seed=1)
    n = 4096
    import copy

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        # the set draws in float64 (activations/synthetic.py), so sae-lens evaluates a float64 copy
        theirs = eval_sae_on_synthetic_data(copy.deepcopy(sae).to(torch.float64), model.feature_dict,
                                            model.activation_generator, num_samples=n)
        torch.manual_seed(7)  # the same draw of feature activations
        x = model.feature_dict(model.activation_generator.sample(n)).detach().to(torch.float32)  # as the set serves them
    ctx = MetricContext(sae, easy, x, batch_size=1024)
    ours = {**reconstruction_scores(ctx), **ground_truth_scores(ctx)}
    assert ours["explained_variance"] == pytest.approx(theirs.explained_variance, abs=1e-5)
    assert ours["l0"] == pytest.approx(theirs.sae_l0, abs=1e-9)
    assert ours["dead_fraction"] == pytest.approx(theirs.dead_latents / easy.n_features)
    assert ours["shrinkage"] == pytest.approx(theirs.shrinkage, abs=1e-5)
    assert ours["mcc"] == pytest.approx(theirs.mcc, abs=1e-5)
    assert 0.2 < ours["explained_variance"] < 0.999  # a non-trivial case


def test_perfect_dictionary_recovers_every_feature_and_random_one_none(easy):
    from saebench_sanity.metrics.core_adapters import ground_truth_scores

    good = topk_sae_from_dictionary(easy.features, k=4)
    ctx = MetricContext(good, easy, easy.eval_activations())
    s = ground_truth_scores(ctx)
    assert s["recovery"] == 1.0 and s["n_recovered"] == 48.0 and s["mcc"] == pytest.approx(1.0, abs=1e-6)
    rand = topk_sae_from_dictionary(torch.randn(48, 32, generator=torch.Generator().manual_seed(3)), k=4)
    s = ground_truth_scores(MetricContext(rand, easy, easy.eval_activations()))
    assert s["recovery"] < 0.1


def test_ground_truth_metric_on_a_set_without_ground_truth_is_a_data_error(easy):
    from saebench_sanity.metrics.core_adapters import ground_truth_scores

    class NoTruth:
        name = "real-thing"
        ground_truth = None

    sae = topk_sae_from_dictionary(easy.features, k=4)
    with pytest.raises(DataError, match="real-thing"):
        ground_truth_scores(MetricContext(sae, NoTruth(), easy.eval_activations()))
