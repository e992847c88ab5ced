"""Activation store: deterministic manifests, resumable atomic builds, verification that catches
corruption, the shuffled reader and normalization, on a tiny random Llama."""

import json
import shutil

import pytest

torch = pytest.importorskip("torch")

from saebench_sanity.activations import store as st  # noqa: E402
from saebench_sanity.activations.reader import Normalizer, StoreReader  # noqa: E402
from saebench_sanity.activations.real import RealActivationSet, check_sae_d_in  # noqa: E402
from saebench_sanity.errors import ConfigError, DataError  # noqa: E402
from conftest import build_tiny_store, tiny_store_env  # noqa: E402


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return tiny_store_env(tmp_path_factory.mktemp("store"))


def _build(env, root, name="tiny-set", **over):
    return build_tiny_store(env, root, name, **over)


def test_same_inputs_give_the_same_identity_hash_and_manifest_has_the_promised_fields(env):
    a, b = _build(env, "a"), _build(env, "b")
    assert st.identity_hash(a) == st.identity_hash(b)
    m = st.read_manifest(a)
    assert m["d_in"] == 16 and m["hook_point"] == "resid_post.1" and m["dtype"] == "float32"
    assert m["model"]["sha256"] and m["corpus"]["sha256"] and m["tokens"]["context_len"] == 16
    assert len(m["shards"]) == 4 and all(len(s["sha256"]) == 64 for s in m["shards"])
    # BOS (position 0 and document separators) positions are dropped
    assert 60 * 14 < m["n_train_tokens"] <= 60 * 15 and 8 * 14 < m["n_eval_tokens"] <= 8 * 15
    reader = StoreReader(a)
    toks = torch.cat([reader.load_shard(s)["token_ids"] for s in m["shards"]])
    assert toks.shape[0] == m["n_train_tokens"] and not torch.isin(toks, torch.tensor([0, 1, 2])).any()
    assert set(m["library_versions"]) >= {"torch", "transformers", "safetensors"}
    assert m["normalization"]["method"] == "expected_average_only_in"
    assert "time" not in json.dumps(m).lower()
    # a different hook point is different data
    assert st.identity_hash(_build(env, "c", hook_point="resid_post.0")) != st.identity_hash(a)


def test_library_versions_are_recorded_but_not_part_of_the_identity(env, monkeypatch):
    a = _build(env, "a")
    monkeypatch.setattr(st, "library_versions", lambda: {"torch": "9.9", "transformers": "99.0"})
    newer = _build(env, "newer-libs")
    assert st.read_manifest(newer)["library_versions"] == {"torch": "9.9", "transformers": "99.0"}
    assert st.read_manifest(newer)["library_versions"] != st.read_manifest(a)["library_versions"]
    assert st.identity_hash(newer) == st.identity_hash(a)


def test_a_store_of_the_old_format_is_refused_with_the_fix(env, tmp_path):
    src = _build(env, "a")
    old = tmp_path / "old"
    shutil.copytree(src, old)
    m = st.read_manifest(old)
    m["format"] = "saebench-activations/1"
    (old / "manifest.json").write_text(json.dumps(m), encoding="utf-8")
    with pytest.raises(DataError, match="activations rm old"):
        st.identity_hash(old)


def test_bf16_store_halves_activation_bytes(env):
    m32 = st.read_manifest(_build(env, "a"))
    m16 = st.read_manifest(_build(env, "bf", dtype="bfloat16"))
    assert m16["dtype"] == "bfloat16" and m16["shards"][0]["bytes"] < 0.6 * m32["shards"][0]["bytes"]
    assert StoreReader(env[0] / "bf" / "tiny-set").eval_activations().dtype == torch.float32


def test_flipped_byte_and_truncated_shard_are_detected_and_never_read(env):
    path = _build(env, "corrupt")
    reader = StoreReader(path)
    assert reader.verify() == []
    shard = path / reader.manifest["shards"][1]["file"]
    data = bytearray(shard.read_bytes())
    data[-5] ^= 0x01
    shard.write_bytes(bytes(data))
    problems = reader.verify()
    assert len(problems) == 1 and "does not match its manifest hash" in problems[0]
    with pytest.raises(DataError, match="corrupted"):
        list(reader.iter_batches(32, seed=0, loop=False))
    shard.write_bytes(bytes(data[:100]))
    with pytest.raises(DataError, match="truncated"):
        reader.load_shard(reader.manifest["shards"][1])


def test_interrupted_build_keeps_finished_shards_and_resumes_to_the_same_manifest(env, monkeypatch):
    reference = st.identity_hash(_build(env, "a"))
    real = st._build_shard
    calls = []

    def flaky(*args, **kw):
        calls.append(args[5])
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(st, "_build_shard", flaky)
    with pytest.raises(KeyboardInterrupt):
        _build(env, "resume")
    out = env[0] / "resume" / "tiny-set"
    assert not st.is_complete(out)
    done = sorted(p.name for p in (out / "shards").glob("*.safetensors"))
    assert done == ["eval.safetensors", "train-00000.safetensors"]
    assert not list((out / "shards").glob(".*tmp*"))
    calls.clear()
    monkeypatch.setattr(st, "_build_shard", lambda *a, **k: (calls.append(a[5]), real(*a, **k)))
    _build(env, "resume")
    assert calls == ["train-00001", "train-00002", "train-00003"]  # finished shards skipped
    assert st.identity_hash(out) == reference


def test_disk_full_is_a_data_error_and_resume_after_it_works(env, monkeypatch):
    real = st._fsync_write

    def full(path, data):
        if "train-00002" in path.name:
            raise OSError(28, "No space left on device")
        return real(path, data)

    monkeypatch.setattr(st, "_fsync_write", full)
    with pytest.raises(DataError, match="free disk space"):
        _build(env, "full")
    monkeypatch.setattr(st, "_fsync_write", real)
    assert st.identity_hash(_build(env, "full")) == st.identity_hash(_build(env, "a"))


def test_resume_with_different_inputs_is_refused(env, monkeypatch):
    monkeypatch.setattr(st, "_finish_manifest", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        _build(env, "mismatch")
    monkeypatch.undo()
    with pytest.raises(DataError, match="different inputs"):
        _build(env, "mismatch", context_len=12)


def test_missing_hook_point_and_empty_corpus_folder_are_data_errors(env, tmp_path):
    with pytest.raises(DataError, match="valid"):
        _build(env, "bad", hook_point="mlp_out.9")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="has no text"):
        _build(env, "bad2", corpus=str(tmp_path / "empty"))
    with pytest.raises(ConfigError):
        st.StoreConfig(dtype="float64")  # float16 is stored since user-defined sets


def test_reader_shuffles_reproducibly_across_shards_and_one_pass_covers_every_row_once(env):
    reader = StoreReader(_build(env, "a"))
    n = reader.manifest["n_train_tokens"]
    one = torch.cat(list(reader.iter_batches(50, seed=3, buffer_rows=200, loop=False)))
    assert one.shape == (n, 16)
    every = torch.cat([reader.load_shard(s)["activations"] for s in reader.manifest["shards"]])
    assert torch.equal(one[torch.argsort(one[:, 0])], every[torch.argsort(every[:, 0])])
    first = lambda seed: next(reader.iter_batches(64, seed=seed, buffer_rows=256))  # noqa: E731
    assert torch.equal(first(1), first(1)) and not torch.equal(first(1), first(2))
    # rows from several shards are mixed within one batch
    ids = torch.cat([reader.load_shard(s)["context_ids"] for s in reader.manifest["shards"]])
    shard_of = {int(c): i // 240 for i, c in enumerate(ids)}
    batch = first(1)
    rows = [int(torch.nonzero((every == r).all(1))[0]) for r in batch[:20]]
    assert len({shard_of[int(ids[r])] for r in rows}) > 1
    # the stream is endless
    it = reader.iter_batches(100, seed=0, buffer_rows=256)
    assert sum(next(it).shape[0] for _ in range(30)) == 3000


@pytest.mark.parametrize("kw", [dict(batch_size=50, buffer_rows=200, loop=False),
                                dict(batch_size=64, buffer_rows=256, loop=True, normalize=True),
                                dict(batch_size=32, buffer_rows=700, loop=True),
                                dict(batch_size=30, buffer_rows=64, loop=False, normalize=True)])
def test_reader_gives_the_previous_paths_batches_bit_for_bit(env, kw):
    """The buffer kept as pieces and concatenated once per fill serves the batches the previous
    path (each shard appended with torch.cat) served: same rows, same order, same bits, for
    buffers smaller and larger than a shard (240 rows here), one pass and looping."""
    from _previous_paths import iter_batches_reference

    reader = StoreReader(_build(env, "a"))
    n = 3 * reader.manifest["n_train_tokens"] // kw["batch_size"] if kw["loop"] else None
    new, old = reader.iter_batches(seed=5, **kw), iter_batches_reference(reader, seed=5, **kw)
    count = 0
    for a, b in zip(new, old, strict=not kw["loop"]):
        assert a.dtype == b.dtype and torch.equal(a, b)
        count += 1
        if n is not None and count >= n:
            break
    assert count >= reader.manifest["n_train_tokens"] // kw["batch_size"]


def test_normalization_scales_mean_squared_norm_to_d_in_and_undo_inverts_it(env):
    base, bundle, cfg = env
    s = RealActivationSet("tiny-set", root=base / "a", model_bundle=bundle, normalize=True, buffer_rows=512,
                          **{k: getattr(cfg, k) for k in ("model", "hook_point", "corpus", "context_len",
                                                          "n_train_contexts", "n_eval_contexts", "contexts_per_shard",
                                                          "batch_size")})
    reader = StoreReader(s.path)
    raw = torch.cat(list(reader.iter_batches(100, 0, loop=False)))
    normed = torch.cat(list(reader.iter_batches(100, 0, loop=False, normalize=True)))
    assert float((normed.double() ** 2).sum(1).mean()) == pytest.approx(16.0, rel=1e-5)
    torch.testing.assert_close(s.normalizer.undo(normed), raw)
    assert Normalizer(2.0).undo(Normalizer(2.0).apply(torch.ones(3))).tolist() == [1.0, 1.0, 1.0]
    # the factor is computed from float activations: served, stored in the store, not in the set's identity
    assert "scaling_factor" not in s.manifest() and s.manifest()["normalization"] == "expected_average_only_in"
    fp_train = reader.manifest["fingerprint"]["train"]
    assert fp_train["mean_sq_norm"] == pytest.approx(reader.manifest["normalization"]["mean_squared_norm"], rel=1e-12)
    assert s.d_in == 16 and "model" in s.provides
    # eval contexts are held out: none of their context ids appear in training shards
    eval_ids = set(reader.load_shard(reader.manifest["eval_shard"])["context_ids"].tolist())
    train_ids = set(torch.cat([reader.load_shard(x)["context_ids"] for x in reader.manifest["shards"]]).tolist())
    assert eval_ids and not eval_ids & train_ids
    handle = s.resource("model")
    assert handle.eval_contexts.shape == (8, 16) and handle.hook_point == "resid_post.1"
    assert set(handle.eval_contexts[:, 0].tolist()) == {0}  # BOS first
    # the handle names its weights, so the probing texts' activations are kept on disk across
    # processes (without it every worker ran the model over them again: 60-160 s a worker)
    from saebench_sanity.metrics.lm import LMHandle

    lm = LMHandle.from_resource(handle, "tiny-set")
    assert lm.weights_id == f"tiny:{reader.manifest['model']['sha256']}:resid_post.1"
    with pytest.raises(DataError, match="d_in 99"):
        check_sae_d_in(99, s)
    check_sae_d_in(16, s)


def test_set_builds_its_store_on_first_use(env, tmp_path):
    base, bundle, cfg = env
    s = RealActivationSet("fresh", root=tmp_path, model_bundle=bundle, model=cfg.model, hook_point="attn_out.0",
                          corpus=cfg.corpus, context_len=16, n_train_contexts=20, n_eval_contexts=4, contexts_per_shard=10)
    assert not st.is_complete(s.path)
    assert next(s.train_batches(32, 0)).shape == (32, 16)
    assert st.is_complete(s.path) and s.eval_activations().shape == (60, 16)
    shutil.rmtree(s.path)


def test_real_set_samples_are_kept_per_seed_equal_the_streamed_sample_and_cannot_be_edited_through(env):
    from saebench_sanity.activations.base import ActivationSet

    base, bundle, cfg = env
    s = RealActivationSet("tiny-set", root=base / "a", model_bundle=bundle, buffer_rows=512,
                          **{k: getattr(cfg, k) for k in ("model", "hook_point", "corpus", "context_len",
                                                          "n_train_contexts", "n_eval_contexts", "contexts_per_shard",
                                                          "batch_size")})
    first = s.sample_activations(200, seed=3)
    assert torch.equal(first, ActivationSet.sample_activations(s, 200, seed=3))  # the streamed sample itself
    first.zero_()  # a mode editing its sample in place
    again = s.sample_activations(200, seed=3)
    assert torch.equal(again, ActivationSet.sample_activations(s, 200, seed=3)) and again.abs().sum() > 0
    assert not torch.equal(s.sample_activations(200, seed=4), again)
