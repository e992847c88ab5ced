"""Glue between ``MetricContext`` and the pure core metrics (the factories of the registered
``reconstruction`` and ``ground_truth`` metrics in ``builtin/metrics_core.py``)."""

from __future__ import annotations

from typing import Any

from saebench_sanity.metrics import ground_truth as gt
from saebench_sanity.metrics import reconstruction as rec
from saebench_sanity.metrics.base import NotApplicable


def reconstruction_scores(ctx: Any) -> dict[str, float]:
    """Scores of the ``reconstruction`` metric from ``ctx.eval_acts`` ``[n, d_in]``,
    ``ctx.reconstruction`` ``[n, d_in]`` and ``ctx.feature_acts`` ``[n, d_sae]``."""
    x, x_hat, acts = ctx.eval_acts, ctx.reconstruction, ctx.feature_acts
    return {
        "explained_variance": rec.explained_variance(x, x_hat),
        "explained_variance_saebench": rec.explained_variance_saebench(x, x_hat),
        "mse": rec.mse(x, x_hat),
        "l0": rec.l0(acts),
        "dead_fraction": rec.dead_fraction(acts),
        "shrinkage": rec.shrinkage(x, x_hat),
    }


def ground_truth_scores(ctx: Any, cos_threshold: float = 0.8) -> dict[str, float]:
    """Scores of the ``ground_truth`` metric: the set's true features ``[n_features, d_in]``
    against the SAE's decoder rows ``ctx.sae.W_dec`` ``[d_sae, d_in]``."""
    truth = getattr(ctx.activation_set, "ground_truth", None)
    if truth is None:
        name = getattr(ctx.activation_set, "name", "?")
        raise NotApplicable(f"activation set {name!r} has no ground truth; the ground_truth metric only applies to synthetic sets")
    return gt.summary(truth.features, ctx.sae.W_dec, cos_threshold)


def reconstruction_bulk_scores(ctx: Any, max_norm_ratio: float = 10.0) -> dict[str, float]:
    """Factory of ``reconstruction_bulk``: EV without massive-activation outlier samples (the
    set's harvest-time flags when it stored them under this ratio, else computed here)."""
    from saebench_sanity.metrics.reconstruction import bulk_scores, stored_bulk_mask

    keep = stored_bulk_mask(ctx.activation_set, int(ctx.eval_acts.shape[0]), max_norm_ratio)
    return bulk_scores(ctx.eval_acts, ctx.reconstruction, max_norm_ratio, keep=keep)
