"""Cohort training of the penalty SAEs (ReLU / JumpReLU / Gated, ``training.batched.l1``) against
today's per-cell path, at the real set's size (d_in 576, d_sae 1152, batch 256), one thread, CPU
time (``time.process_time``: the suite's workers run one thread per process).

Per architecture and state, one group with two rows over the same 4 members (the trained SAE and
its three training baselines, built by ``build_cell`` as ``train_cell`` builds them) and the same 8
batches:

* ``cell_trainer``: each member stepped through ``CellTrainer.step`` (sae-lens ``SAETrainer``);
* ``cohort``: ``train_cohort`` with a fixed budget of 8 steps (its set-up, stacking and write-back
  included).

Both rows do 4 x 8 member-steps, so the per-member speed-up is the ratio of the two rows' times;
``test_bench_l1_interleaved`` measures the same two paths alternately, round by round, and prints
the ratio (the rows above run one after the other, so a shared machine's changing load can tilt
their ratio by 10-20%). ``test_bench_l1_member_step`` measures one step of each path, interleaved
step by step, without ``train_cohort``'s set-up (which 8 steps do not amortise), as
``benchmarks/test_bench_cohort.py`` does for the TopK family.
Two states:

* ``init``: sae-lens's initialisation on Gaussian data, where about half the latents fire (the
  first few hundred steps of a run); the density rule takes the dense step.
* ``steady``: each member's encoder (ReLU, JumpReLU) or gate (Gated) bias set per latent so that the
  member's L0 on the 8 batches is 32 of 1152 (each latent fires on 32/1152 of the samples). It
  stands for the real cells after the matched-L0 controller has brought them to their target
  (the real set's ReLU / JumpReLU / Gated members sit at L0 ~30 from about step 800 of ~3,000;
  ``leaderboards/results/real/results/*.json``, ``training.convergence.series.l0``), where they
  spend most of their steps. Its lr is 1e-5 so L0 stays near 32 over the 8 timed steps (a step's
  work depends on which latents fire, not on the lr; at lr 3e-3 the untrained encoder moves the
  trained member's L0 from 32 to ~250 within 10 steps). ``extra_info`` holds the measured L0 and,
  for the cohort, the fraction of steps that took the sparse step.

``test_bench_l1_density_sweep`` measures where the sparse step stops paying: a cohort
``CohortProgram.step`` forced sparse against forced dense, interleaved, at L0 32 to 320 of 1152
(the crossover behind each class's ``sparse_max_density`` in ``training.batched.l1``; printed with ``-s``).

Run (skipped by default through pyproject's ``--benchmark-skip``)::

    python -m pytest benchmarks/test_bench_cohort_l1.py -o addopts="" --benchmark-only --benchmark-enable -s
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
STEADY_TRAINING = TrainingConfig(steps=STEPS, batch_size=BATCH, lr=1e-5, curve_every=STEPS, n_init_samples=2048)
TRAININGS = {"init": TRAINING, "steady": STEADY_TRAINING}
#: the bias that sets which latents fire (the gate's for Gated)
BIAS = {"relu": "b_enc", "jumprelu": "b_enc", "gated": "b_gate"}


from _bench_data import GaussianSet  # noqa: E402


DATA = GaussianSet(D_IN, "bench-resid-like")
BATCHES = list(itertools.islice(DATA.train_batches(BATCH, 1), STEPS))


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _set_l0(arch: str, sae, l0: float) -> None:
    """Set ``sae``'s firing bias per latent so each latent is active on ``l0 / D_SAE`` of the
    benchmark batches' samples (its pre-activation quantile; JumpReLU: above its threshold)."""
    with torch.no_grad():
        x = torch.cat(BATCHES).to(sae.W_enc.dtype)
        prod = (x - sae.b_dec * sae.cfg.apply_b_dec_to_input) @ sae.W_enc
        q = torch.quantile(prod, 1 - l0 / D_SAE, dim=0)
        offset = sae.threshold.detach().to(q.dtype) if arch == "jumprelu" else 0.0
        getattr(sae, BIAS[arch]).copy_(-q + offset)


def _built(arch: str, state: str = "init", l0: float = TARGET_L0) -> list:
    from saebench_sanity.training.trainer import build_cell

    target = TARGET_L0 if arch == "jumprelu" else None  # JumpReLU: the quadratic target-L0 penalty, as the suite
    cells = [build_cell(ARCHS[arch], MODE_SPECS[mode], DATA, d_sae=D_SAE, target_l0=target, arch_overrides={},
                        mode_params={}, training=TRAININGS[state], seed=0) for mode in COHORT]
    if state == "steady":
        for sae, _, _ in cells:
            _set_l0(arch, sae, l0)
    return cells


def _l0(sae) -> float:
    """Mean active latents per sample of ``sae`` (its training encode) on the benchmark batches."""
    with torch.no_grad():
        return float(torch.cat([(sae.encode(x) != 0).sum(-1) for x in BATCHES]).float().mean())


def _group(arch: str, state: str) -> str:
    return f"{arch} {state}: 4 members x {STEPS} steps, d_in={D_IN} d_sae={D_SAE} batch={BATCH}, 1 thread, CPU time"


STATES = ["init", "steady"]


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("arch", ["relu", "jumprelu", "gated"])
@pytest.mark.benchmark(timer=time.process_time)
def test_bench_cell_trainer(benchmark, arch, state):
    from saebench_sanity.training.trainer import CellTrainer

    benchmark.group = _group(arch, state)
    training = TRAININGS[state]
    saes: list = []

    def setup():
        built = _built(arch, state)
        saes.append([sae for sae, _, _ in built])
        start.append([_l0(sae) for sae in saes[-1]])
        cells = [CellTrainer(sae, mode, training, total_steps=STEPS, set_name=DATA.name) for sae, mode, _ in built]
        return (cells,), {}

    def run(cells):
        for x in BATCHES:
            for cell in cells:
                cell.step(x)

    start: list[list[float]] = []
    benchmark.pedantic(run, setup=setup, rounds=3, iterations=1, warmup_rounds=0)
    _record_l0(benchmark, start[-1], saes[-1])


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("arch", ["relu", "jumprelu", "gated"])
@pytest.mark.benchmark(timer=time.process_time)
def test_bench_cohort(benchmark, arch, state, monkeypatch):
    from saebench_sanity.training.batched import l1
    from saebench_sanity.training.engine import FixedBudget, Member, train_cohort

    benchmark.group = _group(arch, state)
    training = TRAININGS[state]
    taken: list[bool] = []
    real_loss = l1._PenaltyBatched.loss

    def loss(self, *args, **kwargs):
        out = real_loss(self, *args, **kwargs)
        taken.append(self.last_sparse)
        return out

    monkeypatch.setattr(l1._PenaltyBatched, "loss", loss)
    saes: list = []
    start: list[list[float]] = []

    def setup():
        built = _built(arch, state)
        saes.append([sae for sae, _, _ in built])
        start.append([_l0(sae) for sae in saes[-1]])
        members = [Member(sae=sae, mode=mode, control=FixedBudget(training), sample_acts=sample, name=name)
                   for (sae, mode, sample), name in zip(built, COHORT)]
        return (members,), {}

    def run(members):
        results = train_cohort(members, iter(BATCHES), training, set_name=DATA.name)
        assert [r.path for r in results] == ["batched"] * len(COHORT)

    benchmark.pedantic(run, setup=setup, rounds=3, iterations=1, warmup_rounds=0)
    benchmark.extra_info["sparse_step_fraction"] = round(sum(taken) / max(1, len(taken)), 3)
    _record_l0(benchmark, start[-1], saes[-1])


def _record_l0(benchmark, start: list[float], saes: list) -> None:
    """Members' L0 on the benchmark batches before and after the last round, in ``extra_info``."""
    benchmark.extra_info["l0_start"] = [round(v, 1) for v in start]
    benchmark.extra_info["l0_end"] = [round(_l0(sae), 1) for sae in saes]
    sparse = benchmark.extra_info.get("sparse_step_fraction")
    print(f"\n{benchmark.name}: L0 {benchmark.extra_info['l0_start']} -> {benchmark.extra_info['l0_end']}"
          + ("" if sparse is None else f", sparse steps {sparse:.0%}"))


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("arch", ["relu", "jumprelu", "gated"])
def test_bench_l1_interleaved(benchmark, arch, state):
    """The two rows above, alternated round by round in one test (3 rounds each, minimum of each,
    set-up excluded as there): on a shared machine the load then hits both paths alike. The
    per-member speed-up is in ``extra_info["speedup"]`` and printed; these are the ratios
    docs/performance.md reports."""
    from saebench_sanity.training.engine import FixedBudget, Member, train_cohort
    from saebench_sanity.training.trainer import CellTrainer

    benchmark.group = _group(arch, state) + " (interleaved)"
    training = TRAININGS[state]
    best = {"cohort": float("inf"), "cell_trainer": float("inf")}
    for _ in range(3):
        built = _built(arch, state)
        members = [Member(sae=sae, mode=mode, control=FixedBudget(training), sample_acts=sample, name=name)
                   for (sae, mode, sample), name in zip(built, COHORT)]
        t = time.process_time()
        train_cohort(members, iter(BATCHES), training, set_name=DATA.name)
        best["cohort"] = min(best["cohort"], time.process_time() - t)
        cells = [CellTrainer(sae, mode, training, total_steps=STEPS, set_name=DATA.name)
                 for sae, mode, _ in _built(arch, state)]
        t = time.process_time()
        for x in BATCHES:
            for cell in cells:
                cell.step(x)
        best["cell_trainer"] = min(best["cell_trainer"], time.process_time() - t)
    n = len(COHORT) * STEPS
    per = {k: v / n * 1e3 for k, v in best.items()}
    benchmark.extra_info.update({"cohort_ms_per_member_step": round(per["cohort"], 2),
                                 "cell_trainer_ms_per_member_step": round(per["cell_trainer"], 2),
                                 "speedup": round(per["cell_trainer"] / per["cohort"], 2)})
    print(f"\n{arch} {state}: cohort {per['cohort']:.2f} ms per member-step, cell trainer "
          f"{per['cell_trainer']:.2f} ms -> {per['cell_trainer'] / per['cohort']:.2f}x (target >= 1.3x)")
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("arch", ["relu", "jumprelu", "gated"])
def test_bench_l1_member_step(benchmark, arch, state):
    """Per-member ``CohortProgram.step`` against ``CellTrainer.step`` averaged over the same four
    cells, the two paths interleaved step by step (min of 8 rounds each, after 2 warm-up steps),
    as ``benchmarks/test_bench_cohort.py`` measures the TopK family: the step alone, without
    ``train_cohort``'s set-up. lr 1e-5 in both states, so the density stays at its state's value
    over the rounds (a step's work does not depend on the lr). The speed-up is in
    ``extra_info["speedup"]`` and printed."""
    from saebench_sanity.training.batched import batched_for
    from saebench_sanity.training.engine import CohortProgram, FixedBudget, Member, MemberTrack
    from saebench_sanity.training.trainer import CellTrainer

    benchmark.group = _group(arch, state) + " (per step)"
    training = STEADY_TRAINING
    built = _built(arch, state)
    tracks = [MemberTrack(i, Member(sae, mode, FixedBudget(training)), "batched") for i, (sae, mode, _) in enumerate(built)]
    prog = CohortProgram(batched_for(built[0][0]), tracks, training, torch.device("cpu"), torch.float32)
    cells = [CellTrainer(sae, mode, training, total_steps=training.steps, set_name=DATA.name)
             for sae, mode, _ in _built(arch, state)]
    count = [0]
    taken: list[bool] = []

    def cohort_step(x):
        count[0] += 1
        prog.step(x, count[0] - 1, count[0])
        taken.append(prog.arch.last_sparse)

    for x in BATCHES[:2]:
        cohort_step(x)
        for cell in cells:
            cell.step(x)
    c_best, p_best = float("inf"), [float("inf")] * len(cells)
    for r in range(8):
        x = BATCHES[r % len(BATCHES)]
        t = time.process_time()
        cohort_step(x)
        c_best = min(c_best, time.process_time() - t)
        for j, cell in enumerate(cells):
            t = time.process_time()
            cell.step(x)
            p_best[j] = min(p_best[j], time.process_time() - t)
    per_member, peer = c_best / len(COHORT) * 1e3, sum(p_best) / len(p_best) * 1e3
    benchmark.extra_info.update({"per_member_ms": round(per_member, 2), "peer_ms": round(peer, 2),
                                 "speedup": round(peer / per_member, 2),
                                 "sparse_step_fraction": round(sum(taken) / len(taken), 3)})
    print(f"\n{arch} {state} per step: cohort {per_member:.2f} ms per member, cell trainer {peer:.2f} ms -> "
          f"{peer / per_member:.2f}x (target >= 1.3x), sparse steps {sum(taken) / len(taken):.0%}")
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)


# -- the density crossover --------------------------------------------------------------------------------
SWEEP_L0 = (32, 64, 96, 128, 160, 192, 256, 320)


@pytest.mark.parametrize("arch", ["relu", "jumprelu", "gated"])
def test_bench_l1_density_sweep(benchmark, arch):
    """Per-member ``CohortProgram.step`` forced sparse vs forced dense at several L0 (same cohort,
    same batch, interleaved, min of 5 rounds each): the sparse step's speed-up against the fraction
    of entries in its sparse set."""
    from saebench_sanity.training.batched import batched_for
    from saebench_sanity.training.batched import l1
    from saebench_sanity.training.engine import CohortProgram, FixedBudget, Member, MemberTrack

    benchmark.group = f"{arch} density sweep: forced sparse vs dense CohortProgram.step, 4 members, 1 thread"
    x = BATCHES[0]
    rows = []
    for l0 in SWEEP_L0:
        timings = {}
        progs = {}
        density = None
        for sparse in (True, False):
            built = _built(arch, "steady", l0=l0)
            tracks = [MemberTrack(i, Member(sae, mode, FixedBudget(STEADY_TRAINING)), "batched")
                      for i, (sae, mode, _) in enumerate(built)]
            arch_obj = type(batched_for(built[0][0]))(sparse=sparse)
            prog = CohortProgram(arch_obj, tracks, STEADY_TRAINING, torch.device("cpu"), torch.float32)
            progs[sparse] = prog
            if sparse:
                density = _set_density(arch_obj, prog, x, l1)
        counters = {True: 0, False: 0}

        def step(sparse):
            counters[sparse] += 1
            progs[sparse].step(x, counters[sparse] - 1, counters[sparse])

        for sparse in (True, False):  # allocate Adam state, warm caches
            step(sparse)
            step(sparse)
        best = {True: float("inf"), False: float("inf")}
        for _ in range(5):
            for sparse in (True, False):
                t = time.process_time()
                step(sparse)
                best[sparse] = min(best[sparse], time.process_time() - t)
        timings = {k: v / len(COHORT) * 1e3 for k, v in best.items()}
        rows.append((l0, density, timings[True], timings[False], timings[False] / timings[True]))
    benchmark.extra_info["rows"] = [[l0, round(d, 4), round(s, 2), round(dn, 2), round(r, 2)] for l0, d, s, dn, r in rows]
    print(f"\n{benchmark.group}\n  L0  sparse-set fraction  sparse ms/member  dense ms/member  dense/sparse")
    for l0, d, s, dn, r in rows:
        print(f"{l0:5d}  {d:19.4f}  {s:16.2f}  {dn:15.2f}  {r:12.2f}")
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)


def _set_density(arch_obj, prog, x, l1) -> float:
    """Fraction of the cohort's [M, B, d_sae] entries in the sparse set at ``x`` (one no-grad loss)."""
    from saebench_sanity.training.batched.base import StepCtx

    sizes = []
    real = l1.Entries

    class Counting(real):
        def __init__(self, mask):
            super().__init__(mask)
            sizes.append(len(self) / mask.numel())

    l1.Entries = Counting
    try:
        coefs = {name: torch.ones(len(prog.tracks), dtype=torch.float64) for name in prog.coef_scheds[0]}
        with torch.no_grad():
            arch_obj.loss(prog.params(), x, prog.state, StepCtx(step=0, coefficients=coefs, dead_neuron_mask=None))
    finally:
        l1.Entries = real
    return sizes[0]
