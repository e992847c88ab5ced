"""Reconstruction and sparsity metrics: pure functions, tensors in, floats out.

Shapes: ``x`` and ``x_hat`` are ``[n, d_in]`` (activations and their SAE reconstruction),
``feature_acts`` is ``[n, d_sae]``. All reductions run in float64.

Definitions (and whose they are):

* :func:`explained_variance` — textbook R^2, ``1 - E||x - x_hat||^2 / E||x - E[x]||^2``
  (variance about the mean, summed over dimensions). This is SAELens's ``explained_variance``
  (``sae_lens.evals.ExplainedVarianceCalculator``; ``SAETrainer`` logs the same ratio of means)
  and the study's definition. Predicting the mean scores 0, perfect reconstruction 1.
* :func:`explained_variance_saebench` — what SAEBench core (``sae_bench/evals/core/main.py``,
  v0.6.0, after commit 7fb3ed3 "Use conventional explained variance definition") reports as
  ``explained_variance``: it accumulates ``mean_act_per_dimension = x.pow(2).mean(dim=0)`` (the
  per-dimension *second moment*, despite the name), averages it over dimensions, and squares it,
  so its "total variance" is ``E||x||^2 - (E||x||^2 / d)^2`` rather than ``E||x||^2 - ||E x||^2``.
  Reproduced as written (per batch of equal size it is the same quantity), so numbers can be
  compared with published SAEBench tables; it agrees with the textbook EV only by accident.
* :func:`explained_variance_per_sample` — SAEBench's ``explained_variance_legacy`` (and
  SAELens's ``explained_variance_legacy``): mean over samples of
  ``1 - ||x_n - x_hat_n||^2 / ||x_n - E[x]||^2``. Not registered as a score (a mean of ratios is
  dominated by samples near the mean); kept for comparison.
* :func:`mse` — SAELens's ``mse``: mean over samples of ``||x - x_hat||^2`` (sum over dims).
* :func:`l0` — mean number of latents ``!= 0`` per sample (SAELens / SAEBench use ``!= 0``).
* :func:`dead_fraction` — fraction of latents that are 0 on every sample given
  (``sae_lens.synthetic.DeadLatentsCalculator``, as a fraction).
* :func:`shrinkage` — mean ``||x_hat|| / ||x||`` over samples with ``||x|| > 1e-6``
  (``sae_lens.synthetic.ShrinkageCalculator``); 1 means no shrinkage.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from saebench_sanity.errors import DataError

if TYPE_CHECKING:  # pragma: no cover
    import torch


def _pair(x: "torch.Tensor", x_hat: "torch.Tensor", what: str) -> tuple["torch.Tensor", "torch.Tensor"]:
    import torch

    if x.ndim != 2 or x_hat.shape != x.shape:
        raise DataError(f"{what}: x {tuple(x.shape)} and x_hat {tuple(x_hat.shape)} must both be [n, d_in]; "
                        "flatten token dimensions first")
    if x.shape[0] == 0:
        raise DataError(f"{what}: no samples; pass at least one row")
    x64 = x.detach().to("cpu", torch.float64)
    if not bool(torch.isfinite(x64).all()):
        raise DataError(f"{what}: activations contain NaN/inf; clean the activation set")
    return x64, x_hat.detach().to("cpu", torch.float64)


def _total_variance(x64: "torch.Tensor") -> float:
    """E||x - E[x]||^2, summed over dimensions."""
    return float((x64 - x64.mean(dim=0)).pow(2).sum(dim=1).mean())


def mse(x: "torch.Tensor", x_hat: "torch.Tensor") -> float:
    """Mean over samples of ``||x - x_hat||^2`` (SAELens convention). ``[n, d] x [n, d] -> float``."""
    x64, h64 = _pair(x, x_hat, "mse")
    return float((x64 - h64).pow(2).sum(dim=1).mean())


def explained_variance(x: "torch.Tensor", x_hat: "torch.Tensor") -> float:
    """``1 - E||x - x_hat||^2 / E||x - E[x]||^2`` (SAELens, study). ``[n, d] x [n, d] -> float``.

    NaN in ``x_hat`` (a diverged SAE) gives NaN; zero-variance ``x`` raises DataError.
    """
    x64, h64 = _pair(x, x_hat, "explained_variance")
    var = _total_variance(x64)
    if not var > 0:
        raise DataError("explained_variance: the activations have zero variance; EV is undefined for constant data")
    return 1.0 - float((x64 - h64).pow(2).sum(dim=1).mean()) / var


def bulk_mask(x: "torch.Tensor", max_norm_ratio: float) -> "torch.Tensor":
    """``[n]`` bool: True for samples whose norm is at most ``max_norm_ratio`` times the median
    norm (the bulk), False for massive-activation outliers.

    Why: a language model's residual stream has rare tokens with norms ~100x the median (besides
    BOS, which the real sets drop). In the default set ``smollm2-135m-resid12`` 2 held-out tokens
    of 8,119 carry 71% of the total variance (the larger: norm 1741, median 17.5), so textbook EV
    there mostly says whether an SAE reconstructs those tokens."""
    import torch

    if not max_norm_ratio > 0:
        raise DataError(f"max_norm_ratio = {max_norm_ratio!r} must be positive")
    norms = x.to(torch.float64).norm(dim=-1)
    return norms <= max_norm_ratio * norms.median()


def stored_bulk_mask(activation_set: object, n_rows: int, max_norm_ratio: float) -> "torch.Tensor | None":
    """``[n_rows]`` bool keep mask from the massive-activation flags the set stored at harvest
    (``activations.store``: on eval rows the same rule as :func:`bulk_mask`, computed on the rows
    as stored), or None when the set has no flags, flagged with another ratio, or holds another
    number of eval rows; the caller then computes :func:`bulk_mask` itself."""
    import torch

    ratio = getattr(activation_set, "massive_norm_ratio", None)
    if ratio is None or float(ratio) != float(max_norm_ratio):
        return None
    flags = activation_set.eval_massive()  # type: ignore[attr-defined]
    if flags is None or flags.ndim != 1 or flags.shape[0] != n_rows:
        return None
    return ~flags.to("cpu", dtype=torch.bool)


def bulk_scores(x: "torch.Tensor", x_hat: "torch.Tensor", max_norm_ratio: float = 10.0,
                keep: "torch.Tensor | None" = None) -> dict[str, float]:
    """Textbook EV over the bulk of the samples (:func:`bulk_mask`, or ``keep`` ``[n]`` bool when
    given: the set's stored flags, :func:`stored_bulk_mask`) and what was left out.

    Returns ``explained_variance`` (over the kept samples, about their own mean),
    ``outlier_fraction`` (samples left out) and ``outlier_variance_share`` (their share of the
    total variance ``sum ||x - E[x]||^2`` of all samples)."""
    x64, h64 = _pair(x, x_hat, "bulk explained variance")
    if keep is None:
        keep = bulk_mask(x64, max_norm_ratio)
    elif tuple(keep.shape) != (x64.shape[0],):
        raise DataError(f"bulk explained variance: keep mask {tuple(keep.shape)} must be [n] = [{x64.shape[0]}]")
    dev = (x64 - x64.mean(dim=0)).pow(2).sum(dim=1)
    total = float(dev.sum())
    return {
        "explained_variance": explained_variance(x64[keep], h64[keep]),
        "outlier_fraction": float((~keep).double().mean()),
        "outlier_variance_share": float(dev[~keep].sum()) / total if total > 0 else 0.0,
    }


def explained_variance_saebench(x: "torch.Tensor", x_hat: "torch.Tensor") -> float:
    """SAEBench core's ``explained_variance``: ``1 - E||x - x_hat||^2 / (E||x||^2 - (E||x||^2 / d)^2)``.

    ``[n, d] x [n, d] -> float``. See the module docstring for where the odd denominator comes from.
    """
    x64, h64 = _pair(x, x_hat, "explained_variance_saebench")
    d = x64.shape[1]
    mean_sq_norm = float(x64.pow(2).sum(dim=1).mean())
    denom = mean_sq_norm - (mean_sq_norm / d) ** 2
    if denom == 0:
        raise DataError("explained_variance_saebench: denominator E||x||^2 - (E||x||^2/d)^2 is zero for this data")
    return 1.0 - float((x64 - h64).pow(2).sum(dim=1).mean()) / denom


def explained_variance_per_sample(x: "torch.Tensor", x_hat: "torch.Tensor") -> float:
    """Mean over samples of ``1 - ||x_n - x_hat_n||^2 / ||x_n - E[x]||^2`` (the "legacy" EV of
    SAEBench and SAELens). ``[n, d] x [n, d] -> float``; samples exactly at the mean are skipped."""
    x64, h64 = _pair(x, x_hat, "explained_variance_per_sample")
    denom = (x64 - x64.mean(dim=0)).pow(2).sum(dim=1)
    keep = denom > 0
    if not bool(keep.any()):
        raise DataError("explained_variance_per_sample: every sample equals the mean; EV is undefined")
    return float((1.0 - (x64 - h64).pow(2).sum(dim=1)[keep] / denom[keep]).mean())


def _acts(feature_acts: "torch.Tensor", what: str) -> "torch.Tensor":
    if feature_acts.ndim != 2 or feature_acts.shape[0] == 0:
        raise DataError(f"{what}: feature_acts {tuple(feature_acts.shape)} must be [n, d_sae] with n >= 1")
    return feature_acts.detach().to("cpu")


def l0(feature_acts: "torch.Tensor") -> float:
    """Mean number of nonzero latents per sample. ``[n, d_sae] -> float``."""
    import torch

    acts = _acts(feature_acts, "l0")
    return float((acts != 0).sum(dim=1).to(torch.float64).mean())


def dead_fraction(feature_acts: "torch.Tensor") -> float:
    """Fraction of latents that never fire (are 0 on every sample). ``[n, d_sae] -> float in [0, 1]``."""
    acts = _acts(feature_acts, "dead_fraction")
    return float((~(acts != 0).any(dim=0)).sum()) / acts.shape[1]


def shrinkage(x: "torch.Tensor", x_hat: "torch.Tensor", min_input_norm: float = 1e-6) -> float:
    """Mean ``||x_hat_n|| / ||x_n||`` over samples with ``||x_n|| > min_input_norm``.

    ``[n, d] x [n, d] -> float`` (NaN if no sample qualifies).
    """
    x64, h64 = _pair(x, x_hat, "shrinkage")
    norms = x64.norm(dim=1)
    keep = norms > min_input_norm
    if not bool(keep.any()):
        return math.nan
    return float((h64.norm(dim=1)[keep] / norms[keep]).mean())
