"""Previous paths kept as references: faster code must give their results bit for bit (the tests
say so) and is timed against them (benchmarks/).

* ``cone_reference``: the soft-frozen cone projection written out once per call, as
  ``modes.project_to_cone`` computed it before ``modes.ConeProjection`` kept its float64
  directions and reused one buffer (tests/test_engine_cohort.py, benchmarks/test_bench_cone.py).
* ``WholeCurvesControl``: ``ConvergenceControl`` whose check judges every whole curve at each
  curve point, as before the check read windows only (tests/test_training_schedule.py,
  benchmarks/test_bench_convergence_check.py).
* ``iter_batches_reference``: ``StoreReader.iter_batches`` as it was when it appended each shard
  to the buffer with ``torch.cat`` (tests/test_activations_store.py, benchmarks/test_bench_reader.py).
"""

from __future__ import annotations

import math

import torch

from saebench_sanity.training import convergence
from saebench_sanity.training.convergence import LEVEL, ConvergenceControl, judge


def cone_reference(W: torch.Tensor, D0: torch.Tensor, min_cos: float) -> torch.Tensor:
    w, d0 = W.to(torch.float64), D0.to(torch.float64)
    norm = w.norm(dim=1, keepdim=True)
    a = (w * d0).sum(dim=1, keepdim=True)
    outside = ((a / norm.clamp(min=1e-30)) < min_cos).squeeze(1)
    p = w - a * d0
    pn = p.norm(dim=1, keepdim=True)
    s = math.sqrt(max(0.0, 1.0 - min_cos * min_cos))
    u = torch.where(pn > 1e-30, min_cos * d0 + s * p / pn.clamp(min=1e-30), d0)
    return torch.where(outside.unsqueeze(1), norm.clamp(min=1e-8) * u, w).to(W.dtype)


class WholeCurvesControl(ConvergenceControl):
    """The check as it was before ``_level`` read windows only: every curve judged whole."""

    def _level(self, step: int) -> bool:
        quick = judge(self.curves, self.training, end_step=step, point_only=True)[1]["curves"]
        tol = float(self.training.convergence_rel_tol)
        if not all(d["points"] >= convergence.MIN_POINTS and d["rel_improvement"] < tol for d in quick.values()):
            return False
        if step < self._next_check:
            return False
        if judge(self.curves, self.training, end_step=step)[1]["state"] == LEVEL:
            return True
        self._next_check = step * convergence.RECHECK_GROWTH
        return False


def iter_batches_reference(reader, batch_size, seed, *, buffer_rows=65536, normalize=False, loop=True,
                           exclude_massive=False):
    from saebench_sanity.activations.reader import Normalizer

    buffer_rows = max(int(buffer_rows), 2 * batch_size)
    gen = torch.Generator().manual_seed(int(seed) & 0x7FFF_FFFF_FFFF_FFFF)
    norm = reader.normalizer if normalize else Normalizer()
    shards = reader.manifest["shards"]
    buf = torch.empty(0, reader.d_in)
    pending = torch.empty(0, reader.d_in)

    def emit(rows):
        nonlocal pending
        rows = torch.cat([pending, rows]) if pending.shape[0] else rows
        n_full = rows.shape[0] // batch_size * batch_size
        for s in range(0, n_full, batch_size):
            yield rows[s:s + batch_size]
        pending = rows[n_full:]

    while True:
        for i in torch.randperm(len(shards), generator=gen).tolist():
            shard = reader.load_shard(shards[i])
            acts = shard["activations"].to(torch.float32)
            if exclude_massive:
                acts = acts[~shard["massive"]]
            buf = torch.cat([buf, norm.apply(acts)])
            while buf.shape[0] >= buffer_rows:
                buf = buf[torch.randperm(buf.shape[0], generator=gen)]
                half = buffer_rows // 2
                out, buf = buf[:half], buf[half:]
                yield from emit(out)
        if not loop:
            buf = buf[torch.randperm(buf.shape[0], generator=gen)]
            yield from emit(buf)
            if pending.shape[0]:
                yield pending
            return
