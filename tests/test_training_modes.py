"""Training modes and the cell trainer, for every architecture x mode (tiny, real training)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from saebench_sanity.activations.base import ActivationSet  # noqa: E402
from saebench_sanity.builtin.architectures import ARCHITECTURES  # noqa: E402
from saebench_sanity.builtin.modes import MODES  # noqa: E402
from saebench_sanity.config import TrainingConfig  # noqa: E402
from saebench_sanity.errors import ConfigError, DataError  # noqa: E402
from saebench_sanity.training.modes import project_to_cone, random_directions, row_cosines  # noqa: E402
from saebench_sanity.training.trainer import build_cell, train_cell  # noqa: E402

ARCHS = {a.name: a for a in ARCHITECTURES}


pytestmark = pytest.mark.usefixtures("one_thread")
MODE_SPECS = {m.name: m for m in MODES}
D_IN, D_SAE = 16, 64
TRAIN = TrainingConfig(steps=30, batch_size=256, lr=3e-3, curve_every=5, n_init_samples=1024)


class SparseSet(ActivationSet):
    """Tiny synthetic stream: 32 unit features in 16 dims, ~2 active per sample, plus an offset."""

    name = "test-sparse"

    def __init__(self, d_in: int = D_IN, n_features: int = 32, nan_at: int | None = None,
                 interrupt_at: int | None = None, finite_batches: int | None = None, width: int | None = None):
        self.d_in = d_in
        g = torch.Generator().manual_seed(0)
        f = torch.randn(n_features, d_in, generator=g)
        self.features = f / f.norm(dim=1, keepdim=True)
        self.offset = torch.randn(d_in, generator=g)
        self.nan_at, self.interrupt_at, self.finite_batches, self.width = nan_at, interrupt_at, finite_batches, width

    def manifest(self):
        return {"kind": "test-sparse", "d_in": self.d_in}

    def _draw(self, n, g):
        on = torch.rand(n, self.features.shape[0], generator=g) < 2 / self.features.shape[0]
        mags = 1 + torch.rand(n, self.features.shape[0], generator=g)
        return (on * mags) @ self.features + self.offset

    def train_batches(self, batch_size, seed):
        g = torch.Generator().manual_seed(seed)
        i = 0
        while self.finite_batches is None or i < self.finite_batches:
            i += 1
            if self.interrupt_at == i:
                raise KeyboardInterrupt
            x = self._draw(batch_size, g)
            if self.nan_at == i:
                x[3, 2] = float("nan")
            if self.width is not None and i > 1:
                x = x[:, : self.width]
            yield x

    def sample_activations(self, n, seed=0):
        return self._draw(n, torch.Generator().manual_seed(seed + 7919))

    def eval_activations(self):
        return self._draw(512, torch.Generator().manual_seed(99))


DATA = SparseSet()


def _cell(arch, mode, training=TRAIN, seed=0, mode_params=None, arch_params=None, data=DATA, target_l0=4):
    return train_cell(ARCHS[arch], MODE_SPECS[mode], data, d_sae=D_SAE, target_l0=target_l0,
                      arch_overrides=arch_params or {}, mode_params=mode_params or {}, training=training, seed=seed)


def _prepared(arch, mode, seed=0, mode_params=None, target_l0=4):
    sae, _, _ = build_cell(ARCHS[arch], MODE_SPECS[mode], DATA, d_sae=D_SAE, target_l0=target_l0, arch_overrides={},
                           mode_params=mode_params or {}, training=TRAIN, seed=seed)
    return {n: p.detach().clone() for n, p in sae.named_parameters()}


def _expected_forward(sae, x):
    """Independent reconstruction of an *inference* SAE read straight from its state (no sae-lens calls)."""
    arch = sae.cfg.architecture()
    pre_in = x - sae.b_dec * sae.cfg.apply_b_dec_to_input
    if arch == "gated":
        gate = (pre_in @ sae.W_enc + sae.b_gate) > 0
        mag = (pre_in @ (sae.W_enc * sae.r_mag.exp()) + sae.b_mag).relu()
        acts = gate * mag
    else:
        pre = pre_in @ sae.W_enc + sae.b_enc
        if arch == "standard":
            acts = pre.relu()
        elif arch == "jumprelu":
            acts = pre * (pre > sae.threshold)
        elif arch == "topk":
            if sae.cfg.rescale_acts_by_decoder_norm:
                pre = pre * sae.W_dec.norm(dim=-1)
            top = pre.topk(sae.cfg.k, dim=-1)
            acts = torch.zeros_like(pre).scatter(-1, top.indices, top.values.relu())
        else:  # pragma: no cover
            raise AssertionError(arch)
    W_dec = sae.W_dec
    if arch == "topk" and sae.cfg.rescale_acts_by_decoder_norm:
        W_dec = W_dec / W_dec.norm(dim=-1, keepdim=True)
    return acts @ W_dec + sae.b_dec


# -- every architecture x mode -----------------------------------------------------------------------
@pytest.mark.parametrize("arch", sorted(ARCHS))
@pytest.mark.parametrize("mode", ["trained", "frozen_decoder", "soft_frozen_decoder", "frozen_encoder", "untrained"])
def test_every_cell_freezes_exactly_its_roles_and_round_trips_through_sae_lens(arch, mode, tmp_path):
    from sae_lens import SAE

    from saebench_sanity.architectures.checkpoint import load_checkpoint, save_checkpoint

    start = _prepared(arch, mode)
    res = _cell(arch, mode)
    spec_mode = MODE_SPECS[mode].build()
    frozen_roles = set(spec_mode.frozen_roles)
    assert res.steps == (TRAIN.steps if spec_mode.trains else 0)
    for name, p in res.sae.named_parameters():
        role = ARCHS[arch].roles[name]
        if role in frozen_roles:
            assert torch.equal(p.detach(), start[name]), f"{arch}/{mode}: frozen {name} changed"
            assert not p.requires_grad
        else:
            assert not torch.equal(p.detach(), start[name]), f"{arch}/{mode}: trainable {name} did not move"
    if mode == "soft_frozen_decoder":
        cos = row_cosines(res.sae.W_dec.detach(), res.sae.saebench_mode_state["decoder_init"])
        assert float(cos.min()) >= 0.8 - 1e-5
    assert all(math.isfinite(v) for _, v in res.loss_curve)
    # SAELens on-disk round trip; the loaded inference SAE matches an independent forward pass
    x = DATA.eval_activations()[:64]
    save_checkpoint(res.sae, tmp_path / "sae")
    loaded = SAE.load_from_disk(str(tmp_path / "sae"))
    again = load_checkpoint(tmp_path / "sae")
    with torch.no_grad():
        out = loaded(x)
        assert torch.equal(out, again(x))
        assert torch.allclose(out, _expected_forward(loaded, x), atol=1e-4)
        if arch not in ("batchtopk", "matryoshka"):  # those become JumpReLU SAEs for inference
            res.sae.eval()
            assert torch.allclose(out, res.sae(x), atol=1e-4), f"{arch}/{mode}: inference SAE differs from the trained one"
        else:
            assert float(loaded.threshold.min()) > 0, "BatchTopK inference threshold must be set"
            l0 = (loaded.encode(x) > 0).float().sum(-1).mean().item()
            assert 1.0 <= l0 <= 16.0, f"{arch}/{mode}: inference L0 {l0} far from k = 4"


def test_frozen_decoder_topk_b_enc_and_encoder_train():
    start = _prepared("topk", "frozen_decoder")
    res = _cell("topk", "frozen_decoder")
    assert not torch.equal(res.sae.W_enc.detach(), start["W_enc"])
    assert not torch.equal(res.sae.b_dec.detach(), start["b_dec"])


@pytest.mark.parametrize("mode", ["frozen_decoder", "soft_frozen_decoder", "frozen_encoder", "untrained"])
def test_random_directions_are_unit_norm_and_encoder_starts_tied(mode):
    start = _prepared("topk", mode, mode_params={"init": "iso", "fit_scale": False})
    assert torch.allclose(start["W_dec"].norm(dim=1), torch.ones(D_SAE), atol=1e-6)
    assert torch.equal(start["W_enc"], start["W_dec"].T)


@pytest.mark.parametrize("arch", sorted(ARCHS))
@pytest.mark.parametrize("mode", ["frozen_decoder", "soft_frozen_decoder", "frozen_encoder", "untrained"])
def test_fit_scale_starts_baselines_at_the_least_squares_output_scale(arch, mode):
    """After prepare, refitting the scale gives 1 (it is already optimal), the scaled side is a
    positive multiple of the tied unit rows, and the frozen side stays unit norm."""
    from saebench_sanity.training.modes import fit_output_scale

    sae, _, sample = build_cell(ARCHS[arch], MODE_SPECS[mode], DATA, d_sae=D_SAE, target_l0=4, arch_overrides={},
                                mode_params={"init": "iso"}, training=TRAIN, seed=0)
    if arch in ("batchtopk", "matryoshka") and mode == "untrained":
        pytest.skip("its threshold is calibrated later by the trainer; covered by the cell tests")
    assert fit_output_scale(sae, sample) == pytest.approx(1.0, rel=1e-3)
    W_enc, W_dec = sae.W_enc.detach(), sae.W_dec.detach()
    c = float((W_enc * W_dec.T).sum() / (W_dec * W_dec).sum())
    assert c > 0 and torch.allclose(W_enc, c * W_dec.T, atol=1e-5 * max(1.0, c))
    frozen_side = W_enc.norm(dim=0) if mode == "frozen_encoder" else W_dec.norm(dim=1)
    assert torch.allclose(frozen_side, torch.ones(D_SAE), atol=1e-5)


def test_baselines_of_one_seed_share_their_random_decoder():
    a = _prepared("batchtopk", "frozen_decoder", mode_params={"init": "iso"})
    b = _prepared("batchtopk", "soft_frozen_decoder")
    c = _prepared("batchtopk", "soft_frozen_decoder", seed=1)
    assert torch.equal(a["W_dec"], b["W_dec"]) and not torch.equal(b["W_dec"], c["W_dec"])


def test_frozen_encoder_lets_topk_decoder_norm_carry_the_scale():
    res = _cell("topk", "frozen_encoder")
    assert res.sae.cfg.rescale_acts_by_decoder_norm is False
    trained = _cell("topk", "trained")
    assert trained.sae.cfg.rescale_acts_by_decoder_norm is True


def test_train_biases_false_freezes_biases_at_the_sample_mean():
    mode_params = {"init": "iso", "train_biases": False, "fit_scale": False}
    start = _prepared("relu", "frozen_decoder", mode_params=mode_params)
    res = _cell("relu", "frozen_decoder", mode_params=mode_params)
    assert torch.equal(res.sae.b_dec.detach(), start["b_dec"]) and torch.equal(res.sae.b_enc.detach(), start["b_enc"])
    mean = DATA.sample_activations(TRAIN.n_init_samples, seed=0).double().mean(0).float()
    assert torch.allclose(start["b_dec"], mean, atol=1e-6)
    assert not torch.equal(res.sae.W_enc.detach(), start["W_enc"])


def test_soft_frozen_projection_is_active_and_holds_for_every_latent():
    training = TrainingConfig(steps=40, batch_size=256, lr=5e-2, curve_every=5, n_init_samples=1024)
    res = _cell("topk", "soft_frozen_decoder", training=training)
    cos = row_cosines(res.sae.W_dec.detach(), res.sae.saebench_mode_state["decoder_init"])
    assert float(cos.min()) >= 0.8 - 1e-5
    pinned = int(((cos - 0.8).abs() < 1e-5).sum())
    assert pinned >= 5, f"expected rows pinned at the cone boundary, got {pinned}"
    MODE_SPECS["soft_frozen_decoder"].build().check(res.sae)


# -- pure helpers ---------------------------------------------------------------------------------------
def test_cone_projection_keeps_inside_rows_and_turns_outside_rows_to_the_closest_boundary_direction():
    g = torch.Generator().manual_seed(0)
    d0 = torch.randn(200, 8, generator=g, dtype=torch.float64)
    d0 = d0 / d0.norm(dim=1, keepdim=True)
    w = torch.randn(200, 8, generator=g, dtype=torch.float64) * 3
    w[0] = -2 * d0[0]  # exactly opposite
    out = project_to_cone(w, d0, 0.8)
    cos_in = row_cosines(w, d0)
    inside = cos_in >= 0.8
    assert torch.equal(out[inside], w[inside])
    cos_out = row_cosines(out, d0)
    outside = ~inside
    outside[0] = False  # the anti-parallel row has no closest boundary direction; it goes to d0
    assert torch.allclose(cos_out[outside], torch.full_like(cos_out[outside], 0.8), atol=1e-12)
    assert torch.allclose(out.norm(dim=1), w.norm(dim=1), atol=1e-12)
    assert torch.allclose(out[0], 2 * d0[0])
    # independent check: among many random directions on the cone boundary, none is closer (in angle) to w
    for i in torch.nonzero(~inside).flatten()[1:20].tolist():
        perp = torch.randn(5000, 8, generator=g, dtype=torch.float64)
        perp = perp - (perp @ d0[i])[:, None] * d0[i]
        perp = perp / perp.norm(dim=1, keepdim=True)
        boundary = 0.8 * d0[i] + 0.6 * perp
        best = (boundary @ w[i]).max() / w[i].norm()
        assert float(out[i] @ w[i] / (out[i].norm() * w[i].norm())) >= float(best) - 1e-12


def test_cov_directions_follow_the_activation_covariance():
    g = torch.Generator().manual_seed(0)
    v = torch.tensor([3.0, 4.0, 0.0, 0.0]) / 5
    samples = torch.randn(500, 1, generator=g) * v + 10.0  # rank-1 covariance along v, big mean
    torch.manual_seed(0)
    dirs = random_directions(50, 4, "cov", samples)
    assert torch.allclose((dirs @ v).abs(), torch.ones(50), atol=1e-4)  # every direction is +-v
    torch.manual_seed(0)
    iso = random_directions(2000, 4, "iso")
    assert torch.allclose(iso.norm(dim=1), torch.ones(2000), atol=1e-6)
    assert float((iso @ v).abs().mean()) < 0.7


@pytest.mark.parametrize("mode,params,fragment", [
    ("frozen_decoder", {"inti": "iso"}, "training mode 'frozen_decoder': unknown parameter 'inti'; known: fit_scale, init, train_biases"),
    ("frozen_encoder", {"init": "gaussian"}, "use one of iso, cov"),
    ("soft_frozen_decoder", {"min_cos": 1.5}, "must be a number in (0, 1)"),
    ("frozen_decoder", {"train_biases": "yes"}, "true or false"),
    ("trained", {"init": "iso"}, "unknown parameter 'init'"),
])
def test_bad_mode_params_raise_config_errors(mode, params, fragment):
    with pytest.raises(ConfigError) as err:
        MODE_SPECS[mode].build(**params)
    assert fragment in str(err.value)


# -- trainer ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch,mode,params", [("topk", "soft_frozen_decoder", {}),
                                              ("jumprelu", "frozen_decoder", {"init": "cov"}),
                                              ("gated", "frozen_encoder", {})])
def test_same_seed_gives_bit_identical_weights(arch, mode, params):
    a = _cell(arch, mode, mode_params=params)
    b = _cell(arch, mode, mode_params=params)
    c = _cell(arch, mode, mode_params=params, seed=1)
    for (n, p), (_, q) in zip(a.sae.named_parameters(), b.sae.named_parameters()):
        assert torch.equal(p, q), n
    assert a.loss_curve == b.loss_curve
    assert not torch.equal(a.sae.W_dec, c.sae.W_dec)


def test_training_reduces_loss_on_a_sparse_stream_and_records_curves():
    training = TrainingConfig(steps=120, batch_size=256, lr=1e-2, curve_every=10, n_init_samples=1024)
    calls = []
    res = train_cell(ARCHS["topk"], MODE_SPECS["trained"], DATA, d_sae=D_SAE, target_l0=2, arch_overrides={},
                     mode_params={}, training=training, seed=0, progress=lambda s, t, l: calls.append((s, t, l)))
    assert [s for s, _ in res.loss_curve] == list(range(10, 121, 10))
    assert res.mse_curve[-1][1] < 0.2 * res.mse_curve[0][1]
    assert calls[-1][:2] == (120, 120) and len(calls) == 12
    assert res.l0_train == pytest.approx(2.0)
    assert 0.0 <= res.dead_fraction <= 1.0 and res.seconds > 0
    assert set(res.convergence) >= {"rel_improvement", "window"}


def test_curve_includes_a_final_partial_interval():
    training = TrainingConfig(steps=12, batch_size=64, lr=1e-3, curve_every=5, n_init_samples=256)
    res = _cell("relu", "trained", training=training)
    assert [s for s, _ in res.loss_curve] == [5, 10, 12]


def test_untrained_cells_take_no_steps_and_calibrate_batchtopk():
    res = _cell("batchtopk", "untrained")
    assert res.steps == 0 and res.converged and res.loss_curve == []
    assert float(res.sae.topk_threshold) > 0
    assert res.l0_train == pytest.approx(4.0, rel=0.5)
    jr = _cell("jumprelu", "untrained")
    assert jr.l0_train == pytest.approx(4.0, rel=0.25)  # threshold calibrated to the target L0


def test_a_mode_whose_spec_and_built_mode_disagree_on_training_is_refused():
    from dataclasses import replace

    from saebench_sanity.errors import PluginError

    lying = replace(MODE_SPECS["untrained"], trains=True)  # identity says trains, the mode takes no step
    with pytest.raises(PluginError, match="spec says trains=True but the mode it builds says trains=False"):
        build_cell(ARCHS["topk"], lying, DATA, d_sae=D_SAE, target_l0=4, arch_overrides={}, mode_params={},
                   training=TRAIN, seed=0)


@pytest.mark.parametrize("data,fragment", [
    (SparseSet(nan_at=3), "NaN/inf"),
    (SparseSet(width=8), "d_in mismatch"),
    (SparseSet(finite_batches=5), "ran out of batches"),
])
def test_bad_data_raises_one_line_data_errors_naming_the_set(data, fragment):
    with pytest.raises(DataError) as err:
        _cell("topk", "trained", data=data)
    assert fragment in str(err.value) and "'test-sparse'" in str(err.value)


def test_keyboard_interrupt_propagates():
    with pytest.raises(KeyboardInterrupt):
        _cell("topk", "trained", data=SparseSet(interrupt_at=4))


def test_sparsity_warm_up_reaches_sae_lens_coefficients():
    training = TrainingConfig(steps=10, batch_size=64, lr=1e-3, curve_every=5, n_init_samples=256, sparsity_warm_up_steps=7)
    sae, _, _ = build_cell(ARCHS["relu"], MODE_SPECS["trained"], DATA, d_sae=D_SAE, target_l0=None, arch_overrides={},
                           mode_params={}, training=training, seed=0)
    assert sae.get_coefficients()["l1"].warm_up_steps == 7


# -- the doc table cannot go stale ----------------------------------------------------------------------
def test_docs_inventory_table_matches_the_code():
    from saebench_sanity.training.inventory import BEGIN, END, builtin_table, trainable_tensors

    doc = (Path(__file__).resolve().parents[1] / "docs" / "training-modes.md").read_text(encoding="utf-8")
    m = re.search(re.escape(BEGIN) + r"\n(.*?)\n" + re.escape(END), doc, re.S)
    assert m, "docs/training-modes.md lost its inventory markers"
    assert m.group(1).strip() == builtin_table().strip(), \
        "docs/training-modes.md is stale: regenerate with python -m saebench_sanity.training.inventory"
    fd = trainable_tensors(ARCHS["jumprelu"], MODE_SPECS["frozen_decoder"].build())
    assert fd == {"b_dec": True, "W_dec": False, "W_enc": True, "b_enc": True, "threshold": True}


def test_conformance_kit_accepts_every_builtin_mode():
    testing = pytest.importorskip("saebench_sanity.testing")
    for mode in MODE_SPECS.values():
        testing.check_training_mode(mode, architecture=ARCHS["batchtopk"])


@pytest.mark.parametrize("mode, attr", [("frozen_decoder", "W_dec"), ("frozen_encoder", "W_enc"),
                                        ("soft_frozen_decoder", "W_dec")])
def test_a_broken_mode_invariant_raises_a_named_error_not_an_assert(mode, attr):
    """Invariants that protect results must hold under ``python -O`` too (asserts vanish there)."""
    from saebench_sanity.errors import ModeInvariantError

    res = _cell("topk", mode)
    with torch.no_grad():
        W = getattr(res.sae, attr)
        W.data.copy_(-W.data)  # a frozen tensor moved / every row leaves its cone
    with pytest.raises(ModeInvariantError, match=mode):
        MODE_SPECS[mode].build().check(res.sae)
