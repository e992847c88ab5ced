"""The sparse step of the penalty SAEs (training.batched.l1) against their dense step and sae-lens.

A cohort is the trained SAE and the three training baselines of one seed, built as ``train_cell``
builds them, in float64 (every tensor, JumpReLU's threshold too, as the engine stacks them), with
trained-like parameters: the encoder bias shifted so only a few latents fire per sample (the
steady state the matched-L0 controller drives members to), and nonzero ``b_dec`` / ``r_mag`` /
``b_mag``. For each member the sparse step's loss, loss terms, fire counts and every parameter
gradient (frozen members' slices included) must equal the dense step's to 1e-10 relative, and
sae-lens's ``training_forward_pass`` for the tensors sae-lens trains; at high density the density
rule must switch to the dense step, and the forced sparse step still agrees. 100 engine steps with
every step sparse end at the dense engine's parameters to 1e-9, frozen tensors untouched.
"""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")

from _gauss_set import GaussSet  # noqa: E402
from saebench_sanity.builtin.architectures import ARCHITECTURES  # noqa: E402
from saebench_sanity.builtin.modes import MODES  # noqa: E402
from saebench_sanity.config import TrainingConfig  # noqa: E402
from saebench_sanity.training.batched import StepCtx, batched_for  # noqa: E402
from saebench_sanity.training.batched import l1 as l1_mod  # noqa: E402
from saebench_sanity.training.trainer import build_cell  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

ARCHS = {a.name: a for a in ARCHITECTURES}
MODE_SPECS = {m.name: m for m in MODES}
COHORT = ("trained", "frozen_decoder", "soft_frozen_decoder", "frozen_encoder")
D_IN, D_SAE, BATCH = 12, 64, 32
TRAIN = TrainingConfig(steps=100, batch_size=BATCH, lr=3e-3, curve_every=10, n_init_samples=256,
                       dead_feature_window=10, sparsity_warm_up_steps=30)
RTOL = 1e-10
COEF_NAME = {"relu": "l1", "gated": "l1", "jumprelu": "l0"}
BIAS = {"relu": "b_enc", "jumprelu": "b_enc", "gated": "b_gate"}


def _data():
    """sparse-l1-gauss: the shared Gaussian test set (tests/_gauss_set.py)."""
    return GaussSet("sparse-l1-gauss", D_IN)


DATA = _data()
X = next(DATA.train_batches(BATCH, 1)).to(torch.float64)


def _to64(sae):
    sae.to(torch.float64)
    for param in sae.parameters():  # the engine stacks every tensor in its dtype, the threshold too
        param.data = param.data.to(torch.float64)
    return sae


def _build(arch: str, mode: str, overrides: dict, seed: int = 2):
    target = 4 if arch == "jumprelu" and "jumprelu_sparsity_loss_mode" not in overrides else None
    sae, mode_obj, sample = build_cell(ARCHS[arch], MODE_SPECS[mode], DATA, d_sae=D_SAE, target_l0=target,
                                       arch_overrides=dict(overrides), mode_params={}, training=TRAIN, seed=seed)
    return _to64(sae), mode_obj, sample


def _trained_like(arch: str, sae, l0: float | None, seed: int) -> None:
    """Nonzero b_dec (and Gated's r_mag / b_mag, JumpReLU thresholds spread around 0.1), then the
    gate / encoder bias set so each latent fires on about ``l0 / D_SAE`` of ``X``'s samples (None:
    leave the bias alone, about half fire)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        sae.b_dec.add_(0.2 * torch.randn(D_IN, generator=g, dtype=torch.float64))
        if arch == "gated":
            sae.r_mag.copy_(0.3 * torch.randn(D_SAE, generator=g, dtype=torch.float64))
            sae.b_mag.copy_(0.3 * torch.randn(D_SAE, generator=g, dtype=torch.float64))
        if arch == "jumprelu":
            sae.threshold.copy_(0.1 + 0.05 * torch.rand(D_SAE, generator=g, dtype=torch.float64))
            # a trained encoder's pre-activations spread over more than the straight-through window
            # (bandwidth 0.05); at initialisation a third of the entries would be inside it
            sae.W_enc.mul_(4.0)
        if l0 is None:
            return
        sae_in = X - sae.b_dec * sae.cfg.apply_b_dec_to_input
        pre = sae_in @ sae.W_enc
        q = torch.quantile(pre, 1 - l0 / D_SAE, dim=0)
        offset = sae.threshold if arch == "jumprelu" else 0.0
        getattr(sae, BIAS[arch]).copy_(-q + offset)


def _cohort(arch: str, overrides: dict | None = None, l0: float | None = 3.0) -> list:
    saes = []
    for i, mode in enumerate(COHORT):
        sae, _, _ = _build(arch, mode, overrides or {})
        _trained_like(arch, sae, l0, seed=10 + i)
        saes.append(sae)
    return saes


def _stack(arch_obj, saes: list) -> dict:
    return {n: torch.stack([getattr(s, n).detach().clone() for s in saes]).requires_grad_(True)
            for n in arch_obj.param_names}


def _close(got, want, what: str, rtol: float = RTOL) -> None:
    got, want = got.detach().to(torch.float64), want.detach().to(torch.float64)
    scale = max(float(want.abs().max()), 1e-30)
    err = float((got - want).abs().max())
    assert err <= rtol * scale, f"{what}: max abs diff {err:.3e} vs scale {scale:.3e}"


def _run(arch_obj, saes: list, ctx: StepCtx):
    """(out, grads) of one batched step; ``arch_obj`` is fresh (its ``init_state`` binds config)."""
    state = arch_obj.init_state(saes)
    p = _stack(arch_obj, saes)
    out = arch_obj.loss(p, X, state, ctx)
    grads = torch.autograd.grad(out.total.sum(), [p[n] for n in arch_obj.param_names])
    return out, dict(zip(arch_obj.param_names, grads))


def _ctx(arch: str, saes: list, coefs=(0.25, 1.0, 0.5, 0.9)) -> StepCtx:
    name = COEF_NAME[arch]
    values = [float(getattr(s.cfg, f"{name}_coefficient")) * coefs[i % len(coefs)] for i, s in enumerate(saes)]
    return StepCtx(step=3, coefficients={name: torch.tensor(values, dtype=torch.float64)}, dead_neuron_mask=None)


def _reference(sae, coef_name: str, coef: float):
    """sae-lens's own step on a copy of ``sae``: (loss, losses, grads of its trainable tensors)."""
    from sae_lens.saes.sae import TrainStepInput

    ref = copy.deepcopy(sae)
    ref.train()
    out = ref.training_forward_pass(TrainStepInput(sae_in=X, coefficients={coef_name: coef}, dead_neuron_mask=None,
                                                   n_training_steps=3, is_logging_step=False))
    out.loss.backward()
    return out.loss, out.losses, {n: p.grad for n, p in ref.named_parameters() if p.requires_grad}


def _compare(arch: str, saes: list, *, expect_auto_sparse: bool) -> None:
    """Sparse (forced) == dense (forced) == sae-lens for every member; the density rule's choice."""
    cls = type(batched_for(saes[0]))
    ctx = _ctx(arch, saes)
    auto = cls()
    auto_out, _ = _run(auto, saes, ctx)
    assert auto.last_sparse is expect_auto_sparse, f"{arch}: density rule chose sparse={auto.last_sparse}"
    sparse, dense = cls(sparse=True), cls(sparse=False)
    s_out, s_g = _run(sparse, saes, ctx)
    assert sparse.last_sparse, f"{arch}: the forced sparse step did not run"
    d_out, d_g = _run(dense, saes, ctx)
    assert not dense.last_sparse
    name = COEF_NAME[arch]
    for i, sae in enumerate(saes):
        _close(s_out.total[i], d_out.total[i], f"{arch} member {i} total")
        assert set(s_out.losses) == set(d_out.losses)
        for k in d_out.losses:
            _close(s_out.losses[k][i], d_out.losses[k][i], f"{arch} member {i} {k}")
        assert torch.equal(s_out.fire_counts[i], d_out.fire_counts[i]), f"{arch} member {i} fire counts"
        for n in dense.param_names:  # every slice, frozen tensors of the baselines included
            assert s_g[n].shape == d_g[n].shape
            _close(s_g[n][i], d_g[n][i], f"{arch} member {i} grad {n} (sparse vs dense)")
        loss, losses, ref_grads = _reference(sae, name, float(ctx.coefficients[name][i]))
        _close(s_out.total[i], loss, f"{arch} member {i} total vs sae-lens")
        for k, v in losses.items():
            _close(s_out.losses[k][i], v, f"{arch} member {i} {k} vs sae-lens")
        assert ref_grads
        for n, g in ref_grads.items():
            _close(s_g[n][i], g, f"{arch} member {i} grad {n} vs sae-lens")
    _close(auto_out.total, d_out.total, f"{arch} auto total")


CASES = [
    ("relu", {}),
    ("relu", {"apply_b_dec_to_input": False}),
    ("gated", {}),
    ("jumprelu", {}),  # the suite's: quadratic penalty around a target L0
    ("jumprelu", {"jumprelu_sparsity_loss_mode": "step", "jumprelu_ste_to_input": True}),
    ("jumprelu", {"jumprelu_sparsity_loss_mode": "tanh"}),
]
IDS = ["relu", "relu-no-bdec-input", "gated", "jumprelu-quadratic", "jumprelu-step-ste", "jumprelu-tanh"]


@pytest.mark.parametrize(("arch", "overrides"), CASES, ids=IDS)
def test_sparse_step_equals_dense_and_sae_lens_at_low_density(arch, overrides):
    saes = _cohort(arch, overrides, l0=3.0)
    _compare(arch, saes, expect_auto_sparse=True)


@pytest.mark.parametrize(("arch", "overrides"), CASES[::2], ids=IDS[::2])
def test_high_density_switches_to_dense(arch, overrides):
    saes = _cohort(arch, overrides, l0=None)  # sae-lens's initialisation: about half the latents fire
    _compare(arch, saes, expect_auto_sparse=False)


def test_jumprelu_window_entries_carry_threshold_gradient():
    """The sparse set must hold the inactive entries inside the straight-through window: here
    many are, and a set of the active entries only would get the threshold gradient wrong."""
    from sae_lens.saes.jumprelu_sae import rectangle

    saes = _cohort("jumprelu", {"jumprelu_sparsity_loss_mode": "step"}, l0=3.0)
    sae = saes[0]
    with torch.no_grad():
        pre = (X - sae.b_dec) @ sae.W_enc + sae.b_enc
        window = rectangle((pre - sae.threshold) / sae.cfg.jumprelu_bandwidth).bool()
    assert int((window & ~(pre > sae.threshold)).sum()) >= 10, "too few inactive entries in the window to test them"

    class ActiveOnly(l1_mod.JumpReLUBatched):
        def _sparse(self, p, x, state, coefs, sae_in, prod, ent):
            active = prod + p["b_enc"].detach().unsqueeze(1) > p["threshold"].detach().unsqueeze(1)
            return super()._sparse(p, x, state, coefs, sae_in, prod, l1_mod.Entries(active))

    ctx = _ctx("jumprelu", saes)
    _, grads = _run(l1_mod.JumpReLUBatched(sparse=True), saes, ctx)
    _, dense = _run(l1_mod.JumpReLUBatched(sparse=False), saes, ctx)
    _, wrong = _run(ActiveOnly(sparse=True), saes, ctx)
    _close(grads["threshold"], dense["threshold"], "threshold grad")
    with pytest.raises(AssertionError, match="threshold grad"):
        _close(wrong["threshold"], dense["threshold"], "threshold grad (active entries only)")


def test_no_sparse_step_where_it_is_not_exact_or_not_faster():
    """JumpReLU's pre-activation loss reaches inactive entries of dead latents, other lp norms are
    not written sparse, bfloat16 has no sparse kernels: those steps stay dense even when forced."""
    saes = _cohort("jumprelu", {"pre_act_loss_coefficient": 3e-2}, l0=3.0)
    arch = l1_mod.JumpReLUBatched(sparse=True)
    _run(arch, saes, _ctx("jumprelu", saes))
    assert not arch.last_sparse
    saes = _cohort("relu", {"lp_norm": 2.0}, l0=3.0)
    arch = l1_mod.StandardBatched(sparse=True)
    _run(arch, saes, _ctx("relu", saes))
    assert not arch.last_sparse
    assert not l1_mod.sparse_capable(torch.bfloat16, torch.device("cpu"))
    assert l1_mod.sparse_capable(torch.float32, torch.device("cpu"))
    assert not l1_mod.sparse_capable(torch.float32, torch.device("meta"))


# -- 100 steps through the cohort engine: every step sparse against every step dense --------------------
@pytest.mark.parametrize(("arch", "overrides"), [CASES[0], CASES[2], CASES[3], CASES[4], CASES[5]],
                         ids=[IDS[0], IDS[2], IDS[3], IDS[4], IDS[5]])
def test_engine_100_steps_sparse_equals_dense_float64(arch, overrides, monkeypatch):
    from saebench_sanity.training.engine import FixedBudget, Member, train_cohort

    cls = type(batched_for(_build(arch, "trained", overrides)[0]))

    def run(max_density: float):
        monkeypatch.setattr(cls, "sparse_max_density", max_density)
        calls = []
        real = l1_mod.Entries

        class Counting(real):
            def __init__(self, mask):
                super().__init__(mask)
                calls.append(len(self))

        monkeypatch.setattr(l1_mod, "Entries", Counting)
        members, initial = [], []
        for i, mode in enumerate(COHORT):
            sae, mode_obj, sample = _build(arch, mode, overrides)
            _trained_like(arch, sae, 6.0, seed=10 + i)
            initial.append({n: p.detach().clone() for n, p in sae.named_parameters()})
            members.append(Member(sae=sae, mode=mode_obj, control=FixedBudget(TRAIN), sample_acts=sample, name=mode))
        results = train_cohort(members, DATA.train_batches(BATCH, 9), TRAIN, dtype="float64", set_name=DATA.name)
        assert [r.path for r in results] == ["batched"] * len(COHORT)
        assert all(r.steps == TRAIN.steps and r.failure is None for r in results)
        return results, initial, calls

    sparse, initial, calls = run(1.0)  # every step sparse
    assert len(calls) == TRAIN.steps
    dense, _, none = run(-1.0)  # never sparse
    assert none == []
    for mode, s, d, init in zip(COHORT, sparse, dense, initial):
        for name, param in d.sae.named_parameters():
            _close(getattr(s.sae, name), param, f"{arch} {mode} {name} after {TRAIN.steps} steps", rtol=1e-9)
            if not param.requires_grad:  # frozen by the mode: untouched on both paths
                assert torch.equal(getattr(s.sae, name).detach(), init[name]), f"{arch} {mode} frozen {name} moved"
        assert s.l0_train == pytest.approx(d.l0_train, rel=1e-12)


def test_csr_mm_is_the_dense_product():
    """``sparse.csr_mm`` (an in-place ``addmm`` into uninitialised memory with ``beta = 0``) equals
    the dense product, and ``beta = 0`` ignores what the output held (NaN here)."""
    from saebench_sanity.training.batched.sparse import Entries, csr_mm

    g = torch.Generator().manual_seed(0)
    mask = torch.rand(3, 8, 20, generator=g) < 0.2
    mask[1, 2] = False  # an empty row
    ent = Entries(mask)
    w = torch.randn(len(ent), generator=g, dtype=torch.float64)
    dense = torch.randn(3 * 8, 5, generator=g, dtype=torch.float64)
    A = ent.by_latent(w)
    _close(csr_mm(A, dense), A.to_dense() @ dense, "csr_mm", rtol=1e-14)
    acc = torch.randn(3 * 20, 5, generator=g, dtype=torch.float64)
    want = acc + A.to_dense() @ dense
    _close(csr_mm(A, dense, acc), want, "csr_mm accumulating", rtol=1e-14)
    out = torch.full((3 * 20, 5), float("nan"), dtype=torch.float64)
    _close(torch.addmm(out, A, dense, beta=0.0, out=out), A.to_dense() @ dense, "addmm beta=0 over NaN", rtol=1e-14)


def test_density_switch_probes_an_eighth_of_the_batch_first():
    """The switch looks at the first eighth of the batch first and skips the full mask when that
    part is over twice the bound; otherwise it counts the full mask."""
    arch = l1_mod.StandardBatched()
    g = torch.Generator().manual_seed(1)
    M, B = 2, 64
    seen: list[int] = []

    def mask_of(density):
        full = torch.rand(M, B, D_SAE, generator=g) < density

        def of(rows):
            seen.append(full[:, rows].shape[1])
            return full[:, rows]
        return of

    limit = arch.sparse_max_density
    assert arch._entries(mask_of(0.5), B) is None and seen == [B // 8]  # clearly dense: the probe alone
    seen.clear()
    ent = arch._entries(mask_of(limit / 3), B)
    assert ent is not None and arch.last_sparse and seen == [B // 8, B]
    seen.clear()
    arch.last_sparse = False
    assert arch._entries(mask_of(1.5 * limit), B) is None and seen == [B // 8, B] and not arch.last_sparse
