"""Ground-truth feature recovery: pure functions of the true dictionary and the SAE decoder.

Shapes: ``features`` ``[n_features, d_in]`` (true directions), ``W_dec`` ``[d_sae, d_in]``
(SAELens layout: one decoder row per latent). Rows are normalised here; their norms never matter.

* :func:`recovery` — the study's definition (Korznikov et al. 2026, Finding 1): feature ``i``
  is recovered when ``max_j cos(f_i, d_j) >= cos_threshold`` (signed cosine: a decoder row
  pointing at ``-f_i`` does not count, since latents fire with one sign); the score is the
  fraction recovered. Paper threshold 0.8.
* :func:`mean_max_cos` — mean over true features of ``max_j cos(f_i, d_j)`` (same cosine).
* :func:`mcc` — mean correlation coefficient as in ``sae_lens.synthetic.mean_correlation_coefficient``
  (after arXiv 2505.20254): one-to-one Hungarian matching on *absolute* cosine
  (``scipy.optimize.linear_sum_assignment``), mean of the ``min(n_features, d_sae)`` matched
  values. Reimplemented here (not imported) so scoring does not pay sae_lens's import; the tests
  check it against sae_lens's function.
* :func:`recovery_chance` — the closed-form expected recovery of a random dictionary (rows
  uniform on the sphere): the chance level printed next to recovery.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from saebench_sanity.errors import ConfigError, DataError

if TYPE_CHECKING:  # pragma: no cover
    import torch


def _unit_rows(t: "torch.Tensor", what: str) -> "torch.Tensor":
    import torch

    if t.ndim != 2 or t.shape[0] == 0:
        raise DataError(f"{what} {tuple(t.shape)} must be a non-empty [rows, d_in] matrix")
    t64 = t.detach().to("cpu", torch.float64)
    if not bool(torch.isfinite(t64).all()):
        raise DataError(f"{what} contains NaN/inf; the SAE diverged or the ground truth is corrupt")
    return t64 / t64.norm(dim=1, keepdim=True).clamp_min(1e-12)


def cosine_matrix(features: "torch.Tensor", W_dec: "torch.Tensor") -> "torch.Tensor":
    """Signed cosines ``[n_features, d_sae]`` (float64) between true features and decoder rows."""
    f = _unit_rows(features, "true features")
    d = _unit_rows(W_dec, "W_dec")
    if f.shape[1] != d.shape[1]:
        raise DataError(f"true features have d_in = {f.shape[1]} but W_dec has d_in = {d.shape[1]}; "
                        "score the SAE on the activation set it was trained for")
    return f @ d.T


def _check_threshold(cos_threshold: float) -> float:
    if isinstance(cos_threshold, bool) or not isinstance(cos_threshold, (int, float)) or not -1 < cos_threshold <= 1:
        raise ConfigError(f"metrics.ground_truth.cos_threshold = {cos_threshold!r} must be a number in (-1, 1], e.g. 0.8")
    return float(cos_threshold)


def max_cos(features: "torch.Tensor", W_dec: "torch.Tensor") -> "torch.Tensor":
    """Best signed cosine per true feature: ``[n_features]`` float64."""
    return cosine_matrix(features, W_dec).max(dim=1).values


def n_recovered(features: "torch.Tensor", W_dec: "torch.Tensor", cos_threshold: float = 0.8) -> int:
    """Number of true features with ``max_j cos(f_i, d_j) >= cos_threshold``."""
    tau = _check_threshold(cos_threshold)
    return int((max_cos(features, W_dec) >= tau).sum())


def recovery(features: "torch.Tensor", W_dec: "torch.Tensor", cos_threshold: float = 0.8) -> float:
    """Fraction of true features recovered at ``cos_threshold`` (study definition). ``-> [0, 1]``."""
    return n_recovered(features, W_dec, cos_threshold) / features.shape[0]


def mean_max_cos(features: "torch.Tensor", W_dec: "torch.Tensor") -> float:
    """Mean over true features of the best signed decoder cosine. ``-> [-1, 1]``."""
    return float(max_cos(features, W_dec).mean())


def mcc(features: "torch.Tensor", W_dec: "torch.Tensor") -> float:
    """Mean |cosine| over a one-to-one Hungarian matching of features and decoder rows.

    ``[n_features, d_in] x [d_sae, d_in] -> float in [0, 1]`` (sae_lens's definition).
    """
    from scipy.optimize import linear_sum_assignment

    cos = cosine_matrix(features, W_dec).abs().numpy()
    rows, cols = linear_sum_assignment(1.0 - cos)
    return float(cos[rows, cols].mean())


def recovery_chance(d_in: int, d_sae: int, cos_threshold: float = 0.8) -> float:
    """Expected recovery of a dictionary of ``d_sae`` rows drawn uniformly on the sphere of R^d_in.

    For one random unit vector ``u`` and a fixed unit ``f``, ``P(<u, f> >= t) = q`` with
    ``q = 1/2 * I_{1 - t^2}((d - 1) / 2, 1 / 2)`` for ``t >= 0`` (regularised incomplete beta; the
    squared cosine is Beta(1/2, (d-1)/2)), and ``1 - P(<u, f> >= |t|)`` for ``t < 0``. Rows are
    independent, so a feature is recovered with probability ``1 - (1 - q)^d_sae``, which is also the
    expected recovered fraction. Examples (t = 0.8): d = 100, d_sae = 3200 -> ~1e-18; d = 32,
    d_sae = 1024 -> ~1e-4.
    """
    from scipy.special import betainc

    tau = _check_threshold(cos_threshold)
    if d_in < 2 or d_sae < 1:
        raise ConfigError(f"recovery_chance needs d_in >= 2 and d_sae >= 1 (got {d_in}, {d_sae})")
    tail = 0.5 * float(betainc((d_in - 1) / 2.0, 0.5, 1.0 - tau * tau))  # P(cos >= |tau|)
    q = tail if tau >= 0 else 1.0 - tail
    import math

    return -math.expm1(d_sae * math.log1p(-q)) if q < 1 else 1.0


def summary(features: "torch.Tensor", W_dec: "torch.Tensor", cos_threshold: float = 0.8) -> dict[str, float]:
    """``recovery``, ``n_recovered``, ``mean_max_cos`` and ``mcc`` from one cosine matrix."""
    from scipy.optimize import linear_sum_assignment

    tau = _check_threshold(cos_threshold)
    cos = cosine_matrix(features, W_dec)
    best = cos.max(dim=1).values
    n_rec = int((best >= tau).sum())
    absc = cos.abs().numpy()
    rows, cols = linear_sum_assignment(1.0 - absc)
    return {
        "recovery": n_rec / cos.shape[0],
        "n_recovered": float(n_rec),
        "mean_max_cos": float(best.mean()),
        "mcc": float(absc[rows, cols].mean()),
    }
