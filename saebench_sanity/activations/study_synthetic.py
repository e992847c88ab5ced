"""The synthetic data of Korznikov et al. (2026), "Sanity Checks for Sparse Autoencoders",
Finding 1 (after Elhage et al. 2022 / Sharkey et al. 2022; *not* SAELens's synthetic module).

Generator (paper values as defaults)::

    f_1..f_F  ~ uniform on the unit sphere of R^n      n = d_in = 100, F = n_features = 3200
    x = sum_i b_i c_i f_i,   b_i ~ Bernoulli(p_i),   c_i ~ LogNormal(mu = 0, sigma = 0.25)

LogNormal(mu, sigma) means ``exp(mu + sigma * N(0, 1))`` (sigma is the std of log c; the paper
writes LogNormal(0, 0.25) and does not say more). Features fire independently; there is no
bias. Two regimes, both with about 20 active features per sample at paper size:

* ``constant``: ``p_i = 0.00625`` for every feature (3200 * 0.00625 = 20 expected active);
* ``variable``: ``p_i ~ LogUniform(10^-5.5, 10^-1.2)``, drawn once per feature (expected active
  ``F * (b - a) / ln(b / a)`` = 20.4 at paper size).

The paper's SAE: ``d_sae = 3200`` (it calls this expansion 32), target L0 = 20; a feature counts
as recovered when some decoder row has cosine >= 0.8 with it. Its training budget is not stated.

Scaled-down ``-mini`` sets (the default suite must finish in minutes on 2 CPU cores): ``d_in = 32``
and ``n_features = 1024`` — both scaled by the same factor 0.32, so features per dimension stay
32 (the paper's ratio) — and the firing probabilities are left *unchanged* (constant 0.00625;
LogUniform(10^-5.5, 10^-1.2)). Every per-feature statistic is then identical to the paper's and
the density active/d_in stays 0.2 (20/100 in the paper, 6.4/32 here); the expected number of
active features per sample becomes 6.4 (constant) and 6.5 (variable), and the recommended target
L0 is 6 instead of 20. (Keeping ~8 active per sample would have raised active/d_in to 0.25, a
harder compressed-sensing regime than the paper's.)
"""

from __future__ import annotations

import math
from functools import cached_property
from typing import TYPE_CHECKING, Any

from saebench_sanity.activations.synthetic import GeneratedActivationSet, check_float, derive_seed, mix_sparse
from saebench_sanity.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    import torch

REGIMES = ("constant", "variable")

#: Paper values.
PAPER = {"d_in": 100, "n_features": 3200, "p_constant": 0.00625, "p_log10_min": -5.5, "p_log10_max": -1.2,
         "magnitude_mu": 0.0, "magnitude_sigma": 0.25, "d_sae": 3200, "target_l0": 20, "cos_threshold": 0.8}


def loguniform_mean(p_min: float, p_max: float) -> float:
    """Mean of LogUniform(p_min, p_max): ``(p_max - p_min) / ln(p_max / p_min)``."""
    return (p_max - p_min) / math.log(p_max / p_min)


class StudySyntheticSet(GeneratedActivationSet):
    """The study's generator as an activation set (see the module docstring).

    Args:
        name: registered name.
        regime: ``"constant"`` or ``"variable"`` firing probabilities.
        d_in: n, the activation width (paper: 100).
        n_features: number of true features (paper: 3200).
        p_constant: firing probability of every feature in the constant regime (paper: 0.00625).
        p_log10_min, p_log10_max: log10 bounds of the LogUniform firing probabilities in the
            variable regime (paper: -5.5, -1.2).
        magnitude_mu, magnitude_sigma: LogNormal parameters of the magnitudes (paper: 0, 0.25).
        seed: the set's seed (dictionary, probabilities and eval data derive from it).
        n_eval: held-out sample count.
    """

    def __init__(self, name: str, regime: str = "constant", d_in: int = 100, n_features: int = 3200,
                 p_constant: float = 0.00625, p_log10_min: float = -5.5, p_log10_max: float = -1.2,
                 magnitude_mu: float = 0.0, magnitude_sigma: float = 0.25, seed: int = 0, n_eval: int = 8192) -> None:
        super().__init__(name, d_in, n_features, seed=seed, n_eval=n_eval)
        w = self._where
        if regime not in REGIMES:
            raise ConfigError(f"{w}: regime = {regime!r}; use one of {', '.join(REGIMES)}")
        self.regime = regime
        self.p_constant = check_float("p_constant", p_constant, low=0.0, low_open=True, high=1.0, where=w)
        self.p_log10_min = check_float("p_log10_min", p_log10_min, high=0.0, where=w)
        self.p_log10_max = check_float("p_log10_max", p_log10_max, high=0.0, where=w)
        if regime == "variable" and not self.p_log10_min < self.p_log10_max:
            raise ConfigError(f"{w}: p_log10_min ({p_log10_min}) must be < p_log10_max ({p_log10_max})")
        self.magnitude_mu = check_float("magnitude_mu", magnitude_mu, where=w)
        self.magnitude_sigma = check_float("magnitude_sigma", magnitude_sigma, low=0.0, where=w)

    def generator_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {
            "library": "saebench_sanity.activations.study_synthetic (Korznikov et al. 2026, Finding 1)",
            "regime": self.regime,
            "features": "uniform on the unit sphere (normalised N(0, I))",
            "magnitudes": {"distribution": "lognormal", "mu": self.magnitude_mu, "sigma": self.magnitude_sigma},
        }
        if self.regime == "constant":
            params["firing"] = {"distribution": "constant", "p": self.p_constant}
        else:
            params["firing"] = {"distribution": "loguniform", "log10_min": self.p_log10_min,
                                "log10_max": self.p_log10_max}
        return params

    @cached_property
    def _features(self) -> "torch.Tensor":
        import torch

        g = torch.Generator().manual_seed(derive_seed(self.seed, "features"))
        f = torch.randn(self.n_features, self.d_in, generator=g, dtype=torch.float64)
        return f / f.norm(dim=1, keepdim=True)

    @cached_property
    def _probs(self) -> "torch.Tensor":
        import torch

        if self.regime == "constant":
            return torch.full((self.n_features,), self.p_constant, dtype=torch.float32)
        g = torch.Generator().manual_seed(derive_seed(self.seed, "probabilities"))
        u = torch.rand(self.n_features, generator=g, dtype=torch.float64)
        log10_p = self.p_log10_min + (self.p_log10_max - self.p_log10_min) * u
        return (10.0 ** log10_p).to(torch.float32)

    @property
    def features(self) -> "torch.Tensor":
        import torch

        return self._features.to(torch.float32)

    @property
    def firing_probabilities(self) -> "torch.Tensor":
        return self._probs.clone()

    def _draw(self, n: int, g: "torch.Generator", with_codes: bool = True) -> tuple["torch.Tensor", "torch.Tensor | None"]:
        import torch

        probs = self._probs
        rows, cols = bernoulli_positions(n, probs, g)  # b_i ~ Bernoulli(p_i)
        mags = torch.exp(self.magnitude_mu + self.magnitude_sigma
                         * torch.randn(rows.shape[0], generator=g, dtype=torch.float64))  # c_i
        x = mix_sparse(rows, cols, mags, n, self._features)
        if not with_codes:
            return x, None
        codes = torch.sparse_coo_tensor(torch.stack([rows, cols]), mags.to(torch.float32),
                                        (n, self.n_features), is_coalesced=True, check_invariants=False)
        return x, codes


def bernoulli_positions(n: "int", probs: "torch.Tensor", g: "torch.Generator") -> tuple["torch.Tensor", "torch.Tensor"]:
    """Where ``n`` rows of independent ``Bernoulli(probs)`` draws are 1, in row-major order.

    Written by hand for speed (torch has no sparse Bernoulli sampler): the ``n * F`` trials are
    scanned with geometric gaps at rate ``p_max = max(probs)`` (exactly the successes of iid
    Bernoulli(p_max) trials), and each candidate is kept with probability ``p_i / p_max``
    (thinning), which leaves every trial an independent Bernoulli(p_i). Cost is O(n F p_max)
    instead of O(n F) for a dense ``rand < p`` (used when p_max >= 0.25).

    Args:
        n: number of rows.
        probs: ``[F]`` probabilities in (0, 1].
        g: random generator.

    Returns:
        ``(rows, cols)``, each ``[nnz]`` int64.
    """
    import torch

    n_feat = probs.shape[0]
    total = n * n_feat
    p_max = float(probs.max())
    if p_max >= 0.25:  # dense sampling is as cheap, and geometric_ needs p < 1
        rows, cols = (torch.rand(n, n_feat, generator=g) < probs).nonzero(as_tuple=True)
        return rows, cols
    chunks, last = [], -1.0
    while last < total - 1:
        expected = (total - 1 - last) * p_max
        m = int(expected + 6.0 * math.sqrt(expected) + 64)
        gaps = torch.empty(m, dtype=torch.float64).geometric_(p_max, generator=g)
        pos = last + gaps.cumsum(0)  # exact integers in float64 up to 2^53
        chunks.append(pos)
        last = float(pos[-1])
    pos = torch.cat(chunks)
    pos = pos[pos < total].to(torch.int64)
    rows, cols = pos // n_feat, pos % n_feat
    if bool((probs < p_max).any()):
        keep = torch.rand(pos.shape[0], generator=g, dtype=torch.float64) * p_max < probs[cols].to(torch.float64)
        rows, cols = rows[keep], cols[keep]
    return rows, cols
