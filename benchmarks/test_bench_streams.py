"""Training streams of the default suite's synthetic sets: a batch drawn afresh (sae-lens's
activation generator or the study's sampler, then the float64 mix) against the same batch
replayed from the process's memo (``activations.synthetic.StreamMemo``), same run, one thread.

Per set, 256-sample batches (the default suite's batch size): ``N`` batches of one stream drawn
through ``_draw`` with the stream's generator (what every cohort paid before the memo), and the
same ``N`` batches read back through ``train_batches`` once the memo holds them (a copy each),
interleaved over rounds, the minimum per batch of each. The replayed batches must equal the
drawn ones. ``draw_ms`` / ``replay_ms`` and their ratio are in ``extra_info`` and printed.

Run (skipped by default through ``--benchmark-skip``)::

    python -m pytest benchmarks/test_bench_streams.py -o addopts="" --benchmark-only --benchmark-enable -s
"""

from __future__ import annotations

import itertools
import time

import pytest

pytest.importorskip("pytest_benchmark")
torch = pytest.importorskip("torch")

SETS = ["synth-easy", "synth-zipf", "synth-corr-hier", "study-constant-mini", "study-variable-mini"]
N, ROUNDS, BATCH = 200, 3, 256


@pytest.mark.parametrize("name", SETS)
def test_bench_stream_draw_vs_replay(benchmark, name):
    from saebench_sanity.activations.synthetic import derive_seed
    from saebench_sanity.registry import Registry

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        s = Registry(load_entry_points=False).get("activation_set", name).build()
        drawn: list = []
        replayed: list = []
        times = {"draw": [], "replay": []}

        def draw() -> None:
            g = torch.Generator().manual_seed(derive_seed(s.seed, "train", 0))
            t0 = time.perf_counter()
            drawn[:] = [s._draw(BATCH, g, with_codes=False)[0] for _ in range(N)]
            times["draw"].append((time.perf_counter() - t0) / N)

        def replay() -> None:
            t0 = time.perf_counter()
            replayed[:] = list(itertools.islice(s.train_batches(BATCH, 0), N))
            times["replay"].append((time.perf_counter() - t0) / N)

        list(itertools.islice(s.train_batches(BATCH, 0), N))  # the memo holds the stream now

        def once() -> None:
            for _ in range(ROUNDS):
                draw()
                replay()

        benchmark.pedantic(once, rounds=1, iterations=1)
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(a, b) for a, b in zip(drawn, replayed))
    d, r = min(times["draw"]) * 1e3, min(times["replay"]) * 1e3
    benchmark.extra_info.update({"draw_ms": round(d, 3), "replay_ms": round(r, 4), "speedup": round(d / r, 1)})
    print(f"\n{name}: draw {d:.3f} ms, replay {r:.4f} ms per batch of {BATCH} x {s.d_in} ({d / r:.0f}x)")
