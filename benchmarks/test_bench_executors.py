"""Executors, same run, same machine: the quick suite's wall time with ``--executor ray`` against
``local``, Ray's start-up cost and its per-task overhead.

* ``test_quick_suite_ray_vs_local``: ``saebench run --quick`` from an empty output folder, each as
  its own process (what a user waits for: interpreter, imports, planning, training, scoring,
  leaderboard), with ``--executor local --jobs 1`` (this process), ``--executor local`` (default:
  a pool of one process per core), ``--executor ray`` (starts a local Ray instance with one CPU
  per core). One round each, in that order; the ratios are in ``extra_info`` and printed.
* ``test_ray_startup_and_task_overhead``: ``ray.init`` of a local instance with 2 CPUs (the
  start-up), the first no-op task (its worker process starts), then 200 no-op ``num_cpus=1``
  tasks submitted at once on the warm workers (the scheduling + round-trip cost per task), and
  ``ray.shutdown``.

Run (skipped by default through ``--benchmark-skip``)::

    python -m pytest benchmarks/test_bench_executors.py -o addopts="" --benchmark-only --benchmark-enable -s
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

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


def test_quick_suite_ray_vs_local(benchmark, tmp_path):
    walls: dict[str, float] = {}

    def once() -> None:
        for name, args in RUNS.items():
            walls[name] = _wall(args, str(tmp_path / name.replace(" ", "_").replace("-", "")))

    benchmark.pedantic(once, rounds=1, iterations=1)
    info = {f"wall_s[{k}]": round(v, 1) for k, v in walls.items()}
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
