"""One training step per architecture at a realistic size (d_in 768, d_sae 16384, batch 1024):
through ``train_cell``'s stepping path (``CellTrainer.step``: batch validation, sae-lens
``SAETrainer.step``, sparsity-window bookkeeping, the mode's post-step hook) and through a plain
sae-lens ``SAETrainer.step`` on an identically built SAE, in the same run, so the overhead of the
suite's loop is the ratio of the two rows of each group.

Run (skipped by default through pyproject's ``--benchmark-skip``)::

    python -m pytest benchmarks/test_bench_training.py -o addopts="" --benchmark-only --benchmark-enable

Each step takes seconds on a 2-core CPU; rounds are few on purpose.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("pytest_benchmark")

from saebench_sanity.builtin.architectures import ARCHITECTURES  # noqa: E402
from saebench_sanity.builtin.modes import MODES  # noqa: E402
from saebench_sanity.config import TrainingConfig  # noqa: E402

D_IN, D_SAE, BATCH, TARGET_L0 = 768, 16384, 1024, 64
ARCHS = {a.name: a for a in ARCHITECTURES}
MODE_SPECS = {m.name: m for m in MODES}
TRAINING = TrainingConfig(steps=1000, batch_size=BATCH, lr=3e-4, n_init_samples=2048)


from _bench_data import GaussianSet  # noqa: E402


DATA = GaussianSet(D_IN)
BATCH_X = next(DATA.train_batches(BATCH, 1))


def _cell_trainer(arch: str, mode: str):
    from saebench_sanity.training.trainer import CellTrainer, build_cell

    sae, mode_obj, _ = build_cell(ARCHS[arch], MODE_SPECS[mode], DATA, d_sae=D_SAE, target_l0=TARGET_L0,
                                  arch_overrides={}, mode_params={}, training=TRAINING, seed=0)
    return CellTrainer(sae, mode_obj, TRAINING, total_steps=TRAINING.steps, set_name=DATA.name)


def _plain_sae_lens_trainer(arch: str):
    from sae_lens.config import LoggingConfig, SAETrainerConfig
    from sae_lens.training.sae_trainer import SAETrainer

    from saebench_sanity.architectures.sparsity import apply_target_l0

    spec = ARCHS[arch]
    sae = spec.build(d_in=D_IN, d_sae=D_SAE, seed=0, **apply_target_l0(spec, dict(spec.params), TARGET_L0))
    cfg = SAETrainerConfig(total_training_samples=TRAINING.steps * BATCH, train_batch_size_samples=BATCH,
                           lr=TRAINING.lr, lr_end=TRAINING.lr / 10, logger=LoggingConfig(log_to_wandb=False))
    return SAETrainer(cfg, sae, data_provider=iter(()))


def _run(benchmark, step):
    step()  # first step outside timing: allocates Adam state
    benchmark.pedantic(step, rounds=2, iterations=1, warmup_rounds=0)


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_bench_step_train_cell_path(benchmark, arch):
    benchmark.group = f"step {arch} d_in={D_IN} d_sae={D_SAE} batch={BATCH}"
    cell = _cell_trainer(arch, "trained")
    _run(benchmark, lambda: cell.step(BATCH_X))


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_bench_step_plain_sae_lens(benchmark, arch):
    benchmark.group = f"step {arch} d_in={D_IN} d_sae={D_SAE} batch={BATCH}"
    trainer = _plain_sae_lens_trainer(arch)

    def step():
        trainer.step(BATCH_X)
        trainer.n_training_steps += 1

    _run(benchmark, step)


def test_bench_step_soft_frozen_projection(benchmark):
    """The soft-frozen decoder's per-step cone projection on top of a TopK step."""
    benchmark.group = f"step topk d_in={D_IN} d_sae={D_SAE} batch={BATCH}"
    cell = _cell_trainer("topk", "soft_frozen_decoder")
    _run(benchmark, lambda: cell.step(BATCH_X))
