"""The executor on tiny real cells: train once, score the SAE loaded back from disk, record skips,
failures and metric errors without stopping, resume without retraining, --force redoes."""

import json

import pytest

from saebench_sanity import config, hookimpl
from saebench_sanity.harness.executor import execute
from saebench_sanity.harness.plan import build_plan
from saebench_sanity.harness.store import ResultStore

torch = pytest.importorskip("torch")


def cfg_for(tmp_path, **run):
    data = {"run": {"sets": ["tiny-gauss"], "architectures": ["topk"], "modes": ["trained", "untrained"],
                    "seeds": [0], "metrics": ["reconstruction", "needs-judge", "exploding", "latent-mean"],
                    "output_dir": str(tmp_path / "out"), **run},
            "training": {"steps": 10, "batch_size": 32, "curve_every": 5, "n_init_samples": 128}}
    return config.from_dict(data)


def run_once(cfg, reg, **kw):
    torch.set_num_threads(1)
    plan = build_plan(cfg, reg, metrics=kw.pop("metrics", None))
    store = ResultStore(cfg.output_dir)
    return plan, store, execute(plan, store, reg, **kw)


def test_cells_are_trained_scored_and_every_branch_is_recorded(tmp_path, fake_registry):
    cfg = cfg_for(tmp_path, architectures=["topk", "broken"])
    plan, store, outcomes = run_once(cfg, fake_registry)
    by = {o.label: o for o in outcomes}
    assert len(outcomes) == 4  # the broken arch did not stop the run
    broken = by["tiny-gauss/broken/trained/s0"]
    assert broken.status == "failed" and "boom" in broken.error and "\n" not in broken.error
    rec = store.load_result(broken.key)
    assert rec["status"] == "failed" and "boom" in rec["error"]

    ok = by["tiny-gauss/topk/trained/s0"]
    assert ok.status == "ok" and ok.trained_now
    rec = store.load_result(ok.key)
    entries = {e["name"]: e for e in rec["metrics"].values()}
    assert entries["needs-judge"]["status"] == "skipped" and "judge" in entries["needs-judge"]["reason"]
    assert entries["exploding"]["status"] == "error" and "metric exploded" in entries["exploding"]["error"]
    assert entries["reconstruction"]["status"] == "ok" and "details" not in entries["reconstruction"]
    assert entries["latent-mean"]["details"]["n_eval"] > 0  # what a metric reports beside its scores
    assert entries["reconstruction"]["score_info"]["explained_variance"]["direction"] == "higher"
    assert rec["training"]["steps"] == 10 and isinstance(rec["training"]["converged"], bool)
    train = store.load_train_info(ok.key)
    assert [s for s, _ in train["loss_curve"]] == [5, 10]
    # float32 training rounds differently at another thread count: the count is part of the record
    import torch

    assert train["threads"] == rec["training"]["threads"] == torch.get_num_threads()
    # and so do the CPU's kernels: the same record on another processor or capability may differ
    assert train["cpu_kernels"] == rec["training"]["cpu_kernels"]
    assert train["cpu_kernels"]["aten"] == torch.backends.cpu.get_cpu_capability()
    assert json.loads((store.root / "run.json").read_text())["cell_keys"] == plan.cell_keys


def test_scores_come_from_the_sae_loaded_back_from_disk(tmp_path, fake_registry):
    from sae_lens import SAE

    from saebench_sanity.metrics import reconstruction as rec

    cfg = cfg_for(tmp_path, metrics=["reconstruction"])
    plan, store, outcomes = run_once(cfg, fake_registry)
    key = outcomes[0].key
    sae = SAE.load_from_disk(str(store.checkpoint_dir(key)))
    x = plan.sets["tiny-gauss"].eval_activations()
    with torch.no_grad():
        ev = rec.explained_variance(x, sae.decode(sae.encode(x)))
    stored = next(iter(store.load_result(key)["metrics"].values()))["scores"]["explained_variance"]
    assert stored == pytest.approx(ev, abs=1e-6)


def test_second_run_trains_nothing_and_new_metric_scores_existing_checkpoints(tmp_path, fake_registry):
    cfg = cfg_for(tmp_path, metrics=["reconstruction"])
    _, store, first = run_once(cfg, fake_registry)
    assert all(o.trained_now for o in first)
    _, _, second = run_once(cfg, fake_registry)
    assert not any(o.trained_now for o in second)
    assert all(m["cached"] for o in second for m in o.metrics.values())

    cfg2 = cfg_for(tmp_path, metrics=["reconstruction", "latent-mean"])
    _, _, third = run_once(cfg2, fake_registry)
    assert not any(o.trained_now for o in third)
    assert all(not o.metrics["latent-mean"]["cached"] and o.metrics["latent-mean"]["status"] == "ok" for o in third)
    assert all(o.metrics["reconstruction"]["cached"] for o in third)
    assert set(store.trainings().values()) == {1}

    _, _, forced = run_once(cfg, fake_registry, force=True)
    assert all(o.trained_now for o in forced)
    assert set(store.trainings().values()) == {2}


def test_force_may_name_the_cells_it_redoes(tmp_path, fake_registry):
    """``force`` as a set of cell keys redoes those cells from scratch (trained and every metric
    scored again) and serves the others from the store, in one pass; the pool's and Ray's task
    helpers ship no stored bytes of a forced cell."""
    from saebench_sanity.executors.remote import commit_reply, fully_cached, prepare_task, work_cohort
    from saebench_sanity.harness.executor import cohorts, forced

    assert forced(True, "a") and not forced(False, "a")
    assert forced(frozenset({"a"}), "a") and not forced(frozenset({"a"}), "b") and not forced(frozenset(), "a")

    cfg = cfg_for(tmp_path, metrics=["reconstruction"])
    plan, store, first = run_once(cfg, fake_registry)
    redo, kept = first[0].key, first[1].key
    _, _, again = run_once(cfg, fake_registry, force=frozenset({redo}))
    by = {o.key: o for o in again}
    assert by[redo].trained_now and not by[redo].metrics["reconstruction"]["cached"]
    assert not by[kept].trained_now and by[kept].metrics["reconstruction"]["cached"]
    assert store.trainings() == {redo: 2, kept: 1}

    (group,) = cohorts(plan.cells)
    assert fully_cached(group, plan.metrics, store, force=frozenset())
    assert not fully_cached(group, plan.metrics, store, force=frozenset({redo}))
    task = prepare_task(group, plan.metrics, store, set_params=cfg.set_params_for("tiny-gauss"),
                        force=frozenset({redo}), device="cpu")
    assert set(task.seed) == {kept}
    reply = work_cohort(task, registry=fake_registry)
    assert {o.key for o in reply.outcomes if o.trained_now} == {redo}
    commit_reply(reply, store)
    assert store.trainings() == {redo: 3, kept: 1}


def test_a_cached_cell_is_rejudged_by_the_current_undertrained_rule_without_retraining(tmp_path, fake_registry):
    cfg = cfg_for(tmp_path, metrics=["reconstruction"], modes=["trained"])
    _, store, (first,) = run_once(cfg, fake_registry)
    # as an older rule would have stored it: a flat curve judged "still improving"
    path = store.checkpoint_dir(first.key) / "train.json"
    info = json.loads(path.read_text())
    info.update(loss_curve=[[5, 1.0], [10, 1.0]], converged=False, convergence={"rel_improvement": 0.5})
    path.write_text(json.dumps(info))
    (path.parent / "COMPLETE").write_text(first.key + "\n")  # an older version's marker: no hashes to check
    _, _, (second,) = run_once(cfg, fake_registry)
    assert not second.trained_now and second.converged is True
    training = store.load_result(first.key)["training"]
    assert training["converged"] is True and training["convergence"]["rel_improvement"] == 0.0
    assert set(store.trainings().values()) == {1}


def test_metric_errors_are_retried_on_the_next_run(tmp_path, fake_registry):
    cfg = cfg_for(tmp_path, metrics=["exploding"], modes=["trained"])
    _, _, first = run_once(cfg, fake_registry)
    _, _, second = run_once(cfg, fake_registry)
    assert first[0].metrics["exploding"]["status"] == second[0].metrics["exploding"]["status"] == "error"
    assert not second[0].metrics["exploding"]["cached"]


def test_keyboard_interrupt_propagates_and_finished_cells_stay(tmp_path, fake_registry):
    from saebench_sanity.harness.executor import NullReporter

    class StopAfterFirst(NullReporter):
        def cell_done(self, cell, outcome):
            raise KeyboardInterrupt

    cfg = cfg_for(tmp_path, metrics=["reconstruction"])
    with pytest.raises(KeyboardInterrupt):
        run_once(cfg, fake_registry, reporter=StopAfterFirst())
    store = ResultStore(cfg.output_dir)
    # the cohort (trained + untrained of seed 0) trained together and saved both checkpoints before
    # the interrupt; the first cell's record is complete, the second was not scored yet
    assert len(store.iter_results()) == 1 and len(store.trainings()) == 2
    _, _, resumed = run_once(cfg, fake_registry)
    assert [o.trained_now for o in resumed] == [False, False]
    assert [o.status for o in resumed] == ["ok", "ok"] and len(store.iter_results()) == 2


def test_cohorts_group_the_modes_of_one_seed(tmp_path, fake_registry):
    from saebench_sanity.harness.executor import cohorts

    cfg = cfg_for(tmp_path, seeds=[0, 1], architectures=["topk", "relu"])
    plan = build_plan(cfg, fake_registry)
    groups = cohorts(plan.cells)
    assert len(groups) == 4  # 2 architectures x 2 seeds
    for group in groups:
        assert sorted(c.mode for c in group) == ["trained", "untrained"]
        assert len({(c.arch, c.seed, c.set_name) for c in group}) == 1
    assert sorted(c.key for g in groups for c in g) == sorted(plan.cell_keys)


def test_a_failing_member_fails_alone(tmp_path, fake_registry, monkeypatch):
    from saebench_sanity.errors import DataError
    from saebench_sanity.training import cohort

    real = cohort.train_cells

    def first_member_diverges(members, *args, **kwargs):
        results = real(members, *args, **kwargs)
        return [DataError("diverged (loss nan) at step 3"), *results[1:]]

    monkeypatch.setattr(cohort, "train_cells", first_member_diverges)
    cfg = cfg_for(tmp_path, metrics=["reconstruction"])
    _, store, outcomes = run_once(cfg, fake_registry)
    assert [o.status for o in outcomes] == ["failed", "ok"]
    assert "diverged (loss nan) at step 3" in outcomes[0].error
    assert len(store.trainings()) == 1 and store.load_result(outcomes[0].key)["status"] == "failed"


class _JointPlugin:
    """A metric with a ``batch_factory``: the mean |latent| of each SAE, scored a cohort at a
    time; records every joint call; its first SAE gets a NotApplicable item (a per-SAE skip)."""

    calls: list[int] = []

    @hookimpl
    def saebench_register_metrics(self, register):
        from saebench_sanity.metrics.base import MetricResult, MetricSpec, NotApplicable, ScoreInfo

        def one(ctx):
            return MetricResult({"v": float(ctx.feature_acts.abs().mean())})

        def many(ctxs):
            _JointPlugin.calls.append(len(ctxs))
            return [NotApplicable("first of its cohort (tests)")] + [one(ctx) for ctx in ctxs[1:]]

        register(MetricSpec(name="joint", description="mean |latent|, scored a cohort at a time (tests)", factory=one,
                            batch_factory=many, scores={"v": ScoreInfo(direction=None)}))


def test_a_cohort_is_scored_in_one_call_by_a_metric_with_a_batch_factory(tmp_path, fake_registry):
    """Every cell of a cohort that still needs a batched metric is scored in one
    ``batch_factory`` call; each cell's stored score equals what the per-SAE factory gives it
    (rescored alone with ``--force``), each entry says it was scored with its cohort, and a
    re-run recomputes nothing."""
    from saebench_sanity.registry import Registry

    from tests.conftest import FakePlugin

    reg = Registry(load_entry_points=False, extra_plugins=[FakePlugin(), _JointPlugin()])
    _JointPlugin.calls.clear()
    cfg = cfg_for(tmp_path, modes=["trained", "frozen_decoder", "untrained"], seeds=[0, 1], metrics=["joint", "reconstruction"])
    plan, store, outcomes = run_once(cfg, reg)
    assert _JointPlugin.calls == [3, 3]  # one call per cohort (seed), every mode in it
    joint = {o.key: store.load_result(o.key)["metrics"] for o in outcomes}
    entries = [next(e for e in m.values() if e["name"] == "joint") for m in joint.values()]
    assert all(e["batched"] and e["seconds"] >= 0 for e in entries)
    assert sorted(e["status"] for e in entries) == ["ok"] * 4 + ["skipped"] * 2  # one item per cell, in order
    assert all(e["reason"] == "first of its cohort (tests)" for e in entries if e["status"] == "skipped")
    run_once(cfg, reg)
    assert _JointPlugin.calls == [3, 3]  # recorded (a NotApplicable skip is kept): nothing recomputed

    from saebench_sanity.harness.executor import run_cell

    aset = reg.get("activation_set", "tiny-gauss").build()
    for cell in plan.cells:  # the per-SAE path (no cohort) gives every cell the same number
        want = next(e for e in joint[cell.key].values() if e["name"] == "joint")
        if want["status"] != "ok":
            continue
        alone = run_cell(cell, [mp for mp in plan.metrics if mp.name == "joint"], aset, aset.eval_activations, store, reg,
                         force=True)
        assert alone.metrics["joint"]["status"] == "ok"
        got = next(e for e in store.load_result(cell.key)["metrics"].values() if e["name"] == "joint")
        assert "batched" not in got and got["scores"] == want["scores"]


def test_a_batch_factory_that_returns_the_wrong_number_of_items_is_each_members_error():
    from saebench_sanity.errors import PluginError
    from saebench_sanity.metrics.base import MetricContext, MetricSpec, ScoreInfo

    spec = MetricSpec(name="short", description="t", factory=lambda ctx: {"v": 1.0}, batch_factory=lambda ctxs: [],
                      scores={"v": ScoreInfo(direction=None)})
    ctxs = [MetricContext(torch.nn.Identity(), None, torch.zeros(1, 2), device="cpu") for _ in range(2)]
    with pytest.raises(PluginError, match="returned 0 items for 2 contexts"):
        spec.evaluate_many(ctxs)
    assert [dict(r) for r in spec.evaluate_many(ctxs[:1])] == [{"v": 1.0}]  # one context: the per-SAE factory


def test_cpu_kernels_name_the_capability_and_the_kernel_settings_that_are_set(monkeypatch):
    import torch

    from saebench_sanity.harness.executor import KERNEL_ENV, cpu_kernels

    for name in KERNEL_ENV:
        monkeypatch.delenv(name, raising=False)
    plain = cpu_kernels()
    assert set(plain) == {"cpu", "aten"} and plain["cpu"]
    assert plain["aten"] == torch.backends.cpu.get_cpu_capability()
    monkeypatch.setenv("MKL_CBWR", "COMPATIBLE")
    monkeypatch.setenv("UNRELATED_SETTING", "1")
    assert cpu_kernels() == {**plain, "MKL_CBWR": "COMPATIBLE"}
