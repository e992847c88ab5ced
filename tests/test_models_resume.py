"""Resuming the forward pass at a hook point gives the same logits as splicing into a full pass."""

import pytest

torch = pytest.importorskip("torch")

from saebench_sanity.activations.reader import Normalizer  # noqa: E402
from saebench_sanity.metrics import loss_recovered as lr  # noqa: E402
from saebench_sanity.models.hook_points import splice  # noqa: E402
from saebench_sanity.models.resume import SplicedRunner, can_resume  # noqa: E402
from saebench_sanity.models.tiny import tiny_llama  # noqa: E402


@pytest.fixture(scope="module")
def model():
    return tiny_llama(300, hidden=16, layers=4, seed=3)


@pytest.fixture(scope="module")
def batch():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 300, (5, 10), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0  # a right-padded row
    return ids, mask


@pytest.mark.parametrize("hook_point", ["resid_post.0", "resid_post.2", "resid_post.3", "mlp_out.1"])
def test_runner_matches_a_full_forward_pass_with_the_edit_spliced_in(model, batch, hook_point):
    ids, mask = batch
    runner = SplicedRunner(model, hook_point, ids, mask, batch_size=2)
    assert runner.resumable == hook_point.startswith("resid_post")
    g = torch.Generator().manual_seed(1)
    new = runner.clean * 0.7 + 0.3 * torch.randn(runner.clean.shape, generator=g)
    with torch.inference_mode(), splice(model, hook_point, lambda act: new.to(act.dtype)):
        full = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
    got = runner.logits(new)
    real = mask.bool()
    assert torch.allclose(got[real], full[real], atol=1e-5)
    pos = torch.tensor([9, 6, 0, 3, 5])
    assert torch.allclose(runner.logits(new, positions=pos), full[torch.arange(5), pos], atol=1e-5)
    rows = torch.tensor([3, 1])
    assert torch.allclose(runner.logits(new[rows], rows=rows)[mask[rows].bool()], full[rows][mask[rows].bool()], atol=1e-5)


def test_the_model_is_whole_again_after_a_resumed_pass(model, batch):
    ids, mask = batch
    layers, n = model.model.layers, len(model.model.layers)
    with torch.inference_mode():
        before = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
    runner = SplicedRunner(model, "resid_post.1", ids, mask)
    runner.logits(runner.clean)
    assert model.model.layers is layers and len(layers) == n == model.config.num_hidden_layers
    with torch.inference_mode():
        after = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
    assert torch.equal(before, after)


def test_only_types_that_feed_inputs_embeds_unchanged_resume(model):
    assert can_resume(model, "resid_post.1") and not can_resume(model, "attn_out.1")
    model.config.model_type = "gemma"  # Gemma scales inputs_embeds: must take the splice path
    try:
        assert not can_resume(model, "resid_post.1")
    finally:
        model.config.model_type = "llama"


class _Halve:
    def encode(self, x):
        return x

    def decode(self, z):
        return 0.5 * z


def test_loss_recovered_fast_path_equals_the_full_forward_reference(model, batch):
    from saebench_sanity.activations.real import ModelHandle
    from saebench_sanity.metrics.base import MetricContext

    ids = batch[0].clone()
    ids[:, 0] = 0
    norm = Normalizer(2.0)
    handle = ModelHandle(model=model, tokenizer=None, hook_point="resid_post.2", eval_contexts=ids,
                         excluded_token_ids=[0], normalizer=norm)

    class _Set:
        name = "fake-resume"
        d_in = 16

        def manifest_hash(self):
            return "h-resume"

        def resource(self, need):
            return handle

    scores = lr.loss_recovered_scores(MetricContext(_Halve(), _Set(), eval_acts=torch.zeros(1, 16)), n_contexts=5,
                                      batch_size=2)
    ref = lr.run_with_replacement(model, "resid_post.2", ids, lr.sae_replacement(_Halve(), norm, [0]), batch_size=5)
    zero = lr.run_with_replacement(model, "resid_post.2", ids, lr.zero_replacement, batch_size=5)
    assert scores["ce_sae"] == pytest.approx(ref["ce"], rel=1e-5)
    assert scores["ce_clean"] == pytest.approx(ref["ce_clean"], rel=1e-5)
    assert scores["kl_div"] == pytest.approx(ref["kl"], rel=1e-4)
    assert scores["ce_zero"] == pytest.approx(zero["ce"], rel=1e-5)
    assert scores["loss_recovered"] == pytest.approx(lr.loss_recovered(ref["ce_clean"], ref["ce"], zero["ce"]), rel=1e-4)
    assert 0.0 < scores["loss_recovered"] < 1.0
