"""TopK SAE: sae-lens ``TopKTrainingSAE`` (k latents per sample, AuxK loss for dead latents)."""

from __future__ import annotations

from typing import Any

from saebench_sanity.architectures._build import build_seeded, check_k, make_config


def build(d_in: int, d_sae: int, seed: int, **params: Any) -> Any:
    """``TopKTrainingSAE`` on CPU/float32, initialised from ``seed``. ``params``: any
    ``TopKTrainingSAEConfig`` field (``k``, ``aux_loss_coefficient``,
    ``rescale_acts_by_decoder_norm``, ``decoder_init_norm``, ...)."""
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig

    cfg = make_config("topk", TopKTrainingSAEConfig, d_in, d_sae, params)
    check_k("topk", cfg.k, d_sae, integer=True)
    return build_seeded("topk", cfg, TopKTrainingSAE, seed)
