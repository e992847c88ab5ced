"""Massive-activation tokens flagged at harvest: the rule, its place in the set's identity, the
``reconstruction_bulk`` metric reading the stored flags (same scores as recomputing them), and a
training stream that leaves them out when the set says so. On a tiny random Llama; its residual
stream has no 10x outliers, so the rule is exercised at ratio 1.3 (a quarter of the rows or so)."""

from __future__ import annotations

from dataclasses import replace

import pytest

torch = pytest.importorskip("torch")

from saebench_sanity.activations import store as st  # noqa: E402
from saebench_sanity.activations.reader import StoreReader  # noqa: E402
from saebench_sanity.activations.real import RealActivationSet  # noqa: E402
from saebench_sanity.errors import ConfigError, DataError  # noqa: E402
from conftest import build_tiny_store, tiny_store_env  # noqa: E402

RATIO = 1.3


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return tiny_store_env(tmp_path_factory.mktemp("massive"))


def _build(env, root, name="flagged", **over):
    return build_tiny_store(env, root, name, **over)


@pytest.fixture(scope="module")
def flagged(env):
    return _build(env, "flagged", massive_norm_ratio=RATIO)


def _set(env, path, **kw):
    base, bundle, cfg = env
    params = {k: getattr(cfg, k) for k in cfg.__dataclass_fields__}
    params["massive_norm_ratio"] = RATIO
    return RealActivationSet(path.name, root=path.parent, model_bundle=bundle, **{**params, **kw})


def test_flags_are_the_bulk_rule_on_held_out_rows_and_use_its_median_for_training_rows(flagged):
    from saebench_sanity.metrics.reconstruction import bulk_mask

    reader = StoreReader(flagged)
    m = reader.manifest
    assert m["tokens"]["massive"] == {"norm_ratio": RATIO, "reference": st.MASSIVE_REFERENCE,
                                      "flag": "norm > norm_ratio x reference"}
    flags = reader.eval_massive()
    assert flags.dtype == torch.bool and flags.shape == (m["n_eval_tokens"],)
    assert 0 < int(flags.sum()) < flags.shape[0]  # the rule has work to do on this set
    # exactly the metric's mask, negated, whether computed on the stored or the served rows
    assert torch.equal(~flags, bulk_mask(reader.eval_activations(normalize=False), RATIO))
    assert torch.equal(~flags, bulk_mask(reader.eval_activations(normalize=True), RATIO))
    # independent computation: float64 norms against RATIO x the held-out median
    norms = reader.eval_activations().double().norm(dim=1)
    median = float(norms.median())
    assert m["massive"]["eval_median_norm"] == median
    n_train_flagged = 0
    for entry in m["shards"]:
        shard = reader.load_shard(entry)
        expected = shard["activations"].double().norm(dim=1) > RATIO * median
        assert torch.equal(shard["massive"], expected)
        n_train_flagged += int(expected.sum())
    assert (m["massive"]["n_train_flagged"], m["massive"]["n_eval_flagged"]) == (n_train_flagged, int(flags.sum()))
    assert m["massive"]["norm_ratio"] == RATIO


def test_the_rule_is_part_of_the_identity_and_a_store_without_it_reads_as_before(env, flagged):
    plain = _build(env, "plain", name="flagged")
    other = _build(env, "other", massive_norm_ratio=1.5)
    ids = {st.identity_hash(p) for p in (flagged, plain, other)}
    assert len(ids) == 3
    m = st.read_manifest(plain)
    assert "massive" not in m and "massive" not in m["tokens"]
    assert "massive_norm_ratio" not in st.json.loads((plain / st.PLAN).read_text())["config"]
    reader = StoreReader(plain)
    assert reader.massive_norm_ratio is None and reader.eval_massive() is None
    assert "massive" not in reader.load_shard(m["shards"][0])
    # the same recipe twice: the same flags and identity
    again = _build(env, "again", massive_norm_ratio=RATIO)
    assert st.identity_hash(again) == st.identity_hash(flagged)
    assert torch.equal(StoreReader(again).eval_massive(), StoreReader(flagged).eval_massive())


def test_a_resumed_build_flags_training_shards_with_the_held_out_median(env, tmp_path):
    base, bundle, cfg = env
    flagged_cfg = replace(cfg, massive_norm_ratio=RATIO)
    full = st.build_store("r", flagged_cfg, tmp_path / "full", progress=False, model_bundle=bundle)
    part = st.build_store("r", flagged_cfg, tmp_path / "part", progress=False, model_bundle=bundle)
    # an interrupted build: the manifest and two training shards are gone, the eval shard stays
    (part / st.MANIFEST).unlink()
    for tag in ("train-00001", "train-00003"):
        (part / "shards" / f"{tag}.safetensors").unlink()
    st.build_store("r", flagged_cfg, tmp_path / "part", progress=False, model_bundle=bundle)
    a, b = StoreReader(full), StoreReader(part)
    for ea, eb in zip(a.manifest["shards"], b.manifest["shards"]):
        assert torch.equal(a.load_shard(ea)["massive"], b.load_shard(eb)["massive"])
    assert a.manifest["massive"] == b.manifest["massive"]


class _Affine(torch.nn.Module):
    """A fixed random SAE stand-in: ``encode(x) = relu(x W + b)`` ``[n, 32]``, ``decode(z) = z V``."""

    def __init__(self, d_in: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.W = torch.nn.Parameter(torch.randn(d_in, 32, generator=g) / d_in ** 0.5)
        self.V = torch.nn.Parameter(torch.randn(32, d_in, generator=g) / 32 ** 0.5)

    def encode(self, x):
        return torch.relu(x @ self.W)

    def decode(self, z):
        return z @ self.V


def test_reconstruction_bulk_reads_the_stored_flags_and_scores_as_recomputing_them(env, flagged, monkeypatch):
    from saebench_sanity.metrics import reconstruction as rec
    from saebench_sanity.metrics.base import MetricContext
    from saebench_sanity.registry import get_registry

    spec = get_registry().get("metric", "reconstruction_bulk")
    aset = _set(env, flagged)
    eval_acts = aset.eval_activations()
    sae = _Affine(aset.d_in)

    def scores(ratio):
        return spec.compute(MetricContext(sae, aset, eval_acts), max_norm_ratio=ratio)

    with torch.no_grad():
        recomputed = rec.bulk_scores(eval_acts, sae.decode(sae.encode(eval_acts)), RATIO)
    assert scores(RATIO) == recomputed  # identical floats, stored flags or not
    assert recomputed["outlier_fraction"] > 0
    seen = []
    real = rec.stored_bulk_mask
    monkeypatch.setattr(rec, "stored_bulk_mask", lambda *a: seen.append(real(*a)) or seen[-1])
    scores(RATIO)
    assert seen[-1] is not None and torch.equal(seen[-1], ~aset.eval_massive())  # the flags were read
    scores(1.5)
    assert seen[-1] is None  # another ratio than the set's: computed by the metric
    # the stored flags decide: with none flagged, nothing is left out
    monkeypatch.setattr(aset, "eval_massive", lambda: torch.zeros(eval_acts.shape[0], dtype=torch.bool))
    assert scores(RATIO)["outlier_fraction"] == 0.0


def test_a_set_that_excludes_them_trains_on_every_other_row_exactly_once(env, flagged):
    aset = _set(env, flagged, exclude_massive=True)
    keep_all = _set(env, flagged)
    reader = aset.reader
    stored = []
    for entry in reader.manifest["shards"]:
        shard = reader.load_shard(entry)
        stored.append(shard["activations"][~shard["massive"]])
    expected = reader.normalizer.apply(torch.cat(stored))
    served = torch.cat(list(reader.iter_batches(64, seed=3, loop=False, normalize=True, exclude_massive=True)))
    assert served.shape == expected.shape
    assert served.shape[0] == reader.manifest["n_train_tokens"] - reader.manifest["massive"]["n_train_flagged"]
    order = lambda t: t[torch.argsort(t[:, 0] * 1e3 + t[:, 1])]  # noqa: E731 - rows sorted by a key
    assert torch.equal(order(served), order(expected))
    # the set's own stream has no flagged row; the one that keeps them has them
    batch = next(iter(aset.train_batches(4096, seed=0)))
    limit = RATIO * reader.manifest["massive"]["eval_median_norm"] * reader.normalizer.scale
    assert float(batch.norm(dim=1).max()) <= limit * (1 + 1e-5)
    assert float(next(iter(keep_all.train_batches(4096, seed=0))).norm(dim=1).max()) > limit
    # serving choice: in the set's manifest (cell keys) only when on
    assert aset.manifest()["exclude_massive"] is True and "exclude_massive" not in keep_all.manifest()
    assert aset.eval_activations().shape == keep_all.eval_activations().shape  # eval keeps every row


def test_excluding_without_flags_and_bad_ratios_are_one_line_errors(env):
    base, bundle, cfg = env
    plain = _build(env, "plain-x", name="plain")
    with pytest.raises(DataError, match="no massive-activation flags"):
        next(StoreReader(plain).iter_batches(8, seed=0, exclude_massive=True))
    for bad in (1.0, 0.5, float("nan"), True, "10"):
        with pytest.raises(ConfigError, match="massive_norm_ratio"):
            replace(cfg, massive_norm_ratio=bad)
