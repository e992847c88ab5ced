"""Corpora (embedded, folder, hub loader on a local file), BOS handling, the held-out split, and
the `saebench activations` CLI on a tiny model."""

import json

import pytest

torch = pytest.importorskip("torch")

from saebench_sanity.activations import corpus as cp  # noqa: E402
from saebench_sanity.errors import DataError  # noqa: E402


@pytest.fixture(scope="module")
def tok():
    from saebench_sanity.models.tiny import tiny_tokenizer

    return tiny_tokenizer()


def test_default_corpus_is_python_docs_in_a_fixed_order():
    a, b = cp.default_corpus(), cp.default_corpus()
    assert a.id.startswith("python-3.") and a.sha256 == b.sha256
    assert a.n_chars > 600_000 and len(a.documents) > 300
    from pydoc_data.topics import topics

    assert a.documents[0] == topics[sorted(topics)[0]].strip()
    assert any("regular expression" in d.lower() for d in a.documents[len(topics):])  # re's docstring


def test_folder_corpus_reads_txt_and_jsonl_and_rejects_empty_folders(tmp_path):
    (tmp_path / "b.txt").write_text("second document")
    (tmp_path / "a.jsonl").write_text(json.dumps({"text": "first"}) + "\n\n" + json.dumps({"text": "also first"}) + "\n")
    (tmp_path / "ignored.md").write_text("not a corpus file")
    c = cp.load_corpus(str(tmp_path))
    assert c.documents == ("first", "also first", "second document") and c.id == f"folder:{tmp_path.name}"
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "blank.txt").write_text("   \n")
    with pytest.raises(DataError, match="has no text"):
        cp.load_corpus(str(empty))
    with pytest.raises(DataError, match="does not exist"):
        cp.load_corpus(str(tmp_path / "missing"))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.jsonl").write_text("not json\n")
    with pytest.raises(DataError, match="line 1"):
        cp.load_corpus(str(tmp_path / "bad"))


def test_hub_corpus_path_through_datasets_on_a_local_jsonl(tmp_path):
    f = tmp_path / "data.jsonl"
    f.write_text("".join(json.dumps({"text": f"doc {i}", "other": i}) + "\n" for i in range(5)))
    c = cp.load_corpus("hf:json", data_files=str(f), split="train")
    assert c.documents == tuple(f"doc {i}" for i in range(5)) and c.id.startswith("hf:json:train")
    with pytest.raises(DataError, match="no column 'body'"):
        cp.load_corpus("hf:json", data_files=str(f), split="train", text_column="body")


def test_contexts_start_with_bos_documents_are_separated_and_special_positions_are_masked(tok):
    c = cp.Corpus("t", ("alpha beta gamma " * 20, "delta " * 30))
    ctx = cp.tokenize_contexts(c, tok, 16)
    bos = tok.bos_token_id
    assert ctx.shape[1] == 16 and (ctx[:, 0] == bos).all()
    body = ctx[:, 1:].reshape(-1)
    assert int((body == bos).sum()) == 1  # exactly one document separator
    keep = cp.keep_mask(ctx, tok)
    assert not keep[:, 0].any() and int((~keep).sum()) == ctx.shape[0] + 1
    assert cp.special_token_ids(tok) == sorted({tok.bos_token_id, tok.eos_token_id, tok.pad_token_id})
    with pytest.raises(DataError, match="fewer than one context"):
        cp.tokenize_contexts(cp.Corpus("x", ("hi",)), tok, 64)


def test_split_is_portable_disjoint_and_mixed():
    train, ev = cp.split_contexts(100, 10)
    assert len(ev) == 10 and not set(train) & set(ev) and sorted(train + ev) == list(range(100))
    assert (train, ev) == cp.split_contexts(100, 10)
    assert ev != list(range(10)) and train[:5] != sorted(train[:5])
    with pytest.raises(DataError):
        cp.split_contexts(5, 5)


def test_cli_build_list_verify_rm_and_one_line_errors(tmp_path, monkeypatch, capsys):
    from saebench_sanity import cli, cli_activations
    from saebench_sanity.activations.real import RealActivationSet
    from saebench_sanity.models.loading import load_causal_lm
    from saebench_sanity.models.tiny import save_tiny_llama

    bundle = load_causal_lm(save_tiny_llama(tmp_path / "tiny", hidden=16, layers=2))
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "a.txt").write_text("the quick brown fox jumps over the lazy dog. " * 80)

    def fake(name):
        hook = "resid_post.9" if name == "bad-hook" else "resid_post.1"
        return RealActivationSet(name, root=tmp_path / "acts", model_bundle=bundle, model=str(tmp_path / "tiny"),
                                 hook_point=hook, corpus=str(tmp_path / "corpus"), context_len=16,
                                 n_train_contexts=24, n_eval_contexts=4, contexts_per_shard=8)

    from saebench_sanity.errors import UnknownNameError

    with pytest.raises(UnknownNameError, match="not stored on disk"):
        cli_activations._stored_set("synth-easy")
    monkeypatch.setattr(cli_activations, "_stored_set", fake)
    assert cli.main(["activations", "build", "tiny-cli", "--no-progress"]) == 0
    assert cli.main(["activations", "verify", "tiny-cli"]) == 0
    shard = tmp_path / "acts" / "tiny-cli" / "shards" / "train-00001.safetensors"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    capsys.readouterr()
    assert cli.main(["activations", "verify", "tiny-cli"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: shard shards/train-00001.safetensors") and "saebench activations rm tiny-cli" in err
    shard.write_bytes(bytes(data[: len(data) // 3]))
    assert cli.main(["activations", "verify", "tiny-cli"]) == 2
    assert "truncated" in capsys.readouterr().err
    assert cli.main(["activations", "rm", "tiny-cli"]) == 0 and not (tmp_path / "acts" / "tiny-cli").exists()
    capsys.readouterr()
    assert cli.main(["activations", "build", "bad-hook", "--no-progress"]) == 2
    assert "valid: resid_post.L" in capsys.readouterr().err


def _poisoned_jsonl(folder, n_good=400):
    """``folder/a.jsonl``: ``n_good`` documents, then a line that is not JSON, then more text.
    A reader that loads or parses the whole file fails; one that streams and stops in time does not."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"text": f"document {i}: " + "the quick brown fox jumps over the lazy dog. " * 3})
             for i in range(n_good)]
    lines += ["this line is not JSON", json.dumps({"text": "never reached"})]
    (folder / "a.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def test_folder_and_hub_corpora_are_generators_read_only_as_far_as_the_tokens_need(tmp_path, tok, monkeypatch):
    import inspect

    folder = _poisoned_jsonl(tmp_path / "corpus")
    corpus = cp.load_corpus(str(folder))  # opening it reads the first document only
    assert corpus.streamed and inspect.isgenerator(corpus.iter_documents())
    ctx, read = cp.tokenize_corpus(corpus, tok, 16, max_contexts=20)
    assert ctx.shape == (20, 16) and ctx.dtype == torch.int32
    # the documents read are a prefix, hashed as Corpus.sha256 hashes documents
    docs = [json.loads(line)["text"].strip() for line in (folder / "a.jsonl").read_text().splitlines()[:read.n_documents]]
    assert 0 < read.n_documents < 400
    assert read.sha256 == cp.Corpus("x", docs).sha256 and read.n_chars == sum(map(len, docs))
    assert torch.equal(ctx.long(), cp.tokenize_contexts(cp.Corpus("x", docs), tok, 16, max_contexts=20))
    # asking for more than the text before the bad line reaches it: one line naming the line
    with pytest.raises(DataError, match="line 401 is not a JSON object"):
        cp.tokenize_corpus(corpus, tok, 16, max_contexts=100_000)

    # the hub path asks `datasets` for a stream and pulls rows one by one
    import datasets

    calls = []
    real = datasets.load_dataset
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: calls.append(k) or real(*a, **k))
    good = tmp_path / "good.jsonl"
    good.write_text("".join(json.dumps({"text": f"row {i} " + "lorem ipsum dolor sit amet " * 4}) + "\n" for i in range(300)))
    hub = cp.load_corpus("hf:json", data_files=str(good), split="train")
    assert hub.streamed and all(k.get("streaming") is True for k in calls)
    hctx, hread = cp.tokenize_corpus(hub, tok, 16, max_contexts=10)
    assert hctx.shape == (10, 16) and 0 < hread.n_documents < 300


def test_a_build_from_a_streamed_folder_records_the_documents_it_read(tmp_path):
    from saebench_sanity.activations import store as st
    from saebench_sanity.models.loading import load_causal_lm
    from saebench_sanity.models.tiny import save_tiny_llama

    bundle = load_causal_lm(save_tiny_llama(tmp_path / "tiny", hidden=16, layers=2))
    folder = _poisoned_jsonl(tmp_path / "corpus")
    cfg = st.StoreConfig(model=str(tmp_path / "tiny"), hook_point="resid_post.1", corpus=str(folder), context_len=16,
                         n_train_contexts=24, n_eval_contexts=4, contexts_per_shard=8)
    m = st.read_manifest(st.build_store("s", cfg, tmp_path / "acts", progress=False, model_bundle=bundle))
    corpus = m["corpus"]
    assert corpus["hashed"] == "documents read" and corpus["id"] == "folder:corpus"
    assert 0 < corpus["n_documents"] < 400 and m["tokens"]["n_contexts"] == 28
    # the contexts are those of the documents read, wherever the text ends
    _, ctx, *_ = st.recipe_contexts(cfg, bundle[1])
    assert st.sha256_bytes(ctx.long().numpy().tobytes()) == m["tokens"]["contexts_sha256"]


def test_spilled_token_contexts_read_as_the_in_memory_ones_and_a_build_leaves_no_token_file(tmp_path, tok, monkeypatch):
    from saebench_sanity.activations import store as st
    from saebench_sanity.models.loading import load_causal_lm
    from saebench_sanity.models.tiny import save_tiny_llama

    folder = _poisoned_jsonl(tmp_path / "corpus")
    corpus = cp.load_corpus(str(folder))
    for bos in (True, False):
        mem, read = cp.tokenize_corpus(corpus, tok, 16, prepend_bos=bos, max_contexts=50)
        spilled, read2 = cp.tokenize_corpus(corpus, tok, 16, prepend_bos=bos, max_contexts=50, spill=tmp_path / f"t{bos}")
        assert isinstance(spilled, cp.TokenContexts) and spilled.shape == tuple(mem.shape) and read2 == read
        idx = [7, 0, 49, 7]
        assert torch.equal(spilled[idx], mem[idx].long()) and torch.equal(spilled[torch.tensor(idx)], mem[idx].long())
        assert torch.equal(torch.cat(list(spilled.chunks(rows=8))), mem.long())
        assert (tmp_path / f"t{bos}").stat().st_size >= 50 * spilled.body * 4  # the stream is on disk
    with pytest.raises(IndexError):
        spilled[[50]]

    # a build tokenizes into a file beside the store, reads shards' contexts from it, removes it
    spills = []
    real = cp.tokenize_corpus
    monkeypatch.setattr(cp, "tokenize_corpus", lambda *a, **k: spills.append(k.get("spill")) or real(*a, **k))
    bundle = load_causal_lm(save_tiny_llama(tmp_path / "tiny", hidden=16, layers=2))
    cfg = st.StoreConfig(model=str(tmp_path / "tiny"), hook_point="resid_post.1", corpus=str(folder), context_len=16,
                         n_train_contexts=24, n_eval_contexts=4, contexts_per_shard=8)
    (tmp_path / "acts").mkdir()
    (tmp_path / "acts" / ".s-tokens-stale").mkdir()  # left by a killed build: removed
    m = st.read_manifest(st.build_store("s", cfg, tmp_path / "acts", progress=False, model_bundle=bundle))
    assert spills and spills[0] is not None and spills[0].parent.parent == tmp_path / "acts"
    assert sorted(p.name for p in (tmp_path / "acts").iterdir() if p.name != ".s.lock") == ["s"]
    mem_ctx = real(cp.load_corpus(str(folder)), bundle[1], 16, max_contexts=28)[0]
    assert st.sha256_bytes(mem_ctx.long().numpy().tobytes()) == m["tokens"]["contexts_sha256"]


@pytest.mark.parametrize("make", ["missing", "empty", "bad first line"])
def test_a_corpus_that_cannot_be_read_is_refused_before_the_model_loads(tmp_path, monkeypatch, make):
    from saebench_sanity.activations import real
    from saebench_sanity.activations.real import RealActivationSet

    folder = tmp_path / "corpus"
    if make != "missing":
        folder.mkdir()
        if make == "bad first line":
            (folder / "a.jsonl").write_text("not json\n")

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the corpus was checked")

    monkeypatch.setattr(real, "load_model_cached", no_model)
    aset = RealActivationSet("corpus-first", root=tmp_path / "acts", model="some/model", hook_point="resid_post.1",
                             corpus=str(folder), context_len=16, n_train_contexts=4, n_eval_contexts=2)
    with pytest.raises(DataError, match="corpus"):
        aset.build()
    assert not (tmp_path / "acts" / "corpus-first").exists()
