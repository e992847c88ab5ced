"""Conformance kit for plugin authors: call these from your own tests.

Each ``check_*`` function takes the spec your plugin registers (or its name, looked up in the
registry with entry points loaded, which is how users will find it) and asserts the contract of
its kind: shapes, dtypes, determinism under a seed, SAELens save/load round-trip for
architectures, declared needs and score keys for metrics. Failures raise ``AssertionError`` with
a message naming the item and the broken promise. Example (see plugins/ in the repository)::

    from saebench_sanity import testing

    def test_my_set_honours_the_contract():
        testing.check_activation_set("my-set")

Sizes are tiny so the whole kit runs in seconds on a CPU.
"""

from __future__ import annotations

import json
import math
import tempfile
from typing import Any

from saebench_sanity.activations.base import NEED_GROUND_TRUTH, NEED_JUDGE, NEED_LABELS, NEED_MODEL, ActivationSet
from saebench_sanity.architectures.base import ROLES

KNOWN_NEEDS = {NEED_GROUND_TRUTH, NEED_MODEL, NEED_LABELS, NEED_JUDGE}


def _spec(kind: str, spec_or_name: Any) -> Any:
    if isinstance(spec_or_name, str):
        from saebench_sanity.registry import get_registry

        return get_registry(refresh=True).get(kind, spec_or_name)
    return spec_or_name


def _finite(t: Any) -> bool:
    import torch

    return bool(torch.isfinite(t).all())


def _tiny_gaussian_set(d_in: int = 8, seed: int = 0) -> ActivationSet:
    """A minimal in-memory ActivationSet (``[n, d_in]`` Gaussian) used to exercise other kinds;
    its class is built here, lazily, to keep torch out of import time."""
    import torch

    class TinyGaussianSet(ActivationSet):
        name = "conformance-gaussian"

        def __init__(self) -> None:
            self.d_in = d_in
            gen = torch.Generator().manual_seed(seed)
            self._mix = torch.randn(d_in, d_in, generator=gen) / math.sqrt(d_in)
            self._eval = torch.randn(512, d_in, generator=gen) @ self._mix

        def manifest(self) -> dict[str, Any]:
            return {"d_in": d_in, "seed": seed, "kind": "conformance-gaussian"}

        def train_batches(self, batch_size: int, seed: int):
            gen = torch.Generator().manual_seed(10_007 + seed)
            while True:
                yield torch.randn(batch_size, d_in, generator=gen) @ self._mix

        def eval_activations(self):
            return self._eval

    return TinyGaussianSet()


def check_activation_set(spec_or_name: Any, batch_size: int = 64, **params: Any) -> Any:
    """Build the set and check: d_in, batch shape/dtype/finiteness, determinism per seed,
    different seeds differ, a stable JSON manifest, fixed eval data, ground-truth shapes."""
    import torch

    spec = _spec("activation_set", spec_or_name)
    who = f"activation set {spec.name!r}"
    aset = spec.build(**params)
    assert isinstance(aset.d_in, int) and aset.d_in > 0, f"{who}: d_in must be a positive int"
    if spec.d_in is not None and not params:
        assert spec.d_in == aset.d_in, f"{who}: spec says d_in={spec.d_in} but the set has {aset.d_in}"
    b1 = next(iter(aset.train_batches(batch_size, seed=0)))
    assert b1.shape == (batch_size, aset.d_in), f"{who}: batch shape {tuple(b1.shape)} != ({batch_size}, {aset.d_in})"
    assert b1.dtype == torch.float32, f"{who}: batches must be float32, got {b1.dtype}"
    assert _finite(b1), f"{who}: batch has NaN/inf"
    again = next(iter(spec.build(**params).train_batches(batch_size, seed=0)))
    assert torch.equal(b1, again), f"{who}: same seed must give the same batches"
    other = next(iter(aset.train_batches(batch_size, seed=1)))
    assert not torch.equal(b1, other), f"{who}: different seeds must give different batches"
    manifest = aset.manifest()
    json.dumps(manifest, sort_keys=True)
    assert aset.manifest_hash() == spec.build(**params).manifest_hash(), f"{who}: manifest hash is not stable"
    ev = aset.eval_activations()
    assert ev.ndim == 2 and ev.shape[1] == aset.d_in and ev.shape[0] > 0, f"{who}: eval_activations must be [n_eval, d_in]"
    assert torch.equal(ev, aset.eval_activations()), f"{who}: eval_activations must be fixed"
    gt = aset.ground_truth
    if gt is not None:
        assert gt.features.ndim == 2 and gt.features.shape[1] == aset.d_in, f"{who}: ground-truth features must be [n_features, d_in]"
        norms = gt.features.norm(dim=-1)
        assert torch.allclose(norms, torch.ones_like(norms), atol=1e-4), f"{who}: ground-truth features must have unit-norm rows"
    for need in aset.provides:
        assert need in KNOWN_NEEDS, f"{who}: provides unknown need {need!r}"
    return aset


def check_architecture(spec_or_name: Any, d_in: int = 8, d_sae: int = 32, **params: Any) -> Any:
    """Build the SAE and check: roles cover every parameter, encode/decode shapes and dtypes,
    determinism per seed, and a SAELens save/load round-trip with identical outputs."""
    import torch

    spec = _spec("architecture", spec_or_name)
    who = f"architecture {spec.name!r}"
    sae = spec.build(d_in=d_in, d_sae=d_sae, seed=0, **params)
    names = {n for n, _ in sae.named_parameters()}
    assert names == set(spec.roles), f"{who}: roles {sorted(spec.roles)} must name exactly the parameters {sorted(names)}"
    assert set(spec.roles.values()) <= set(ROLES), f"{who}: unknown role(s) {sorted(set(spec.roles.values()) - set(ROLES))}"
    assert sae.cfg.d_in == d_in and sae.cfg.d_sae == d_sae, f"{who}: cfg d_in/d_sae do not match the request"
    x = torch.randn(16, d_in, generator=torch.Generator().manual_seed(0))
    sae.eval()
    with torch.no_grad():
        acts = sae.encode(x)
        out = sae.decode(acts)
    assert acts.shape == (16, d_sae) and out.shape == (16, d_in), f"{who}: encode/decode shapes wrong"
    assert acts.dtype == torch.float32 and out.dtype == torch.float32, f"{who}: outputs must be float32"
    twin = spec.build(d_in=d_in, d_sae=d_sae, seed=0, **params)
    for (n, p), (_, q) in zip(sae.named_parameters(), twin.named_parameters()):
        assert torch.equal(p, q), f"{who}: parameter {n} differs between two builds with the same seed"
    from saebench_sanity.architectures.checkpoint import load_checkpoint, save_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        save_checkpoint(sae, tmp, calibration_acts=x)
        from sae_lens import SAE

        loaded = SAE.load_from_disk(tmp)  # must load with plain sae-lens
        assert loaded.cfg.d_in == d_in and loaded.cfg.d_sae == d_sae, f"{who}: SAELens round-trip changed d_in/d_sae"
        with torch.no_grad():
            got = loaded.decode(loaded.encode(x))
        assert got.shape == out.shape and _finite(got), f"{who}: SAELens round-trip gives wrong or non-finite outputs"
        again = load_checkpoint(tmp)
        with torch.no_grad():
            assert torch.equal(again.decode(again.encode(x)), got), f"{who}: load_checkpoint and SAE.load_from_disk disagree"
    return sae


def training_path(spec_or_name: Any, d_in: int = 8, d_sae: int = 32, **params: Any) -> str:
    """Which training path the cohort engine gives this architecture's SAEs: ``"batched"`` (its
    exact sae-lens training class has batched math in ``training.batched`` and supports this
    config: members train in one stacked program with their baselines) or ``"solo"`` (sae-lens's
    ``SAETrainer`` per member, in lockstep with the cohort, same batches). A plugin subclass of a
    built-in sae-lens class gets ``"solo"``: its math may differ, so it never borrows built-in math."""
    from saebench_sanity.training.batched import batched_for

    spec = _spec("architecture", spec_or_name)
    return "batched" if batched_for(spec.build(d_in=d_in, d_sae=d_sae, seed=0, **params)) is not None else "solo"


def check_training_mode(spec_or_name: Any, architecture: Any = "topk", steps: int = 5, **params: Any) -> Any:
    """Train a tiny SAE in this mode and check: frozen roles stay bit-identical, other tensors
    move (if the mode trains), the mode's own invariant holds, and training is deterministic."""
    import torch

    from saebench_sanity.config import TrainingConfig
    from saebench_sanity.training.trainer import build_cell, train_cell

    spec = _spec("training_mode", spec_or_name)
    arch = _spec("architecture", architecture)
    who = f"training mode {spec.name!r} on {arch.name!r}"
    data = _tiny_gaussian_set(d_in=8)
    training = TrainingConfig(max_steps=steps, batch_size=32, lr=1e-2, curve_every=1, n_init_samples=256)
    kwargs: dict[str, Any] = dict(d_sae=32, target_l0=4, arch_overrides={}, mode_params=params, training=training, seed=0)
    prepared, mode, _ = build_cell(arch, spec, data, **kwargs)  # the cell's state before step 1
    initial = {n: p.detach().clone() for n, p in prepared.named_parameters()}
    res = train_cell(arch, spec, data, **kwargs)  # calls mode.check itself
    res2 = train_cell(arch, spec, data, **kwargs)
    final = dict(res.sae.named_parameters())
    assert set(final) == set(initial), f"{who}: parameter set changed"
    for n, p in res2.sae.named_parameters():
        assert torch.equal(p, final[n]), f"{who}: training is not deterministic for parameter {n}"
    frozen = {n for n, role in arch.roles.items() if role in mode.frozen_roles}
    for n in frozen:
        assert not final[n].requires_grad, f"{who}: frozen parameter {n} still requires grad"
        assert torch.equal(final[n].detach(), initial[n]), f"{who}: frozen parameter {n} changed during training"
    if spec.trains:
        assert res.steps == steps, f"{who}: took {res.steps} steps, asked for {steps}"
        moved = [n for n in final if n not in frozen and final[n].requires_grad and not torch.equal(final[n].detach(), initial[n])]
        assert moved, f"{who}: no trainable parameter moved in {steps} steps"
    else:
        assert res.steps == 0, f"{who}: a non-training mode took {res.steps} steps"
    return res


def check_metric(spec_or_name: Any, activation_set: Any = None, architecture: Any = "topk", **params: Any) -> dict[str, float]:
    """Compute the metric on a tiny trained SAE and check: known needs, exactly the declared
    score keys, finite floats, directions valid; a metric with a ``batch_factory`` must give
    two SAEs scored together what it gives each alone (to 1e-5 relative)."""
    from saebench_sanity.config import TrainingConfig
    from saebench_sanity.harness.scoring import metric_context
    from saebench_sanity.training.trainer import train_cell

    spec = _spec("metric", spec_or_name)
    who = f"metric {spec.name!r}"
    assert spec.scores, f"{who}: declares no scores"
    assert set(spec.needs) <= KNOWN_NEEDS, f"{who}: unknown needs {sorted(set(spec.needs) - KNOWN_NEEDS)}"
    for score, info in spec.scores.items():
        assert info.direction in ("higher", "lower", None), f"{who}: score {score!r} has direction {info.direction!r}"
    aset = _spec("activation_set", activation_set).build() if activation_set is not None else _tiny_gaussian_set(d_in=8)
    missing = set(spec.needs) - set(aset.provides)
    assert not missing, f"{who}: the chosen activation set does not provide {sorted(missing)}; pass one that does"
    arch = _spec("architecture", architecture)
    from saebench_sanity.registry import get_registry

    mode = get_registry().get("training_mode", "trained")
    res = train_cell(arch, mode, aset, d_sae=4 * aset.d_in, target_l0=4, arch_overrides={}, mode_params={},
                     training=TrainingConfig(max_steps=5, batch_size=32, curve_every=1, n_init_samples=256), seed=0)
    res.sae.eval()
    scores = spec.compute(metric_context(res.sae, aset, aset.eval_activations(), get_registry()), **params)
    assert set(scores) == set(spec.scores), f"{who}: returned {sorted(scores)}, declared {sorted(spec.scores)}"
    for key, value in scores.items():
        assert isinstance(value, float) and math.isfinite(value), f"{who}: score {key!r} = {value!r} is not a finite float"
    if spec.batch_factory:
        other = train_cell(arch, mode, aset, d_sae=4 * aset.d_in, target_l0=4, arch_overrides={}, mode_params={},
                           training=TrainingConfig(max_steps=5, batch_size=32, curve_every=1, n_init_samples=256), seed=1)
        other.sae.eval()
        ctxs = [metric_context(sae, aset, aset.eval_activations(), get_registry()) for sae in (res.sae, other.sae)]
        alone = [spec.compute(metric_context(sae, aset, aset.eval_activations(), get_registry()), **params)
                 for sae in (res.sae, other.sae)]
        for i, (got, want) in enumerate(zip(spec.evaluate_many(ctxs, **params), alone)):
            assert not isinstance(got, BaseException), f"{who}: batch_factory raised for SAE {i}: {got!r}"
            for key, value in want.items():
                assert math.isclose(float(got[key]), value, rel_tol=1e-5, abs_tol=1e-8), (
                    f"{who}: batch_factory gives SAE {i} {key} = {got[key]!r}, alone it scores {value!r}")
    return scores
