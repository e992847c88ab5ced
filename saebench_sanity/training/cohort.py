"""Train the cells of one cohort: the trained SAE and its baselines of one (set, architecture,
training config, seed), on the identical batch stream.

``train_cells`` is what the harness calls; it returns one ``TrainResult`` (or the exception that
stopped that member) per member, in order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from saebench_sanity.config import TrainingConfig


def train_cells(members: Sequence[tuple[Any, Any, dict[str, Any], int]], activation_set: Any, *, d_sae: int,
                target_l0: int | None, arch_overrides: dict[str, Any], training: "TrainingConfig",
                device: str = "cpu", dtype: str = "float32",
                progress: Callable[[int, int, int, float], None] | None = None) -> list[Any]:
    """Train ``members`` = ``[(arch_spec, mode_spec, mode_params, seed), ...]`` of one cohort.

    Returns per member a ``training.trainer.TrainResult`` or the exception that stopped it (a
    diverged member does not stop the others). ``progress(member_index, step, total, loss)``."""
    from saebench_sanity.training.trainer import train_cell

    results: list[Any] = []
    for i, (arch_spec, mode_spec, mode_params, seed) in enumerate(members):
        def report(step: int, total: int, loss: float, i: int = i) -> None:
            if progress is not None:
                progress(i, step, total, loss)
        try:
            results.append(train_cell(arch_spec, mode_spec, activation_set, d_sae=d_sae, target_l0=target_l0,
                                      arch_overrides=arch_overrides, mode_params=mode_params, training=training,
                                      seed=seed, progress=report))
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - recorded for this member; the cohort goes on
            results.append(exc)
    return results
