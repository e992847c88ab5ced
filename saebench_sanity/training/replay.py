"""Replay a member's early stop from its stored curves.

A member's record keeps the curves its rule read (``training.convergence.series``: loss, MSE, L0
and, on a set with ground truth, recovery, each point kept to the 7 significant digits
``ConvergenceControl`` itself stores). Feeding them point by point to the controls training used
(``ConvergenceControl``, inside ``MatchedL0Control`` when the record shows matched-L0 control)
repeats the stop, because every decision depends only on those values. Two exceptions, both
rare: the L0 controller reads the interval's L0 at full precision, so a member whose L0 mean sits
within rounding of the controller's freeze or reopen edge may replay a few curve points apart;
and a member stopped for a NaN loss stops where its curve ends.

With ``without``, the same replay leaves curves out of the rule: where a member would have stopped
had the rule not judged them (scripts/stop-replay.py). Only the stop can be replayed: the scores
of a member stopped earlier need a new run.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Collection, Mapping

from saebench_sanity.training.convergence import JUDGED, ConvergenceControl, unpack_curve
from saebench_sanity.training.sparsity_control import MatchedL0Control


def checked_without(without: Collection[str]) -> frozenset[str]:
    """``without`` as a set of judged curves; ValueError naming what is wrong otherwise."""
    out = frozenset(without)
    unknown = sorted(out - set(JUDGED))
    if unknown:
        raise ValueError(f"{', '.join(unknown)}: not a judged curve; choose from {', '.join(JUDGED)}")
    if out >= {"loss", "mse"}:
        raise ValueError("loss and mse: leaving out both leaves the rule no loss curve; keep one of them")
    return out


def replay_stop(training: Any, series: Mapping[str, str], *, l0_control: Mapping[str, Any] | None = None,
                without: Collection[str] = ()) -> dict[str, Any]:
    """Where the controls stop a member whose stored curves are ``series`` (packed strings, as
    ``training.convergence.series``); ``training`` is a ``TrainingConfig`` or a record's
    ``cell.training`` dict; ``l0_control`` the record's ``training.convergence.l0_control`` (its
    ``target`` and ``coefficients``), or None for a member without matched-L0 control.
    ``without``: judged curves (``JUDGED``) the rule leaves out; at least one of loss / MSE stays.

    Returns ``steps`` (the curve point where the member stops, or the last one if the curves end
    first), ``stopped`` (False: the curves ended first), ``l0_frozen_at`` (where the matched-L0
    controller last froze, None without one or if it never did), ``level_at`` (the step the rule first said level, or None) and ``state`` (the rule's
    decision on the curves up to the stop)."""
    without = checked_without(without)
    curves = {name: dict(unpack_curve(text)) for name, text in series.items() if name in JUDGED or name == "l0"}
    if "loss" not in curves or "mse" not in curves:
        raise ValueError("the stored curves hold no loss / MSE curve")
    cfg = SimpleNamespace(**training) if isinstance(training, Mapping) else training
    recovery = curves.get("recovery")
    at = [0]
    inner = ConvergenceControl(cfg, probe=(lambda _member: recovery[at[0]])
                               if recovery is not None and "recovery" not in without else None)
    for name in without:
        inner.curves.pop(name, None)
    control: Any = inner
    if l0_control:
        control = MatchedL0Control(inner, float(l0_control["target"]), tuple(l0_control.get("coefficients") or ()))
    fed = [name for name in ("loss", "mse") if name not in without]
    stopped = False
    for step in sorted(curves["loss"]):
        values = {name: curves[name][step] for name in fed}
        if step in curves.get("l0", {}):
            values["l0"] = curves["l0"][step]
        at[0] = step
        if control.observe(step, values, None):
            stopped = True
            break
    _, info = control.result()
    return {"steps": inner.steps, "stopped": stopped, "level_at": inner.level_at, "state": info["state"],
            "l0_frozen_at": getattr(control, "frozen_at", None)}
