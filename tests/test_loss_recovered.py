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


class _Set:
    """A stand-in real set: only the model resource (what ``loss_recovered_scores`` reads)."""

    d_in = 16

    def __init__(self, handle, name):
        self.handle, self.name = handle, name

    def manifest_hash(self):
        return self.name

    def resource(self, need):
        assert need == "model"
        return self.handle


def _handle(model, ids, hook, norm, mean=None):
    from saebench_sanity.activations.real import ModelHandle

    return ModelHandle(model=model, tokenizer=None, hook_point=hook, eval_contexts=ids, excluded_token_ids=[0],
                       normalizer=norm, mean_activation=mean)


def _scores(sae, handle, name, **params):
    from saebench_sanity.metrics.base import MetricContext

    return lr.loss_recovered_scores(MetricContext(sae, _Set(handle, name), eval_acts=torch.zeros(1, 16)), **params)


def test_metric_factory_on_a_real_set_handle(sharp):
    from saebench_sanity.builtin.metrics_model import METRICS

    model, ids = sharp
    scores = _scores(_Linear(lambda z: z), _handle(model, ids, "resid_post.1", Normalizer(0.5)), "fake-real", n_contexts=4,
                     batch_size=2)
    assert set(scores) == set(METRICS[0].scores)
    assert scores["loss_recovered"] == pytest.approx(1.0, abs=1e-4) and scores["kl_div"] == pytest.approx(0, abs=1e-6)
    assert scores["loss_recovered_mean_ablation"] == pytest.approx(1.0, abs=1e-4)
    assert scores["kl_div_score"] == pytest.approx(1.0, abs=1e-4)
    assert scores["kl_div_score_mean_ablation"] == pytest.approx(1.0, abs=1e-4)
    assert scores["ce_sae"] == pytest.approx(scores["ce_clean"], abs=1e-5)


def test_spec_declares_16_contexts_and_every_reference_score():
    from saebench_sanity.builtin.metrics_model import METRICS

    spec = METRICS[0]
    assert spec.params["n_contexts"] == 16
    for name in ("loss_recovered", "loss_recovered_mean_ablation", "kl_div_score", "kl_div_score_mean_ablation"):
        info = spec.scores[name]
        assert info.direction == "higher" and info.chance == 0.0
        assert ("mean-ablation" if "mean" in name else "zero-ablation") in info.definition
    assert "SAEBench" in spec.scores["loss_recovered"].definition
    assert spec.scores["ce_mean_ablation"].direction is None


# -- an independent computation: transformers' own loss and torch's kl_div, hooks written here --

def _layer_output_hook(module, fn):
    def hook(_m, _inp, out):
        if isinstance(out, tuple):
            return (fn(out[0]), *out[1:])
        return fn(out)

    return module.register_forward_hook(hook)


def _independent(model, ids, module, fn):
    """(mean next-token CE by transformers' ``labels=`` loss, mean KL(clean || edited) over every
    position by ``torch.nn.functional.kl_div``) with ``module``'s output replaced by ``fn(out, ids)``."""
    import torch.nn.functional as F

    with torch.no_grad():
        clean = model(input_ids=ids).logits.double()
        h = _layer_output_hook(module, lambda out: fn(out, ids))
        try:
            out = model(input_ids=ids, labels=ids)
        finally:
            h.remove()
    kl = F.kl_div(torch.log_softmax(out.logits.double(), -1), torch.log_softmax(clean, -1), log_target=True,
                  reduction="none").sum(-1).mean()
    return float(out.loss), float(kl)


def _clean_output(model, ids, module):
    got = []
    h = _layer_output_hook(module, lambda out: got.append(out.clone()) or out)
    with torch.no_grad():
        model(input_ids=ids)
    h.remove()
    return got[0]


@pytest.fixture(scope="module")
def sharp():
    """(model, contexts [18, 12]): the tiny Llama with embeddings x8 (tied: sharper predictions)
    and contexts it continues greedily from BOS + one random token, so the clean model predicts
    them well (CE ~3.6 nats vs ln 300 = 5.7 when zero-ablated) and the references separate."""
    m = tiny_llama(300, hidden=16, layers=3, seed=1)
    with torch.no_grad():
        m.model.embed_tokens.weight.mul_(8)
    x = torch.zeros(18, 12, dtype=torch.int64)
    x[:, 1] = torch.randint(3, 300, (18,), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        for t in range(2, 12):
            x[:, t] = m(input_ids=x[:, :t]).logits[:, -1].argmax(-1)
    x[3, 7] = 0  # a separator inside a context: kept clean too
    return m, x


@pytest.mark.parametrize("path", ["resumed", "full pass"])
def test_every_score_matches_an_independent_computation_on_16_contexts(sharp, path, monkeypatch):
    from saebench_sanity.models import resume

    if path == "full pass":  # the splice-hook path every non-Llama-like model takes
        monkeypatch.setattr(resume, "RESUMABLE_TYPES", frozenset())
    model, many_ids = sharp
    hook = "resid_post.1"
    module = model.model.layers[1]
    ids16 = many_ids[:16]
    norm = Normalizer(2.5)
    gen = torch.Generator().manual_seed(3)
    w = torch.eye(16) + 0.1 * torch.randn(16, 16, generator=gen)
    sae = _Linear(lambda z: z @ w - 0.05 * torch.relu(z))  # a lossy, non-linear "SAE" in normalized space
    mean = 0.5 * torch.randn(16, generator=gen)  # the set's mean activation (model space)
    scores = _scores(sae, _handle(model, many_ids, hook, norm, mean), f"indep-{path}", batch_size=3)  # default n=16

    special = ids16 == 0

    def sae_fn(out, _ids):
        return torch.where(special[..., None], out, norm.undo(sae.decode(norm.apply(out))))

    def mean_fn(out, _ids):
        return torch.where(special[..., None], out, mean.expand_as(out))

    with torch.no_grad():
        ce_clean = float(model(input_ids=ids16, labels=ids16).loss)
    ce_sae, kl_sae = _independent(model, ids16, module, sae_fn)
    ce_zero, kl_zero = _independent(model, ids16, module, lambda out, _i: torch.zeros_like(out))
    ce_mean, kl_mean = _independent(model, ids16, module, mean_fn)
    expected = {
        "ce_clean": ce_clean, "ce_sae": ce_sae, "ce_zero": ce_zero, "ce_mean_ablation": ce_mean, "kl_div": kl_sae,
        "loss_recovered": (ce_zero - ce_sae) / (ce_zero - ce_clean),
        "loss_recovered_mean_ablation": (ce_mean - ce_sae) / (ce_mean - ce_clean),
        "kl_div_score": (kl_zero - kl_sae) / kl_zero,
        "kl_div_score_mean_ablation": (kl_mean - kl_sae) / kl_mean,
    }
    assert set(scores) == set(expected)
    for k, v in expected.items():
        assert scores[k] == pytest.approx(v, rel=2e-5, abs=1e-6), k
    # the references are far from the clean model and from each other (else the ratios say little)
    assert min(ce_zero, ce_mean) - ce_clean > 0.5 and abs(ce_mean - ce_zero) > 0.05 and ce_sae != ce_clean


def test_mean_of_the_scored_contexts_when_the_set_has_none(sharp):
    """Without ``mean_activation`` mean ablation uses the clean activations' mean over the scored
    contexts' non-special positions, computed here from a hook."""
    model, many_ids = sharp
    module = model.model.layers[1]
    ids16 = many_ids[:16]
    clean = _clean_output(model, ids16, module)
    mu = clean[ids16 != 0].double().mean(0).float()
    ce_mean, _ = _independent(model, ids16, module,
                              lambda out, _i: torch.where((ids16 == 0)[..., None], out, mu.expand_as(out)))
    scores = _scores(_Linear(lambda z: z), _handle(model, many_ids, "resid_post.1", Normalizer()), "no-mean")
    assert scores["ce_mean_ablation"] == pytest.approx(ce_mean, rel=1e-5)


def test_closed_forms_constant_mean_sae_scores_zero_and_last_layer_mean_ablation(sharp):
    """(1) An SAE whose output is the set's mean whatever its input is exactly mean ablation:
    loss_recovered_mean_ablation = 0 and kl_div_score_mean_ablation = 0 (zero ablation still
    gives it a positive score). (2) At the last layer's residual stream the logits of a position
    depend only on its activation, so mean ablation predicts the constant distribution
    softmax(lm_head(RMSNorm(mean))) at every non-special position: CE in closed form."""
    model, many_ids = sharp
    norm = Normalizer(1.7)
    mean = torch.randn(16, generator=torch.Generator().manual_seed(11))
    const = _Linear(lambda z: norm.apply(mean).expand_as(z).clone())
    s = _scores(const, _handle(model, many_ids, "resid_post.1", norm, mean), "const")
    assert s["loss_recovered_mean_ablation"] == pytest.approx(0.0, abs=1e-9)
    assert s["kl_div_score_mean_ablation"] == pytest.approx(0.0, abs=1e-9)
    assert s["ce_sae"] == pytest.approx(s["ce_mean_ablation"], rel=1e-9)

    ids16 = many_ids[:16]
    last = _scores(const, _handle(model, many_ids, "resid_post.2", norm, mean), "last")
    with torch.no_grad():
        const_logits = model.lm_head(model.model.norm(mean)).double()
        clean_logits = model(input_ids=ids16).logits.double()
    lse = torch.logsumexp(const_logits, 0)
    total, n = 0.0, 0
    for b in range(16):
        for t in range(11):
            target = int(ids16[b, t + 1])
            if int(ids16[b, t]) == 0:  # special position: clean prediction
                total += float(torch.logsumexp(clean_logits[b, t], 0) - clean_logits[b, t, target])
            else:
                total += float(lse - const_logits[target])
            n += 1
    assert last["ce_mean_ablation"] == pytest.approx(total / n, rel=1e-6)
    assert last["ce_zero"] == pytest.approx(math.log(300), rel=1e-9)  # RMSNorm(0) = 0: uniform logits


def test_chunked_scoring_equals_one_batch(sharp):
    model, many_ids = sharp
    handle = _handle(model, many_ids, "resid_post.1", Normalizer(0.8), torch.ones(16))
    sae = _Linear(lambda z: 0.6 * z)
    a = _scores(sae, handle, "chunk-a", batch_size=16)
    b = _scores(sae, handle, "chunk-b", batch_size=5)
    for k in a:
        assert a[k] == pytest.approx(b[k], rel=1e-6, abs=1e-9), k


@pytest.mark.parametrize("path", ["resumed", "full pass"])
def test_a_cohort_stacked_in_one_pass_scores_each_sae_as_alone(sharp, path, monkeypatch):
    """``loss_recovered_many`` (the harness's cohort call) runs several SAEs' spliced passes
    stacked (on an accelerator; forced here on the CPU); each SAE's scores equal its own
    ``loss_recovered_scores``, also across a stack boundary; a context whose set has no model
    gets its NotApplicable item, and an SAE that breaks its stack's pass gets its own error while
    its stack-mate is scored alone."""
    from saebench_sanity.metrics.base import MetricCache, MetricContext, NotApplicable
    from saebench_sanity.models import resume

    if path == "full pass":
        monkeypatch.setattr(resume, "RESUMABLE_TYPES", frozenset())
    monkeypatch.setattr(lr, "STACK_CPU", 2)  # stacked here too (the CPU default is one SAE per pass)
    model, many_ids = sharp
    aset = _Set(_handle(model, many_ids, "resid_post.1", Normalizer(1.3), 0.2 * torch.ones(16)), f"stack-{path}")
    gen = torch.Generator().manual_seed(8)
    saes = [_Linear(lambda z, w=torch.eye(16) + s * torch.randn(16, 16, generator=gen): z @ w) for s in (0.05, 0.2, 0.5)]

    class _NoModel:
        name = "no-model"

        def manifest_hash(self):
            return "x"

        def resource(self, need):
            raise KeyError(need)

    broken = _Linear(lambda z: z[..., :8])  # wrong output width: its replacement cannot be spliced
    shared = MetricCache()  # one scorer's cache: the references are computed once
    ctxs = [MetricContext(sae, s, eval_acts=torch.zeros(1, 16), cache=shared)
            for sae, s in ((saes[0], aset), (saes[0], _NoModel()), (saes[1], aset), (saes[2], aset), (broken, aset))]
    together = lr.loss_recovered_many(ctxs, batch_size=3)  # stacks: [0, 2], [3, 4]
    assert isinstance(together[1], NotApplicable)
    assert isinstance(together[4], RuntimeError)
    for ctx, got in zip([ctxs[0], ctxs[2], ctxs[3]], [together[0], together[2], together[3]]):
        alone = lr.loss_recovered_scores(MetricContext(ctx.sae, aset, eval_acts=ctx.eval_acts), batch_size=3)
        assert got.details == alone.details
        for k in alone:
            assert got[k] == pytest.approx(alone[k], rel=1e-6, abs=1e-9), k
    assert len({round(r["ce_sae"], 6) for r in together[0:1] + together[2:4]}) == 3  # three different SAEs


def test_stack_size_is_one_sae_per_pass_on_the_cpu_and_a_cohort_elsewhere():
    assert lr.stack_size("cpu") == lr.stack_size(torch.device("cpu")) == 1
    assert lr.stack_size("cuda:0") == lr.stack_size("mps") == lr.STACK >= 5
