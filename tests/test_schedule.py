"""The order in which a worker pool starts cohorts: the longest estimated first
(``harness.executor.longest_first``), and scripts/schedule-report.py, which replays both orders."""

from pathlib import Path

import pytest

from saebench_sanity import config
from saebench_sanity.harness.executor import cohort_estimate, cohorts, estimate_seconds, longest_first
from saebench_sanity.harness.plan import build_plan
from _scripts import load_script

ROOT = Path(__file__).resolve().parents[1]


def _plan(tmp_path, reg, **sets):
    data = {"run": {"sets": ["tiny-gauss"], "architectures": ["topk", "relu"], "modes": ["trained", "untrained"],
                    "seeds": [0, 1], "metrics": ["reconstruction"], "output_dir": str(tmp_path / "out")},
            "training": {"steps": 10, "batch_size": 32, "curve_every": 5, "n_init_samples": 128}, **sets}
    return build_plan(config.from_dict(data), reg)


def _member(max_steps, batch, d_sae):
    return {"d_sae": d_sae, "training": {"max_steps": max_steps, "batch_size": batch}}


def test_estimate_is_steps_times_a_step_plus_model_metrics():
    from saebench_sanity.harness import executor as ex

    one = estimate_seconds([_member(100, 256, 1024)], 32, 0, 1)
    assert one == pytest.approx(100 * (ex.STEP_OVERHEAD_S + 256 * 32 * 1024 / ex.MACS_PER_S))
    assert estimate_seconds([_member(100, 256, 1024)] * 4, 32, 0, 5) == pytest.approx(4 * one)
    assert estimate_seconds([], 576, 3, 5) == pytest.approx(3 * ex.MODEL_METRIC_S * 5)  # nothing left to train
    assert estimate_seconds([_member(100, 256, 1024)], None, 0, 1) == estimate_seconds([_member(100, 256, 1024)], 512, 0, 1)


def test_longest_first_starts_the_biggest_budget_and_keeps_plan_order_on_ties(tmp_path, fake_registry):
    # relu gets ten times topk's budget: its two cohorts (seeds 0, 1) go first, each group in plan order
    plan = _plan(tmp_path, fake_registry, architectures={"relu": {}},
                 sets={"tiny-gauss": {"architectures": {"relu": {"max_steps": 100}}}})
    groups = cohorts(plan.cells)
    assert [(g[0].arch, g[0].seed) for g in groups] == [("topk", 0), ("topk", 1), ("relu", 0), ("relu", 1)]
    ordered = longest_first(groups, plan)
    assert [(g[0].arch, g[0].seed) for g in ordered] == [("relu", 0), ("relu", 1), ("topk", 0), ("topk", 1)]
    assert sorted(c.key for g in ordered for c in g) == sorted(plan.cell_keys)  # a reordering, nothing lost
    # the untrained reference takes no step: only the trained member counts
    relu = ordered[0]
    assert cohort_estimate(relu, plan) == pytest.approx(estimate_seconds(
        [_member(100, 32, relu[0].d_sae)], int(plan.sets["tiny-gauss"].d_in), 0, 2))


def test_a_cohort_already_trained_counts_only_its_metrics(tmp_path, fake_registry, monkeypatch):
    from saebench_sanity.harness import executor as ex
    from saebench_sanity.harness.store import ResultStore

    plan = _plan(tmp_path, fake_registry)
    group = cohorts(plan.cells)[0]
    store = ResultStore(tmp_path / "out")
    assert cohort_estimate(group, plan, store) > 0
    monkeypatch.setattr(ex, "has_current_checkpoint", lambda store, key, training: True)
    assert cohort_estimate(group, plan, store) == 0.0  # no model-based metric on this set
    assert cohort_estimate(group, plan, store, force=True) > 0  # --force trains it again


class _FakePool:
    """Stands in for a worker process: records what it is given, each task done at once."""

    made: list = []

    def __init__(self, *a, **k):
        self.tasks = []
        _FakePool.made.append(self)

    def submit(self, fn, task):
        import concurrent.futures

        self.tasks.append(task)
        fut = concurrent.futures.Future()
        fut.set_result(task)
        return fut

    def shutdown(self, *a, **k):
        pass


def _run_pool(tmp_path, fake_registry, monkeypatch, plan, pool=_FakePool):
    import concurrent.futures

    from saebench_sanity.executors import local
    from saebench_sanity.harness.executor import NullReporter
    from saebench_sanity.harness.store import ResultStore

    _FakePool.made = []
    submitted = []
    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", pool)

    def prepare(group, *a, **k):
        submitted.append((group[0].arch, group[0].seed))
        return submitted[-1]

    monkeypatch.setattr(local, "prepare_task", prepare)
    monkeypatch.setattr(local, "commit_reply", lambda reply, store: [])
    local.LocalExecutor(jobs=2).run(plan, ResultStore(tmp_path / "out"), fake_registry, force=False,
                                    reporter=NullReporter(), device="cpu")
    return submitted, [p.tasks for p in _FakePool.made]


def test_the_pool_submits_in_longest_first_order(tmp_path, fake_registry, monkeypatch):
    """The local pool hands out cohorts in ``longest_first`` order (recorded where each task is
    prepared; each worker is a stand-in that finishes a task at once)."""
    plan = _plan(tmp_path, fake_registry, sets={"tiny-gauss": {"architectures": {"relu": {"max_steps": 100}}}})
    submitted, per_worker = _run_pool(tmp_path, fake_registry, monkeypatch, plan)
    assert submitted == [("relu", 0), ("relu", 1), ("topk", 0), ("topk", 1)]
    assert per_worker == [[("relu", 0), ("topk", 0)], [("relu", 1), ("topk", 1)]]


def test_cohorts_sharing_a_generated_stream_form_one_unit(tmp_path, fake_registry):
    from saebench_sanity.harness import executor as ex

    plan = _plan(tmp_path, fake_registry, sets={"tiny-gauss": {"architectures": {"relu": {"max_steps": 100}}}})
    groups = cohorts(plan.cells)
    label = lambda units: [[(g[0].arch, g[0].seed) for g in u] for u in units]  # noqa: E731
    # a set that draws its batches afresh: every cohort alone, longest first
    assert label(ex.stream_units(groups, plan, jobs=1)) == [[("relu", 0)], [("relu", 1)], [("topk", 0)], [("topk", 1)]]
    plan.sets["tiny-gauss"].replays_streams = True
    # one worker: a unit per (set, seed, batch size), its longest cohort first; plan order on request
    assert label(ex.stream_units(groups, plan, jobs=1)) == [[("relu", 0), ("topk", 0)], [("relu", 1), ("topk", 1)]]
    assert label(ex.stream_units(groups, plan, jobs=1, longest=False)) == [[("topk", 0), ("relu", 0)],
                                                                           [("topk", 1), ("relu", 1)]]
    # two workers and two units: too coarse to balance, every cohort alone
    assert label(ex.stream_units(groups, plan, jobs=2)) == [[("relu", 0)], [("relu", 1)], [("topk", 0)], [("topk", 1)]]


def test_a_worker_runs_a_whole_unit(tmp_path, fake_registry, monkeypatch):
    """With units, each worker gets every cohort of one (set, seed): the stream is drawn once."""
    from saebench_sanity.harness import executor as ex

    plan = _plan(tmp_path, fake_registry, sets={"tiny-gauss": {"architectures": {"relu": {"max_steps": 100}}}})
    plan.sets["tiny-gauss"].replays_streams = True
    monkeypatch.setattr(ex, "UNITS_PER_WORKER", 1)
    submitted, per_worker = _run_pool(tmp_path, fake_registry, monkeypatch, plan)
    assert per_worker == [[("relu", 0), ("topk", 0)], [("relu", 1), ("topk", 1)]]
    assert sorted(submitted) == sorted(t for tasks in per_worker for t in tasks)


def test_a_dry_worker_takes_a_waiting_cohort_of_another_unit(tmp_path, fake_registry, monkeypatch):
    """One unit of four cohorts and two workers: the second worker, with no unit left, takes the
    unit's last waiting cohort instead of idling."""
    from saebench_sanity.harness import executor as ex

    plan = _plan(tmp_path, fake_registry, run={"sets": ["tiny-gauss"], "architectures": ["topk", "relu", "batchtopk", "jumprelu"],
                                               "modes": ["trained"], "seeds": [0], "metrics": ["reconstruction"],
                                               "output_dir": str(tmp_path / "out")})
    plan.sets["tiny-gauss"].replays_streams = True
    monkeypatch.setattr(ex, "UNITS_PER_WORKER", 0)
    (unit,) = ex.stream_units(cohorts(plan.cells), plan, jobs=2)
    order = [(g[0].arch, g[0].seed) for g in unit]
    _, per_worker = _run_pool(tmp_path, fake_registry, monkeypatch, plan)
    assert per_worker == [order[:3], order[3:]]


def test_a_slot_whose_worker_died_gets_a_new_one(tmp_path, fake_registry, monkeypatch):
    """A worker that died breaks its one-process pool: the slot starts a new worker and goes on."""
    from concurrent.futures.process import BrokenProcessPool

    class Breaking(_FakePool):
        def submit(self, fn, task):
            if len(_FakePool.made) == 1:  # the first worker is dead by its first task
                raise BrokenProcessPool("a worker died")
            return super().submit(fn, task)

    plan = _plan(tmp_path, fake_registry, run={"sets": ["tiny-gauss"], "architectures": ["topk"], "modes": ["trained"],
                                               "seeds": [0], "metrics": ["reconstruction"],
                                               "output_dir": str(tmp_path / "out")})
    submitted, per_worker = _run_pool(tmp_path, fake_registry, monkeypatch, plan, pool=Breaking)
    assert submitted == [("topk", 0)] and per_worker == [[], [("topk", 0)]]


def _script():
    return load_script("schedule-report.py")


def test_makespan_is_list_scheduling():
    makespan = _script().makespan
    assert makespan([1, 1, 1, 1, 4], 2) == 6  # the long one starts last: one worker idles
    assert makespan([4, 1, 1, 1, 1], 2) == 4  # longest first
    assert makespan([3, 3, 2, 2, 2], 2) == 7  # LPT is not always optimal (6 is: 3+3 | 2+2+2)
    assert makespan([5], 3) == 5


def test_report_replays_a_committed_board():
    import re
    import subprocess
    import sys

    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "schedule-report.py"),
                          str(ROOT / "leaderboards" / "results" / "real"), "--jobs", "2"],
                         check=True, capture_output=True, text=True).stdout.splitlines()
    head = re.match(r"(\d+) cohorts, ([\d.]+) min measured in all, longest ([\d.]+) min .*lower bound ([\d.]+) min", out[0])
    assert head, out[0]
    n, (total, longest, bound) = int(head[1]), map(float, head.groups()[1:])
    assert n == 18  # 6 architectures x 3 seeds
    assert bound == pytest.approx(max(total / 2, longest), abs=0.11)
    spans = [float(re.search(r"([\d.]+) min", line)[1]) for line in out[1:]]
    assert len(spans) == 4 and all(s >= bound - 0.05 for s in spans)


def test_report_groups_cohorts_by_the_sets_replays_streams_attribute():
    """The report's units follow the executor's rule (a set's ``replays_streams``), not the
    set's family: a synthetic cohort gets its (set, seed, batch size) key, a real one none, and a
    set that says it does not replay gets none whatever its family."""
    from types import SimpleNamespace

    mod = _script()
    group = lambda name: {"cells": [{"cell": {"set": name, "seed": 1, "training": {"batch_size": 256}}}]}  # noqa: E731

    class Registry:
        def get(self, kind, name):
            replays = {"gen": True, "gen-no-replay": False}.get(name)
            built = SimpleNamespace() if replays is None else SimpleNamespace(replays_streams=replays)
            return SimpleNamespace(family="synthetic", build=lambda: built)

    mod._REPLAYS.clear()
    assert mod.stream_key(group("gen"), Registry()) == ("gen", 1, 256)
    assert mod.stream_key(group("gen-no-replay"), Registry()) is None
    assert mod.stream_key(group("no-attribute"), Registry()) is None
    from saebench_sanity.registry import get_registry

    mod._REPLAYS.clear()
    assert mod.stream_key(group("synth-zipf"), get_registry()) == ("synth-zipf", 1, 256)
    assert mod.stream_key(group("smollm2-135m-resid12"), get_registry()) is None
