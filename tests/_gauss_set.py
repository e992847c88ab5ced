"""A tiny in-memory activation set for engine tests: anisotropic Gaussian rows with an offset
(the shape of a residual stream), ``[batch, d_in]`` float32, one stream per seed."""

from __future__ import annotations

import torch


class GaussSet:
    def __init__(self, name: str, d_in: int) -> None:
        self.name, self.d_in = name, d_in
        g = torch.Generator().manual_seed(3)
        self.mix = torch.randn(d_in, d_in, generator=g) / d_in ** 0.5
        self.offset = torch.randn(d_in, generator=g)

    def train_batches(self, batch_size, seed):
        g = torch.Generator().manual_seed(seed)
        while True:
            yield torch.randn(batch_size, self.d_in, generator=g) @ self.mix + self.offset

    def sample_activations(self, n, seed=0):
        return next(self.train_batches(n, seed + 99))
