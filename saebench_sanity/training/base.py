"""The TrainingMode contract: what trains, what stays at random init, what runs after each step.

A mode object is built per cell from its spec (``TrainingModeSpec.build(**params)``) and used by
the trainer in this order::

    mode.prepare(sae, roles, sample_acts)   # re-initialise / freeze tensors; sample_acts [n, d_in]
    for each step:                          # skipped entirely when mode.trains is False
        trainer.step(batch)
        mode.after_step(sae)                # e.g. projection for the soft-frozen decoder
    mode.check(sae)                         # raise if the mode's invariant no longer holds

``frozen_roles`` lists the roles whose tensors must be bit-identical before and after training;
tests pin that for every architecture.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from saebench_sanity.spec import Spec, resolve_ref


class TrainingMode:
    """Base mode: everything trains, nothing else happens."""

    #: False for reference points that take no optimizer steps (``untrained``).
    trains: bool = True
    #: roles (see architectures.base) whose tensors are frozen (requires_grad False).
    frozen_roles: tuple[str, ...] = ()
    #: True for the study's random baselines (compared against ``trained`` in verdicts).
    is_baseline: bool = False

    def __init__(self, **params: Any) -> None:
        self.params = params

    def prepare(self, sae: Any, roles: dict[str, str], sample_acts: Any) -> None:
        """Initialise / freeze tensors of ``sae`` before training. ``sample_acts``: ``[n, d_in]``."""

    def after_step(self, sae: Any) -> None:
        """Run after every optimizer step."""

    def check(self, sae: Any) -> None:
        """Raise ``saebench_sanity.errors.ModeInvariantError`` if the mode's invariant does not hold for ``sae``."""


@dataclass(frozen=True)
class TrainingModeSpec(Spec):
    """Registered training mode.

    Attributes:
        factory: callable or ``"module:attr"`` returning a ``TrainingMode`` for ``**params``.
        params: default parameters (e.g. ``{"init": "cov"}``, ``{"min_cos": 0.8}``).
        is_baseline: the study's random baselines are compared with ``trained`` in verdicts;
            reference points (``untrained``) are shown but never decide a verdict.
        trains: False for modes that take no optimizer steps.
    """

    factory: "Callable[..., TrainingMode] | str" = ""
    params: dict[str, Any] = field(default_factory=dict)
    is_baseline: bool = False
    trains: bool = True

    kind: str = field(default="training_mode", init=False, repr=False, compare=False)

    def build(self, **overrides: Any) -> TrainingMode:
        fn = resolve_ref(self.factory, what=f"training mode {self.name!r}")
        return fn(**{**self.params, **overrides})

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "params": self.params, "is_baseline": self.is_baseline}
