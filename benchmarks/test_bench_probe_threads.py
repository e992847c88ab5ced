"""Sparse probing's logistic-regression fits on one thread against scikit-learn's default pools
(one OpenMP and one OpenBLAS thread per core), same run, one process, interleaved.

A suite worker (``--jobs 2``, one torch thread each) used to leave numpy's, scipy's and
scikit-learn's pools at their defaults, since ``torch.set_num_threads`` does not reach them
(``executors.base.set_cpu_threads`` now does). The ``busy`` case runs the fits beside one
single-thread process doing matrix products on the other core, as the second worker does; ``idle``
runs them alone. Each round fits what one SAE's ``sparse_probing`` fits on the built-in tasks'
shapes (four tasks of 4-6 classes, balanced one-vs-rest, top-1/2/5 latents of 1,152, 25 train
and test examples per class) plus the reference probes on all 576 dimensions. The two paths'
accuracies must be equal; ``seconds`` of each and their ratio are in ``extra_info`` and printed.

Run (skipped by default through ``--benchmark-skip``)::

    python -m pytest benchmarks/test_bench_probe_threads.py -o addopts="" --benchmark-only --benchmark-enable -s
"""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("pytest_benchmark")

ROUNDS = 3
#: (classes, examples per class) of the four default tasks' shapes
TASKS = ((5, 25), (4, 25), (6, 25), (5, 25))
BUSY = "import torch\ntorch.set_num_threads(1)\na = torch.randn(512, 512)\nwhile True:\n    a @ a\n"


def _task(classes: int, per_class: int, d: int, seed: int, sparse: bool) -> tuple:
    """Features ``[n, d]`` with a class-dependent mean (non-negative and mostly zero when
    ``sparse``, like pooled SAE latents) and class-name labels, for train and test."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0, 1, (classes, d))
    out = []
    for _ in range(2):
        labels = np.repeat(np.arange(classes), per_class)
        x = means[labels] + rng.normal(0, 2, (len(labels), d))
        if sparse:
            x = np.maximum(x - 2.5, 0)
        out += [x.astype(np.float32), [f"c{v}" for v in labels]]
    return tuple(out)


def _fits(tasks_sparse: list, tasks_dense: list) -> list[float]:
    from saebench_sanity.metrics.probing import one_vs_rest_accuracy

    out = [one_vs_rest_accuracy(xtr, ytr, xte, yte, k=k, seed=0)
           for xtr, ytr, xte, yte in tasks_sparse for k in (1, 2, 5)]
    out += [one_vs_rest_accuracy(xtr, ytr, xte, yte, k=None, seed=0) for xtr, ytr, xte, yte in tasks_dense]
    return out


@pytest.mark.parametrize("beside", ["idle", "busy"])
def test_bench_probe_fits_one_thread_vs_default_pools(benchmark, beside):
    from threadpoolctl import threadpool_limits

    sparse = [_task(c, n, 1152, i, True) for i, (c, n) in enumerate(TASKS)]
    dense = [_task(c, n, 576, 10 + i, False) for i, (c, n) in enumerate(TASKS)]
    busy = subprocess.Popen([sys.executable, "-c", BUSY]) if beside == "busy" else None
    seconds = {"one_thread": 0.0, "default_pools": 0.0}
    answers: dict[str, list[float]] = {}
    try:
        if busy is not None:
            time.sleep(2.0)  # the busy process is importing torch
        _fits(sparse[:1], dense[:1])  # scikit-learn's import and first-call costs, outside the timing

        def one_round() -> None:
            for name in seconds:
                t0 = time.perf_counter()
                if name == "one_thread":
                    with threadpool_limits(limits=1):
                        answers[name] = _fits(sparse, dense)
                else:
                    answers[name] = _fits(sparse, dense)
                seconds[name] += time.perf_counter() - t0

        benchmark.pedantic(one_round, rounds=ROUNDS, iterations=1)
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
    assert answers["one_thread"] == answers["default_pools"]
    ratio = seconds["default_pools"] / seconds["one_thread"]
    benchmark.extra_info.update({k: round(v / ROUNDS, 3) for k, v in seconds.items()})
    benchmark.extra_info["default_over_one_thread"] = round(ratio, 2)
    print(f"\n{beside}: probe fits per round {seconds['one_thread'] / ROUNDS:.2f} s on one thread, "
          f"{seconds['default_pools'] / ROUNDS:.2f} s on the default pools ({ratio:.2f}x)")
