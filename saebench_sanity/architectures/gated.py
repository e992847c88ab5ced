"""Gated SAE: sae-lens ``GatedTrainingSAE`` (gate path ``W_enc, b_gate``; magnitude path
``W_enc * exp(r_mag), b_mag``; L1 on the gate plus an auxiliary gate reconstruction)."""

from __future__ import annotations

from typing import Any

from saebench_sanity.architectures._build import build_seeded, make_config


def build(d_in: int, d_sae: int, seed: int, **params: Any) -> Any:
    """``GatedTrainingSAE`` on CPU/float32, initialised from ``seed``. ``params``: any
    ``GatedTrainingSAEConfig`` field (``l1_coefficient``, ``l1_warm_up_steps``, ``decoder_init_norm``, ...)."""
    from sae_lens.saes.gated_sae import GatedTrainingSAE, GatedTrainingSAEConfig

    cfg = make_config("gated", GatedTrainingSAEConfig, d_in, d_sae, params)
    return build_seeded("gated", cfg, GatedTrainingSAE, seed)
