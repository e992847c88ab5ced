"""Cohort training step (``training.engine.CohortProgram``) against today's per-cell path, same run.

Five comparisons, one thread (the suite's workers run one thread per process):

* a 4-member TopK / BatchTopK cohort (trained, frozen_decoder, soft_frozen_decoder,
  frozen_encoder: built with ``build_cell`` as ``train_cell`` builds them) per member, against
  ``CellTrainer.step`` (sae-lens ``SAETrainer.step`` plus the mode's hook) averaged over the same
  four cells, at d_in 576 / d_sae 1152 / batch 256 / k 32 (the real set) and d_in 32 / 1024
  latents / batch 256 / k 6 (the study minis);
* the mini cohort three times over (12 members on one batch, ``-k twelve``): an estimate of
  what a program holding a set's three seeds would amortise (not built);
* one TopK / BatchTopK member (sparse step) at d_in 768 / d_sae 16384 / batch 1024 / k 64
  against a plain sae-lens ``SAETrainer.step`` on an identically built SAE;
* the four-member TopK / ReLU cohort in float64 against the same cohort in float32
  (``-k float64``): what the synthetic sets' precision costs on this machine's kernels.

The ratio is measured inside each cohort test by interleaving the two paths step by step (min of
the rounds each), so a shared machine's load hits both alike; it is stored in the benchmark's
``extra_info`` (``speedup``; the float64 rows store ``float64_over_float32``, a cost) and printed. Run (skipped by default through ``--benchmark-skip``)::

    python -m pytest benchmarks/test_bench_cohort.py -o addopts="" --benchmark-only --benchmark-enable -s
"""

from __future__ import annotations

import time

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("pytest_benchmark")

from saebench_sanity.builtin.architectures import ARCHITECTURES  # noqa: E402
from saebench_sanity.builtin.modes import MODES  # noqa: E402
from saebench_sanity.config import TrainingConfig  # noqa: E402

ARCHS = {a.name: a for a in ARCHITECTURES}
MODE_SPECS = {m.name: m for m in MODES}
COHORT = ("trained", "frozen_decoder", "soft_frozen_decoder", "frozen_encoder")
SIZES = {"real": (576, 1152, 256, 32), "mini": (32, 1024, 256, 6)}
BIG = (768, 16384, 1024, 64)
#: interleaved rounds per comparison (the real size's steps are ~10x dearer)
ROUNDS = {"mini": 15, "real": 6}


@pytest.fixture(autouse=True)
def _one_thread():
    from saebench_sanity.training.engine import tune_allocator

    tune_allocator()  # as the harness does in every training process (both paths run under it)
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


from _bench_data import GaussianSet  # noqa: E402


def _training(batch: int) -> TrainingConfig:
    return TrainingConfig(steps=1000, batch_size=batch, lr=3e-4, n_init_samples=2048)


def _build(arch, mode, data, d_sae, k, training, dtype="float32"):
    from saebench_sanity.training.trainer import build_cell

    return build_cell(ARCHS[arch], MODE_SPECS[mode], data, d_sae=d_sae, target_l0=k, arch_overrides={},
                      mode_params={}, training=training, seed=0, dtype=dtype)


def _program(arch, modes, data, d_sae, k, training, dtype="float32"):
    from saebench_sanity.training.batched import batched_for
    from saebench_sanity.training.engine import CohortProgram, FixedBudget, Member, MemberTrack

    tracks = []
    for i, mode in enumerate(modes):
        sae, mode_obj, _ = _build(arch, mode, data, d_sae, k, training, dtype)
        tracks.append(MemberTrack(i, Member(sae, mode_obj, FixedBudget(training)), "batched"))
    prog = CohortProgram(batched_for(tracks[0].member.sae), tracks, training, torch.device("cpu"),
                         getattr(torch, dtype))
    counter = [0]

    def step(x):
        counter[0] += 1
        prog.step(x, counter[0] - 1, counter[0])

    return step


def _best(fn, rounds):
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _interleaved(cohort_step, peers, rounds):
    """min seconds of one cohort step and of each peer step, measured alternately."""
    c_best, p_best = float("inf"), [float("inf")] * len(peers)
    for _ in range(rounds):
        c_best = min(c_best, _best(cohort_step, 1))
        for j, peer in enumerate(peers):
            p_best[j] = min(p_best[j], _best(peer, 1))
    return c_best, p_best


def _report(benchmark, label, per_member_s, peer_s, target):
    ratio = peer_s / per_member_s
    benchmark.extra_info.update({"per_member_ms": round(per_member_s * 1e3, 3), "peer_ms": round(peer_s * 1e3, 3),
                                 "speedup": round(ratio, 2), "target": target})
    print(f"\n{label}: cohort {per_member_s * 1e3:.2f} ms/member, peer {peer_s * 1e3:.2f} ms -> {ratio:.2f}x "
          f"(target >= {target}x)")


def _cohort_against_peers(benchmark, arch, size, copies, label):
    """The cohort's modes ``copies`` times over in one program against ``CellTrainer.step`` of
    the same four cells, on one batch, interleaved; the per-member ratio is reported."""
    from saebench_sanity.training.trainer import CellTrainer

    d_in, d_sae, batch, k = SIZES[size]
    benchmark.group = f"cohort {arch} {label} d_in={d_in} d_sae={d_sae} batch={batch} k={k}"
    data, training = GaussianSet(d_in), _training(batch)
    x = next(data.train_batches(batch, 1))
    step = _program(arch, COHORT * copies, data, d_sae, k, training)
    cells = []
    for mode in COHORT:
        sae, mode_obj, _ = _build(arch, mode, data, d_sae, k, training)
        cells.append(CellTrainer(sae, mode_obj, training, total_steps=training.steps, set_name=data.name))
    peers = [lambda c=c: c.step(x) for c in cells]
    for _ in range(2):  # allocate Adam state, warm caches
        step(x)
        for p in peers:
            p()
    rounds = ROUNDS[size]
    c_best, p_best = _interleaved(lambda: step(x), peers, rounds)
    _report(benchmark, benchmark.group, c_best / (copies * len(COHORT)), sum(p_best) / len(p_best),
            3.0 if size == "mini" else 2.5)
    benchmark.pedantic(lambda: step(x), rounds=rounds, iterations=1, warmup_rounds=0)


@pytest.mark.parametrize("size", sorted(SIZES))
@pytest.mark.parametrize("arch", ["topk", "batchtopk"])
def test_bench_cohort_member_step(benchmark, arch, size):
    _cohort_against_peers(benchmark, arch, size, 1, size)


@pytest.mark.parametrize("arch", ["topk", "batchtopk"])
def test_bench_cohort_twelve_members(benchmark, arch):
    """The mini cohort three times over (12 members, every one on the same batch) against the
    same per-cell peer: what a program holding a set's three seeds would amortise per member.
    Not what the engine runs (a cohort is one seed; seeds would need their own batches, so the
    encoder's product could not be shared): an estimate of that unbuilt change, not a speed-up
    the suite gets."""
    _cohort_against_peers(benchmark, arch, "mini", 3, "mini x3")


@pytest.mark.parametrize("size", sorted(SIZES))
@pytest.mark.parametrize("arch", ["topk", "relu"])
def test_bench_cohort_float64_against_float32(benchmark, arch, size):
    """The four-member cohort step in float64 (the synthetic sets' training precision) against
    the same cohort in float32 on the same batch, interleaved: what float64 costs on this
    machine's kernels (stored as ``float64_over_float32``: a cost, not a target)."""
    d_in, d_sae, batch, k = SIZES[size]
    benchmark.group = f"cohort {arch} {size} float64 vs float32 d_in={d_in} d_sae={d_sae} batch={batch} k={k}"
    data, training = GaussianSet(d_in), _training(batch)
    x = next(data.train_batches(batch, 1))
    step64 = _program(arch, COHORT, data, d_sae, k, training, "float64")
    step32 = _program(arch, COHORT, data, d_sae, k, training, "float32")
    x64, x32 = x.to(torch.float64), x.to(torch.float32)
    for _ in range(2):  # allocate Adam state, warm caches
        step64(x64)
        step32(x32)
    rounds = ROUNDS[size]
    t64, (t32,) = _interleaved(lambda: step64(x64), [lambda: step32(x32)], rounds)
    ratio = t64 / t32
    benchmark.extra_info.update({"float64_ms": round(t64 * 1e3, 3), "float32_ms": round(t32 * 1e3, 3),
                                 "float64_over_float32": round(ratio, 2)})
    print(f"\n{benchmark.group}: float64 {t64 * 1e3:.2f} ms, float32 {t32 * 1e3:.2f} ms per cohort step "
          f"-> float64 costs {ratio:.2f}x")
    benchmark.pedantic(lambda: step64(x64), rounds=rounds, iterations=1, warmup_rounds=0)


@pytest.mark.parametrize("arch", ["topk", "batchtopk"])
def test_bench_cell_trainer_step(benchmark, arch):
    """Today's per-cell step (the peer of the cohort rows), trained mode, real size."""
    from saebench_sanity.training.trainer import CellTrainer

    d_in, d_sae, batch, k = SIZES["real"]
    benchmark.group = f"cohort {arch} real d_in={d_in} d_sae={d_sae} batch={batch} k={k}"
    data, training = GaussianSet(d_in), _training(batch)
    x = next(data.train_batches(batch, 1))
    sae, mode_obj, _ = _build(arch, "trained", data, d_sae, k, training)
    cell = CellTrainer(sae, mode_obj, training, total_steps=training.steps, set_name=data.name)
    cell.step(x)
    benchmark.pedantic(lambda: cell.step(x), rounds=6, iterations=1, warmup_rounds=0)


@pytest.mark.parametrize("arch", ["topk", "batchtopk"])
def test_bench_big_sparse_step(benchmark, arch):
    """One member's sparse step against sae-lens's ``SAETrainer.step`` at d_sae 16384."""
    from sae_lens.config import LoggingConfig, SAETrainerConfig
    from sae_lens.training.sae_trainer import SAETrainer

    from saebench_sanity.architectures.sparsity import apply_target_l0

    d_in, d_sae, batch, k = BIG
    benchmark.group = f"sparse step {arch} d_in={d_in} d_sae={d_sae} batch={batch} k={k}"
    data, training = GaussianSet(d_in), _training(batch)
    x = next(data.train_batches(batch, 1))
    step = _program(arch, ("trained",), data, d_sae, k, training)
    spec = ARCHS[arch]
    sae = spec.build(d_in=d_in, d_sae=d_sae, seed=0, **apply_target_l0(spec, dict(spec.params), k))
    cfg = SAETrainerConfig(total_training_samples=training.steps * batch, train_batch_size_samples=batch,
                           lr=training.lr, lr_end=training.lr / 10, logger=LoggingConfig(log_to_wandb=False))
    trainer = SAETrainer(cfg, sae, data_provider=iter(()))

    def plain():
        trainer.step(x)
        trainer.n_training_steps += 1

    step(x)
    plain()
    c_best, p_best = _interleaved(lambda: step(x), [plain], 3)
    _report(benchmark, benchmark.group, c_best, p_best[0], 4.0)
    benchmark.pedantic(lambda: step(x), rounds=2, iterations=1, warmup_rounds=0)


@pytest.mark.parametrize("op", ["topk", "max"])
def test_bench_small_k_selection_floor(benchmark, op):
    """The mini cohort's selection, ``topk(6)`` of ``[4 x 256, 1024]`` scores, against one pass
    over them (``max``): how far exact top-k is above the floor any exact method pays."""
    benchmark.group = "selection k=6 of [1024, 1024]"
    v = torch.randn(1024, 1024, generator=torch.Generator().manual_seed(0))
    fn = (lambda: v.topk(6, dim=-1, sorted=False)) if op == "topk" else (lambda: v.max(-1))
    benchmark.pedantic(fn, rounds=30, iterations=1, warmup_rounds=2)


@pytest.mark.parametrize("layout", ["strided", "contiguous"])
def test_bench_exact_topk_chunk_maxima(benchmark, layout):
    """The chunk maxima of ``_topk_exact`` at the real cohort's selection (``[4 x 256, 1152]``,
    k 32): strided chunks (what it does: a reduction over a middle dimension) against contiguous
    ones (what it did)."""
    benchmark.group = "exact top-k chunk maxima [1024, 1152] k=32"
    v = torch.randn(1024, 1152, generator=torch.Generator().manual_seed(0))
    c = 1152 // 64
    n = 1152 // c
    body = v[:, :n * c]
    fn = (lambda: body.reshape(1024, c, n).amax(1)) if layout == "strided" else (lambda: body.reshape(1024, n, c).amax(-1))
    benchmark.pedantic(fn, rounds=30, iterations=1, warmup_rounds=2)
