"""User-defined real activation sets, no plugin: `saebench activations build --model ...`, the
`[sets.NAME]` tables of a run config, the name bound to its parameters, bad input in one line,
and a run on such a set whose checkpoints load in SAELens and take raw activations.

Offline: a tiny random Llama saved to a local folder and a local corpus folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from saebench_sanity.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """``(model folder, corpus folder)``: a 2-layer random Llama (width 16) and 12 text files."""
    from pydoc_data.topics import topics

    from saebench_sanity.models.tiny import save_tiny_llama

    base = tmp_path_factory.mktemp("user-sets")
    model = save_tiny_llama(base / "tiny", hidden=16, layers=2)
    corpus = base / "corpus"
    corpus.mkdir()
    for i, k in enumerate(sorted(topics)[:12]):
        (corpus / f"{i:02d}.txt").write_text(topics[k])
    return model, corpus


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A private ``$SAEBENCH_CACHE`` and a registry built in it."""
    from saebench_sanity.registry import get_registry

    monkeypatch.setenv("SAEBENCH_CACHE", str(tmp_path / "cache"))
    get_registry(refresh=True)
    yield tmp_path / "cache"
    monkeypatch.delenv("SAEBENCH_CACHE")
    get_registry(refresh=True)


def _build(local, name, *extra):
    model, corpus = local
    return main(["activations", "build", "--no-progress", "--name", name, "--model", str(model), "--hook-point",
                 "resid_post.1", "--corpus", str(corpus), "--context-len", "16", "--tokens", "600", "--eval-tokens",
                 "120", *extra])


def _error_line(capsys) -> str:
    """The one error line on stderr (transformers' weight-loading bar may precede it)."""
    err = [line for line in capsys.readouterr().err.strip().splitlines() if "Loading weights" not in line]
    assert len(err) == 1 and err[0].startswith("error:"), err
    return err[0]


def test_one_line_build_stores_the_set_and_every_process_knows_it_by_name(local, cache, capsys):
    from saebench_sanity.activations.reader import StoreReader
    from saebench_sanity.registry import Registry

    assert _build(local, "mine", "--dtype", "float16") == 0
    folder = cache / "activations" / "mine"
    reader = StoreReader(folder)
    m = reader.manifest
    assert m["hook_point"] == "resid_post.1" and m["d_in"] == 16 and m["dtype"] == "float16"
    # 600 tokens ask for ceil(600 / 15) = 40 training contexts of 15 harvested positions (BOS first),
    # minus the document separators, which are never harvested
    assert m["tokens"]["n_train_contexts"] == 40 and m["tokens"]["prepend_bos"] is True
    assert 560 <= m["n_train_tokens"] <= 600
    assert reader.eval_activations().dtype == torch.float32  # stored 16-bit, served float32
    # a fresh registry (another process, a pool worker, `saebench check`) finds it without a plugin
    spec = Registry(load_entry_points=False).get("activation_set", "mine")
    assert spec.family == "real" and spec.build().manifest()["store_identity_sha256"]
    # building again is a no-op; the same name with other parameters is refused in one line
    assert _build(local, "mine", "--dtype", "float16") == 0
    capsys.readouterr()
    assert _build(local, "mine", "--dtype", "bfloat16") == 2
    line = _error_line(capsys)
    assert "'mine' already exists with other parameters" in line and "dtype" in line
    assert StoreReader(folder).manifest["dtype"] == "float16"


def test_bad_input_is_one_line_and_exit_2(local, cache, tmp_path, capsys):
    model, corpus = local
    assert main(["activations", "build", "--name", "nomodel", "--model", str(tmp_path / "absent"),
                 "--hook-point", "resid_post.1", "--corpus", str(corpus)]) == 2
    assert "does not exist" in _error_line(capsys)
    assert _build(local, "deep", "--hook-point", "resid_post.7") == 2  # the last --hook-point wins
    line = _error_line(capsys)
    assert "resid_post.7" in line and "attn_out.L for L in 0..1" in line  # names the valid ones
    assert not (cache / "activations" / "deep").exists()  # a refused build leaves no partial set listed
    assert _build(local, "deep") == 0  # a declaration whose build never started may be corrected
    capsys.readouterr()
    assert _build(local, "huge", "--tokens", "10000000") == 2
    assert "fewer than" in (line := _error_line(capsys)) and "n_train_tokens" in line
    assert main(["activations", "build", "--name", "half", "--model", str(model)]) == 2
    assert "--hook-point" in _error_line(capsys)



def test_a_hook_point_of_no_known_form_is_refused_before_any_model_loads(local, cache, capsys, monkeypatch):
    from saebench_sanity.activations import real

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the hook point's form was checked")

    monkeypatch.setattr(real, "load_model_cached", no_model)
    for hook in ("resid.1", "resid_post.-1", "resid_post"):
        assert _build(local, "form", "--hook-point", hook) == 2
        assert f"hook point {hook!r} is not a valid name" in _error_line(capsys)
    assert not (cache / "activations" / "form").exists()


def test_a_bad_corpus_line_past_the_first_and_a_missing_layer_are_refused_before_the_weights_load(
        local, cache, tmp_path, capsys, monkeypatch):
    """The tokenizer and the model's config (a module tree on the meta device) are all a build
    reads of the model until its corpus is tokenized: a bad line 3 of a JSONL corpus and a layer
    the model does not have are one line and exit 2 with no weights loaded, and the same folder
    with the bad line removed builds through the same path."""
    from saebench_sanity.activations import real

    loads = []

    def no_model(*args, **kwargs):
        loads.append(args)
        raise AssertionError("the model weights were loaded before the corpus and hook point were checked")

    monkeypatch.setattr(real, "load_model_cached", no_model)
    model, _ = local
    corpus = tmp_path / "jsonl"
    corpus.mkdir()
    good = json.dumps({"text": "alpha beta gamma delta " * 20})
    (corpus / "docs.jsonl").write_text(f"{good}\n{good}\nnot json\n{good}\n")

    def build(name, hook="resid_post.1"):
        return main(["activations", "build", "--no-progress", "--name", name, "--model", str(model), "--hook-point",
                     hook, "--corpus", str(corpus), "--context-len", "16", "--tokens", "600", "--eval-tokens", "120"])

    assert build("badline") == 2
    line = _error_line(capsys)
    assert "docs.jsonl" in line and "line 3 is not a JSON object" in line
    assert build("nolayer", hook="mlp_out.5") == 2
    assert "has 2 layers" in _error_line(capsys)
    assert loads == [] and not (cache / "activations" / "badline").exists()
    monkeypatch.undo()
    monkeypatch.setenv("SAEBENCH_CACHE", str(cache))
    (corpus / "docs.jsonl").write_text(f"{good}\n" * 40)
    assert build("badline") == 0


def test_a_build_loads_the_model_s_tokenizer_once(local, cache, monkeypatch):
    """The build tokenizes its corpus with the tokenizer alone, then loads the weights: the model
    loader is handed that tokenizer instead of loading it again."""
    from saebench_sanity.activations import real
    from saebench_sanity.models import loading

    loads = []
    original = loading.load_tokenizer
    monkeypatch.setattr(loading, "load_tokenizer", lambda *a, **k: loads.append(a) or original(*a, **k))
    monkeypatch.setattr(real, "_MODELS", {})  # the model loads in this test, not from an earlier one's cache
    assert _build(local, "once") == 0
    assert len(loads) == 1


def _run_toml(local, tmp_path, modes, metrics) -> Path:
    """A run config training TopK cells of the user set ``cfgset`` (built on first use)."""
    model, corpus = local
    toml = tmp_path / "run.toml"
    toml.write_text(f"""
[run]
name = "user-set-run"
output_dir = "{tmp_path / 'out'}"
sets = ["cfgset"]
architectures = ["topk"]
modes = {json.dumps(modes)}
seeds = [0]
metrics = {json.dumps(metrics)}
d_sae = 32
target_l0 = 4

[training]
max_steps = 40
batch_size = 64
lr = 3e-3
curve_every = 5
n_init_samples = 256

[sets.cfgset]
model = "{model}"
hook_point = "resid_post.1"
corpus = "{corpus}"
context_len = 16
n_train_tokens = 600
n_eval_tokens = 120
""")
    return toml


def test_a_run_config_set_trains_and_its_checkpoints_take_raw_activations(local, cache, tmp_path):
    """``[sets.NAME]`` with a model: built on first use by ``saebench run``; the saved SAEs load
    with plain sae-lens, take raw model activations, and score as the run recorded."""
    from sae_lens import SAE

    from saebench_sanity.activations.reader import StoreReader
    from saebench_sanity.architectures.checkpoint import FOLDED_SCALE_KEY

    toml = _run_toml(local, tmp_path, modes=["trained", "frozen_decoder"], metrics=["reconstruction"])
    assert main(["activations", "build", "--no-progress", "cfgset", "--config", str(toml)]) == 0
    assert main(["run", "--config", str(toml), "--jobs", "1", "--leaderboards", str(tmp_path / "boards")]) == 0
    reader = StoreReader(cache / "activations" / "cfgset")
    raw = reader.eval_activations(normalize=False)
    scale = reader.normalizer.scale
    results = list((tmp_path / "out" / "results").glob("*.json"))
    assert len(results) == 2
    for path in results:
        record = json.loads(path.read_text())
        sae = SAE.load_from_disk(str(tmp_path / "out" / "checkpoints" / record["key"]))
        assert sae.cfg.normalize_activations == "none" and sae.cfg.metadata[FOLDED_SCALE_KEY] == pytest.approx(scale)
        # and it says where it reads, in SAELens's metadata fields, and which set it was trained on
        model, corpus = local
        meta = sae.cfg.metadata
        assert (meta.model_name, meta.hook_name, meta.context_size, meta.prepend_bos, meta.dataset_path) == \
            (str(model), "blocks.1.hook_resid_post", 16, True, str(corpus))
        assert meta["saebench_activation_set"] == "cfgset"
        with torch.no_grad():
            x, x_hat = raw.double(), sae.decode(sae.encode(raw)).double()
        ev = float(1 - ((x - x_hat) ** 2).sum() / ((x - x.mean(0)) ** 2).sum())
        scores = next(m for m in record["metrics"].values() if m["name"] == "reconstruction")["scores"]
        assert scores["explained_variance"] == pytest.approx(ev, abs=1e-5)
        assert ev > 0.2  # it reconstructs raw activations, not only the normalized ones


def test_a_run_scores_loss_recovered_a_cohort_at_a_time_with_each_cells_own_numbers(local, cache, tmp_path):
    """End to end on a real (tiny) model: ``saebench run`` scores ``loss_recovered`` for the
    cohort's three cells in one call (each entry marked ``batched``), and every cell's stored
    scores equal the metric computed alone on that cell's checkpoint."""
    from saebench_sanity.activations.real import checkpoint_in_set_space
    from saebench_sanity.architectures.checkpoint import load_checkpoint
    from saebench_sanity.harness.scoring import metric_context
    from saebench_sanity.registry import get_registry

    toml = _run_toml(local, tmp_path, modes=["trained", "frozen_decoder", "untrained"], metrics=["loss_recovered"])
    assert main(["run", "--config", str(toml), "--jobs", "1", "--leaderboards", str(tmp_path / "boards")]) == 0
    reg = get_registry()
    spec = reg.get("metric", "loss_recovered")
    aset = reg.get("activation_set", "cfgset").build()
    records = [json.loads(p.read_text()) for p in (tmp_path / "out" / "results").glob("*.json")]
    assert len(records) == 3
    for record in records:
        entry = next(m for m in record["metrics"].values() if m["name"] == "loss_recovered")
        assert entry["status"] == "ok" and entry["batched"] is True
        sae = checkpoint_in_set_space(load_checkpoint(tmp_path / "out" / "checkpoints" / record["key"]), aset)
        alone = spec.evaluate(metric_context(sae, aset, aset.eval_activations(), reg), **entry["params"])
        for k, v in alone.items():
            assert entry["scores"][k] == pytest.approx(v, rel=1e-6, abs=1e-9), k
    assert len({round(r["metrics"][next(iter(r["metrics"]))]["scores"]["ce_sae"], 6) for r in records}) == 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_build_on_the_gpu_holds_the_tokens_and_activations_of_a_cpu_build(local, cache):
    from saebench_sanity.activations.reader import StoreReader

    assert _build(local, "on-cpu") == 0
    assert _build(local, "on-gpu", "--device", "cuda") == 0
    cpu, gpu = (StoreReader(cache / "activations" / n) for n in ("on-cpu", "on-gpu"))
    assert [s["ids_sha256"] for s in cpu.manifest["shards"]] == [s["ids_sha256"] for s in gpu.manifest["shards"]]
    x, y = cpu.eval_activations(), gpu.eval_activations()
    assert torch.allclose(x, y, rtol=1e-3, atol=1e-4 * float(x.abs().max()))  # other kernels, same numbers


def test_activations_beyond_float16_are_one_line_naming_bfloat16(local, cache, capsys, monkeypatch):
    """A model whose activations overflow float16 (a residual stream scaled x1e8 here): the build
    stops with one line naming the fix, not a silent inf."""
    import saebench_sanity.activations.store as st

    real_record = __import__("saebench_sanity.models.hook_points", fromlist=["record"]).record
    monkeypatch.setattr("saebench_sanity.models.hook_points.record",
                        lambda *a, **k: real_record(*a, **k) * 1e8)
    assert _build(local, "overflow", "--dtype", "float16") == 2
    line = _error_line(capsys)
    assert "exceed the range of float16" in line and "bfloat16" in line
    assert not (cache / "activations" / "overflow" / st.MANIFEST).exists()


def test_massive_flags_default_to_ratio_10_and_are_set_by_option_config_or_left_out(local, cache, tmp_path, capsys):
    """User sets flag massive-activation tokens at 10x the held-out median norm unless told
    otherwise (``--massive-ratio``, ``--no-massive-flags``, ``massive_norm_ratio`` /
    ``exclude_massive`` in ``[sets.NAME]``); a set declared before flags existed keeps its meaning."""
    from saebench_sanity import config as config_mod
    from saebench_sanity.activations.real import MASSIVE_NORM_RATIO, USER_SET_FILE, declare_user_set, user_set_specs
    from saebench_sanity.activations.reader import StoreReader
    from saebench_sanity.registry import Registry

    assert MASSIVE_NORM_RATIO == 10.0
    assert _build(local, "dflt") == 0
    assert StoreReader(cache / "activations" / "dflt").manifest["tokens"]["massive"]["norm_ratio"] == 10.0
    assert _build(local, "strict", "--massive-ratio", "1.3", "--exclude-massive") == 0
    spec = Registry(load_entry_points=False).get("activation_set", "strict")
    assert spec.params["massive_norm_ratio"] == 1.3 and spec.params["exclude_massive"] is True
    aset = spec.build()
    assert aset.exclude_massive and aset.reader.manifest["massive"]["n_train_flagged"] > 0
    assert _build(local, "noflags", "--no-massive-flags") == 0
    assert StoreReader(cache / "activations" / "noflags").massive_norm_ratio is None
    capsys.readouterr()
    assert _build(local, "clash", "--no-massive-flags", "--exclude-massive") == 2
    assert "--no-massive-flags" in _error_line(capsys)

    model, corpus = local
    toml = tmp_path / "run.toml"
    toml.write_text(f"""
[run]
sets = ["cfgmassive"]
architectures = ["topk"]
modes = ["trained"]
[sets.cfgmassive]
model = "{model}"
hook_point = "resid_post.1"
corpus = "{corpus}"
massive_norm_ratio = 2.5
exclude_massive = true
""")
    recipes = config_mod.user_set_recipes(config_mod.load(str(toml)))
    assert recipes["cfgmassive"]["massive_norm_ratio"] == 2.5 and recipes["cfgmassive"]["exclude_massive"] is True
    toml.write_text(toml.read_text().replace("2.5", "1.0"))
    with pytest.raises(Exception, match="massive_norm_ratio"):
        config_mod.load(str(toml))

    # a set declared (and built) before flags existed: its record's params have no ratio
    old = cache / "activations" / "legacy"
    old.mkdir(parents=True)
    recipe = {"model": str(model), "hook_point": "resid_post.1", "corpus": str(corpus), "context_len": 16}
    spec_now = declare_user_set("probe", recipe)
    legacy_params = {k: v for k, v in spec_now.params.items() if k != "massive_norm_ratio"}
    legacy_params["name"] = "legacy"
    (old / USER_SET_FILE).write_text(json.dumps({"name": "legacy", "recipe": recipe, "params": legacy_params}))
    (old / "build-plan.json").write_text("{}")  # its build had started
    [legacy] = [s for s in user_set_specs() if s.name == "legacy"]
    assert "massive_norm_ratio" not in legacy.params
    assert "massive_norm_ratio" not in declare_user_set("legacy", recipe).params  # the same recipe: accepted, as it was


def test_results_say_which_build_of_a_set_they_came_from_and_a_resume_on_another_build_says_so(
        local, cache, tmp_path, monkeypatch, caplog):
    """Every record of a stored set carries ``data_sha256`` (the store's content hash) in its
    training summary and metric entries. Rebuilt with bytes a few ulps apart (another machine's
    harvest: same recipe, so the same cell keys), a resumed run reuses the stored results, trains
    the new cell on the new build and warns, in one line, that the board mixes two builds;
    ``saebench verify`` names both. ``--force`` redoes them without the warning."""
    import logging

    from saebench_sanity.activations import store as st
    from saebench_sanity.models import hook_points

    toml = _run_toml(local, tmp_path, modes=["trained"], metrics=["reconstruction"])
    assert main(["run", "--config", str(toml), "--jobs", "1", "--quiet", "--no-plots"]) == 0
    store_path = cache / "activations" / "cfgset"
    first = st.content_hash(store_path)
    (record,) = [json.loads(p.read_text()) for p in (tmp_path / "out" / "results").glob("*.json")]
    assert record["training"]["data_sha256"] == first
    assert [m["data_sha256"] for m in record["metrics"].values() if m["status"] == "ok"] == [first]

    real = hook_points.record
    monkeypatch.setattr(hook_points, "record", lambda *a, **k: real(*a, **k) * (1 + 3e-7))
    assert main(["activations", "rm", "cfgset"]) == 0  # the next run builds it again, a few ulps apart
    toml.write_text(toml.read_text().replace('modes = ["trained"]', 'modes = ["trained", "frozen_decoder"]'))
    with caplog.at_level(logging.WARNING):
        assert main(["run", "--config", str(toml), "--jobs", "1", "--no-plots"]) == 0
    second = st.content_hash(store_path)
    assert second != first
    notes = [r.getMessage() for r in caplog.records if "another build" in r.getMessage()]
    assert len(notes) == 1 and "1 of the 2 stored results of set 'cfgset'" in notes[0]
    assert first[:12] in notes[0] and second[:12] in notes[0] and "\n" not in notes[0]
    data = {json.loads(p.read_text())["cell"]["mode"]: json.loads(p.read_text())["training"]["data_sha256"]
            for p in (tmp_path / "out" / "results").glob("*.json")}
    assert data == {"trained": first, "frozen_decoder": second}

    from saebench_sanity.cli_verify import build_notes

    records = [json.loads(p.read_text()) for p in (tmp_path / "out" / "results").glob("*.json")]
    (note,) = build_notes(records)
    assert "'cfgset'" in note and "2 builds" in note and first[:12] in note and second[:12] in note
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert main(["run", "--config", str(toml), "--jobs", "1", "--no-plots", "--force"]) == 0
    assert not [r for r in caplog.records if "another build" in r.getMessage()]
    assert {json.loads(p.read_text())["training"]["data_sha256"]
            for p in (tmp_path / "out" / "results").glob("*.json")} == {second}


def test_check_trains_again_the_baselines_it_cached_from_another_build_of_the_set(
        local, cache, tmp_path, monkeypatch, capsys):
    """``saebench check`` caches baselines by identity (the set's recipe); a cached baseline (and
    the cached scores of the checked SAE) from another build of the set is stale: after a rebuild a
    few ulps apart, the next check says so in one line, trains and scores them again on this
    build, and the check after that serves them from the cache."""
    from saebench_sanity.activations import store as st
    from saebench_sanity.models import hook_points

    toml = _run_toml(local, tmp_path, modes=["trained"], metrics=["reconstruction"])
    assert main(["run", "--config", str(toml), "--jobs", "1", "--quiet", "--no-plots"]) == 0
    (sae,) = (tmp_path / "out" / "checkpoints").iterdir()
    args = ["check", str(sae), "--set", "cfgset", "--modes", "frozen_decoder", "--seeds", "0", "--steps", "20",
            "--metrics", "reconstruction", "--cache-dir", str(tmp_path / "baselines")]

    def check(name):
        main([*args, "--json", str(tmp_path / name)])
        return json.loads((tmp_path / name).read_text()), capsys.readouterr().err

    def builds():
        return {d for p in (tmp_path / "baselines" / "results").glob("*.json")
                for d in _recorded(json.loads(p.read_text()))}

    first_report, _ = check("first.json")
    first = st.content_hash(cache / "activations" / "cfgset")
    assert builds() == {first}
    assert [r["cached"] for r in first_report["training"]["frozen_decoder"]] == [False]

    real = hook_points.record
    monkeypatch.setattr(hook_points, "record", lambda *a, **k: real(*a, **k) * (1 + 3e-7))
    assert main(["activations", "rm", "cfgset"]) == 0
    assert main(["activations", "build", "cfgset", "--no-progress"]) == 0
    second = st.content_hash(cache / "activations" / "cfgset")
    assert second != first
    capsys.readouterr()

    from saebench_sanity.executors.local import LocalExecutor

    passes = []
    real_run = LocalExecutor.run
    monkeypatch.setattr(LocalExecutor, "run", lambda self, plan, *a, **k: passes.append(k["force"]) or real_run(self, plan, *a, **k))
    again, err = check("again.json")
    assert len(passes) == 1 and len(passes[0]) == 1  # one pass, which redoes the stale baseline only
    err = " ".join(err.split())  # the progress console wraps long lines
    assert err.count("another build") == 1 and "2 cached record(s)" in err and "set 'cfgset'" in err, err
    assert [r["cached"] for r in again["training"]["frozen_decoder"]] == [False]  # trained again
    assert builds() == {second}  # the baseline's record and the checked SAE's scores

    third, err = check("third.json")
    assert "another build" not in err
    assert [r["cached"] for r in third["training"]["frozen_decoder"]] == [True]
    for report in (again, third):
        for runs in report["training"].values():
            for r in runs:
                r["cached"] = False
    assert third == again


def _recorded(record):
    from saebench_sanity.harness.run import recorded_data

    return recorded_data(record)


def test_a_one_line_sets_defaults_are_those_of_a_set_described_in_a_config_file():
    """``activations build --name N --model M --hook-point H`` passes the parser's defaults
    (cli_activations.NEW_SET_DEFAULTS) into the recipe, while a ``[sets.N]`` table that leaves a
    key out gets ``user_set_params``' default: the two must be the same set."""
    import inspect

    from saebench_sanity.activations.real import user_set_params
    from saebench_sanity.cli_activations import NEW_SET_DEFAULTS

    recipe = {k: p.default for k, p in inspect.signature(user_set_params).parameters.items()
              if p.default is not inspect.Parameter.empty}
    one_line = NEW_SET_DEFAULTS
    assert (one_line["corpus"], one_line["tokens"], one_line["eval_tokens"], one_line["context_len"],
            one_line["dtype"]) == (recipe["corpus"], recipe["n_train_tokens"], recipe["n_eval_tokens"],
                                   recipe["context_len"], recipe["dtype"])
    # flags and options whose default leaves the recipe's own value in place
    assert one_line["no_bos"] is (not recipe["prepend_bos"]) is False
    assert one_line["exclude_massive"] is recipe["exclude_massive"] is False
    assert one_line["massive_ratio"] is None and one_line["no_massive_flags"] is False
    assert one_line["revision"] is recipe["model_revision"] is None


def test_a_declaration_the_registry_skips_is_named_in_its_warning_and_removed_by_rm(local, cache, capsys):
    assert _build(local, "old") == 0
    path = cache / "activations" / "old" / "user-set.json"
    path.write_text(path.read_text()[:-20])  # damaged (or refused by a newer version): skipped by the registry
    from saebench_sanity.registry import get_registry

    capsys.readouterr()
    get_registry(refresh=True)  # what every new process does first, and where the skipped file is named
    assert main(["activations", "list"]) == 0
    captured = capsys.readouterr()
    assert "skipping user activation set" in captured.err and "`saebench activations rm old` removes it" in captured.err
    assert "old" not in captured.out
    assert main(["activations", "rm", "old"]) == 0
    assert not path.parent.exists()
    capsys.readouterr()
    assert main(["activations", "rm", "old"]) == 2  # now unknown, as any other name
    assert "unknown activation set 'old'" in _error_line(capsys)
