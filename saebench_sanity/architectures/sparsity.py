"""Map one target L0 (``run.target_l0``) onto each architecture's own sparsity knob.

==============  =================================================================================
architecture    what ``target_l0 = T`` sets
==============  =================================================================================
topk            ``k = T`` (exactly T active latents per sample)
batchtopk       ``k = T`` (T active latents per sample on average over a batch)
matryoshka      ``k = T`` (BatchTopK over the whole dictionary)
jumprelu        ``jumprelu_sparsity_loss_mode = "quadratic"``, ``target_l0 = T``: sae-lens's
                Gemma-Scope-2 penalty ``l0_coefficient * 2/T * (L0 - T)^2`` (per sample, L0 through
                the straight-through step function) pulls each sample's L0 towards T instead of
                pushing it to 0, so T is a target, not a bound; the trained L0 is reported.
relu, gated     nothing: an L1 penalty has no L0 it aims for. Their sparsity is set by
                ``l1_coefficient``; the achieved L0 is recorded and shown next to the scores.
==============  =================================================================================

Plugin architectures: if their spec's ``sparsity_param`` is ``"k"`` or ``"target_l0"`` it is set
to T; otherwise the params are returned unchanged.
"""

from __future__ import annotations

from typing import Any

from saebench_sanity.errors import ConfigError

_K_ARCHS = {"topk", "batchtopk", "matryoshka"}
_L1_ARCHS = {"relu", "gated"}


def targets_l0(arch_name: str, sparsity_param: str = "") -> bool:
    """True if ``apply_target_l0`` can set an L0 target for this architecture."""
    if arch_name in _K_ARCHS or arch_name == "jumprelu":
        return True
    if arch_name in _L1_ARCHS:
        return False
    return sparsity_param in ("k", "target_l0")


def apply_target_l0(arch_name: str, params: dict[str, Any], target_l0: int | None,
                    sparsity_param: str = "") -> dict[str, Any]:
    """Return a copy of ``params`` with ``target_l0`` mapped to the architecture's knob (table above).
    ``target_l0 = None`` returns the params unchanged."""
    out = dict(params)
    if target_l0 is None:
        return out
    if isinstance(target_l0, bool) or not isinstance(target_l0, int) or target_l0 <= 0:
        raise ConfigError(f"target_l0 = {target_l0!r} must be a positive integer, e.g. 20")
    if arch_name in _K_ARCHS:
        out["k"] = target_l0
    elif arch_name == "jumprelu":
        out["jumprelu_sparsity_loss_mode"] = "quadratic"
        out["target_l0"] = float(target_l0)
    elif arch_name in _L1_ARCHS:
        pass
    elif sparsity_param in ("k", "target_l0"):
        out[sparsity_param] = target_l0
    return out


def resolve_arch_params(arch_spec: Any, target_l0: int | None, overrides: dict[str, Any]) -> dict[str, Any]:
    """An architecture's hyper-parameters for one cell: the spec's defaults, then the run's
    ``target_l0`` mapped onto its knob (table above), then the explicit ``overrides`` (the user's
    ``[architectures.<name>]`` and per-set tables). The plan (cell identity), the trainer
    (``build_cell``) and the inventory all resolve through this one function."""
    return {**apply_target_l0(arch_spec.name, dict(arch_spec.params), target_l0, arch_spec.sparsity_param),
            **overrides}
