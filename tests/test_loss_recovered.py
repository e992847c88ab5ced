"""Loss recovered / KL against independent computations on a tiny random Llama."""

import math

import pytest

torch = pytest.importorskip("torch")

from saebench_sanity.activations.reader import Normalizer  # noqa: E402
from saebench_sanity.metrics import loss_recovered as lr  # noqa: E402
from saebench_sanity.models.tiny import tiny_llama  # noqa: E402


class _Linear:
    """A duck-typed SAE: encode = x, decode = f(x)."""

    def __init__(self, f):
        self.f = f

    def encode(self, x):
        return x

    def decode(self, z):
        return self.f(z)


@pytest.fixture(scope="module")
def model():
    return tiny_llama(300, hidden=16, layers=3, seed=1)


@pytest.fixture(scope="module")
def ids():
    x = torch.randint(3, 300, (6, 12), generator=torch.Generator().manual_seed(0))
    x[:, 0] = 0  # BOS
    return x


def test_ce_matches_transformers_built_in_loss(model, ids):
    with torch.no_grad():
        out = model(input_ids=ids, labels=ids)
    s, n = lr.next_token_ce_sum(out.logits, ids)
    assert n == 6 * 11 and s / n == pytest.approx(float(out.loss), rel=1e-5)
    # and a hand computation at one position
    logits = out.logits[2, 4].double()
    hand = -(logits[ids[2, 5]] - torch.logsumexp(logits, 0))
    one, _ = lr.next_token_ce_sum(out.logits[2:3, 4:6], ids[2:3, 4:6])
    assert one == pytest.approx(float(hand), rel=1e-9)


def test_kl_closed_forms():
    p = torch.tensor([[[0.0, math.log(3.0)]]], dtype=torch.float64)  # softmax -> [1/4, 3/4]
    q = torch.zeros(1, 1, 2, dtype=torch.float64)  # uniform
    s, n = lr.kl_sum(p, q)
    expected = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    assert n == 1 and s == pytest.approx(expected, rel=1e-12)
    assert lr.kl_sum(p, p)[0] == pytest.approx(0.0, abs=1e-15)


def test_identity_sae_recovers_everything_and_zero_sae_nothing(model, ids):
    norm = Normalizer(3.7)
    zero = lr.run_with_replacement(model, "resid_post.1", ids, lr.zero_replacement, batch_size=4)
    ident = lr.run_with_replacement(model, "resid_post.1", ids, lr.sae_replacement(_Linear(lambda z: z), norm, [0]),
                                    batch_size=4)
    assert ident["ce"] == pytest.approx(ident["ce_clean"], abs=1e-5) and ident["kl"] == pytest.approx(0.0, abs=1e-6)
    assert lr.loss_recovered(ident["ce_clean"], ident["ce"], zero["ce"]) == pytest.approx(1.0, abs=1e-4)
    zero_sae = lr.run_with_replacement(model, "resid_post.1", ids, lr.sae_replacement(_Linear(torch.zeros_like), norm, []),
                                       batch_size=3)
    assert lr.loss_recovered(zero_sae["ce_clean"], zero_sae["ce"], zero["ce"]) == pytest.approx(0.0, abs=1e-9)
    assert zero_sae["kl"] == pytest.approx(zero["kl"], rel=1e-9) and zero["kl"] > 0
    # a half-way SAE lands strictly between
    half = lr.run_with_replacement(model, "resid_post.1", ids, lr.sae_replacement(_Linear(lambda z: 0.5 * z), norm, [0]))
    assert 0.0 < lr.loss_recovered(half["ce_clean"], half["ce"], zero["ce"]) < 1.0


def test_zero_ablating_the_last_layer_gives_uniform_predictions(model, ids):
    # resid_post of the last layer -> final RMSNorm(0) = 0 -> logits 0 -> uniform over 300 tokens
    out = lr.run_with_replacement(model, "resid_post.2", ids, lr.zero_replacement)
    assert out["ce"] == pytest.approx(math.log(300), rel=1e-9)
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits.double(), -1)  # KL covers every position
    entropy = float(-(logp.exp() * logp).sum(-1).mean())
    assert out["kl"] == pytest.approx(math.log(300) - entropy, rel=1e-6)


def test_special_positions_keep_their_clean_activation(model, ids):
    replace = lr.sae_replacement(_Linear(torch.zeros_like), Normalizer(), [0])
    x = torch.randn(6, 12, 16)
    y = replace(x, ids)
    assert torch.equal(y[:, 0], x[:, 0]) and torch.equal(y[:, 1:], torch.zeros_like(y[:, 1:]))


def test_metric_factory_on_a_real_set_handle(model, ids):
    from saebench_sanity.activations.real import ModelHandle
    from saebench_sanity.metrics.base import MetricContext

    handle = ModelHandle(model=model, tokenizer=None, hook_point="mlp_out.1", eval_contexts=ids,
                         excluded_token_ids=[0], normalizer=Normalizer(0.5))

    class _Set:
        name = "fake-real"
        d_in = 16

        def manifest_hash(self):
            return "h"

        def resource(self, need):
            assert need == "model"
            return handle

    ctx = MetricContext(_Linear(lambda z: z), _Set(), eval_acts=torch.zeros(1, 16))
    scores = lr.loss_recovered_scores(ctx, n_contexts=4, batch_size=2)
    from saebench_sanity.builtin.metrics_model import METRICS

    assert set(scores) == set(METRICS[0].scores)
    assert scores["loss_recovered"] == pytest.approx(1.0, abs=1e-4) and scores["kl_div"] == pytest.approx(0, abs=1e-6)
    assert scores["kl_div_score"] == pytest.approx(1.0, abs=1e-4)
    assert scores["ce_sae"] == pytest.approx(scores["ce_clean"], abs=1e-5)
