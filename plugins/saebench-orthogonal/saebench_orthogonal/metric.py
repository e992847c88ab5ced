"""``reconstruction_cosine``: pure function plus its MetricContext adapter."""

from __future__ import annotations

import torch

from saebench_sanity import MetricResult


def reconstruction_cosine(x: torch.Tensor, x_hat: torch.Tensor, eps: float = 1e-12) -> float:
    """Mean cosine similarity between rows of ``x`` and ``x_hat`` (both ``[n, d_in]``).

    Rows of ``x`` that are all zero are left out (their cosine is undefined).
    """
    norms = x.norm(dim=-1)
    keep = norms > eps
    cos = (x[keep] * x_hat[keep]).sum(-1) / (norms[keep] * x_hat[keep].norm(dim=-1)).clamp_min(eps)
    return float(cos.mean())


def reconstruction_cosine_metric(ctx) -> MetricResult:
    """Everything comes from the context: ``ctx.eval_acts`` ``[n, d_in]`` and the cached
    ``ctx.reconstruction`` ``[n, d_in]``; the details (stored beside the score) say how many rows
    counted."""
    x = ctx.eval_acts
    score = reconstruction_cosine(x, ctx.reconstruction)
    return MetricResult({"reconstruction_cosine": score}, details={"rows": int((x.norm(dim=-1) > 1e-12).sum())})
