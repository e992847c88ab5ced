"""Train the cells of one cohort: the trained SAE and its baselines of one (set, architecture,
training config, seed), on the identical batch stream, as one program (``training.engine``).

``train_cells`` is what the harness calls. Per member it builds and prepares the SAE exactly as
the solo path does (``trainer.build_cell``: seeding, the mode's random directions and fairness
helpers), gives it its own ``ConvergenceControl`` (same ``max_steps`` and schedule shape for
every mode; each stops when its own curves are level), trains the cohort with
``engine.train_cohort`` and finishes each member as ``trainer.train_cell`` does (the spec's
``calibration``, e.g. the BatchTopK threshold, then the mode's invariants). Modes that take no
optimizer step (``untrained``) go through ``trainer.train_cell`` directly: they cost no training.

Matched sparsity: a member whose sparsity is a penalty (its spec's ``sparsity_coefficients``:
``l1`` for ReLU and Gated, ``l0`` for JumpReLU) gets a ``MatchedL0Control`` when the cell has a
target L0 and ``training.match_l0`` is on, so the trained SAE and every baseline end at the same
L0 (the TopK family has it by construction). The leaderboard checks every member's final L0.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any, Callable, Sequence

from saebench_sanity.errors import DataError

if TYPE_CHECKING:  # pragma: no cover
    from saebench_sanity.config import TrainingConfig


def train_cells(members: Sequence[tuple[Any, Any, dict[str, Any], int]], activation_set: Any, *, d_sae: int,
                target_l0: float | None, arch_overrides: dict[str, Any], training: "TrainingConfig",
                device: str = "cpu", dtype: str = "float32",
                progress: Callable[[int, int, int, float], None] | None = None) -> list[Any]:
    """Train ``members`` = ``[(arch_spec, mode_spec, mode_params, seed), ...]`` of one cohort
    (one seed: they share ``activation_set.train_batches(batch_size, seed)``).

    Returns per member a ``training.trainer.TrainResult`` or the exception that stopped it (a
    member that fails to build or diverges does not stop the others).
    ``progress(member_index, step, max_steps, loss)`` reports the cohort's progress (member 0)."""
    from saebench_sanity.training.convergence import ConvergenceControl, recovery_probe
    from saebench_sanity.training.engine import Member, train_cohort
    from saebench_sanity.training.sparsity_control import MatchedL0Control, sparsity_coefficients
    from saebench_sanity.training.trainer import build_cell, train_cell

    seeds = {int(m[3]) for m in members}
    if len(seeds) > 1:
        raise ValueError(f"a cohort shares one batch stream, so one seed; got seeds {sorted(seeds)}")
    results: list[Any] = [None] * len(members)
    batched: list[tuple[int, Any]] = []
    probe = recovery_probe(activation_set)
    t0 = time.perf_counter()
    for i, (arch_spec, mode_spec, mode_params, seed) in enumerate(members):
        try:
            if not bool(getattr(mode_spec, "trains", True)):
                results[i] = train_cell(arch_spec, mode_spec, activation_set, d_sae=d_sae, target_l0=target_l0,
                                        arch_overrides=arch_overrides, mode_params=mode_params, training=training,
                                        seed=seed, dtype=dtype)
                continue
            sae, mode, sample = build_cell(arch_spec, mode_spec, activation_set, d_sae=d_sae, target_l0=target_l0,
                                           arch_overrides=arch_overrides, mode_params=mode_params,
                                           training=training, seed=seed, dtype=dtype)
            coefficients = sparsity_coefficients(arch_spec, sae)  # declared by the spec
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - recorded for this member; the cohort goes on
            results[i] = exc
            continue
        control: Any = ConvergenceControl(training, probe=probe)
        if training.match_l0 and target_l0 is not None and coefficients:
            control = MatchedL0Control(control, float(target_l0), coefficients)
        batched.append((i, Member(sae=sae, mode=mode, control=control, sample_acts=sample,
                                  name=f"{arch_spec.name}/{mode_spec.name}/s{seed}")))
    if not batched:
        return results
    seed = int(members[batched[0][0]][3])
    set_name = getattr(activation_set, "name", "?")
    batches = iter(activation_set.train_batches(int(training.batch_size), seed))
    build_seconds = time.perf_counter() - t0

    def report(step: int, total: int, active: int) -> None:
        if progress is not None:
            progress(batched[0][0], step, total, math.nan)

    out = train_cohort([m for _, m in batched], batches, training, device=device, dtype=dtype, set_name=set_name,
                       progress=report)
    for (i, member), res in zip(batched, out):
        try:
            results[i] = _finish(member, res, training, set_name, build_seconds / len(members), members[i][0])
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - one member's failed invariant fails that member only
            results[i] = exc
    return results


def _finish(member: Any, res: Any, training: "TrainingConfig", set_name: str, extra_seconds: float,
            arch_spec: Any) -> Any:
    """A member's ``TrainResult``: what ``trainer.train_cell`` does after its loop."""
    from saebench_sanity.training.trainer import TrainResult, as_saved

    if res.failure is not None:
        step, loss = res.failure
        raise DataError(f"training on activation set {set_name!r} diverged (loss {loss}) at step {step}; "
                        "lower training.lr or check the activations' scale")
    sae = res.sae
    # The architecture's declared calibration (``ArchitectureSpec.calibration``). BatchTopK's: the
    # inference threshold of a BatchTopK-family SAE is sae-lens's moving average of the smallest
    # kept activation, which lags the weights; a member that stops early (often a few hundred
    # steps) or whose activations still shift (a frozen encoder's, as its biases and decoder
    # train) keeps a stale one: measured on the real set, frozen-encoder BatchTopK members served
    # L0 24-25 on held-out data for k = 32. The threshold is set to the average's fixed point at
    # the final weights, so every member serves its own k.
    arch_spec.calibrate(sae, member.sample_acts, int(training.batch_size))
    member.mode.check(sae)
    converged, info = member.control.result()
    info["path"] = res.path
    curves = member.control.curves
    return TrainResult(sae=as_saved(sae), steps=int(res.steps), seconds=float(res.seconds) + extra_seconds,
                       loss_curve=list(curves["loss"]), mse_curve=list(curves["mse"]),
                       l0_curve=list(curves.get("l0", [])), recovery_curve=list(curves.get("recovery", [])),
                       converged=converged, convergence=info, dead_fraction=float(res.dead_fraction),
                       l0_train=float(res.l0_train))
