"""Executors, same run, same machine: the quick suite's wall time with ``--executor ray`` against
``local``, Ray's start-up cost and its per-task overhead.

* ``test_quick_suite_ray_vs_local``: ``saebench run --quick`` from an empty output folder, each as
  its own process (what a user waits for: interpreter, imports, planning, training, scoring,
  leaderboard), with ``--executor local --jobs 1`` (this process), ``--executor local`` (default:
  a pool of one process per core), ``--executor ray`` (starts a local Ray instance with one CPU
  per core). Two rounds, the second in reverse order, minimum of each; the ratios are in
  ``extra_info`` and printed. The six result folders must hold the same SAEs and scores.
* ``test_ray_startup_and_task_overhead``: ``ray.init`` of a local instance with 2 CPUs (the
  start-up), the first no-op task (its worker process starts), then 200 no-op ``num_cpus=1``
  tasks submitted at once on the warm workers (the scheduling + round-trip cost per task), and
  ``ray.shutdown``.

Run (skipped by default through ``--benchmark-skip``)::

    python -m pytest benchmarks/test_bench_executors.py -o addopts="" --benchmark-only --benchmark-enable -s
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("pytest_benchmark")
ray = pytest.importorskip("ray", reason='ray is not installed (pip install "saebench-sanity[ray]")')

RUNS = {"local --jobs 1": ["--executor", "local", "--jobs", "1"], "local": ["--executor", "local"],
        "ray": ["--executor", "ray"]}


def _wall(args: list[str], out: str) -> float:
    cmd = [sys.executable, "-m", "saebench_sanity.cli", "run", "--quick", "--out", out, "--no-plots", "--quiet", *args]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return time.perf_counter() - t0


def _fingerprint(root: Path) -> dict[str, object]:
    """Per cell: sha256 of the weights, cfg.json (its key order varies between runs) and train.json
    by content, the record without wall-clock ``seconds``."""
    from saebench_sanity.harness.store import ResultStore

    def strip(obj):
        if isinstance(obj, dict):
            return {k: strip(v) for k, v in sorted(obj.items()) if k != "seconds"}
        return [strip(v) for v in obj] if isinstance(obj, list) else obj

    store = ResultStore(root)
    return {key: (hashlib.sha256((store.checkpoint_dir(key) / "sae_weights.safetensors").read_bytes()).hexdigest(),
                  strip(json.loads((store.checkpoint_dir(key) / "cfg.json").read_text())),
                  strip(store.load_train_info(key)), strip(store.load_result(key)))
            for key in store.result_keys()}


def test_quick_suite_ray_vs_local(benchmark, tmp_path):
    walls: dict[str, float] = {}

    def once() -> None:
        # two rounds, the second in reverse order, fresh output folders: the minimum of each
        # executor, so a load that changes during the run weighs on every executor alike
        order = list(RUNS)
        for round_, names in enumerate((order, order[::-1])):
            for name in names:
                out = tmp_path / f"{round_}-{name.replace(' ', '_').replace('-', '')}"
                wall = _wall(RUNS[name], str(out))
                walls[name] = min(walls.get(name, wall), wall)

    benchmark.pedantic(once, rounds=1, iterations=1)
    prints = {p.name: _fingerprint(p) for p in sorted(tmp_path.iterdir())}
    assert len(set(map(repr, prints.values()))) == 1, "the executors stored different results"
    info = {f"wall_s[{k}]": round(v, 1) for k, v in walls.items()}
    info["identical_results"] = len(prints)
    info["ray / local"] = round(walls["ray"] / walls["local"], 2)
    info["ray / local --jobs 1"] = round(walls["ray"] / walls["local --jobs 1"], 2)
    benchmark.extra_info.update(info)
    print("\n" + ", ".join(f"{k}: {v}" for k, v in info.items()))


def test_ray_startup_and_task_overhead(benchmark):
    if ray.is_initialized():
        ray.shutdown()
    n_tasks = 200
    info: dict[str, float] = {}

    @ray.remote(num_cpus=1)
    def noop(i: int) -> int:
        return i

    def once() -> None:
        t0 = time.perf_counter()
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        t1 = time.perf_counter()
        ray.get(noop.remote(0))
        t2 = time.perf_counter()
        ray.get([noop.remote(i) for i in range(4)])  # both workers up before timing the batch
        t3 = time.perf_counter()
        ray.get([noop.remote(i) for i in range(n_tasks)])
        t4 = time.perf_counter()
        ray.shutdown()
        t5 = time.perf_counter()
        info.update({"ray.init_s": round(t1 - t0, 2), "first_task_s": round(t2 - t1, 2),
                     "per_task_ms": round((t4 - t3) / n_tasks * 1e3, 2), "shutdown_s": round(t5 - t4, 2)})

    benchmark.pedantic(once, rounds=1, iterations=1)
    benchmark.extra_info.update(info)
    print("\n" + ", ".join(f"{k}: {v}" for k, v in info.items()))
