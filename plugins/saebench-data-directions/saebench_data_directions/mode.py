"""The ``data_directions`` baseline.

Built on the public base class of random-direction baselines
(``saebench_sanity.RandomDirectionsBaseline``), so it gets the same fairness helpers as the
built-in baselines: the encoder starts tied to the decoder (``W_enc = W_dec.T``), the output
starts at its least-squares scale (``fit_scale``), and with frozen biases ``b_dec`` starts at the
sample mean (``train_biases = false``). Only the directions differ: ``directions`` returns
centred activation samples instead of random ones. Every tensor is reached through the
architecture's ``roles``; randomness comes from the global torch RNG, which the trainer seeds
per cell.
"""

from __future__ import annotations

from typing import Any

import torch

from saebench_sanity import DataError, RandomDirectionsBaseline


def data_directions(sample_acts: torch.Tensor, n: int) -> torch.Tensor:
    """``[n, d_in]`` unit rows: randomly chosen rows of ``sample_acts`` ``[m, d_in]`` minus the
    sample mean (with replacement only when ``m < n``)."""
    x = sample_acts.to(torch.float64)
    x = x - x.mean(0, keepdim=True)
    m = x.shape[0]
    idx = torch.randperm(m)[:n] if m >= n else torch.randint(0, m, (n,))
    rows = x[idx]
    norms = rows.norm(dim=1, keepdim=True)
    if not bool((norms > 0).all()):
        raise DataError("data_directions: a sampled activation equals the mean; the set has (near) constant rows")
    return (rows / norms).to(torch.float32)


class DataDirections(RandomDirectionsBaseline):
    """Decoder rows = centred activation samples (unit norm), frozen; the encoder starts at
    ``W_dec.T`` and trains with biases, thresholds and scales (unless ``train_biases = false``)."""

    name = "data_directions"
    DEFAULTS = {"train_biases": True, "fit_scale": True}

    def _frozen(self) -> tuple[str, ...]:
        return ("decoder", *self._bias_roles_frozen())

    def directions(self, n: int, d_in: int, sample_acts: Any) -> torch.Tensor:
        if sample_acts is None or sample_acts.ndim != 2 or sample_acts.shape[1] != d_in:
            raise DataError(f"data_directions needs sample activations [n, {d_in}]")
        return data_directions(sample_acts, n)

    def prepare(self, sae: Any, roles: dict[str, str], sample_acts: Any) -> None:
        dirs = self.init_tied(sae, roles, sample_acts)
        self.center(sae, roles, sample_acts)
        self.fit_scale(sae, roles, sample_acts, "encoder")
        self.freeze(sae, roles)
        self.record(sae, roles, decoder=dirs)

    def check(self, sae: Any) -> None:
        self.check_frozen(sae, "decoder")
