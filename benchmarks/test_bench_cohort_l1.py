"""Cohort training of the penalty SAEs (ReLU / JumpReLU / Gated, ``training.batched.l1``) against
today's per-cell path, at the real set's size (d_in 576, d_sae 1152, batch 256), one thread, CPU
time (``time.process_time``: the suite's workers run one thread per process).

Per architecture, one group with two rows over the same 4 members (the trained SAE and its three
training baselines, built by ``build_cell`` as ``train_cell`` builds them) and the same 8 batches:

* ``cell_trainer``: each member stepped through ``CellTrainer.step`` (sae-lens ``SAETrainer``);
* ``cohort``: ``train_cohort`` with a fixed budget of 8 steps (its set-up, stacking and write-back
  included).

Both rows do 4 x 8 member-steps, so the per-member speed-up is the ratio of the two rows' times.
Run (skipped by default through pyproject's ``--benchmark-skip``)::

    python -m pytest benchmarks/test_bench_cohort_l1.py -o addopts="" --benchmark-only --benchmark-enable
"""

from __future__ import annotations

import itertools
import time

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("pytest_benchmark")

from saebench_sanity.builtin.architectures import ARCHITECTURES  # noqa: E402
from saebench_sanity.builtin.modes import MODES  # noqa: E402
from saebench_sanity.config import TrainingConfig  # noqa: E402

D_IN, D_SAE, BATCH, STEPS, TARGET_L0 = 576, 1152, 256, 8, 32
ARCHS = {a.name: a for a in ARCHITECTURES}
MODE_SPECS = {m.name: m for m in MODES}
COHORT = ("trained", "frozen_decoder", "soft_frozen_decoder", "frozen_encoder")
TRAINING = TrainingConfig(steps=STEPS, batch_size=BATCH, lr=3e-3, curve_every=STEPS, n_init_samples=2048)


from _bench_data import GaussianSet  # noqa: E402


DATA = GaussianSet(D_IN, "bench-resid-like")
BATCHES = list(itertools.islice(DATA.train_batches(BATCH, 1), STEPS))


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _built(arch: str) -> list:
    from saebench_sanity.training.trainer import build_cell

    target = TARGET_L0 if arch == "jumprelu" else None  # JumpReLU: the quadratic target-L0 penalty, as the suite
    return [build_cell(ARCHS[arch], MODE_SPECS[mode], DATA, d_sae=D_SAE, target_l0=target, arch_overrides={},
                       mode_params={}, training=TRAINING, seed=0) for mode in COHORT]


def _group(arch: str) -> str:
    return f"{arch}: 4 members x {STEPS} steps, d_in={D_IN} d_sae={D_SAE} batch={BATCH}, 1 thread, CPU time"


@pytest.mark.parametrize("arch", ["relu", "jumprelu", "gated"])
@pytest.mark.benchmark(timer=time.process_time)
def test_bench_cell_trainer(benchmark, arch):
    from saebench_sanity.training.trainer import CellTrainer

    benchmark.group = _group(arch)

    def setup():
        cells = [CellTrainer(sae, mode, TRAINING, total_steps=STEPS, set_name=DATA.name) for sae, mode, _ in _built(arch)]
        return (cells,), {}

    def run(cells):
        for x in BATCHES:
            for cell in cells:
                cell.step(x)

    benchmark.pedantic(run, setup=setup, rounds=3, iterations=1, warmup_rounds=0)


@pytest.mark.parametrize("arch", ["relu", "jumprelu", "gated"])
@pytest.mark.benchmark(timer=time.process_time)
def test_bench_cohort(benchmark, arch):
    from saebench_sanity.training.engine import FixedBudget, Member, train_cohort

    benchmark.group = _group(arch)

    def setup():
        members = [Member(sae=sae, mode=mode, control=FixedBudget(TRAINING), sample_acts=sample, name=name)
                   for (sae, mode, sample), name in zip(_built(arch), COHORT)]
        return (members,), {}

    def run(members):
        results = train_cohort(members, iter(BATCHES), TRAINING, set_name=DATA.name)
        assert [r.path for r in results] == ["batched"] * len(COHORT)

    benchmark.pedantic(run, setup=setup, rounds=3, iterations=1, warmup_rounds=0)
