"""The cohort engine against the solo path: every member follows its own ``CellTrainer`` run.

Members are built with ``training.trainer.build_cell`` exactly as ``train_cell`` builds them; the
solo reference is ``CellTrainer`` (sae-lens ``SAETrainer``) on an identically built SAE and the same
batches. float64: the SAE is converted with ``sae.to(torch.float64)`` on both paths (batches stay
float32 values, which both paths read exactly); the engine runs with ``dtype="float64"``.
"""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from saebench_sanity.builtin.architectures import ARCHITECTURES  # noqa: E402
from saebench_sanity.builtin.modes import MODES  # noqa: E402
from saebench_sanity.config import TrainingConfig  # noqa: E402
from saebench_sanity.errors import ConfigError  # noqa: E402
from saebench_sanity.training.engine import FixedBudget, Member, train_cohort  # noqa: E402
from saebench_sanity.training.modes import Trained  # noqa: E402
from saebench_sanity.training.trainer import CellTrainer, build_cell  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
ARCHS = {a.name: a for a in ARCHITECTURES}
MODE_SPECS = {m.name: m for m in MODES}
D_IN, D_SAE, K, BATCH, STEPS = 12, 40, 4, 64, 100
# a short dead-feature window so the AuxK loss is live for most of the run
TRAIN = TrainingConfig(steps=STEPS, batch_size=BATCH, lr=3e-3, n_init_samples=256, curve_every=10,
                       dead_feature_window=15, convergence_window=0.2, sparsity_warm_up_steps=30)
COHORT = ("trained", "frozen_decoder", "soft_frozen_decoder", "frozen_encoder")
SEED = 4


class _Set:
    """Sparse-ish stream: 30 unit features in 12 dims, ~3 active per sample, plus an offset."""

    name = "engine-test"
    d_in = D_IN

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(1)
        f = torch.randn(30, D_IN, generator=g)
        self.features = f / f.norm(dim=1, keepdim=True)
        self.offset = torch.randn(D_IN, generator=g)

    def train_batches(self, batch_size, seed):
        g = torch.Generator().manual_seed(seed)
        while True:
            on = torch.rand(batch_size, 30, generator=g) < 0.1
            yield (on * (1 + torch.rand(batch_size, 30, generator=g))) @ self.features + self.offset

    def sample_activations(self, n, seed=0):
        return next(self.train_batches(n, seed + 77))


DATA = _Set()


def _build(arch: str, mode: str, dtype, seed: int = SEED, training: TrainingConfig = TRAIN):
    sae, mode_obj, sample = build_cell(ARCHS[arch], MODE_SPECS[mode], DATA, d_sae=D_SAE, target_l0=K,
                                       arch_overrides={}, mode_params={}, training=training, seed=seed)
    sae.to(dtype)
    for param in sae.parameters():  # sae-lens's .to(dtype) leaves JumpReLU's threshold in float32
        param.data = param.data.to(dtype)
    return sae, mode_obj, sample


def _solo(arch: str, mode: str, dtype, steps: int = STEPS, training: TrainingConfig = TRAIN):
    sae, mode_obj, _ = _build(arch, mode, dtype, training=training)
    cell = CellTrainer(sae, mode_obj, training, total_steps=training.steps, set_name=DATA.name)
    batches = DATA.train_batches(BATCH, SEED)
    losses = [cell.step(next(batches))[0] for _ in range(steps)]
    dead, l0 = cell.finish()
    return sae, losses, dead, l0


def _members(arch: str, dtype, modes=COHORT, training: TrainingConfig = TRAIN):
    out = []
    for mode in modes:
        sae, mode_obj, sample = _build(arch, mode, dtype, training=training)
        out.append(Member(sae=sae, mode=mode_obj, control=FixedBudget(training), sample_acts=sample, name=mode))
    return out


def _max_rel(a, b):
    return float((a.double() - b.double()).abs().max() / b.double().abs().max().clamp(min=1e-30))


def _compare(arch, dtype, tol):
    members = _members(arch, dtype)
    results = train_cohort(members, DATA.train_batches(BATCH, SEED), TRAIN, dtype=dtype, set_name=DATA.name)
    for mode, res in zip(COHORT, results):
        assert res.path == "batched" and res.steps == STEPS and res.failure is None
        ref, ref_losses, ref_dead, ref_l0 = _solo(arch, mode, dtype)
        for name, param in ref.named_parameters():
            got = getattr(res.sae, name)
            assert got.dtype == param.dtype
            assert _max_rel(got.detach(), param.detach()) < tol, (mode, name, _max_rel(got.detach(), param.detach()))
        if hasattr(ref, "topk_threshold"):
            assert abs(float(res.sae.topk_threshold) - float(ref.topk_threshold)) <= tol * abs(float(ref.topk_threshold))
        assert res.dead_fraction == ref_dead
        assert abs(res.l0_train - ref_l0) <= tol * ref_l0
        assert res.sae.cfg.metadata.l0 == pytest.approx(ref.cfg.metadata.l0, rel=tol)
        # the curve: means of the solo losses over each interval of 10 steps
        solo_curve = [sum(ref_losses[s - 10:s]) / 10 for s in range(10, STEPS + 1, 10)]
        assert [s for s, _ in res.loss_curve] == list(range(10, STEPS + 1, 10))
        for (_, got), want in zip(res.loss_curve, solo_curve):
            assert got == pytest.approx(want, rel=max(tol, 1e-12))
        members[COHORT.index(mode)].mode.check(res.sae)
    return results


@pytest.mark.parametrize("arch", ["topk", "batchtopk", "matryoshka", "relu", "jumprelu", "gated"])
def test_members_follow_their_solo_runs_float64(arch):
    results = _compare(arch, torch.float64, 1e-12)
    assert all(r.path == "batched" for r in results)
    if arch in ("topk", "batchtopk", "matryoshka"):
        # the AuxK term was live (dead latents appeared), so its batched form was exercised too
        assert any(max(v for _, v in r.curves["auxiliary_reconstruction_loss"]) > 0 for r in results)


@pytest.mark.parametrize("arch", ["topk", "batchtopk", "matryoshka"])
def test_members_follow_their_solo_runs_float32(arch):
    _compare(arch, torch.float32, 1e-4)


def test_frozen_tensors_bit_identical():
    members = _members("topk", torch.float32)
    dec0 = members[1].sae.W_dec.detach().clone()
    enc0 = members[3].sae.W_enc.detach().clone()
    b_dec0 = members[1].sae.b_dec.detach().clone()
    train_cohort(members, DATA.train_batches(BATCH, SEED), TRAIN, set_name=DATA.name)
    assert torch.equal(members[1].sae.W_dec.detach(), dec0)
    assert torch.equal(members[3].sae.W_enc.detach(), enc0)
    assert not torch.equal(members[1].sae.b_dec.detach(), b_dec0)  # the rest did train


def _state(sae):
    return {n: p.detach().clone() for n, p in sae.named_parameters()}


def test_nan_member_stops_alone_and_members_are_independent():
    """Member 1 diverges at step 1: it is recorded as failed; members 0, 2, 3 end bit-identical to a
    cohort in which member 1 is healthy (member j never influences member i)."""
    healthy = _members("batchtopk", torch.float32)
    res_h = train_cohort(healthy, DATA.train_batches(BATCH, SEED), TRAIN, set_name=DATA.name)
    sick = _members("batchtopk", torch.float32)
    with torch.no_grad():
        sick[1].sae.b_dec.fill_(float("inf"))
    res_s = train_cohort(sick, DATA.train_batches(BATCH, SEED), TRAIN, set_name=DATA.name)
    assert res_s[1].failure is not None and res_s[1].failure[0] == 1 and not math.isfinite(res_s[1].failure[1])
    assert res_s[1].steps == 1
    for i in (0, 2, 3):
        assert res_s[i].failure is None and res_s[i].steps == STEPS
        a, b = _state(res_h[i].sae), _state(res_s[i].sae)
        assert all(torch.equal(a[n], b[n]) for n in a), i
        assert float(res_h[i].sae.topk_threshold) == float(res_s[i].sae.topk_threshold)
    # a changed (not failing) member 0 leaves the others untouched as well
    other = _members("batchtopk", torch.float32)
    with torch.no_grad():
        other[0].sae.W_dec.mul_(2.0)
    res_o = train_cohort(other, DATA.train_batches(BATCH, SEED), TRAIN, set_name=DATA.name)
    assert not torch.equal(res_o[0].sae.W_dec, res_h[0].sae.W_dec)
    for i in (1, 2, 3):
        a, b = _state(res_h[i].sae), _state(res_o[i].sae)
        assert all(torch.equal(a[n], b[n]) for n in a), i


@pytest.mark.parametrize("arch", ["topk", "batchtopk", "matryoshka", "relu", "jumprelu", "gated"])
def test_a_member_that_stops_early_leaves_the_others_bit_identical(arch):
    """float32, one thread: the members of a cohort whose first member stops at step 30 (it leaves
    the stacked program) end bit-identical to a cohort in which every member runs to the end.
    Every per-member quantity (selections, sums, clipping, Adam) is computed per member. The one
    cohort-wide choice, the L1 family's sparse-or-dense step (made on the kept fraction over the
    members still in the program), could round differently if a leaving member flipped it; on this
    data the members end equal, which is what is asserted."""
    full = train_cohort(_members(arch, torch.float32), DATA.train_batches(BATCH, SEED), TRAIN, set_name=DATA.name)
    members = _members(arch, torch.float32)
    members[0].control = FixedBudget(TRAIN, max_steps=30)
    short = train_cohort(members, DATA.train_batches(BATCH, SEED), TRAIN, set_name=DATA.name)
    assert short[0].steps == 30 and all(r.steps == STEPS for r in short[1:])
    for i in range(1, len(COHORT)):
        a, b = _state(full[i].sae), _state(short[i].sae)
        assert all(torch.equal(a[n], b[n]) for n in a), (COHORT[i], [n for n in a if not torch.equal(a[n], b[n])])


class _HookedTrained(Trained):
    """A plugin-style mode with its own per-step hook: the engine cannot batch it."""

    name = "hooked"

    def after_step(self, sae):
        with torch.no_grad():
            sae.b_dec.mul_(0.999)


class _StopAt:
    """A control that stops its member at the first observation at or after ``at``."""

    def __init__(self, at: int) -> None:
        self.max_steps, self.at, self.seen = STEPS, at, []

    def lr_factor(self, step):
        return 1.0

    def observe(self, step, values, member):
        self.seen.append((step, dict(values), member.param("W_dec").shape))
        return step >= self.at


def test_solo_fallback_member_and_independent_stops():
    members = _members("topk", torch.float32, modes=("trained", "frozen_decoder"))
    sae, _, sample = _build("topk", "trained", torch.float32)
    hooked = _HookedTrained()
    members.append(Member(sae=sae, mode=hooked, control=FixedBudget(TRAIN), sample_acts=sample, name="hooked"))
    stopper = _StopAt(40)
    members[1].control = stopper
    results = train_cohort(members, DATA.train_batches(BATCH, SEED), TRAIN, set_name=DATA.name)
    assert [r.path for r in results] == ["batched", "batched", "solo"]
    assert results[1].steps == 40 and results[1].stopped_by_control and results[0].steps == STEPS
    assert [s for s, _, _ in stopper.seen] == [10, 20, 30, 40]
    assert stopper.seen[0][2] == (D_SAE, D_IN)
    assert {"loss", "mse", "l0", "auxiliary_reconstruction_loss"} <= set(stopper.seen[0][1])
    # the solo member equals a plain CellTrainer run with the same hook on the same batches
    ref, _, _ = _build("topk", "trained", torch.float32)
    cell = CellTrainer(ref, _HookedTrained(), TRAIN, total_steps=STEPS, set_name=DATA.name)
    batches = DATA.train_batches(BATCH, SEED)
    for _ in range(STEPS):
        cell.step(next(batches))
    a, b = _state(ref), _state(results[2].sae)
    assert all(torch.equal(a[n], b[n]) for n in a)
    # the member stopped at 40 equals its solo run of 40 steps (constant lr here)
    ref40, _, _, _ = _solo("topk", "frozen_decoder", torch.float32, steps=40)
    assert _max_rel(results[1].sae.W_enc.detach(), ref40.W_enc.detach()) < 1e-4
    # and the member that went on is unaffected by its neighbour stopping
    ref100, _, _, _ = _solo("topk", "trained", torch.float32)
    assert _max_rel(results[0].sae.W_dec.detach(), ref100.W_dec.detach()) < 1e-4


def test_fixed_budget_schedule_closed_form():
    """sae-lens's constant schedule with warm-up 7 and decay 11 over 50 steps: linear warm-up
    1/7 .. 7/7, constant, then linear decay from lr over the last 11 steps."""
    training = TrainingConfig(steps=50, batch_size=BATCH, lr=1e-3, lr_warm_up_steps=7, lr_decay_steps=11,
                              n_init_samples=256)
    fb = FixedBudget(training)
    want = [t / 7 if t <= 7 else 1.0 if t < 40 else 1 - (t - 40) / 11 for t in range(1, 51)]
    assert [fb.lr_factor(t) for t in range(1, 51)] == pytest.approx(want, rel=1e-12)
    assert fb.max_steps == 50 and not fb.observe(50, {}, None)


def test_bad_device_and_dtype_are_config_errors():
    members = _members("topk", torch.float32, modes=("trained",))
    with pytest.raises(ConfigError, match="device"):
        train_cohort(members, DATA.train_batches(BATCH, SEED), TRAIN, device="tpu")
    with pytest.raises(ConfigError, match="dtype"):
        train_cohort(members, DATA.train_batches(BATCH, SEED), TRAIN, dtype="int8")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="'cuda' is not available on this machine"):
            train_cohort(members, DATA.train_batches(BATCH, SEED), TRAIN, device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_cohort_follows_cpu_cohort():
    a = train_cohort(_members("batchtopk", torch.float64), DATA.train_batches(BATCH, SEED), TRAIN, dtype="float64")
    b = train_cohort(_members("batchtopk", torch.float64), DATA.train_batches(BATCH, SEED), TRAIN,
                     device="cuda", dtype="float64")
    for ra, rb in zip(a, b):
        for name, p in ra.sae.named_parameters():
            assert _max_rel(getattr(rb.sae, name).detach().cpu(), p.detach()) < 1e-9


def test_cone_projection_equals_the_formula_bit_for_bit():
    """Every path of modes.ConeProjection (whole matrix, a subset of rows, without host reads,
    a row opposite its direction, nothing outside) gives the reference formula's rows
    (tests/_previous_paths.py) exactly."""
    from _previous_paths import cone_reference

    from saebench_sanity.training.modes import ConeProjection, project_to_cone

    g = torch.Generator().manual_seed(0)
    d0 = torch.nn.functional.normalize(torch.randn(300, 16, generator=g), dim=1)
    for dtype in (torch.float32, torch.float64):
        W = (d0 + 0.15 * torch.randn(300, 16, generator=g)).to(dtype)
        W[7] = -3.0 * d0[7].to(dtype)  # exactly opposite: p = 0
        ref = cone_reference(W, d0, 0.8)
        cone = ConeProjection(d0.to(dtype), 0.8)
        assert 0 < int((ref != W).any(1).sum()) < 300  # rows inside and outside
        assert torch.equal(cone(W), ref) and torch.equal(project_to_cone(W, d0, 0.8), ref)
        assert torch.equal(cone(W, host_checks=False), ref)
        rows = torch.tensor([3, 7, 8, 120, 299])
        assert torch.equal(cone(W.index_select(0, rows), rows), ref.index_select(0, rows))
        kept = torch.nonzero((ref == W).all(1)).squeeze(1)  # rows inside: no host-checked call touches them
        inside_only = W.index_select(0, kept)
        assert cone(inside_only, kept) is inside_only


@pytest.mark.parametrize("arch", ["topk", "batchtopk", "matryoshka"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_auxk_over_the_dead_latents_only_trains_the_same_bits(arch, dtype, monkeypatch):
    """AuxK's top-k over the latents dead in some member (``AUX_DEAD_COLUMNS``) against the top-k
    over every latent, on the same cohort: every parameter equal bit for bit after the run, in
    float32 as in float64, on the full cohort and on its baselines alone; both paths ran."""
    from saebench_sanity.training.batched import topk

    used = {"dead columns": 0, "all": 0}
    real_candidates = topk._aux_candidates

    def counting(score, dead, kmax, **kw):
        out = real_candidates(score, dead, kmax, **kw)
        if topk.AUX_DEAD_COLUMNS:
            used["all" if out[1] is None else "dead columns"] += 1
        return out

    monkeypatch.setattr(topk, "_aux_candidates", counting)
    for modes in (COHORT, COHORT[1:]):  # the trained member keeps most latents dead; the baselines few
        runs = []
        for on in (True, False):
            monkeypatch.setattr(topk, "AUX_DEAD_COLUMNS", on)
            runs.append(train_cohort(_members(arch, dtype, modes), DATA.train_batches(BATCH, SEED), TRAIN,
                                     dtype=dtype, set_name=DATA.name))
        for a, b in zip(*runs):
            for name, p in a.sae.named_parameters():
                assert torch.equal(p, getattr(b.sae, name)), (modes, a.sae.__class__.__name__, name)
    assert used["dead columns"] > 20 and used["all"] > 20, used


def test_exact_topk_selects_what_torch_topk_selects():
    from saebench_sanity.training.batched.topk import _topk_exact

    g = torch.Generator().manual_seed(0)
    for rows, n, k in ((1, 4000, 100), (4, 640, 32), (64, 900, 20)):
        v = torch.randn(rows, n, generator=g) * 2 + torch.randn(rows, 1, generator=g)
        for x in (v, v.relu(), v.double()):
            want = x.topk(k, dim=-1, sorted=False)
            got = _topk_exact(x, k)
            assert torch.equal(want.indices.sort(-1).values, got[1].sort(-1).values)
            assert torch.equal(want.values.sort(-1).values, got[0].sort(-1).values)
    tied = torch.zeros(2, 800)
    tied[:, :40] = 1.0  # 40 entries tie at the 32nd value: torch's own choice is kept
    assert torch.equal(_topk_exact(tied, 32)[1], tied.topk(32, dim=-1, sorted=False).indices)


def test_bfloat16_cohort_runs_dense_and_writes_back_in_the_sae_dtype():
    training = TrainingConfig(steps=20, batch_size=BATCH, lr=3e-3, n_init_samples=256, curve_every=10)
    members = _members("batchtopk", torch.float32, modes=("trained", "soft_frozen_decoder"), training=training)
    results = train_cohort(members, DATA.train_batches(BATCH, SEED), training, dtype="bfloat16")
    for r, m in zip(results, members):
        assert r.failure is None and r.steps == 20 and r.sae.W_dec.dtype == torch.float32
        assert all(math.isfinite(v) for _, v in r.loss_curve)
        assert r.loss_curve[-1][1] < r.loss_curve[0][1]
        m.mode.check(r.sae)


# -- the accelerator paths, run on the CPU ---------------------------------------------------------
# On a GPU the engine never reads the device per step (batched.base.accelerator_paths); those
# paths would otherwise run only where there is a GPU. ACCELERATOR_PATHS makes the CPU take them.
def _accelerated(monkeypatch):
    from saebench_sanity.training import engine
    from saebench_sanity.training.batched import base

    monkeypatch.setattr(base, "ACCELERATOR_PATHS", True)
    reads = {"failures": 0, "host_reads": []}
    real_failures, real_init = engine.CohortProgram.failures, engine.CohortProgram.__init__

    def failures(self):
        reads["failures"] += 1
        return real_failures(self)

    def init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        reads["host_reads"].append(self.host_reads)

    monkeypatch.setattr(engine.CohortProgram, "failures", failures)
    monkeypatch.setattr(engine.CohortProgram, "__init__", init)
    return reads


@pytest.mark.parametrize("arch", ["topk", "batchtopk", "matryoshka", "relu", "jumprelu", "gated"])
def test_accelerator_paths_follow_the_solo_runs_float64(arch, monkeypatch):
    """What a GPU runs (no host read per step: AuxK without the dead-latent early exit, every
    member's gradient scaled by its clip coefficient, the cone projection on every row, plain
    ``topk``, ``A @ dense`` products, the dense L1-family step, failures read at curve points
    only), here on the CPU: every member follows its sae-lens solo run as the CPU paths do."""
    reads = _accelerated(monkeypatch)
    _compare(arch, torch.float64, 1e-12)
    assert reads["host_reads"] == [False]
    assert reads["failures"] == STEPS // TRAIN.curve_every  # read at curve points, not every step


@pytest.mark.parametrize("arch", ["topk", "batchtopk", "matryoshka"])
def test_accelerator_paths_train_the_cpu_paths_bits_float32(arch, monkeypatch):
    """The TopK family computes the same things on both paths: float32 parameters equal bit for
    bit after 100 steps (AuxK live, a soft-frozen member projected every step)."""
    cpu = train_cohort(_members(arch, torch.float32), DATA.train_batches(BATCH, SEED), TRAIN, set_name=DATA.name)
    _accelerated(monkeypatch)
    acc = train_cohort(_members(arch, torch.float32), DATA.train_batches(BATCH, SEED), TRAIN, set_name=DATA.name)
    for a, b in zip(cpu, acc):
        assert a.steps == b.steps == STEPS and a.failure is None and b.failure is None
        for name, p in a.sae.named_parameters():
            assert torch.equal(p, getattr(b.sae, name)), (a.sae.__class__.__name__, name)
        assert a.loss_curve == b.loss_curve


def test_accelerator_paths_record_a_diverged_member_as_the_cpu_paths_do(monkeypatch):
    """A member whose loss is inf from step 1: on the accelerator paths its failure is read at the
    first curve point, with the same step and loss the CPU paths record at once; the others end
    bit-identical to the CPU paths' run."""
    def sick():
        members = _members("batchtopk", torch.float32)
        with torch.no_grad():
            members[1].sae.b_dec.fill_(float("inf"))
        return train_cohort(members, DATA.train_batches(BATCH, SEED), TRAIN, set_name=DATA.name)

    cpu = sick()
    reads = _accelerated(monkeypatch)
    acc = sick()
    assert acc[1].failure[0] == cpu[1].failure[0] == 1 and acc[1].steps == cpu[1].steps == 1
    assert str(acc[1].failure[1]) == str(cpu[1].failure[1]) and not math.isfinite(acc[1].failure[1])
    assert reads["failures"] == STEPS // TRAIN.curve_every
    for i in (0, 2, 3):
        a, b = _state(cpu[i].sae), _state(acc[i].sae)
        assert acc[i].failure is None and all(torch.equal(a[n], b[n]) for n in a), i


@pytest.mark.parametrize("arch", ["topk", "batchtopk", "matryoshka", "relu", "jumprelu", "gated"])
def test_accelerator_paths_read_nothing_on_the_host_inside_a_step(arch, monkeypatch):
    """A step on the accelerator paths reads no tensor value on the host (on a GPU each read
    stalls the device): the only reads inside ``CohortProgram.step`` are of the state kept on the
    host by design (``host_`` / ``shared_`` keys). Found by wrapping every Tensor read
    (``tolist``, ``item``, ``bool``, ``float``, ``int``)."""
    import traceback

    from saebench_sanity.training import engine

    _accelerated(monkeypatch)
    inside, bad, host = [False], [], [0]
    real_step = engine.CohortProgram.step

    def step(self, *args, **kwargs):
        inside[0] = True
        try:
            return real_step(self, *args, **kwargs)
        finally:
            inside[0] = False

    def reading(name):
        real = getattr(torch.Tensor, name)

        def read(self, *args, **kwargs):
            if inside[0]:
                line = traceback.extract_stack(limit=2)[0].line or ""
                if 'state["host_' in line or 'state["shared_' in line:
                    host[0] += 1
                else:
                    bad.append(line)
            return real(self, *args, **kwargs)

        return read

    monkeypatch.setattr(engine.CohortProgram, "step", step)
    for name in ("tolist", "item", "__bool__", "__float__", "__int__", "__index__"):
        monkeypatch.setattr(torch.Tensor, name, reading(name))
    results = train_cohort(_members(arch, torch.float32), DATA.train_batches(BATCH, SEED), TRAIN, set_name=DATA.name)
    monkeypatch.undo()
    assert all(r.steps == STEPS for r in results)
    assert bad == []
    assert host[0] == (0 if arch in ("relu", "jumprelu", "gated") else (3 if arch == "matryoshka" else 2) * STEPS)
