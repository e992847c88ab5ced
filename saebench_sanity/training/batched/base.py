"""The contract between the cohort engine (``training.engine``) and the batched math of one
sae-lens training class.

A *cohort* is M sae-lens SAEs of the same class and shape trained on the identical batch each
step. Their parameters are stacked along a leading member dimension (``p["W_enc"]`` is
``[M, d_in, d_sae]``), so one batched tensor program computes every member's loss and gradient.
Each ``BatchedArch`` reproduces its sae-lens class's ``training_forward_pass`` exactly (tested per
member against sae-lens in float64 to ~1e-12 relative); members never influence each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:  # pragma: no cover
    from torch import Tensor

#: Take the accelerator paths on the CPU too. Only tests set it: those paths otherwise run on a
#: GPU only, which these machines do not have (tests/test_engine_cohort.py trains both ways).
ACCELERATOR_PATHS = False


def accelerator_paths(device: Any) -> bool:
    """Whether training code on ``device`` takes the paths written for accelerators (CUDA, MPS):
    no host read per step (on the CPU a read is free, so the CPU paths read values to skip work
    they can see is not needed: an AuxK term with no dead latent, a clip coefficient of 1, rows
    already inside the soft-frozen cone, a finite loss), and the dense L1-family step. Both paths
    compute the same thing; True on any non-CPU device, and on the CPU while
    ``ACCELERATOR_PATHS`` is set."""
    import torch

    return torch.device(device).type != "cpu" or ACCELERATOR_PATHS


@dataclass
class StepCtx:
    """What one training step of the cohort knows besides parameters and batch.

    Attributes:
        step: sae-lens ``n_training_steps`` before this step (0-based).
        coefficients: name -> ``[M]`` current value per member: exactly what each member's sae-lens
            ``SAETrainer.get_coefficients()`` would give at this step (warm-up applied).
        dead_neuron_mask: ``[M, d_sae]`` bool, exactly sae-lens's ``trainer.dead_neurons`` per
            member (``n_forward_passes_since_fired > dead_feature_window``), or None.
    """

    step: int
    coefficients: "dict[str, Tensor]"
    dead_neuron_mask: "Tensor | None"


@dataclass
class BatchedOut:
    """Per-member result of one batched forward pass.

    Attributes:
        total: ``[M]`` total loss per member (sae-lens ``TrainStepOutput.loss``), differentiable.
        losses: name -> ``[M]``, the same keys as sae-lens ``TrainStepOutput.losses``.
        fire_counts: ``[M, d_sae]`` float, samples of the batch on which each latent fired
            (sae-lens: ``(feature_acts != 0).float().sum(0)``); no grad.
    """

    total: "Tensor"
    losses: "dict[str, Tensor]"
    fire_counts: "Tensor"


@runtime_checkable
class BatchedArch(Protocol):
    """Batched training math of one sae-lens ``TrainingSAE`` class over M members (a cohort)."""

    #: sae-lens ``nn.Parameter`` names this arch stacks, e.g. ``("W_enc", "W_dec", "b_enc", "b_dec")``.
    param_names: tuple[str, ...]

    def supports(self, sae: Any) -> bool:
        """True if this member's config flags are ones the batched math reproduces."""
        ...

    def init_state(self, saes: list[Any]) -> "dict[str, Tensor]":
        """Non-parameter per-member state stacked ``[M, ...]`` (e.g. BatchTopK ``topk_threshold``
        ``[M]``, per-member config flags as tensors). Tensors live on the saes' device / dtype;
        the engine moves them with the parameters."""
        ...

    def loss(self, p: "dict[str, Tensor]", x: "Tensor", state: "dict[str, Tensor]", ctx: StepCtx) -> BatchedOut:
        """Per-member losses on the shared batch.

        ``p[name]``: stacked ``[M, *param.shape]`` (requires grad); ``x``: ``[B, d_in]``, the same
        batch for every member. Contract (tested): for every member i, ``total[i]``,
        ``losses[k][i]`` and ``d total[i] / d p[name][i]`` equal sae-lens's
        ``sae_i.training_forward_pass(TrainStepInput(sae_in=x, coefficients=..., dead_neuron_mask=...,
        n_training_steps=ctx.step, is_logging_step=False))`` loss, losses and parameter grads.
        Member j's parameters never influence member i's loss.
        """
        ...

    def update_state(self, state: "dict[str, Tensor]", p: "dict[str, Tensor]", x: "Tensor", ctx: StepCtx) -> None:
        """In-place non-gradient updates sae-lens makes inside ``training_forward_pass`` (BatchTopK's
        EMA threshold). No-op for most archs; an arch may instead do it inside ``loss`` under
        ``no_grad`` (it says which in its docstring)."""
        ...

    def write_back(self, p: "dict[str, Tensor]", state: "dict[str, Tensor]", saes: list[Any]) -> None:
        """Copy member i's slice of every stacked parameter / state back into ``saes[i]`` (in the
        sae's own dtype and device)."""
        ...


def copy_params_into(p: "dict[str, Tensor]", saes: list, names: "tuple[str, ...]") -> None:
    """Copy member ``i``'s slice of every stacked parameter ``p[name]`` ``[M, ...]`` into
    ``saes[i]``'s sae-lens parameter of that name, in the SAE's own dtype and device (the shared
    part of every ``BatchedArch.write_back``)."""
    import torch

    with torch.no_grad():
        for i, sae in enumerate(saes):
            for name in names:
                dst = getattr(sae, name)
                dst.data.copy_(p[name][i].detach().to(dtype=dst.dtype, device=dst.device))
