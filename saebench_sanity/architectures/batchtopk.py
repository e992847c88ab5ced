"""Post-training calibration of BatchTopK-family SAEs (sae-lens ``BatchTopKTrainingSAE`` and
``MatryoshkaBatchTopKTrainingSAE``), declared by their specs as ``calibration``. Such an SAE is
saved for inference as a JumpReLU SAE whose threshold is the running ``topk_threshold`` learned
during training.

``calibrate_threshold`` sets that threshold from sample activations without any optimizer step.
sae-lens updates it as an exponential moving average (rate ``topk_threshold_lr``, default 0.01) of
the smallest kept activation per batch, starting from 0; after n steps the zero start still weighs
``(1 - rate) ** n`` (0.99**30 = 0.74). For 0-step cells (``untrained``) and short runs the
threshold would therefore be meaningless, so the trainer replaces it with the EMA's fixed point:
the mean over sample batches of the smallest activation BatchTopK keeps.
"""

from __future__ import annotations

from typing import Any


def has_batch_threshold(sae: Any) -> bool:
    """True for sae-lens BatchTopK-family training SAEs (incl. Matryoshka): what
    ``architectures.checkpoint.save_checkpoint`` guards, as sae-lens saves them with that threshold."""
    from sae_lens.saes.batchtopk_sae import BatchTopKTrainingSAE

    return isinstance(sae, BatchTopKTrainingSAE)


def calibrate_threshold(sae: Any, sample_acts: Any, batch_size: int) -> float:
    """Set ``sae.topk_threshold`` to the mean, over ``batch_size`` chunks of ``sample_acts``
    ``[n, d_in]``, of the smallest positive activation BatchTopK keeps (the fixed point of
    sae-lens's EMA update). Returns the threshold. No parameter changes."""
    import torch

    mins = []
    was_training = sae.training
    sae.train()  # BatchTopK selection (not the inference threshold)
    with torch.no_grad():
        for chunk in sample_acts.split(max(1, int(batch_size))):
            acts = sae.encode(chunk.to(torch.float32))
            pos = acts[acts > 0]
            if pos.numel():
                mins.append(pos.min().double())
    sae.train(was_training)
    value = torch.stack(mins).mean() if mins else torch.tensor(0.0, dtype=torch.double)
    sae.topk_threshold = value.to(sae.topk_threshold.dtype).clone()
    return float(value)
