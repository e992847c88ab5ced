"""The soft-frozen decoder's cone projection, run after every step of a soft-frozen member:
``modes.ConeProjection`` (float64 directions kept, one reused buffer) against the formula
evaluated afresh each call (tests/_previous_paths.py, the previous path), same run, one thread,
interleaved, minimum of each.

Rows: the real set's size, [1152, 576] float32 decoder rows just off the cone (what a step leaves:
rows on the cone's edge, nudged; about half end outside, printed), and the synthetic minis'
[1024, 32]. The two must give the same rows bit for bit.

Run (skipped by default through ``--benchmark-skip``)::

    python -m pytest benchmarks/test_bench_cone.py -o addopts="" --benchmark-only --benchmark-enable -s
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("pytest_benchmark")
torch = pytest.importorskip("torch")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the reference lives with the tests
from _previous_paths import cone_reference  # noqa: E402

ROUNDS, CALLS, MIN_COS = 5, 40, 0.8


@pytest.mark.parametrize("n,d", [(1152, 576), (1024, 32)])
def test_bench_cone_projection(benchmark, n, d):
    from saebench_sanity.training.modes import ConeProjection

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        g = torch.Generator().manual_seed(0)
        d0 = torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=1)
        on_edge = cone_reference(torch.randn(n, d, generator=g), d0, MIN_COS)
        W = on_edge + 0.01 * torch.randn(n, d, generator=g) * on_edge.norm(dim=1, keepdim=True) / math.sqrt(d)
        cone = ConeProjection(d0, MIN_COS)
        times: dict[str, list[float]] = {"fresh": [], "kept": []}

        def timed(name, fn):
            t0 = time.perf_counter()
            for _ in range(CALLS):
                fn()
            times[name].append((time.perf_counter() - t0) / CALLS)

        def once() -> None:
            for _ in range(ROUNDS):
                timed("fresh", lambda: cone_reference(W, d0, MIN_COS))
                timed("kept", lambda: cone(W))

        benchmark.pedantic(once, rounds=1, iterations=1)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(cone(W), cone_reference(W, d0, MIN_COS))
    outside = float((cone(W) != W).any(1).float().mean())
    f, k = min(times["fresh"]) * 1e3, min(times["kept"]) * 1e3
    benchmark.extra_info.update({"fresh_ms": round(f, 3), "kept_ms": round(k, 3), "speedup": round(f / k, 2),
                                 "rows_outside": round(outside, 3)})
    print(f"\n[{n}, {d}]: formula afresh {f:.3f} ms, ConeProjection {k:.3f} ms ({f / k:.2f}x; {outside:.0%} of rows outside)")
