"""JumpReLU SAE: sae-lens ``JumpReLUTrainingSAE`` (learned per-latent thresholds, L0 penalty via
straight-through estimators; ``jumprelu_sparsity_loss_mode = "quadratic"`` targets an L0, see
``architectures.sparsity``)."""

from __future__ import annotations

from typing import Any

from saebench_sanity.architectures._build import build_seeded, make_config
from saebench_sanity.errors import ConfigError

_LOSS_MODES = ("step", "tanh", "quadratic")


def build(d_in: int, d_sae: int, seed: int, **params: Any) -> Any:
    """``JumpReLUTrainingSAE`` on CPU/float32, initialised from ``seed``. ``params``: any
    ``JumpReLUTrainingSAEConfig`` field (``l0_coefficient``, ``jumprelu_sparsity_loss_mode``,
    ``target_l0``, ``jumprelu_init_threshold``, ``jumprelu_bandwidth``, ...)."""
    from sae_lens.saes.jumprelu_sae import JumpReLUTrainingSAE, JumpReLUTrainingSAEConfig

    mode = params.get("jumprelu_sparsity_loss_mode", "step")
    if mode not in _LOSS_MODES:
        raise ConfigError(f"architecture 'jumprelu': jumprelu_sparsity_loss_mode = {mode!r}; use one of {', '.join(_LOSS_MODES)}")
    if mode == "quadratic" and params.get("target_l0") is None:
        raise ConfigError("architecture 'jumprelu': jumprelu_sparsity_loss_mode = 'quadratic' needs target_l0 (set run.target_l0)")
    cfg = make_config("jumprelu", JumpReLUTrainingSAEConfig, d_in, d_sae, params)
    return build_seeded("jumprelu", cfg, JumpReLUTrainingSAE, seed)
