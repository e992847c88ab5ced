"""The order in which a worker pool starts cohorts: the longest estimated first
(``harness.executor.longest_first``), and scripts/schedule-report.py, which replays both orders."""

import importlib.util
from pathlib import Path

import pytest

from saebench_sanity import config
from saebench_sanity.harness.executor import cohort_estimate, cohorts, estimate_seconds, longest_first
from saebench_sanity.harness.plan import build_plan

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


def test_the_pool_submits_in_longest_first_order(tmp_path, fake_registry, monkeypatch):
    """The local pool hands out cohorts in ``longest_first`` order (recorded where each task is
    prepared; the pool itself is a stand-in that stops after the first submissions)."""
    import concurrent.futures

    from saebench_sanity.executors import local

    plan = _plan(tmp_path, fake_registry, sets={"tiny-gauss": {"architectures": {"relu": {"max_steps": 100}}}})
    submitted = []

    class Stop(Exception):
        pass

    class FakePool:
        def __init__(self, *a, **k):
            pass

        def submit(self, fn, task):
            submitted.append(task)
            if len(submitted) == 4:
                raise Stop
            return concurrent.futures.Future()

        def shutdown(self, *a, **k):
            pass

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", FakePool)
    monkeypatch.setattr(local, "prepare_task", lambda group, *a, **k: (group[0].arch, group[0].seed))
    from saebench_sanity.harness.store import ResultStore

    with pytest.raises(Stop):
        local.LocalExecutor(jobs=2).run(plan, ResultStore(tmp_path / "out"), fake_registry, force=False,
                                        reporter=None, device="cpu")
    assert submitted == [("relu", 0), ("relu", 1), ("topk", 0), ("topk", 1)]


def _script():
    spec = importlib.util.spec_from_file_location("schedule_report", ROOT / "scripts" / "schedule-report.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


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
    assert len(spans) == 3 and all(s >= bound - 0.05 for s in spans)
