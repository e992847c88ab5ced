"""The ``synth-orthogonal`` activation set: x = sum_i b_i c_i e_i over an orthonormal basis e.

b_i ~ Bernoulli(p_fire), c_i ~ Uniform(0.5, 1.5), independent. With no superposition the true
features are exactly recoverable, so a trained SAE that fails here is broken.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from saebench_sanity import ActivationSet, ConfigError, GroundTruth, tensor_hash


class OrthogonalSet(ActivationSet):
    def __init__(self, d_in: int = 16, p_fire: float = 0.2, n_eval: int = 4096, seed: int = 0) -> None:
        if d_in <= 0 or n_eval <= 0:
            raise ConfigError(f"synth-orthogonal: d_in ({d_in}) and n_eval ({n_eval}) must be positive")
        if not 0 < p_fire <= 1:
            raise ConfigError(f"synth-orthogonal: p_fire = {p_fire} must be in (0, 1]")
        self.name = "synth-orthogonal"
        self.d_in, self.p_fire, self.n_eval, self.seed = d_in, p_fire, n_eval, seed
        gen = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(torch.randn(d_in, d_in, generator=gen))
        self._basis = q.T.contiguous()  # [n_features = d_in, d_in], orthonormal rows
        self._eval = self._sample(n_eval, torch.Generator().manual_seed(seed + 1_000_003))

    def _sample(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """``[n, d_in]`` samples."""
        fire = torch.rand(n, self.d_in, generator=gen) < self.p_fire
        mags = 0.5 + torch.rand(n, self.d_in, generator=gen)
        return (fire * mags) @ self._basis

    def manifest(self) -> dict[str, Any]:
        probe = self._sample(256, torch.Generator().manual_seed(self.seed + 17))
        return {"generator": "saebench_orthogonal.data.OrthogonalSet", "d_in": self.d_in, "p_fire": self.p_fire,
                "n_eval": self.n_eval, "seed": self.seed, "probe_sha256": tensor_hash(probe)}

    def train_batches(self, batch_size: int, seed: int) -> Iterator[torch.Tensor]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_033 + seed)
        while True:
            yield self._sample(batch_size, gen)

    def eval_activations(self) -> torch.Tensor:
        return self._eval

    @property
    def ground_truth(self) -> GroundTruth:
        return GroundTruth(features=self._basis, firing_probabilities=torch.full((self.d_in,), self.p_fire))
