"""Shared benchmark data: anisotropic Gaussian activations shaped like a residual stream."""

from __future__ import annotations

import torch


class GaussianSet:
    """Anisotropic Gaussian activations ``[n, d_in]`` with a mean offset (shape of a residual stream)."""

    def __init__(self, d_in: int, name: str = "bench-gaussian") -> None:
        self.d_in, self.name = d_in, name
        g = torch.Generator().manual_seed(0)
        self.scale = torch.rand(d_in, generator=g) * 2
        self.offset = torch.randn(d_in, generator=g)

    def train_batches(self, batch_size, seed):
        g = torch.Generator().manual_seed(seed)
        while True:
            yield torch.randn(batch_size, self.d_in, generator=g) * self.scale + self.offset

    def sample_activations(self, n, seed=0):
        return next(self.train_batches(n, seed + 7919))
