"""A real set's training stream: ``StoreReader.iter_batches`` (the buffer kept as pieces and
concatenated once per fill) against the previous path (each shard appended to the buffer with
``torch.cat``; tests/_previous_paths.py), same run, one thread, interleaved, minimum of each.

The default real set's shape: 576-dim float32 rows, shards of 8,128 rows, a 65,536-row buffer,
batches of 256. The shards are served from memory (``load_shard`` is replaced), so what is timed
is the buffer work the change touched, not reading and hashing the files, which both paths do
alike. The two must serve the same batches bit for bit.

Run (skipped by default through ``--benchmark-skip``)::

    python -m pytest benchmarks/test_bench_reader.py -o addopts="" --benchmark-only --benchmark-enable -s
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("pytest_benchmark")
torch = pytest.importorskip("torch")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the reference lives with the tests
from _previous_paths import iter_batches_reference  # noqa: E402

D_IN, SHARD_ROWS, N_SHARDS, BUFFER, BATCH = 576, 8128, 12, 65536, 256
BATCHES, ROUNDS = 1024, 3  # 1,024 batches = 8 buffer fills


def _reader():
    from saebench_sanity.activations.reader import StoreReader

    g = torch.Generator().manual_seed(0)
    shards = [torch.randn(SHARD_ROWS, D_IN, generator=g) for _ in range(N_SHARDS)]

    class InMemory(StoreReader):
        def __init__(self) -> None:  # no folder: the manifest fields iter_batches reads
            self.name, self.d_in = "in-memory", D_IN
            self.manifest = {"shards": [{"i": i} for i in range(N_SHARDS)],
                             "normalization": {"scaling_factor": 1.0}, "tokens": {}}

        def load_shard(self, entry):
            return {"activations": shards[entry["i"]]}

    return InMemory()


def test_bench_reader_stream(benchmark):
    reader = _reader()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    times: dict[str, list[float]] = {"previous": [], "pieces": []}

    def timed(name, it):
        t0 = time.perf_counter()
        for _ in range(BATCHES):
            next(it)
        times[name].append((time.perf_counter() - t0) / BATCHES)

    def once() -> None:
        for r in range(ROUNDS):
            timed("previous", iter_batches_reference(reader, BATCH, r, buffer_rows=BUFFER))
            timed("pieces", reader.iter_batches(BATCH, r, buffer_rows=BUFFER))

    try:
        benchmark.pedantic(once, rounds=1, iterations=1)
    finally:
        torch.set_num_threads(threads)
    new, old = reader.iter_batches(BATCH, 7, buffer_rows=BUFFER), iter_batches_reference(reader, BATCH, 7, buffer_rows=BUFFER)
    assert all(torch.equal(next(new), next(old)) for _ in range(600))
    p, q = min(times["previous"]) * 1e3, min(times["pieces"]) * 1e3
    benchmark.extra_info.update({"previous_ms_per_batch": round(p, 4), "pieces_ms_per_batch": round(q, 4),
                                 "speedup": round(p / q, 2)})
    print(f"\nper batch of {BATCH} x {D_IN}: previous {p:.3f} ms, pieces {q:.3f} ms ({p / q:.2f}x)")
