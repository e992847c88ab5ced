"""Matryoshka BatchTopK SAE: sae-lens ``MatryoshkaBatchTopKTrainingSAE``.

The study (and Bussmann et al.) describe the nested groups by fractions of the dictionary
(0.5/0.3/0.2); sae-lens wants cumulative widths, so ``group_fractions`` maps to
``matryoshka_widths = round(cumsum(fractions) * d_sae)`` with the last width exactly ``d_sae``.
"""

from __future__ import annotations

from typing import Any

from saebench_sanity.architectures.build import SaeLensArchitecture, is_finite_number
from saebench_sanity.errors import ConfigError

_SAE_LENS = SaeLensArchitecture("matryoshka_batchtopk", name="matryoshka")


def widths_from_fractions(group_fractions: Any, d_sae: int) -> list[int]:
    """Cumulative matryoshka widths for ``group_fractions`` (positive, summing to 1)."""
    fr = group_fractions
    if (not isinstance(fr, (list, tuple)) or not fr
            or not all(is_finite_number(f) and f > 0 for f in fr)):
        raise ConfigError(f"architecture 'matryoshka': group_fractions = {fr!r} must be a list of positive numbers, e.g. [0.5, 0.3, 0.2]")
    if abs(sum(fr) - 1.0) > 1e-6:
        raise ConfigError(f"architecture 'matryoshka': group_fractions {list(fr)} sum to {sum(fr):g}; they must sum to 1")
    widths, acc = [], 0.0
    for f in fr[:-1]:
        acc += f
        widths.append(int(round(acc * d_sae)))
    widths.append(d_sae)
    if any(b <= a for a, b in zip([0, *widths[:-1]], widths)):
        raise ConfigError(f"architecture 'matryoshka': group_fractions {list(fr)} give empty groups at d_sae = {d_sae} (widths {widths}); use fewer groups or a larger d_sae")
    return widths


def build(d_in: int, d_sae: int, seed: int, **params: Any) -> Any:
    """``MatryoshkaBatchTopKTrainingSAE`` on CPU/float32, initialised from ``seed``. ``params``:
    ``group_fractions`` plus any ``MatryoshkaBatchTopKTrainingSAEConfig`` field except
    ``matryoshka_widths`` (``k``, ``use_matryoshka_aux_loss``, ``topk_threshold_lr``, ...)."""
    params = dict(params)
    fractions = params.pop("group_fractions", [0.5, 0.3, 0.2])
    if isinstance(d_sae, int) and not isinstance(d_sae, bool) and d_sae > 0:
        widths = widths_from_fractions(fractions, d_sae)
    else:
        widths = []
    cfg = _SAE_LENS.config(d_in, d_sae, params, extra_known=("group_fractions",))
    cfg.matryoshka_widths = widths
    return _SAE_LENS.construct(cfg, seed)
