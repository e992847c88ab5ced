"""Matched sparsity: steer a member's sparsity coefficient so its L0 ends at the cohort's target.

The study compares SAEs and baselines at matched L0. TopK-family SAEs get the target by
construction (k). SAEs whose sparsity comes from a penalty do not: an L1 penalty (ReLU, Gated)
has no L0 it aims for, and JumpReLU's quadratic penalty ``c * 2/T * (L0 - T)^2`` settles where it
balances the reconstruction loss, which for a random-encoder baseline can be many times T. A
verdict between two SAEs at different L0 compares sparsity budgets, not dictionaries.

``L0Controller`` is a multiplicative integral controller on the penalty's coefficient, run on the
interval means of the member's L0 (every ``curve_every`` steps, the same points the convergence
rule reads)::

    log(scale) += gain * clip(log(L0 / T), -max_step, max_step)

A higher coefficient lowers L0 for an L1 penalty and pulls L0 towards T for the quadratic one, so
the same sign works for both where L0 > T (the usual case); where L0 < T the coefficient relaxes.
The scale is the factor sae-lens's coefficient (after its own warm-up) is multiplied by. The
controller stops adapting (``frozen``) at ``freeze_at`` steps, so the convergence rule judges a
stationary objective over the rest of training; the member's final L0 is what the leaderboard
checks against ``T +- tolerance`` (``L0 NOT MATCHED`` otherwise). Hand-written: neither sae-lens
nor torch has an L0 controller (sae-lens's JumpReLU target is the quadratic penalty above).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class L0Controller:
    """Coefficient scale for one member.

    Attributes:
        target: the target L0 ``T`` (mean active latents per sample), > 0.
        gain: integral gain per observation on ``log(L0 / T)``.
        max_step: largest change of ``log(scale)`` per observation (a dead or exploding interval
            cannot swing the coefficient by more than ``exp(gain * max_step)``).
        freeze_at: step from which the scale stays fixed (None: never).
        scale: the current multiplier of the sparsity coefficient.
    """

    target: float
    gain: float = 0.5
    max_step: float = 1.0
    freeze_at: int | None = None
    scale: float = 1.0
    history: list[tuple[int, float, float]] = field(default_factory=list)  # (step, l0, scale after)

    def __post_init__(self) -> None:
        if not (self.target > 0 and math.isfinite(self.target)):
            raise ValueError(f"target L0 = {self.target!r} must be a positive number")

    def observe(self, step: int, l0: float) -> float:
        """Record the interval-mean ``l0`` measured up to ``step``; returns the scale to use from
        the next step on."""
        if self.freeze_at is None or step < self.freeze_at:
            if math.isfinite(l0):
                # a member with no active latent at all reads L0 0: treat it as far below target
                err = math.log(max(l0, 1e-3) / self.target)
                self.scale *= math.exp(self.gain * max(-self.max_step, min(self.max_step, err)))
        self.history.append((int(step), float(l0), float(self.scale)))
        return self.scale

    def matched(self, l0: float, tolerance: float = 0.1) -> bool:
        """True if ``l0`` is within ``target * (1 +- tolerance)``."""
        return abs(l0 - self.target) <= tolerance * self.target
