"""The soft-frozen cone projection written out once per call, as ``modes.project_to_cone`` computed
it before ``modes.ConeProjection`` kept its float64 directions and reused one buffer: the
reference its rows must equal bit for bit (tests/test_engine_cohort.py) and the previous path
of benchmarks/test_bench_cone.py."""

from __future__ import annotations

import math

import torch


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
