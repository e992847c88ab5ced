"""Shared fixtures: a tiny in-process plugin (sets, a broken architecture, metrics) registered next to
the built-ins, and tiny run configurations.

The fake items are deliberately small but real: the Gaussian set yields actual tensors, the
metrics compute actual numbers; they exist to drive the harness through its branches (skip on
unmet needs, failing cell, failing metric, NaN data, d_in mismatch) without the cost of the
built-in synthetic sets.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from saebench_sanity import hookimpl
from saebench_sanity.activations.base import ActivationSet, ActivationSetSpec
from saebench_sanity.architectures.base import ArchitectureSpec
from saebench_sanity.metrics.base import MetricSpec, ScoreInfo


class GaussianSet(ActivationSet):
    """Correlated Gaussian activations ``[n, d_in]``; optional defects for the bad-input tests."""

    def __init__(self, name: str = "tiny-gauss", d_in: int = 8, seed: int = 0, defect: str = "",
                 n_eval: int = 512) -> None:
        import torch

        self.name, self.d_in, self.seed, self.defect = name, d_in, seed, defect
        gen = torch.Generator().manual_seed(seed)
        self._mix = torch.randn(d_in, d_in, generator=gen) / math.sqrt(d_in)
        self._eval = self._fix(torch.randn(n_eval, d_in, generator=gen) @ self._mix)

    def _fix(self, t: Any) -> Any:
        if self.defect == "nan":
            t = t.clone()
            t[0, 0] = float("nan")
        elif self.defect == "width":
            t = t[:, :-1]
        return t

    def manifest(self) -> dict[str, Any]:
        return {"kind": "tiny-gauss", "d_in": self.d_in, "seed": self.seed, "defect": self.defect}

    def train_batches(self, batch_size: int, seed: int):
        import torch

        gen = torch.Generator().manual_seed(10_007 + seed)
        while True:
            yield self._fix(torch.randn(batch_size, self.d_in, generator=gen) @ self._mix)

    def eval_activations(self) -> Any:
        return self._eval


def build_gauss(**kw: Any) -> GaussianSet:
    return GaussianSet(**kw)


def broken_arch(**kw: Any) -> Any:
    raise RuntimeError("boom: this architecture always fails")


def mean_abs_latent(ctx: Any) -> dict[str, float]:
    """Mean |latent| over the eval set (a real number from the real SAE); its details (the eval
    set's size) are stored beside the score."""
    ctx.extras.setdefault("details", {})["latent-mean"] = {"n_eval": int(ctx.feature_acts.shape[0])}
    return {"mean_abs_latent": float(ctx.feature_acts.abs().mean())}


def always_raises(ctx: Any) -> dict[str, float]:
    raise ValueError("metric exploded")


class FakePlugin:
    """Registered through the same hooks as any plugin."""

    __name__ = "tests-fake-plugin"

    @hookimpl
    def saebench_register_activation_sets(self, register):
        register(ActivationSetSpec(name="tiny-gauss", description="tiny Gaussian (tests)", factory=build_gauss,
                                   params={"name": "tiny-gauss"}, d_in=8,
                                   training={"d_sae": 16, "target_l0": 2}))
        register(ActivationSetSpec(name="tiny-nan", description="NaN activations (tests)", factory=build_gauss,
                                   params={"name": "tiny-nan", "defect": "nan"}, d_in=8))
        register(ActivationSetSpec(name="tiny-width", description="batches narrower than d_in (tests)",
                                   factory=build_gauss, params={"name": "tiny-width", "defect": "width"}, d_in=8))
        register(ActivationSetSpec(name="tiny-wrongdecl", description="declares d_in 9, builds 8 (tests)",
                                   factory=build_gauss, params={"name": "tiny-wrongdecl"}, d_in=9))

    @hookimpl
    def saebench_register_architectures(self, register):
        register(ArchitectureSpec(name="broken", description="always fails (tests)", factory=broken_arch,
                                  roles={"W_enc": "encoder", "W_dec": "decoder"}, sparsity_param="k"))

    @hookimpl
    def saebench_register_metrics(self, register):
        register(MetricSpec(name="latent-mean", description="mean |latent| (tests)", factory=mean_abs_latent,
                            scores={"mean_abs_latent": ScoreInfo(direction=None)}))
        register(MetricSpec(name="exploding", description="always raises (tests)", factory=always_raises,
                            scores={"x": ScoreInfo(direction="higher")}))
        register(MetricSpec(name="needs-judge", description="needs a judge (tests)", factory=mean_abs_latent,
                            needs=frozenset({"judge"}), scores={"mean_abs_latent": ScoreInfo(direction=None)}))


@pytest.fixture(scope="session")
def fake_registry():
    from saebench_sanity.registry import Registry

    reg = Registry(load_entry_points=False, extra_plugins=[FakePlugin()])
    assert not reg.problems, reg.problems
    return reg


@pytest.fixture
def use_fake_registry(fake_registry, monkeypatch):
    """Make ``get_registry()`` (what the CLI uses) return the registry with the fake plugin."""
    from saebench_sanity import registry as registry_mod

    monkeypatch.setattr(registry_mod, "_DEFAULT", fake_registry)
    return fake_registry


TINY_TOML = """
[run]
name = "{name}"
output_dir = "{out}"
sets = {sets}
architectures = {archs}
modes = {modes}
seeds = {seeds}
metrics = {metrics}

[training]
steps = {steps}
batch_size = 64
curve_every = 5
n_init_samples = 256
"""


def tiny_toml(tmp_path: Path, *, name: str = "tiny", sets=("tiny-gauss",), archs=("topk",),
              modes=("trained", "frozen_decoder", "untrained"), seeds=(0, 1),
              metrics=("reconstruction", "ground_truth"), steps: int = 20, extra: str = "") -> Path:
    def arr(xs):
        return "[" + ", ".join(f'"{x}"' if isinstance(x, str) else str(x) for x in xs) + "]"

    text = TINY_TOML.format(name=name, out=str(tmp_path / "out"), sets=arr(sets), archs=arr(archs),
                            modes=arr(modes), seeds=arr(seeds), metrics=arr(metrics), steps=steps) + extra
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


@pytest.fixture
def one_thread():
    """Tiny tensors: one torch thread is fastest and behaves on a shared 2-core machine.
    Modules opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def tiny_store_env(base: Path):
    """``(base, (model, tokenizer, info), StoreConfig)``: a tiny random Llama saved under ``base``,
    a 12-file corpus of CPython docs topics, and a store config that harvests 60 + 8 contexts of 16
    tokens from its layer-1 residual stream (the activation-store tests' fixture)."""
    from pydoc_data.topics import topics

    from saebench_sanity.activations import store as st
    from saebench_sanity.models.loading import load_causal_lm
    from saebench_sanity.models.tiny import save_tiny_llama

    bundle = load_causal_lm(save_tiny_llama(base / "tiny", hidden=16, layers=2))
    corpus = base / "corpus"
    corpus.mkdir()
    for i, k in enumerate(sorted(topics)[:12]):
        (corpus / f"{i:02d}.txt").write_text(topics[k])
    cfg = st.StoreConfig(model=str(base / "tiny"), hook_point="resid_post.1", corpus=str(corpus), context_len=16,
                         n_train_contexts=60, n_eval_contexts=8, contexts_per_shard=16, batch_size=8)
    return base, bundle, cfg


def build_tiny_store(env, root: str, name: str, **over):
    """``build_store`` of ``tiny_store_env``'s config (fields in ``over`` replaced) under
    ``base / root``, with the env's model bundle and no progress output."""
    from dataclasses import replace

    from saebench_sanity.activations import store

    base, bundle, cfg = env
    return store.build_store(name, replace(cfg, **over), base / root, progress=False, model_bundle=bundle)
