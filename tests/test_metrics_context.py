"""The metric contract: a typed context built by hand (no registry anywhere), MetricResult with
details, NotApplicable recorded by the harness as a kept skip, the bounded cache the scorer owns,
and the harness's registry-backed resolvers."""

from __future__ import annotations

import sys

import pytest

torch = pytest.importorskip("torch")

from saebench_sanity import config  # noqa: E402
from saebench_sanity.errors import DataError, PluginError  # noqa: E402
from saebench_sanity.hookspecs import hookimpl  # noqa: E402
from saebench_sanity.metrics import probing as P  # noqa: E402
from saebench_sanity.metrics.base import (  # noqa: E402
    MetricCache,
    MetricContext,
    MetricResult,
    MetricSpec,
    NotApplicable,
    ScoreInfo,
)
from saebench_sanity.metrics.lm import LMHandle  # noqa: E402
from saebench_sanity.probing_tasks.base import make_task  # noqa: E402


class Identity:
    def encode(self, x):
        return x

    def decode(self, z):
        return z


class Linear(torch.nn.Module):
    """``encode = relu(x @ W.T)``, ``decode = z @ W``: ``W`` ``[d_sae, d_in]`` (sae-lens layout)."""

    def __init__(self, d_in: int = 6, d_sae: int = 10, seed: int = 0) -> None:
        super().__init__()
        self.W_dec = torch.nn.Parameter(torch.randn(d_sae, d_in, generator=torch.Generator().manual_seed(seed)))

    def encode(self, x):
        return torch.relu(x @ self.W_dec.T)

    def decode(self, z):
        return z @ self.W_dec


@pytest.fixture(scope="module")
def tiny_lm():
    from saebench_sanity.judges.local import tiny_random_lm

    torch.set_num_threads(1)
    model, tok = tiny_random_lm(seed=0, d_model=16)
    return LMHandle(model, tok, "resid_post.1", identity="tiny-ctx")


def _task():
    ex = [(f"def f{i}(x): return x", "python") for i in range(24)] + [(f"int f{i}(void) {{ return 0; }}", "c")
                                                                      for i in range(24)]
    return make_task("t", ex, n_train=16, n_test=8)


def _probing_spec():
    from saebench_sanity.builtin.metrics_interp import METRICS

    return next(s for s in METRICS if s.name == "sparse_probing")


def test_a_builtin_metric_on_a_hand_built_context_runs_with_the_registry_unimportable(tiny_lm, monkeypatch):
    """sparse_probing through its registered spec, on a context whose task and model are given
    by hand, while importing the registry fails: the numbers are those of the per-task function
    called directly, the details hold them per task, and a second SAE on the same cache runs the
    model no more."""
    monkeypatch.setitem(sys.modules, "saebench_sanity.registry", None)  # any import of it raises ImportError
    with pytest.raises(ImportError):
        from saebench_sanity.registry import get_registry  # noqa: F401
    task = _task()
    ctx = MetricContext(Identity(), None, torch.zeros(1, 16), lm=tiny_lm, probing_tasks={"t": task})
    result = _probing_spec().evaluate(ctx, tasks=["t"], k_values=[1, 4], ctx_len=12)
    direct = P.probing_scores_for_task(Identity(), tiny_lm, task, (1, 4), 12, 0, cache=MetricCache())
    assert isinstance(result, MetricResult)
    assert result.scores == {k: float(v) for k, v in direct.items()} and result.details == {"t": direct}
    assert dict(result) == result.scores and result["top1"] == direct["top1"]  # reads as its scores
    assert ctx.cache.size("probing.token_activations") == 2 and ctx.cache.size("probing.full_probe") == 1

    calls = []
    monkeypatch.setattr("saebench_sanity.models.hook_points.record", lambda *a, **k: calls.append(1))
    again = MetricContext(Linear(16, 24), None, torch.zeros(1, 16), lm=tiny_lm, probing_tasks={"t": task},
                          cache=ctx.cache)
    other = _probing_spec().evaluate(again, tasks=["t"], k_values=[1, 4], ctx_len=12)
    assert not calls and other.scores["full_probe"] == result.scores["full_probe"]
    # a task resolver (what the harness passes) is called with the metric's parameters
    seen = []
    resolver = MetricContext(Identity(), None, torch.zeros(1, 16), lm=tiny_lm, cache=ctx.cache,
                             probing_tasks=lambda name, params: seen.append((name, params)) or task)
    assert _probing_spec().evaluate(resolver, tasks=["t"], k_values=[1, 4], ctx_len=12,
                                    task_params={"t": {"n": 3}}).scores == result.scores
    assert seen == [("t", {"n": 3})]


def test_a_plugin_metric_written_against_the_context_returns_scores_and_details():
    """A metric of the new contract (MetricResult) and one of the old (a dict, details in
    ``ctx.extras``) give the same record through ``MetricSpec.evaluate``; a wrong return type is
    a named plugin error."""

    def redundancy(ctx, threshold: float = 0.5):
        w = ctx.sae.W_dec.detach().double()
        w = w / w.norm(dim=1, keepdim=True)
        cos = (w @ w.T).fill_diagonal_(0).abs()
        return MetricResult({"redundant": float((cos.max(1).values > threshold).double().mean())},
                            {"pairs": int((cos > threshold).sum()) // 2})

    def legacy(ctx, threshold: float = 0.5):
        out = redundancy(ctx, threshold)
        ctx.extras.setdefault("details", {})["legacy"] = dict(out.details)
        return dict(out.scores)

    sae = Linear()
    w = sae.W_dec.detach().double()
    cos = torch.nn.functional.cosine_similarity(w[:, None], w[None], dim=-1).fill_diagonal_(0).abs()
    expected = float(sum(float(max(row)) > 0.5 for row in cos.tolist())) / len(cos)  # independent, per row
    scores = {"redundant": ScoreInfo(direction="lower")}
    new = MetricSpec(name="new", factory=redundancy, scores=scores, params={"threshold": 0.5})
    old = MetricSpec(name="legacy", factory=legacy, scores=scores, params={"threshold": 0.5})
    ctx = MetricContext(sae, None, torch.zeros(1, 6))
    a, b = new.evaluate(ctx), old.evaluate(ctx)
    assert a.scores == b.scores == {"redundant": pytest.approx(expected, abs=1e-12)}
    assert a.details == b.details and a.details["pairs"] >= 0
    assert "legacy" not in ctx.extras["details"]  # taken out with the result, as the harness did
    assert new.compute(ctx) == a.scores  # the scores alone (saebench check, the conformance kit)
    bad = MetricSpec(name="bad", factory=lambda ctx: [1.0], scores=scores)
    with pytest.raises(PluginError, match="must return a MetricResult"):
        bad.evaluate(ctx)


def test_the_context_says_not_applicable_for_what_it_cannot_give():
    """No model on the set, no judge, no probing tasks: NotApplicable (a DataError, as the
    errors these replaced) naming what is missing; the handle is built once per context."""

    class NoModel:
        name = "synth"

        def resource(self, need):
            raise KeyError(need)

    ctx = MetricContext(Identity(), NoModel(), torch.zeros(1, 2))
    with pytest.raises(NotApplicable, match="'synth' has no language model") as info:
        ctx.lm_handle()
    assert isinstance(info.value, DataError) and info.value.reason.startswith("activation set")
    with pytest.raises(NotApplicable, match="no judge"):
        ctx.get_judge("local")
    with pytest.raises(NotApplicable, match="no probing tasks"):
        ctx.probing_task("t")
    with pytest.raises(DataError, match="not among the context's tasks"):
        MetricContext(Identity(), None, torch.zeros(1, 2), probing_tasks={"a": 1}).probing_task("b")

    class WithModel:
        name = "real"
        calls = 0

        def resource(self, need):
            WithModel.calls += 1
            return type("H", (), {"model": object(), "tokenizer": object(), "hook_point": "resid_post.0",
                                  "info": {"id": "m", "sha256": "abc"}})()

    ctx = MetricContext(Identity(), WithModel(), torch.zeros(1, 2), device="cpu")
    h = ctx.lm_handle()
    assert ctx.lm_handle() is h and WithModel.calls == 1 and h.weights_id == "m:abc:resid_post.0"


def test_the_metric_cache_is_a_bounded_lru_per_namespace():
    cache, computed = MetricCache(), []

    def get(ns, key, n=2):
        return cache.get(ns, key, lambda: computed.append((ns, key)) or f"{ns}:{key}", max_entries=n)

    assert get("a", 1) == "a:1" and get("a", 1) == "a:1" and computed == [("a", 1)]
    get("a", 2)
    get("a", 1)  # 1 is now the most recently used
    get("a", 3)  # evicts 2, the least recently used
    assert cache.size("a") == 2
    get("a", 1)
    assert computed.count(("a", 1)) == 1
    get("a", 2)
    assert computed.count(("a", 2)) == 2  # recomputed after eviction
    get("b", 1)
    assert cache.size("b") == 1 and cache.size("a") == 2  # namespaces are bounded separately
    cache.clear("a")
    assert cache.size("a") == 0 and cache.size("b") == 1
    cache.clear()
    assert cache.size("b") == 0


def test_the_harness_context_resolves_tasks_and_judges_through_the_registry_it_is_given(fake_registry):
    from saebench_sanity.harness.scoring import PROCESS_CACHE, metric_context

    cache = MetricCache()
    ctx = metric_context(Identity(), None, torch.zeros(1, 2), fake_registry, device="cpu", cache=cache)
    task = ctx.probing_task("city_continent", {})
    assert ctx.probing_task("city_continent", {}) is task and cache.size("probing_tasks") == 1
    assert task.manifest_hash() == fake_registry.get("probing_task", "city_continent").build().manifest_hash()
    judge = ctx.get_judge("openai_compatible", {"base_url": "http://127.0.0.1:9/v1", "model": "m"})
    assert judge.identity.startswith("openai_compatible")
    assert metric_context(Identity(), None, torch.zeros(1, 2), fake_registry).cache is PROCESS_CACHE


calls: list[str] = []


def not_here(ctx):
    calls.append(getattr(ctx.activation_set, "name", "?"))
    raise NotApplicable("set has no parse trees; this metric needs a treebank set")


class NotHerePlugin:
    __name__ = "tests-not-here"

    @hookimpl
    def saebench_register_metrics(self, register):
        register(MetricSpec(name="not-here", description="never applies (tests)", factory=not_here,
                            scores={"x": ScoreInfo(direction="higher")}))


def test_not_applicable_is_recorded_as_a_kept_skip_with_its_reason(tmp_path):
    from conftest import FakePlugin

    from saebench_sanity.harness.executor import execute, summarize
    from saebench_sanity.harness.plan import build_plan
    from saebench_sanity.registry import Registry
    from saebench_sanity.results import ResultStore

    torch.set_num_threads(1)
    reg = Registry(load_entry_points=False, extra_plugins=[FakePlugin(), NotHerePlugin()])
    cfg = config.from_dict({"run": {"sets": ["tiny-gauss"], "architectures": ["topk"], "modes": ["trained"],
                                    "seeds": [0], "metrics": ["not-here", "latent-mean"],
                                    "output_dir": str(tmp_path / "out")},
                            "training": {"steps": 5, "batch_size": 32, "curve_every": 5, "n_init_samples": 128}})
    plan = build_plan(cfg, reg)
    store = ResultStore(cfg.output_dir)
    calls.clear()
    outcome, = execute(plan, store, reg)
    assert calls == ["tiny-gauss"]
    entries = {e["name"]: e for e in store.load_result(outcome.key)["metrics"].values()}
    skip = entries["not-here"]
    assert skip["status"] == "skipped" and skip["reason"] == "set has no parse trees; this metric needs a treebank set"
    assert "transient" not in skip and "scores" not in skip
    assert entries["latent-mean"]["status"] == "ok"  # the metric after it still ran
    assert outcome.metrics["not-here"]["status"] == "skipped"
    s = summarize([outcome])
    assert s["metric_errors"] == 0 and s["skip_reasons"] == {("not-here", skip["reason"]): 1}
    outcome2, = execute(plan, store, reg)  # kept: the next run does not ask again
    assert calls == ["tiny-gauss"] and outcome2.metrics["not-here"] == {
        "status": "skipped", "seconds": skip["seconds"], "cached": True, "reason": skip["reason"]}
