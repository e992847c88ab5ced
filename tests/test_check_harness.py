"""`saebench check` is a plan run by `saebench run`'s harness: its baselines are cells (keys as the
baseline cache has always used), one cohort per seed run by the executor's `run_cohort`, the user's
SAE one provided cell, every score a harness record; an interrupted check resumes from the store,
and checkpoints cached before check ran through the harness are still used."""

import dataclasses
import json

import pytest

import saebench_sanity
from saebench_sanity.activations.base import stable_hash
from saebench_sanity.config import TrainingConfig
from saebench_sanity.harness.plan import code_version
from saebench_sanity.registry import get_registry

pytestmark = pytest.mark.usefixtures("one_thread")


def _old_baseline_key(**kw):
    """The cache key check computed before it ran through the harness, written out here."""
    material = {"kind": "check-baseline", "set": kw["set_manifest_hash"], "arch": kw["arch"],
                "arch_overrides": kw["arch_overrides"], "mode": kw["mode"], "seed": kw["seed"], "d_sae": kw["d_sae"],
                "target_l0": kw["target_l0"], "training": dataclasses.asdict(kw["training"]), "dtype": kw["dtype"],
                "code": code_version()}
    if kw.get("plugins"):
        material["plugins"] = [list(p) for p in kw["plugins"]]
    return stable_hash(material)[:24]


@pytest.mark.parametrize("plugins", [(), (("saebench-x", "1.2"),)])
def test_a_baseline_cell_has_the_key_of_the_old_check_cache_and_one_seed_is_one_cohort(plugins, monkeypatch):
    from saebench_sanity import check
    from saebench_sanity.harness.executor import cohorts

    reg = get_registry()
    # a stand-in origin: the mode comes from a plugin distribution, which joins the key as before
    builtin = ("saebench-sanity", saebench_sanity.__version__)
    monkeypatch.setattr(reg, "origin", lambda spec: plugins[0] if plugins and spec.kind == "training_mode" else builtin,
                        raising=False)
    training = TrainingConfig(max_steps=77, batch_size=128, lr=1e-3)
    modes = [reg.get("training_mode", m) for m in ("frozen_decoder", "frozen_encoder")]
    arch = reg.get("architecture", "jumprelu")
    cells = check.baseline_cells(set_name="synth-easy", set_manifest_hash="abc123", arch=arch,
                                 arch_overrides={"l0_coefficient": 2.0}, modes=modes, seeds=(0, 4), d_sae=48,
                                 target_l0=5, training=training, dtype="float32", registry=reg)
    assert [(c.mode, c.seed) for c in cells] == [("frozen_decoder", 0), ("frozen_encoder", 0),
                                                 ("frozen_decoder", 4), ("frozen_encoder", 4)]
    for cell in cells:
        assert cell.plugins == plugins and cell.is_baseline and cell.trains
        assert cell.key == _old_baseline_key(set_manifest_hash="abc123", arch="jumprelu",
                                             arch_overrides={"l0_coefficient": 2.0}, mode=cell.mode, seed=cell.seed,
                                             d_sae=48, target_l0=5, training=training, dtype="float32",
                                             plugins=plugins)
        assert cell.arch_params["l0_coefficient"] == 2.0  # resolved as the trainer resolves them
    assert len({c.key for c in cells}) == 4
    assert [[(c.mode, c.seed) for c in g] for g in cohorts(cells)] == [
        [("frozen_decoder", 0), ("frozen_encoder", 0)], [("frozen_decoder", 4), ("frozen_encoder", 4)]]


@pytest.mark.slow
def test_check_runs_on_the_harness_resumes_after_an_interrupt_and_reads_an_old_cache(tmp_path, monkeypatch):
    from saebench_sanity.architectures.checkpoint import save_checkpoint
    from saebench_sanity.check import PROVIDED, CheckOptions, run_check
    from saebench_sanity.harness import executor as executor_mod
    from saebench_sanity.records import parse_record
    from saebench_sanity.results import MARKER, TRAIN_FILE, ResultStore
    from saebench_sanity.training.trainer import train_cell

    reg = get_registry()
    aset = reg.get("activation_set", "synth-easy").build()
    res = train_cell(reg.get("architecture", "topk"), reg.get("training_mode", "trained"), aset, d_sae=32,
                     target_l0=3, arch_overrides={}, mode_params={},
                     training=TrainingConfig(steps=100, batch_size=256, lr=3e-3), seed=2)
    save_checkpoint(res.sae, tmp_path / "sae")
    cache = tmp_path / "cache"
    opts = CheckOptions(target=str(tmp_path / "sae"), set_name="synth-easy", modes=("frozen_decoder", "frozen_encoder"),
                        seeds=(0, 1, 2), steps=60, cache_dir=cache,
                        metrics=("reconstruction.explained_variance", "reconstruction.l0"))

    calls: list[list[tuple[str, int]]] = []
    real = executor_mod.run_cohort
    interrupt = [True]

    def spy(cells, *args, **kwargs):
        calls.append([(c.mode, c.seed) for c in cells])
        if interrupt[0] and len(calls) == 2:
            raise KeyboardInterrupt
        return real(cells, *args, **kwargs)

    monkeypatch.setattr(executor_mod, "run_cohort", spy)
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C while seed 1's cohort is about to train
        run_check(opts, reg)
    store = ResultStore(cache)
    assert len(store.checkpoint_keys()) == 2  # seed 0's cohort, stored before the interrupt

    interrupt[0] = False
    calls.clear()
    said: list[str] = []
    report = run_check(opts, reg, progress=said.append)
    # the executor ran one cohort per seed, the modes of a seed together; seed 0 came from the store
    assert calls == [[("frozen_decoder", s), ("frozen_encoder", s)] for s in (0, 1, 2)]
    assert [r["cached"] for r in report.training["frozen_decoder"]] == [True, False, False]
    assert "baselines of seed 0: cached" in " ".join(said)

    # every SAE of the check is a harness record: a trained baseline cell, or the provided one
    records = [parse_record(store.load_result(k)) for k in store.result_keys()]
    provided = [r for r in records if r.cell.mode == PROVIDED]
    baselines = sorted((r for r in records if r.cell.mode != PROVIDED), key=lambda r: (r.cell.seed, r.cell.mode))
    assert len(provided) == 1 and provided[0].training is None and not provided[0].cell.trains
    assert len(baselines) == 6 and all(r.cell.is_baseline and r.status == "ok" for r in baselines)
    assert set(store.checkpoint_keys()) == {r.key for r in baselines}
    (ev_key,) = [k for k, m in provided[0].metrics.items() if m.name == "reconstruction"]
    rows = {r["score"]: r for r in report.rows}
    assert rows["explained_variance"]["sae"] == provided[0].metrics[ev_key].scores["explained_variance"]
    fd = [r.metrics[ev_key].scores["explained_variance"] for r in baselines if r.cell.mode == "frozen_decoder"]
    assert rows["explained_variance"]["baselines"]["frozen_decoder"]["mean"] == pytest.approx(sum(fd) / 3, rel=1e-12)
    assert [r["steps"] for r in report.training["frozen_decoder"]] == [
        r.training.steps for r in baselines if r.cell.mode == "frozen_decoder"]

    # a cache written before check ran through the harness: train.json as it was, no records
    for r in baselines:
        folder = store.checkpoint_dir(r.key)
        info = json.loads((folder / TRAIN_FILE).read_text())
        old = {"steps": info["steps"], "converged": info["converged"], "l0_train": info["l0_train"],
               "controlled": "l0_control" in (info.get("convergence") or {}), "max_steps": 60,
               "state": (info.get("convergence") or {}).get("state")}
        files = {p.name: p.read_bytes() for p in folder.iterdir() if p.name not in (TRAIN_FILE, MARKER)}
        store.write_checkpoint(r.key, lambda path, f=files: [(path / n).write_bytes(b) for n, b in f.items()], old)
        store.result_path(r.key).unlink()
    calls.clear()
    again = run_check(opts, reg)
    assert all(r["cached"] for runs in again.training.values() for r in runs)  # nothing trained again
    for runs in again.training.values():
        for r in runs:
            r["cached"] = False
    for runs in report.training.values():
        for r in runs:
            r["cached"] = False
    assert again.to_dict() == report.to_dict()


def test_a_provided_sae_is_keyed_by_its_weights_cfg_and_input_scale(tmp_path):
    import torch
    from sae_lens import SAE
    from sae_lens.saes.topk_sae import TopKSAE, TopKSAEConfig

    from saebench_sanity.check import provided_key

    sae = TopKSAE(TopKSAEConfig(d_in=8, d_sae=16, k=2))
    with torch.no_grad():
        sae.W_dec.normal_(generator=torch.Generator().manual_seed(0))
    sae.save_model(tmp_path / "sae")
    key = provided_key(sae, input_scale=1.0, set_manifest_hash="m")
    assert provided_key(SAE.load_from_disk(str(tmp_path / "sae")), input_scale=1.0, set_manifest_hash="m") == key
    assert provided_key(sae, input_scale=2.0, set_manifest_hash="m") != key
    assert provided_key(sae, input_scale=1.0, set_manifest_hash="other") != key
    with torch.no_grad():
        sae.W_dec[3, 5] = torch.nextafter(sae.W_dec[3, 5], torch.tensor(float("inf")))  # one ulp of one weight
    assert provided_key(sae, input_scale=1.0, set_manifest_hash="m") != key


def test_a_failed_cell_or_metric_of_a_check_is_its_one_line_error_and_a_skip_is_reported(tmp_path):
    from saebench_sanity.check import _recorded_scores
    from saebench_sanity.errors import DataError
    from saebench_sanity.harness.executor import CellOutcome
    from saebench_sanity.harness.plan import Cell, MetricPlan
    from saebench_sanity.results import ResultStore

    store = ResultStore(tmp_path)
    cell = Cell(set_name="s", arch="topk", mode="frozen_decoder", seed=0, d_sae=8, target_l0=2, arch_params={},
                arch_overrides={}, mode_params={}, training=TrainingConfig(), set_manifest_hash="m", key="k" * 24)
    metrics = [MetricPlan(name="a", params={}, needs=frozenset(), key="a:1"),
               MetricPlan(name="b", params={}, needs=frozenset(), key="b:1")]
    ok = CellOutcome(key=cell.key, label=cell.label, status="ok")

    def record(b_entry):
        store.write_result(cell.key, {"key": cell.key, "label": cell.label, "cell": cell.identity(), "status": "ok",
                                      "training": None, "metrics": {
                                          "a:1": {"name": "a", "status": "ok", "scores": {"x": 0.25}}, "b:1": b_entry}})

    record({"name": "b", "status": "skipped", "reason": "needs a judge"})
    scores, skipped, rec = _recorded_scores(store, cell, ok, metrics, "baseline")
    assert (scores, skipped) == ({"a": {"x": 0.25}}, {"b": "needs a judge"})
    assert rec == store.load_result(cell.key)  # the record it read, for the caller's training summary
    record({"name": "b", "status": "error", "error": "ValueError: boom"})
    with pytest.raises(RuntimeError, match="metric 'b' on baseline: ValueError: boom"):
        _recorded_scores(store, cell, ok, metrics, "baseline")
    for kind, error in (("input", DataError), ("bug", RuntimeError)):
        failed = CellOutcome(key=cell.key, label=cell.label, status="failed", error="diverged at step 3",
                             error_kind=kind)
        with pytest.raises(error, match="^baseline: diverged at step 3$"):
            _recorded_scores(store, cell, failed, metrics, "baseline")


@pytest.mark.parametrize("arch, steps", [("relu", 10000), ("gated", 10000), ("topk", 3000)])
def test_check_trains_baselines_on_the_budget_the_leaderboard_gives_that_architecture(arch, steps):
    """The default suite gives the real set's ReLU and Gated a larger maximum than the rest
    (``[sets.NAME.architectures.ARCH] max_steps``); ``saebench check`` reads the same per-architecture
    budget, so a user's ReLU SAE is judged against baselines trained as the board's were."""
    from saebench_sanity.check import baseline_budget
    from saebench_sanity.config import embedded
    from saebench_sanity.harness.plan import build_plan

    set_name = "smollm2-135m-resid12"
    spec = get_registry().get("activation_set", set_name)
    check_training, _, _ = baseline_budget(set_name, spec.training, arch)  # what run_check trains with
    board = build_plan(dataclasses.replace(embedded("default"), sets=[set_name], architectures=[arch]),
                       get_registry(), build_sets=False)
    assert {c.training for c in board.cells} == {check_training}
    assert check_training.max_steps == steps
