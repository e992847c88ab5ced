"""Sparse probing: known-answer cases for the pure core, the task contract and built-in tasks,
the hub path on a local file, and the model pipeline on a tiny random Llama."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from saebench_sanity.errors import DataError
from saebench_sanity.metrics import probing as P
from saebench_sanity.probing_tasks.base import make_task


def _indicator_data(n: int, d: int, seed: int, informative: int = 3):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.random((n, d)).astype(np.float32)
    x[:, informative] = y  # latent 3 is a perfect class indicator
    return x, y


def test_probing_perfect_indicator_latent_scores_one_at_k1():
    xtr, ytr = _indicator_data(200, 40, 0)
    xte, yte = _indicator_data(200, 40, 1)
    assert P.top_k_by_mean_diff(xtr, ytr, 1).tolist() == [3]
    assert P.probe_accuracy(xtr, ytr, xte, yte, k=1) == 1.0


def test_probing_shuffled_labels_score_chance():
    xtr, ytr = _indicator_data(400, 40, 0)
    xte, yte = _indicator_data(2000, 40, 1)
    rng = np.random.default_rng(5)
    acc = P.probe_accuracy(xtr, rng.permutation(ytr), xte, rng.permutation(yte), k=1)
    assert 0.44 < acc < 0.56


def test_probing_top_k_matches_independent_mean_difference():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(60, 25))
    y = rng.integers(0, 2, 60)
    expected = sorted(range(25), key=lambda j: -abs(x[y == 1, j].mean() - x[y == 0, j].mean()))[:5]
    assert P.top_k_by_mean_diff(torch.tensor(x), torch.tensor(y), 5).tolist() == expected


def test_probing_one_vs_rest_averages_classes_and_balances_negatives():
    rng = np.random.default_rng(0)
    labels = [c for c in "abc" for _ in range(30)]
    x = rng.random((90, 12)).astype(np.float32)
    for i, c in enumerate(labels):
        x[i, "abc".index(c)] += 5.0  # class c has its own indicator latent
    xs, ys = P.balanced_one_vs_rest(x, labels, "a", seed=0)
    assert ys.sum() == 30 and len(ys) == 60
    neg_classes = {labels[int(np.flatnonzero((x == row).all(1))[0])] for row in xs[ys == 0]}
    assert neg_classes == {"b", "c"}
    assert P.one_vs_rest_accuracy(x, labels, x, labels, k=1) == 1.0
    shuffled = list(np.random.default_rng(1).permutation(labels))
    assert P.one_vs_rest_accuracy(x, shuffled, x, labels, k=1) < 0.8


def test_probing_task_with_one_class_or_too_few_examples_is_a_one_line_error():
    with pytest.raises(DataError, match="1 class"):
        make_task("t", [(f"x{i}", "a") for i in range(20)], n_train=4, n_test=2)
    with pytest.raises(DataError, match="too few examples.*b=3"):
        make_task("t", [(f"x{i}", "a") for i in range(20)] + [(f"y{i}", "b") for i in range(3)], n_train=4, n_test=2)


def test_probing_split_is_balanced_disjoint_and_deterministic():
    ex = [(f"text {i}", "ab"[i % 2]) for i in range(100)]
    t1, t2 = make_task("t", ex, n_train=10, n_test=5, seed=3), make_task("t", ex[::-1], n_train=10, n_test=5, seed=3)
    assert t1.manifest_hash() == t2.manifest_hash()
    assert not set(t1.train_texts) & set(t1.test_texts)
    assert sorted(t1.train_labels) == ["a"] * 10 + ["b"] * 10
    assert make_task("t", ex, n_train=10, n_test=5, seed=4).manifest_hash() != t1.manifest_hash()


def test_probing_builtin_tasks_are_registered_balanced_and_offline():
    from saebench_sanity.registry import Registry

    reg = Registry(load_entry_points=False)
    for name in ("code_language", "name_language", "doc_topic", "city_continent"):
        task = reg.get("probing_task", name).build()
        sizes = task.sizes()
        assert sizes["classes"] >= 2 and sizes["train_per_class"] == 48 and sizes["test_per_class"] == 24, name
        assert all(task.train_labels.count(c) == 48 for c in task.classes)
        assert not set(task.train_texts) & set(task.test_texts)
        assert task.manifest_hash() == reg.get("probing_task", name).build().manifest_hash()


def test_probing_hub_task_loads_by_path_from_a_local_file(tmp_path):
    from saebench_sanity.registry import Registry

    rows = [{"text": f"news item {i} about topic {i % 3}", "label": i % 3} for i in range(60)]
    f = tmp_path / "ag_news.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in rows))
    spec = Registry(load_entry_points=False).get("probing_task", "hub.ag_news")
    task = spec.build(path=str(f), classes=["0", "1", "2"], n_train=10, n_test=5)
    assert task.classes == ("0", "1", "2") and len(task.train_texts) == 30
    with pytest.raises(DataError, match="cannot load dataset"):
        spec.build(path=str(tmp_path / "missing.jsonl"))


class _IdentitySAE:
    def encode(self, x):
        return x


@pytest.fixture(scope="module")
def tiny_lm():
    from saebench_sanity.judges.local import tiny_random_lm

    torch.set_num_threads(1)
    model, tok = tiny_random_lm(seed=0, d_model=16)
    return P.LMHandle(model, tok, "resid_post.1", identity="tiny-0")


def test_probing_identity_sae_with_all_latents_equals_the_full_probe(tiny_lm):
    ex = [(f"def f{i}(x): return x", "python") for i in range(30)] + [(f"int f{i}(void) {{ return 0; }}", "c") for i in range(30)]
    task = make_task("t", ex, n_train=20, n_test=10)
    out = P.probing_scores_for_task(_IdentitySAE(), tiny_lm, task, k_values=(1, 16), ctx_len=16, seed=0)
    assert set(out) == {"top1", "top16", "full_probe"}
    assert out["top16"] == out["full_probe"]
    assert out["full_probe"] >= 0.9  # token identity separates these even in a random model


def test_probing_pooling_masks_padding_and_special_tokens(tiny_lm):
    ids, attn, pool = P.tokenize_texts(tiny_lm.tokenizer, ["ab", "abcdef ghij"], ctx_len=8)
    assert ids.shape[0] == 2 and attn[0].sum() < attn[1].sum()
    assert (pool <= attn.bool()).all()
    special = torch.tensor(tiny_lm.tokenizer.all_special_ids)
    assert torch.isin(ids, special).any()  # BOS / padding are there to be masked
    assert torch.equal(pool, attn.bool() & ~torch.isin(ids, special))
    acts = torch.arange(2 * ids.shape[1] * 3, dtype=torch.float32).reshape(2, ids.shape[1], 3)
    pooled = P.masked_mean(acts, pool)
    assert torch.allclose(pooled[0], acts[0][pool[0]].mean(0))


def test_probing_metric_without_a_model_is_a_recorded_skip():
    from saebench_sanity.metrics.base import MetricContext

    class NoModel:
        name = "synth"

        def resource(self, need):
            raise KeyError(need)

    with pytest.raises(DataError, match="has no language model"):
        P.sparse_probing_scores(MetricContext(_IdentitySAE(), NoModel(), torch.zeros(1, 2)))


def test_probing_sae_sees_the_sets_normalized_activations():
    class Linear:
        W = torch.arange(12, dtype=torch.float32).reshape(3, 4)

        def encode(self, x):
            return x @ self.W

        def decode(self, z):
            return z @ self.W.T

    h = P.LMHandle(None, None, "resid_post.0", identity="x", scale=2.5)
    x = torch.randn(5, 3)
    wrapped = h.sae_in_model_space(Linear())
    assert torch.allclose(wrapped.encode(x), Linear().encode(2.5 * x))
    z = torch.randn(5, 4)
    assert torch.allclose(wrapped.decode(z), Linear().decode(z) / 2.5)
    assert P.LMHandle(None, None, "h", scale=1.0).sae_in_model_space(wrapped) is wrapped


def test_probing_token_activations_are_cached_on_disk_across_processes(tiny_lm, tmp_path, monkeypatch):
    """A named model's probing activations are written once and read back bit for bit by a new
    process (simulated by a new, empty MetricCache); a torn file is recomputed, never used; within
    one cache the model runs once."""
    from saebench_sanity.metrics.base import MetricCache

    monkeypatch.setenv("SAEBENCH_CACHE", str(tmp_path))
    lm = P.LMHandle(tiny_lm.model, tiny_lm.tokenizer, tiny_lm.hook_point, identity="tiny-disk",
                    weights_id="tiny:sha-0:resid_post.1")
    texts = ["alpha beta", "gamma delta epsilon", "zeta"]
    process = MetricCache()
    acts, pool = P.token_activations(lm, texts, ctx_len=8, cache=process)
    files = list((tmp_path / "probing").glob("*.safetensors"))
    assert len(files) == 1 and process.size("probing.token_activations") == 1

    calls = []
    monkeypatch.setattr("saebench_sanity.models.hook_points.record", lambda *a, **k: calls.append(1))
    acts2, pool2 = P.token_activations(lm, texts, ctx_len=8, cache=MetricCache())
    assert not calls and torch.equal(acts, acts2) and torch.equal(pool, pool2)
    files[0].unlink()  # the same cache answers without the disk or the model
    assert P.token_activations(lm, texts, ctx_len=8, cache=process)[0] is acts and not calls

    monkeypatch.undo()
    monkeypatch.setenv("SAEBENCH_CACHE", str(tmp_path))
    P.token_activations(lm, texts, ctx_len=8, cache=MetricCache())
    files[0].write_bytes(b"torn")
    acts3, _ = P.token_activations(lm, texts, ctx_len=8, cache=MetricCache())
    assert torch.equal(acts, acts3)

    # another thread count (or device, dtype, batch size, CPU kernels) may round differently: its
    # own file, so a cached entry is only ever what this computation would give
    files = set((tmp_path / "probing").glob("*.safetensors"))
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(old + 1)
        P.token_activations(lm, texts, ctx_len=8, cache=MetricCache())
    finally:
        torch.set_num_threads(old)
    assert len(set((tmp_path / "probing").glob("*.safetensors")) - files) == 1

    # weights that cannot be named are never cached on disk
    for f in (tmp_path / "probing").glob("*.safetensors"):
        f.unlink()
    P.token_activations(P.LMHandle(tiny_lm.model, tiny_lm.tokenizer, tiny_lm.hook_point, identity="anon"), texts,
                        ctx_len=8, cache=MetricCache())
    assert not list((tmp_path / "probing").glob("*.safetensors"))
