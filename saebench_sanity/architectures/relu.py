"""ReLU SAE with an L1 penalty: sae-lens ``StandardTrainingSAE`` (architecture ``standard``)."""

from __future__ import annotations

from typing import Any

from saebench_sanity.architectures._build import build_seeded, make_config


def build(d_in: int, d_sae: int, seed: int, **params: Any) -> Any:
    """``StandardTrainingSAE`` on CPU/float32, initialised from ``seed``. ``params``: any
    ``StandardTrainingSAEConfig`` field (``l1_coefficient``, ``l1_warm_up_steps``, ``lp_norm``,
    ``decoder_init_norm``, ``apply_b_dec_to_input``)."""
    from sae_lens.saes.standard_sae import StandardTrainingSAE, StandardTrainingSAEConfig

    cfg = make_config("relu", StandardTrainingSAEConfig, d_in, d_sae, params)
    return build_seeded("relu", cfg, StandardTrainingSAE, seed)
