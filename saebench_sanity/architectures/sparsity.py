"""Map one target L0 (``run.target_l0``) onto each architecture's own sparsity knob.

Each architecture declares the mapping on its spec (``ArchitectureSpec.target_l0_params``: a
callable ``target_l0 -> {param: value}``); the built-ins declare it the way a plugin would:

==============  =================================================================================
architecture    what ``target_l0 = T`` sets (declared mapping)
==============  =================================================================================
topk            ``k = T`` (exactly T active latents per sample; ``k_from_target_l0``)
batchtopk       ``k = T`` (T active latents per sample on average over a batch)
matryoshka      ``k = T`` (BatchTopK over the whole dictionary)
jumprelu        ``jumprelu_sparsity_loss_mode = "quadratic"``, ``target_l0 = T``
                (``jumprelu_quadratic_target``): sae-lens's Gemma-Scope-2 penalty
                ``l0_coefficient * 2/T * (L0 - T)^2`` (per sample, L0 through the straight-through
                step function) pulls each sample's L0 towards T instead of pushing it to 0, so T is
                a target, not a bound; the trained L0 is reported.
relu, gated     nothing (no mapping declared): an L1 penalty has no L0 it aims for. Their sparsity
                is set by ``l1_coefficient``; with ``training.match_l0`` the matched-L0 controller
                steers the coefficients the spec names in ``sparsity_coefficients``.
==============  =================================================================================

A spec that declares no mapping but whose ``sparsity_param`` is ``"k"`` or ``"target_l0"`` gets
that parameter set to T; otherwise its params are returned unchanged.
"""

from __future__ import annotations

from typing import Any

from saebench_sanity.architectures.build import is_finite_number
from saebench_sanity.errors import ConfigError


def k_from_target_l0(target_l0: float) -> dict[str, Any]:
    """TopK-family mapping: ``k = target_l0`` active latents per sample."""
    return {"k": target_l0}


def jumprelu_quadratic_target(target_l0: float) -> dict[str, Any]:
    """JumpReLU mapping: sae-lens's quadratic L0 penalty aimed at ``target_l0`` (see the table)."""
    return {"jumprelu_sparsity_loss_mode": "quadratic", "target_l0": float(target_l0)}


def check_target_l0(target_l0: Any) -> None:
    """ConfigError unless ``target_l0`` is a positive number (fractional ones come only from a
    ``[sets.NAME.architectures.ARCH]`` table: ``RunConfig.target_l0_for``)."""
    if not (is_finite_number(target_l0) and target_l0 > 0):
        raise ConfigError(f"target_l0 = {target_l0!r} must be a positive number, e.g. 20")


def targets_l0(arch_spec: Any) -> bool:
    """True if a target L0 sets this architecture's sparsity (``ArchitectureSpec.targets_l0``)."""
    return bool(arch_spec.targets_l0)


def apply_target_l0(arch_spec: Any, params: dict[str, Any], target_l0: float | None) -> dict[str, Any]:
    """Return a copy of ``params`` with ``target_l0`` mapped onto the architecture's knob (the
    spec's declared mapping, table above). ``target_l0 = None`` returns the params unchanged.
    ConfigError when the knob is ``k`` (it counts latents) and the target is fractional."""
    out = dict(params)
    if target_l0 is None:
        return out
    check_target_l0(target_l0)
    mapped = arch_spec.params_for_target_l0(target_l0)
    k = mapped.get("k")
    if isinstance(k, float) and not k.is_integer():
        raise ConfigError(f"target_l0 = {target_l0}: architecture {arch_spec.name!r} sets k, a whole number of "
                          "latents per sample; give it a whole-number target")
    return {**out, **mapped}


def resolve_arch_params(arch_spec: Any, target_l0: float | None, overrides: dict[str, Any]) -> dict[str, Any]:
    """An architecture's hyper-parameters for one cell: the spec's defaults, then the run's
    ``target_l0`` mapped onto its knob (table above), then the explicit ``overrides`` (the user's
    ``[architectures.<name>]`` and per-set tables). The plan (cell identity), the trainer
    (``build_cell``) and the inventory all resolve through this one function."""
    return {**apply_target_l0(arch_spec, dict(arch_spec.params), target_l0), **overrides}
