"""Previous paths kept as references: faster code must give their results bit for bit (the tests
say so) and is timed against them (benchmarks/).

* ``cone_reference``: the soft-frozen cone projection written out once per call, as
  ``modes.project_to_cone`` computed it before ``modes.ConeProjection`` kept its float64
  directions and reused one buffer (tests/test_engine_cohort.py, benchmarks/test_bench_cone.py).
* ``WholeCurvesControl``: ``ConvergenceControl`` whose check judges every whole curve at each
  curve point, as before the check read windows only (tests/test_training_schedule.py,
  benchmarks/test_bench_convergence_check.py).
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
