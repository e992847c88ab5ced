"""Architectures: thin sae-lens builders, parameter validation, target-L0 mapping, checkpoints."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from saebench_sanity.architectures.sparsity import apply_target_l0, targets_l0  # noqa: E402
from saebench_sanity.builtin.architectures import ARCHITECTURES  # noqa: E402
from saebench_sanity.errors import ConfigError, DataError  # noqa: E402

ARCHS = {a.name: a for a in ARCHITECTURES}


pytestmark = pytest.mark.usefixtures("one_thread")
SAE_LENS_CLASS = {
    "relu": "StandardTrainingSAE", "topk": "TopKTrainingSAE", "batchtopk": "BatchTopKTrainingSAE",
    "jumprelu": "JumpReLUTrainingSAE", "gated": "GatedTrainingSAE", "matryoshka": "MatryoshkaBatchTopKTrainingSAE",
}


@pytest.mark.parametrize("name", sorted(ARCHS))
def test_build_returns_the_sae_lens_training_class_with_declared_roles(name):
    spec = ARCHS[name]
    sae = spec.build(d_in=16, d_sae=64, seed=0)
    assert type(sae).__name__ == SAE_LENS_CLASS[name]
    assert sae.cfg.architecture() == spec.sae_lens_architecture
    assert {n for n, _ in sae.named_parameters()} == set(spec.roles)
    assert all(p.dtype == torch.float32 and p.device.type == "cpu" for p in sae.parameters())
    assert sae.cfg.d_in == 16 and sae.cfg.d_sae == 64


@pytest.mark.parametrize("name", sorted(ARCHS))
def test_build_is_deterministic_per_seed_and_leaves_global_rng_alone(name):
    spec = ARCHS[name]
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a = spec.build(d_in=16, d_sae=64, seed=5)
    after = torch.rand(3)
    assert torch.equal(before, after), "building an SAE must not consume the caller's RNG"
    b = spec.build(d_in=16, d_sae=64, seed=5)
    c = spec.build(d_in=16, d_sae=64, seed=6)
    for (n, p), (_, q), (_, r) in zip(a.named_parameters(), b.named_parameters(), c.named_parameters()):
        assert torch.equal(p, q), n
    assert not torch.equal(a.W_dec, c.W_dec)


@pytest.mark.parametrize("name,params,fragment", [
    ("topk", {"kk": 3}, "architecture 'topk': unknown parameter 'kk'; known: "),
    ("topk", {"k": "three"}, "must be an integer"),
    ("topk", {"k": 0}, "k = 0 must be an integer in 1..d_sae"),
    ("topk", {"k": 65}, "in 1..d_sae (64)"),
    ("batchtopk", {"k": 2.5, "topk_threshold_lr": -1.0}, "must be >= 0"),
    ("relu", {"l1_coefficient": float("nan")}, "finite number"),
    ("relu", {"dtype": "float16"}, "cannot be set here"),
    ("jumprelu", {"jumprelu_sparsity_loss_mode": "cubic"}, "use one of step, tanh, quadratic"),
    ("jumprelu", {"jumprelu_sparsity_loss_mode": "quadratic"}, "target_l0 must be set"),
    ("gated", {"l1_coefficient": True}, "finite number"),
    ("matryoshka", {"group_fractions": [0.5, 0.3]}, "sum to 0.8"),
    ("matryoshka", {"matryoshka_widths": [8, 64]}, "use group_fractions"),
])
def test_bad_hyper_parameters_raise_one_line_config_errors(name, params, fragment):
    with pytest.raises(ConfigError) as err:
        ARCHS[name].build(d_in=16, d_sae=64, seed=0, **params)
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_parameter_message_lists_known_ones():
    with pytest.raises(ConfigError, match=r"known: .*aux_loss_coefficient.*k, "):
        ARCHS["topk"].build(d_in=16, d_sae=64, seed=0, kk=1)


def test_matryoshka_group_fractions_become_cumulative_widths():
    sae = ARCHS["matryoshka"].build(d_in=16, d_sae=64, seed=0)
    assert sae.cfg.matryoshka_widths == [32, 51, 64]  # 0.5, 0.8, 1.0 of 64
    sae = ARCHS["matryoshka"].build(d_in=16, d_sae=100, seed=0, group_fractions=[0.25, 0.75])
    assert sae.cfg.matryoshka_widths == [25, 100]


def test_target_l0_maps_to_each_architectures_knob():
    from saebench_sanity.architectures.base import ArchitectureSpec

    assert apply_target_l0(ARCHS["topk"], {"k": 20}, 7) == {"k": 7}
    assert apply_target_l0(ARCHS["batchtopk"], {"k": 20}, 7)["k"] == 7
    assert apply_target_l0(ARCHS["matryoshka"], {"k": 20, "group_fractions": [1.0]}, 7)["k"] == 7
    jr = apply_target_l0(ARCHS["jumprelu"], {"l0_coefficient": 1.0}, 7)
    assert jr["jumprelu_sparsity_loss_mode"] == "quadratic" and jr["target_l0"] == 7.0
    assert apply_target_l0(ARCHS["relu"], {"l1_coefficient": 5.0}, 7) == {"l1_coefficient": 5.0}
    assert apply_target_l0(ARCHS["gated"], {"l1_coefficient": 5.0}, 7) == {"l1_coefficient": 5.0}
    assert apply_target_l0(ARCHS["topk"], {"k": 20}, None) == {"k": 20}
    plugin = ArchitectureSpec(name="plugin-arch", factory="x:y", sparsity_param="k")
    assert apply_target_l0(plugin, {"k": 3}, 7) == {"k": 7}  # no mapping declared: sparsity_param "k" gets T
    assert targets_l0(ARCHS["jumprelu"]) and not targets_l0(ARCHS["relu"]) and not targets_l0(ARCHS["gated"])
    with pytest.raises(ConfigError):
        apply_target_l0(ARCHS["topk"], {}, 0)


def test_jumprelu_with_target_l0_builds_the_sae_lens_quadratic_penalty():
    params = apply_target_l0(ARCHS["jumprelu"], dict(ARCHS["jumprelu"].params), 5)
    sae = ARCHS["jumprelu"].build(d_in=16, d_sae=64, seed=0, **params)
    assert sae.cfg.jumprelu_sparsity_loss_mode == "quadratic" and sae.cfg.target_l0 == 5.0


# -- checkpoints ------------------------------------------------------------------------------------
def test_load_checkpoint_rejects_folders_that_are_not_sae_lens_saes(tmp_path):
    from saebench_sanity.architectures.checkpoint import load_checkpoint

    with pytest.raises(DataError, match="is not a folder"):
        load_checkpoint(tmp_path / "nope")
    with pytest.raises(DataError, match="missing cfg.json"):
        load_checkpoint(tmp_path)
    (tmp_path / "cfg.json").write_text(json.dumps({"architecture": "no-such-arch", "d_in": 4, "d_sae": 8}))
    (tmp_path / "sae_weights.safetensors").write_bytes(b"garbage")
    with pytest.raises(DataError, match="could not be loaded by SAELens"):
        load_checkpoint(tmp_path)


def test_uncalibrated_batchtopk_is_not_saved_with_a_zero_threshold(tmp_path):
    from saebench_sanity.architectures.checkpoint import save_checkpoint

    sae = ARCHS["batchtopk"].build(d_in=16, d_sae=64, seed=0, k=4)
    with pytest.raises(ConfigError, match="never"):
        save_checkpoint(sae, tmp_path / "x")


def test_batchtopk_calibration_is_the_fixed_point_of_sae_lens_threshold_ema(tmp_path):
    """The calibrated threshold equals the mean per-batch minimum kept activation, and the saved
    JumpReLU SAE then keeps about k latents per sample (independent check of the inference form)."""
    from saebench_sanity.architectures.batchtopk import calibrate_threshold
    from saebench_sanity.architectures.checkpoint import load_checkpoint, save_checkpoint

    sae = ARCHS["batchtopk"].build(d_in=16, d_sae=64, seed=0, k=4)
    x = torch.randn(1024, 16, generator=torch.Generator().manual_seed(1))
    thr = calibrate_threshold(sae, x, batch_size=256)
    # independent: BatchTopK by hand on each chunk
    mins = []
    with torch.no_grad():
        for chunk in x.split(256):
            pre = ((chunk - sae.b_dec) @ sae.W_enc + sae.b_enc) * sae.W_dec.norm(dim=-1)
            flat = pre.relu().flatten()
            kept = flat.topk(4 * chunk.shape[0]).values
            mins.append(kept[kept > 0].min().item())
    assert thr == pytest.approx(sum(mins) / len(mins), rel=1e-5)
    # sae-lens's own EMA, run long enough from 0, converges to the same value
    ema_sae = ARCHS["batchtopk"].build(d_in=16, d_sae=64, seed=0, k=4, topk_threshold_lr=0.5)
    with torch.no_grad():
        for _ in range(40):
            for chunk in x.split(256):
                ema_sae.update_topk_threshold(ema_sae.encode(chunk))
    assert float(ema_sae.topk_threshold) == pytest.approx(thr, rel=0.15)
    save_checkpoint(sae, tmp_path / "b")
    loaded = load_checkpoint(tmp_path / "b")
    assert loaded.cfg.architecture() == "jumprelu"
    with torch.no_grad():
        l0 = (loaded.encode(x) > 0).float().sum(-1).mean().item()
    assert 2.0 <= l0 <= 8.0
