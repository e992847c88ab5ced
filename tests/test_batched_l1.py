"""Batched math of the penalty SAEs (training.batched.l1) against sae-lens's own training step.

A cohort is the trained SAE and the three training baselines of one seed, built exactly as
``train_cell`` builds them (``training.trainer.build_cell``), cast to float64. For every member the
batched loss, every sae-lens loss term, the latent fire counts and the gradient of every trainable
parameter must equal sae-lens's ``training_forward_pass`` + ``backward`` on the same batch to
~1e-12 relative, with per-member sparsity coefficients (mid warm-up) and dead-latent masks; and
member i's loss must not depend on member j's parameters.
"""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")

from saebench_sanity.activations.base import ActivationSet  # noqa: E402
from saebench_sanity.builtin.architectures import ARCHITECTURES  # noqa: E402
from saebench_sanity.builtin.modes import MODES  # noqa: E402
from saebench_sanity.config import TrainingConfig  # noqa: E402
from saebench_sanity.errors import ConfigError  # noqa: E402
from saebench_sanity.training.batched import StepCtx, batched_for  # noqa: E402
from saebench_sanity.training.batched.l1 import GatedBatched, JumpReLUBatched, StandardBatched  # noqa: E402
from saebench_sanity.training.trainer import build_cell  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

ARCHS = {a.name: a for a in ARCHITECTURES}
MODE_SPECS = {m.name: m for m in MODES}
TRAINABLE_MODES = ("trained", "frozen_decoder", "soft_frozen_decoder", "frozen_encoder")
D_IN, D_SAE, BATCH = 12, 48, 32
TRAIN = TrainingConfig(steps=10, batch_size=BATCH, lr=1e-3, curve_every=5, n_init_samples=256)
RTOL = 1e-12
COEF_NAME = {"relu": "l1", "gated": "l1", "jumprelu": "l0"}


class TinySparse(ActivationSet):
    """24 unit features in 12 dims, ~3 active per sample with magnitudes 1-2, plus an offset."""

    name = "tiny-sparse"
    d_in = D_IN

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        f = torch.randn(24, D_IN, generator=g)
        self.features = f / f.norm(dim=1, keepdim=True)
        self.offset = 0.3 * torch.randn(D_IN, generator=g)

    def manifest(self):
        return {"kind": "tiny-sparse"}

    def _draw(self, n, g):
        on = torch.rand(n, 24, generator=g) < 3 / 24
        return (on * (1 + torch.rand(n, 24, generator=g))) @ self.features + self.offset

    def train_batches(self, batch_size, seed):
        g = torch.Generator().manual_seed(seed)
        while True:
            yield self._draw(batch_size, g)

    def sample_activations(self, n, seed=0):
        return self._draw(n, torch.Generator().manual_seed(seed + 7919))

    def eval_activations(self):
        return self._draw(64, torch.Generator().manual_seed(99))


DATA = TinySparse()


def _cohort(arch: str, *, target_l0=None, overrides=None, modes=TRAINABLE_MODES, seed=0) -> list:
    """The trainable modes of one seed, as train_cell builds them, in float64 (JumpReLU thresholds
    stay float32, as sae-lens keeps them)."""
    saes = []
    for mode in modes:
        sae, _, _ = build_cell(ARCHS[arch], MODE_SPECS[mode], DATA, d_sae=D_SAE, target_l0=target_l0,
                               arch_overrides=dict(overrides or {}), mode_params={}, training=TRAIN, seed=seed)
        saes.append(sae.to(torch.float64))
    return saes


def _spread_thresholds(saes: list) -> None:
    """Thresholds spread over the pre-activations (a few negative, exercising sae-lens's clamp), so
    the straight-through window (bandwidth 0.05) holds many entries and their gradients matter."""
    g = torch.Generator().manual_seed(5)
    for sae in saes:
        with torch.no_grad():
            t = 0.6 * torch.rand(D_SAE, generator=g) - 0.05
            sae.threshold.data.copy_(t.to(sae.threshold.dtype))


def _stack(arch_obj, saes: list) -> dict:
    return {n: torch.stack([getattr(s, n).detach().clone() for s in saes]).requires_grad_(True)
            for n in arch_obj.param_names}


def _close(got, want, what: str, rtol: float = RTOL) -> None:
    got, want = got.detach().to(torch.float64), want.detach().to(torch.float64)
    scale = max(float(want.abs().max()), 1e-30)
    err = float((got - want).abs().max())
    assert err <= rtol * scale, f"{what}: max abs diff {err:.3e} vs scale {scale:.3e}"


def _reference(sae, x, coef_name: str, coef: float, dead, step: int):
    """sae-lens's own step on a copy of ``sae``: (loss, losses, fire counts, grads of trainable params)."""
    from sae_lens.saes.sae import TrainStepInput

    ref = copy.deepcopy(sae)
    ref.train()
    out = ref.training_forward_pass(TrainStepInput(sae_in=x, coefficients={coef_name: coef}, dead_neuron_mask=dead,
                                                   n_training_steps=step, is_logging_step=False))
    out.loss.backward()
    grads = {n: p.grad for n, p in ref.named_parameters() if p.requires_grad}
    fire = out.feature_acts.bool().float().sum(0)
    return out.loss, out.losses, fire, grads


def _check_cohort(arch: str, saes: list, *, coefs=(0.25, 1.0, 0.5, 0.9), dead=None, step=3, seed=1) -> None:
    """Every member of ``saes`` against sae-lens, then member independence."""
    assert batched_for(saes[0]) is not None and all(batched_for(s) is not None for s in saes)
    M = len(saes)
    x = DATA._draw(BATCH, torch.Generator().manual_seed(seed))
    name = COEF_NAME[arch]
    scale = [float(getattr(s.cfg, f"{name}_coefficient")) for s in saes]
    coef_values = [scale[i] * coefs[i % len(coefs)] for i in range(M)]
    ctx = StepCtx(step=step, coefficients={name: torch.tensor(coef_values, dtype=torch.float64)},
                  dead_neuron_mask=dead)
    refs = [_reference(s, x, name, coef_values[i], None if dead is None else dead[i], step) for i, s in enumerate(saes)]
    batched = batched_for(saes[0])
    state = batched.init_state(saes)
    p = _stack(batched, saes)
    out = batched.loss(p, x, state, ctx)
    assert out.total.shape == (M,) and out.fire_counts.shape == (M, D_SAE)
    grads = torch.autograd.grad(out.total.sum(), [p[n] for n in batched.param_names])
    grads = dict(zip(batched.param_names, grads))
    for i, (loss, losses, fire, ref_grads) in enumerate(refs):
        _close(out.total[i], loss, f"{arch} member {i} total")
        assert set(out.losses) == set(losses), f"{arch}: loss keys {sorted(out.losses)} vs sae-lens {sorted(losses)}"
        for k, v in losses.items():
            _close(out.losses[k][i], v, f"{arch} member {i} {k}")
        assert torch.equal(out.fire_counts[i].to(torch.float64), fire.to(torch.float64)), f"{arch} member {i} fire counts"
        assert ref_grads, "no trainable parameter"
        for n, g in ref_grads.items():
            assert grads[n].dtype == g.dtype, f"{arch} {n}: grad dtype {grads[n].dtype} vs sae-lens {g.dtype}"
            _close(grads[n][i], g, f"{arch} member {i} grad {n}")
    # sae-lens clamps JumpReLU thresholds in place inside its step; the batched loss does the same
    if "threshold" in p:
        for i, sae in enumerate(saes):
            assert torch.equal(p["threshold"][i].detach(), sae.threshold.detach().clamp(min=0.0))
    # independence: member 0's loss has exactly zero gradient wrt every other member's slice
    p2 = _stack(batched, saes)
    out2 = batched.loss(p2, x, state, ctx)
    g0 = torch.autograd.grad(out2.total[0], [p2[n] for n in batched.param_names], allow_unused=True)
    for n, g in zip(batched.param_names, g0):
        if g is not None:
            assert bool((g[1:] == 0).all()), f"{arch}: member 0's loss depends on other members' {n}"


@pytest.mark.parametrize("arch", ["relu", "gated"])
def test_l1_archs_match_sae_lens_every_mode(arch):
    _check_cohort(arch, _cohort(arch))


def test_relu_lp_norm_2_and_no_b_dec_input_match():
    saes = _cohort("relu", overrides={"lp_norm": 2.0})
    with torch.no_grad():  # a trained b_dec (nonzero) so the apply_b_dec_to_input flag matters
        for s in saes:
            s.b_dec.data.normal_(generator=torch.Generator().manual_seed(3))
    saes[1].cfg.apply_b_dec_to_input = False
    saes[3].cfg.apply_b_dec_to_input = False
    _check_cohort("relu", saes)


@pytest.mark.parametrize("loss_mode", ["step", "tanh", "quadratic"])
def test_jumprelu_matches_sae_lens_every_mode(loss_mode):
    target = 4 if loss_mode == "quadratic" else None
    overrides = {} if loss_mode == "quadratic" else {"jumprelu_sparsity_loss_mode": loss_mode}
    saes = _cohort("jumprelu", target_l0=target, overrides=overrides)
    _spread_thresholds(saes)
    _check_cohort("jumprelu", saes)


def test_jumprelu_ste_to_input_and_pre_act_loss_with_dead_latents():
    saes = _cohort("jumprelu", overrides={"jumprelu_ste_to_input": True, "pre_act_loss_coefficient": 3e-2})
    _spread_thresholds(saes)
    g = torch.Generator().manual_seed(11)
    dead = torch.rand(len(saes), D_SAE, generator=g) < 0.3
    dead[2] = False  # a member with no dead latent: sae-lens's constant-zero branch
    _check_cohort("jumprelu", saes, dead=dead, coefs=(0.1, 0.0, 1.0, 0.6))


def test_gated_with_trained_like_parameters():
    """Nonzero r_mag / b_gate / b_mag (sae-lens starts them at 0), so every gated term is exercised."""
    saes = _cohort("gated")
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for s in saes:
            for n in ("r_mag", "b_gate", "b_mag"):
                getattr(s, n).data.copy_(0.3 * torch.randn(D_SAE, generator=g, dtype=torch.float64))
    _check_cohort("gated", saes, coefs=(0.0, 0.3, 1.0, 2.0))


def test_write_back_copies_each_member_in_its_dtype():
    saes = _cohort("jumprelu", modes=("trained", "frozen_encoder"))
    batched = JumpReLUBatched()
    p = _stack(batched, saes)
    with torch.no_grad():
        for n in batched.param_names:
            p[n].add_(torch.arange(2, dtype=p[n].dtype).view(2, *([1] * (p[n].ndim - 1))) + 1)
    batched.write_back(p, batched.init_state(saes), saes)
    for i, s in enumerate(saes):
        for n in batched.param_names:
            assert torch.equal(getattr(s, n).detach(), p[n][i].detach().to(getattr(s, n).dtype))
    assert saes[0].threshold.dtype == torch.float32 and saes[0].W_enc.dtype == torch.float64


def test_supports_refuses_what_it_does_not_reproduce():
    relu = _cohort("relu", modes=("trained",))[0]
    assert isinstance(batched_for(relu), StandardBatched)
    assert isinstance(batched_for(_cohort("gated", modes=("trained",))[0]), GatedBatched)
    hooked = copy.deepcopy(relu)
    hooked.hook_sae_acts_post.add_hook(lambda act, hook: act * 2)
    assert batched_for(hooked) is None
    normed = copy.deepcopy(relu)
    normed.cfg.normalize_activations = "layer_norm"
    assert batched_for(normed) is None
    custom_mse = copy.deepcopy(relu)
    custom_mse.mse_loss_fn = lambda a, b: (a - b).abs()
    assert batched_for(custom_mse) is None

    class Plugin(type(relu)):  # a subclass may change the math: never gets the built-in one
        pass

    sub = copy.deepcopy(relu)
    sub.__class__ = Plugin
    assert batched_for(sub) is None


def test_structural_config_splits_cohorts():
    a = _cohort("jumprelu", modes=("trained",))[0]
    b = _cohort("jumprelu", modes=("trained",), overrides={"jumprelu_bandwidth": 0.1})[0]
    arch = JumpReLUBatched()
    assert arch.group_key(a) != arch.group_key(b)  # the engine puts them in separate programs
    with pytest.raises(ConfigError, match="jumprelu_bandwidth"):
        arch.init_state([a, b])
    c = _cohort("jumprelu", modes=("frozen_encoder",), seed=3)[0]
    assert arch.group_key(a) == arch.group_key(c)
    r1 = _cohort("relu", modes=("trained",))[0]
    r2 = _cohort("relu", modes=("trained",), overrides={"lp_norm": 2.0})[0]
    with pytest.raises(ConfigError, match="lp_norm"):
        StandardBatched().init_state([r1, r2])


# -- 100 steps through the cohort engine against sae-lens's own trainer ------------------------------
ENGINE_TRAIN = TrainingConfig(steps=100, batch_size=BATCH, lr=3e-3, curve_every=10, n_init_samples=256,
                              dead_feature_window=10, sparsity_warm_up_steps=30)
#: after 100 steps. One step's math agrees to RTOL; over 100 steps float64 rounding is amplified
#: where the problem is ill-conditioned: a JumpReLU decoder row that its norm-weighted L0 penalty
#: drives to the origin dithers there at the Adam step size (norm ~1e-3), where its direction
#: W/||W|| is sensitive to the last bit. On an AMD EPYC machine (AVX2 kernels, not the AVX-512
#: ones of the machines the test was written on) that row differed by 1.1e-13 = 1.2e-12 of the matrix's
#: largest entry, every other parameter of every member by <= 1e-14 relative.
RTOL_100_STEPS = 1e-11


def _build64(arch: str, mode: str, overrides: dict, target_l0):
    sae, mode_obj, sample = build_cell(ARCHS[arch], MODE_SPECS[mode], DATA, d_sae=D_SAE, target_l0=target_l0,
                                       arch_overrides=dict(overrides), mode_params={}, training=ENGINE_TRAIN, seed=2)
    sae.to(torch.float64)
    for param in sae.parameters():  # the engine keeps every tensor in its dtype, JumpReLU's threshold too
        param.data = param.data.to(torch.float64)
    return sae, mode_obj, sample


@pytest.mark.parametrize(("arch", "overrides", "target_l0"), [
    ("relu", {"lp_norm": 2.0, "apply_b_dec_to_input": False}, None),
    ("gated", {"apply_b_dec_to_input": False}, None),
    ("jumprelu", {"jumprelu_sparsity_loss_mode": "step", "jumprelu_ste_to_input": True,
                  "pre_act_loss_coefficient": 3e-2, "jumprelu_init_threshold": 0.3}, None),
    ("jumprelu", {"jumprelu_sparsity_loss_mode": "tanh", "pre_act_loss_coefficient": 1e-2}, None),
], ids=["relu-l2-no-bdec-input", "gated-no-bdec-input", "jumprelu-step-ste-preact", "jumprelu-tanh-preact"])
def test_cohort_members_follow_sae_lens_for_100_steps_float64(arch, overrides, target_l0):
    """Configurations the engine's own fidelity test does not build: every trainable mode as one
    cohort through ``train_cohort``, each member against sae-lens's ``SAETrainer`` (``CellTrainer``)
    on the same batches; parameters equal to ~1e-12 relative after 100 steps (RTOL_100_STEPS; warm-up, dead-latent
    pre-act loss live after step 10)."""
    from saebench_sanity.training.engine import FixedBudget, Member, train_cohort
    from saebench_sanity.training.trainer import CellTrainer

    members = []
    for mode in TRAINABLE_MODES:
        sae, mode_obj, sample = _build64(arch, mode, overrides, target_l0)
        members.append(Member(sae=sae, mode=mode_obj, control=FixedBudget(ENGINE_TRAIN), sample_acts=sample, name=mode))
    results = train_cohort(members, DATA.train_batches(BATCH, 9), ENGINE_TRAIN, dtype="float64", set_name=DATA.name)
    assert [r.path for r in results] == ["batched"] * len(TRAINABLE_MODES)
    saw_dead = False
    for mode, res in zip(TRAINABLE_MODES, results):
        ref, mode_obj, _ = _build64(arch, mode, overrides, target_l0)
        cell = CellTrainer(ref, mode_obj, ENGINE_TRAIN, total_steps=ENGINE_TRAIN.steps, set_name=DATA.name)
        batches = DATA.train_batches(BATCH, 9)
        for _ in range(ENGINE_TRAIN.steps):
            cell.step(next(batches))
            saw_dead |= bool(cell.trainer.dead_neurons.any())
        assert res.steps == ENGINE_TRAIN.steps and res.failure is None
        for name, param in ref.named_parameters():
            _close(getattr(res.sae, name), param, f"{arch} {mode} {name} after 100 steps", RTOL_100_STEPS)
    if "pre_act_loss_coefficient" in overrides:
        assert saw_dead, "no dead latent appeared: the pre-act loss was never live"
