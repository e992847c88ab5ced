"""The ``data_directions`` baseline.

Uses only the public TrainingMode contract (``saebench_sanity.TrainingMode``): ``prepare`` gets
the SAE, the architecture's role map and sample activations ``[n, d_in]``; randomness comes from
the global torch RNG, which the trainer seeds per cell.
"""

from __future__ import annotations

from typing import Any

import torch

from saebench_sanity import ConfigError, DataError, TrainingMode


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


class DataDirections(TrainingMode):
    is_baseline = True
    frozen_roles = ("decoder",)

    def __init__(self, **params: Any) -> None:
        if params:
            raise ConfigError(f"training mode 'data_directions': unknown parameter {sorted(params)[0]!r}; it takes none")
        super().__init__()

    def prepare(self, sae: Any, roles: dict[str, str], sample_acts: Any) -> None:
        by_role = {role: name for name, role in roles.items() if role in ("encoder", "decoder")}
        if set(by_role) != {"encoder", "decoder"}:
            raise ConfigError("training mode 'data_directions' needs an architecture with 'encoder' and 'decoder' roles")
        if sample_acts is None or sample_acts.ndim != 2:
            raise DataError("data_directions needs sample activations [n, d_in]")
        W_dec, W_enc = getattr(sae, by_role["decoder"]), getattr(sae, by_role["encoder"])
        dirs = data_directions(sample_acts, W_dec.shape[0])
        with torch.no_grad():
            W_dec.data.copy_(dirs)
            W_enc.data.copy_(dirs.T)
        W_dec.requires_grad_(False)
        sae.saebench_data_directions_init = dirs.clone()  # for check(); never saved to disk

    def check(self, sae: Any) -> None:
        assert not sae.W_dec.requires_grad, "data_directions: W_dec requires grad"
        initial = getattr(sae, "saebench_data_directions_init", None)
        assert initial is not None, "data_directions: SAE was not prepared by this mode"
        assert torch.equal(sae.W_dec.detach(), initial), "data_directions: W_dec moved during training"
