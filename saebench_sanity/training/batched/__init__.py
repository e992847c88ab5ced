"""Batched (cohort) training math for sae-lens training classes; see ``base`` for the contract.

``batched_for(sae)`` picks the ``BatchedArch`` registered for the EXACT sae-lens training class
of ``sae`` (``type(sae) is cls``: a plugin subclass with other math never gets built-in math) if
it ``supports(sae)``; None means "train this member on the solo path" (``training.trainer``).
"""

from __future__ import annotations

from typing import Any

from saebench_sanity.training.batched.base import BatchedArch, BatchedOut, StepCtx

__all__ = ["BatchedArch", "BatchedOut", "StepCtx", "batched_for", "REGISTRY"]

#: (sae-lens module, class name) -> "saebench module:factory" building the BatchedArch.
#: Strings, so importing this package does not import sae-lens (~15 s).
REGISTRY: dict[tuple[str, str], str] = {
    ("sae_lens.saes.topk_sae", "TopKTrainingSAE"): "saebench_sanity.training.batched.topk:TopKBatched",
    ("sae_lens.saes.batchtopk_sae", "BatchTopKTrainingSAE"): "saebench_sanity.training.batched.topk:BatchTopKBatched",
    ("sae_lens.saes.matryoshka_batchtopk_sae", "MatryoshkaBatchTopKTrainingSAE"):
        "saebench_sanity.training.batched.topk:MatryoshkaBatchTopKBatched",
    ("sae_lens.saes.standard_sae", "StandardTrainingSAE"): "saebench_sanity.training.batched.l1:StandardBatched",
    ("sae_lens.saes.jumprelu_sae", "JumpReLUTrainingSAE"): "saebench_sanity.training.batched.l1:JumpReLUBatched",
    ("sae_lens.saes.gated_sae", "GatedTrainingSAE"): "saebench_sanity.training.batched.l1:GatedBatched",
}


def batched_for(sae: Any) -> BatchedArch | None:
    """The ``BatchedArch`` for ``sae``'s exact class, or None (solo path) if there is none, its
    module is not available, or it does not ``supports(sae)``."""
    import importlib

    cls = type(sae)
    ref = REGISTRY.get((cls.__module__, cls.__qualname__))
    if ref is None:
        return None
    module_name, _, attr = ref.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:  # a real import bug inside the module: surface it
            raise
        return None  # that arch's module is not part of this install: the solo path trains it
    factory = getattr(module, attr, None)
    if factory is None:
        return None
    arch = factory()
    return arch if arch.supports(sae) else None
