"""The warning when a run's torch threads and the machine's load ask for more cores than there are
(``executors.base.oversubscription``): shown, one line, and the run goes on; never for
single-thread processes or an idle machine; and the thread count a process sets reaching every
CPU thread pool it loads (``executors.base.set_cpu_threads``)."""

import logging
import os

import pytest

from saebench_sanity.executors import base, local


def test_a_multithreaded_process_beside_busy_cores_is_warned_about():
    note = base.oversubscription(1, 2, cores=2, load=1.9)
    assert note is not None and "--threads 1" in note and "\n" not in note
    assert "1 process(es) x 2 torch threads on 2 core(s)" in note and "load is already 1.9" in note


@pytest.mark.parametrize("processes,threads,cores,load", [
    (1, 2, 2, 0.0),    # an idle machine: torch's threads have their cores
    (1, 2, 2, 0.4),    # within half a core of the rest of the machine
    (2, 1, 2, 6.0),    # one thread per process: the OS shares cores fairly, nothing stalls a sibling thread
    (1, 4, 8, 3.0),    # enough cores for both
])
def test_no_warning_where_the_threads_have_their_cores(processes, threads, cores, load):
    assert base.oversubscription(processes, threads, cores=cores, load=load) is None


def test_the_local_executor_counts_torch_threads_for_one_job_and_cores_over_jobs_for_a_pool(monkeypatch):
    import torch

    seen = []
    monkeypatch.setattr(local, "default_jobs", lambda: 4)
    monkeypatch.setattr(local, "oversubscription", lambda p, t, cores: seen.append((p, t, cores)))
    monkeypatch.setattr(torch, "get_num_threads", lambda: 3)
    local.local_oversubscription(1)
    local.local_oversubscription(2)
    local.local_oversubscription(None)
    assert seen == [(1, 3, 4), (2, 2, 4), (4, 1, 4)]


def test_the_local_executor_logs_it_as_a_warning(monkeypatch, caplog):
    """Logged where the executor knows its processes and threads (``saebench run`` and
    ``saebench check`` both run through it), and shown by the CLI as a warning."""
    import torch

    monkeypatch.setattr(local, "default_jobs", lambda: 2)
    monkeypatch.setattr(base.os, "getloadavg", lambda: (2.0, 2.0, 2.0))
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    with caplog.at_level(logging.WARNING, logger="saebench_sanity.executors.local"):
        local.warn_oversubscription(1)
    assert [r.getMessage() for r in caplog.records if "--threads 1" in r.getMessage()]
    caplog.clear()
    monkeypatch.setattr(base.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    with caplog.at_level(logging.WARNING, logger="saebench_sanity.executors.local"):
        local.warn_oversubscription(1)
    assert not caplog.records


def test_the_local_executor_warns_only_when_it_has_work(tmp_path, monkeypatch, fake_registry):
    """A re-run that finds every cell stored only reads: no warning, whatever ``--jobs``;
    one that trains (here: ``force``) is checked, at one job too."""
    import torch

    from saebench_sanity import config
    from saebench_sanity.harness.executor import execute
    from saebench_sanity.harness.plan import build_plan
    from saebench_sanity.harness.store import ResultStore

    torch.set_num_threads(1)
    cfg = config.from_dict({"run": {"sets": ["tiny-gauss"], "architectures": ["topk"], "modes": ["trained"],
                                    "seeds": [0], "metrics": ["reconstruction"], "output_dir": str(tmp_path / "out")},
                            "training": {"steps": 10, "batch_size": 32, "curve_every": 5, "n_init_samples": 128}})
    plan = build_plan(cfg, fake_registry)
    store = ResultStore(cfg.output_dir)
    warned = []
    monkeypatch.setattr(local, "warn_oversubscription", warned.append)
    execute(plan, store, fake_registry, jobs=1)
    assert warned == [1]
    for jobs in (1, 2, None):
        execute(plan, store, fake_registry, jobs=jobs)
    assert warned == [1]
    execute(plan, store, fake_registry, jobs=1, force=True)
    assert warned == [1, 1]


def test_a_worker_limits_every_cpu_thread_pool_also_those_loaded_after_it_starts():
    """``--threads`` / a pool worker's share of the cores covers numpy's, scipy's and
    scikit-learn's BLAS and OpenMP pools too, including those loaded only when a metric first fits
    a probe (they read their thread count when they load); torch's setting alone left them at one
    thread per core beside the other worker."""
    import subprocess
    import sys

    code = """
import os
from saebench_sanity.executors.local import _worker_init
_worker_init(1, os.getppid())
import numpy as np
from sklearn.linear_model import LogisticRegression
LogisticRegression().fit(np.random.default_rng(0).random((40, 3)), np.arange(40) % 2)
import threadpoolctl, torch
pools = threadpoolctl.threadpool_info()
print(torch.get_num_threads(), len(pools), sorted({p["num_threads"] for p in pools}))
"""
    env = {k: v for k, v in os.environ.items() if k not in base.THREAD_ENV}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    torch_threads, n_pools, counts = out.stdout.split(maxsplit=2)
    assert torch_threads == "1" and int(n_pools) >= 2 and counts.strip() == "[1]", out.stdout
