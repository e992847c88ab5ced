"""One cell's training: the solo path (sae-lens's ``SAETrainer``) and ``train_cell``.

``train_cell`` trains one cell as a cohort of one (``training.cohort.train_cells`` over
``training.engine.train_cohort``): the same control (``training.convergence.ConvergenceControl``,
plus ``training.sparsity_control`` for penalty SAEs with a target L0) and the same finishing as the
harness's cohorts. ``CellTrainer`` is the solo path the engine uses for SAEs it has no batched
math for: sae-lens's own ``SAETrainer`` (Adam, the sparsity-coefficient warm-up read from the
SAE's ``get_coefficients``, gradient clipping, dead-latent tracking), driven through its public
per-step seams (``maybe_reset_sparsity``, ``step``, ``n_training_steps``) instead of ``fit()``,
because a cell must run code after every optimizer step (the soft-frozen projection
``mode.after_step``), set the lr of each step from its control (``training.lr *
control.lr_factor(step)``, instead of sae-lens's scheduler, whose length would have to be known in
advance), record curves and validate every batch; ``fit()`` offers none of these hooks. What else
``fit()`` does that applies is reproduced: sparsity-window resets and ``set_final_sae_metadata``.

Reproducibility: a cell's SAE is built from ``seed``; the mode's random directions come from the
global torch RNG seeded with ``seed`` inside ``torch.random.fork_rng`` (the caller's RNG state is
untouched); batches come from ``activation_set.train_batches(batch_size, seed)``. The trained SAE
and its baselines of one seed therefore share data order and base initialisation. sae-lens's
training step itself draws no random numbers, so the same seed gives bit-identical weights.
Thread count is the caller's business (``torch.set_num_threads``), never set here.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator

from saebench_sanity.errors import DataError, PluginError

if TYPE_CHECKING:  # pragma: no cover
    from saebench_sanity.config import TrainingConfig

#: Offset between the build seed and the seed of the mode's random directions.
MODE_SEED_OFFSET = 1_000_003


def init_dtype_for(dtype: Any) -> str:
    """The dtype a cell's SAE is built in (``architectures.build.init_dtype``): ``"float64"`` for
    float64 training, ``"float32"`` otherwise (bfloat16 training starts from float32 weights).

    A float64 cell built in float32 started from weights that each CPU computes with its own
    rounding (the decoder's row norms, the encoder's copy of it): two machines' float64 runs then
    differed by float32 rounding from step 0, and a ReLU SAE's first Adam step turned that into
    1.6e-4 of its largest weight (docs/limitations.md). Built in float64, sae-lens draws and
    computes the initial weights in float64."""
    return "float64" if str(dtype).removeprefix("torch.") == "float64" else "float32"


def init_key_material(dtype: Any) -> dict[str, str]:
    """``{"init_dtype": ...}`` for a cell's key when its SAE is built in another dtype than
    float32 (float64 cells), else nothing: the keys of float32 and bfloat16 cells stay what they
    were before float64 cells were built in float64."""
    init = init_dtype_for(dtype)
    return {"init_dtype": init} if init != "float32" else {}


def as_saved(sae: Any) -> Any:
    """``sae`` in float32, the dtype every checkpoint is written in whatever the training
    precision (a float64 cell's weights are rounded once, at the end, as they always were)."""
    import torch

    if getattr(sae, "dtype", torch.float32) == torch.float64:
        sae.to(dtype=torch.float32)  # sae-lens's ``to`` also updates cfg.dtype
    return sae


@dataclass
class TrainResult:
    """What training one cell produced.

    Attributes:
        sae: the sae-lens ``TrainingSAE`` after training (save with ``architectures.checkpoint``).
        steps: optimizer steps taken (0 for ``untrained``; < ``training.max_steps`` when the cell
            stopped early).
        seconds: wall time of the training loop.
        loss_curve: ``(step, mean total loss over the interval)`` every ``training.curve_every``
            steps, plus the final partial interval.
        mse_curve: the same for sae-lens's ``mse_loss`` term.
        l0_curve: the same for the mean number of active latents per sample.
        recovery_curve: ``(step, recovery)`` probed on ``W_dec`` (sets with ground truth only).
        converged: not UNDERTRAINED under the ``training.convergence`` rule (its state is
            ``convergence["state"]``: improving / level / undecided); True for 0-step modes.
        convergence: ``ConvergenceControl.result()`` info: ``state``, per-curve decisions
            (``curves``), ``steps``, ``decay_start``, ``level_at``, ``series`` (every curve).
        dead_fraction: fraction of latents sae-lens counts dead (not fired for
            ``training.dead_feature_window`` steps); for 0-step modes: never fired on the sample.
        l0_train: mean active latents per sample over the last sparsity window (sae-lens's
            ``feature_sparsity.sum()``); for 0-step modes: on the sample activations.
    """

    sae: Any
    steps: int
    seconds: float
    loss_curve: list[tuple[int, float]] = field(default_factory=list)
    mse_curve: list[tuple[int, float]] = field(default_factory=list)
    l0_curve: list[tuple[int, float]] = field(default_factory=list)
    recovery_curve: list[tuple[int, float]] = field(default_factory=list)
    converged: bool = True
    convergence: dict[str, Any] = field(default_factory=dict)
    dead_fraction: float = 0.0
    l0_train: float = 0.0


def check_batch(batch: Any, d_in: int, set_name: str) -> Any:
    """Return ``batch`` as float32 ``[n, d_in]``; DataError naming the set otherwise."""
    import torch

    if not isinstance(batch, torch.Tensor):
        raise DataError(f"activation set {set_name!r} yielded a {type(batch).__name__}, not a tensor; fix its train_batches")
    if batch.ndim != 2 or batch.shape[1] != d_in:
        raise DataError(f"activation set {set_name!r} yielded a batch of shape {tuple(batch.shape)}; expected [n, {d_in}] (d_in mismatch)")
    if not batch.is_floating_point():
        raise DataError(f"activation set {set_name!r} yielded dtype {batch.dtype}; expected floating point activations")
    if batch.dtype != torch.float32:
        batch = batch.to(torch.float32)
    if not bool(torch.isfinite(batch).all()):
        raise DataError(f"activation set {set_name!r} yielded NaN/inf activations; clean or regenerate the set")
    return batch


class CellTrainer:
    """sae-lens ``SAETrainer`` stepped one batch at a time, with the mode's post-step hook.

    ``step(batch, lr_factor)`` is the whole per-step path ``train_cell`` uses (benchmarked
    against a plain ``SAETrainer.step`` in benchmarks/test_bench_training.py). sae-lens's own lr
    scheduler is built constant and overridden: the lr of each step is ``training.lr *
    lr_factor``, set on the optimizer just before the step. ``last_l0`` is the mean number of
    active latents per sample of the last step's batch.
    """

    def __init__(self, sae: Any, mode: Any, training: "TrainingConfig", *, total_steps: int,
                 data: Iterator[Any] | None = None, set_name: str = "?") -> None:
        from sae_lens.config import LoggingConfig, SAETrainerConfig
        from sae_lens.training.sae_trainer import SAETrainer

        self.sae, self.mode, self.set_name = sae, mode, set_name
        self.d_in = int(sae.cfg.d_in)
        bs = int(training.batch_size)
        cfg = SAETrainerConfig(
            total_training_samples=max(1, total_steps) * bs,
            train_batch_size_samples=bs,
            lr=float(training.lr),
            lr_end=float(training.lr),  # unused: no sae-lens decay (the schedule is the ConvergenceControl's)
            lr_scheduler_name="constant",
            lr_warm_up_steps=0,
            lr_decay_steps=0,
            dead_feature_window=int(training.dead_feature_window),
            # the last window's firing statistics give l0_train: make it the convergence window
            feature_sampling_window=max(1, math.ceil(total_steps * float(training.convergence_window))),
            logger=LoggingConfig(log_to_wandb=False),
            device="cpu",
        )
        self.trainer = SAETrainer(cfg, sae, data_provider=data if data is not None else iter(()))
        self.lr = float(training.lr)
        self.last_l0 = math.nan

    def step(self, batch: Any, lr_factor: float = 1.0, coefficient_scales: dict[str, float] | None = None) -> tuple[float, float]:
        """One optimizer step on ``batch`` ``[n, d_in]`` at lr ``training.lr * lr_factor``;
        returns ``(total loss, mse loss)``. ``coefficient_scales``: factors on sae-lens
        coefficients (by name) from this step on, e.g. the matched-L0 controller's."""
        batch = check_batch(batch, self.d_in, self.set_name)
        for group in self.trainer.optimizer.param_groups:
            group["lr"] = self.lr * float(lr_factor)
        for name, scale in (coefficient_scales or {}).items():
            # the step reads current_value, and sae-lens's scheduler.step() after it recomputes
            # current_value from the unscaled final_value: the factor applies to this step only,
            # on top of the warm-up, exactly as the cohort engine applies it
            sched = self.trainer.coefficient_schedulers[name]
            sched.current_value = sched.current_value * float(scale)
        self.trainer.maybe_reset_sparsity()
        out = self.trainer.step(batch)
        self.trainer.n_training_steps += 1
        self.mode.after_step(self.sae)
        self.last_l0 = float((out.feature_acts != 0).sum()) / max(1, out.feature_acts.shape[0])
        return float(out.loss.detach()), float(out.losses["mse_loss"].detach())

    def finish(self) -> tuple[float, float]:
        """Record sae-lens's end-of-training metadata; return ``(dead_fraction, l0_train)``."""
        self.trainer.set_final_sae_metadata()
        dead = float(self.trainer.dead_neurons.float().mean())
        l0 = float(self.trainer.feature_sparsity.sum()) if self.trainer.n_frac_active_samples else math.nan
        return dead, l0


def _sample_stats(sae: Any, sample_acts: Any, batch_size: int) -> tuple[float, float]:
    """``(never-fired fraction, mean L0)`` of ``sae`` (training-mode encode) on ``sample_acts``."""
    import torch

    fired = torch.zeros(sae.cfg.d_sae, dtype=torch.bool)
    l0_sum, n = 0.0, 0
    with torch.no_grad():
        for chunk in sample_acts.split(max(1, batch_size)):
            acts = sae.encode(chunk)
            active = acts != 0
            fired |= active.any(0)
            l0_sum += float(active.sum())
            n += chunk.shape[0]
    return float((~fired).float().mean()), (l0_sum / n if n else math.nan)


def build_cell(arch_spec: Any, mode_spec: Any, activation_set: Any, *, d_sae: int, target_l0: float | None,
               arch_overrides: dict[str, Any], mode_params: dict[str, Any], training: "TrainingConfig",
               seed: int, dtype: Any = "float32") -> tuple[Any, Any, Any]:
    """Build and prepare a cell's SAE: ``(sae, mode, sample_acts)``. No optimizer steps.
    ``dtype``: the cell's training precision; the SAE is built in ``init_dtype_for(dtype)``."""
    import torch

    from saebench_sanity.architectures.build import init_dtype
    from saebench_sanity.architectures.sparsity import resolve_arch_params

    d_in = int(activation_set.d_in)
    set_name = getattr(activation_set, "name", "?")
    params = resolve_arch_params(arch_spec, target_l0, arch_overrides)
    if training.sparsity_warm_up_steps:
        params = _with_sparsity_warm_up(arch_spec, params, int(training.sparsity_warm_up_steps))
    with init_dtype(init_dtype_for(dtype)):
        sae = arch_spec.build(d_in=d_in, d_sae=d_sae, seed=seed, **params)
    mode = mode_spec.build(**mode_params)
    if bool(getattr(mode_spec, "trains", True)) != bool(mode.trains):
        # the spec's flag goes into the cell's identity before any mode is built; the mode's
        # decides whether steps are taken: a plugin that declares them differently is refused
        raise PluginError(f"training mode {mode_spec.name!r}: its spec says trains={bool(mode_spec.trains)} but the mode "
                          f"it builds says trains={bool(mode.trains)}; make the plugin declare the same value in both")
    sample = activation_set.sample_activations(int(training.n_init_samples), seed=seed)
    sample = check_batch(sample, d_in, set_name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + MODE_SEED_OFFSET)
        mode.prepare(sae, dict(arch_spec.roles), sample)
    return sae, mode, sample


def _with_sparsity_warm_up(arch_spec: Any, params: dict[str, Any], steps: int) -> dict[str, Any]:
    """Set the sae-lens warm-up field the architecture declares (``sparsity_warm_up_param``, e.g.
    ``l1_warm_up_steps``) unless the user set it; sae-lens's ``get_coefficients`` turns it into
    the warm-up."""
    key = getattr(arch_spec, "sparsity_warm_up_param", "")
    return {**params, key: steps} if key and key not in params else params


def train_cell(arch_spec: Any, mode_spec: Any, activation_set: Any, *, d_sae: int, target_l0: float | None,
               arch_overrides: dict[str, Any], mode_params: dict[str, Any], training: "TrainingConfig", seed: int,
               progress: Callable[[int, int, float], None] | None = None, dtype: Any = "float32") -> TrainResult:
    """Train one cell until the convergence rule stops it or ``training.max_steps``; return its
    ``TrainResult`` (see module docstring for seeding and the schedule).

    ``progress(step, max_steps, last_interval_mean_loss)`` is called after every
    ``training.curve_every`` steps and at the end. A NaN/inf loss stops the cell with a
    DataError naming the step and the loss. KeyboardInterrupt propagates.
    """
    if bool(getattr(mode_spec, "trains", True)):
        from saebench_sanity.training.cohort import train_cells

        # a cohort of one: the same engine, control and finishing as the harness's cohorts (the
        # engine's solo path drives sae-lens's SAETrainer for SAEs it has no batched math for)
        (result,) = train_cells([(arch_spec, mode_spec, mode_params, seed)], activation_set, d_sae=d_sae,
                                target_l0=target_l0, arch_overrides=arch_overrides, training=training, dtype=dtype,
                                progress=None if progress is None else
                                (lambda i, step, total, loss: progress(step, total, loss)))
        if isinstance(result, BaseException):
            raise result
        return result

    sae, mode, sample = build_cell(arch_spec, mode_spec, activation_set, d_sae=d_sae, target_l0=target_l0,
                                   arch_overrides=arch_overrides, mode_params=mode_params, training=training, seed=seed,
                                   dtype=dtype)
    t0 = time.perf_counter()
    arch_spec.calibrate(sae, sample, int(training.batch_size))  # e.g. BatchTopK's inference threshold
    dead, l0 = _sample_stats(sae, sample, int(training.batch_size))
    mode.check(sae)
    if progress is not None:
        progress(0, 0, math.nan)
    return TrainResult(sae=as_saved(sae), steps=0, seconds=time.perf_counter() - t0, converged=True,
                       convergence={"state": "level", "rel_improvement": 0.0, "window": 0.0, "steps": 0},
                       dead_fraction=dead, l0_train=l0)
