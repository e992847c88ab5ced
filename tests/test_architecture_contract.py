"""Architecture behaviour lives on the spec: built-in cells keep their identity and initial weights
through the move, and a plugin that declares the same fields gets the same behaviour."""

import hashlib

import pytest

from saebench_sanity import config
from saebench_sanity.activations.base import stable_hash
from saebench_sanity.harness.plan import build_plan

ARCHS = ["relu", "topk", "batchtopk", "jumprelu", "gated", "matryoshka"]
MODES = ["trained", "frozen_decoder", "untrained"]
RUN = {"run": {"sets": ["tiny-gauss"], "architectures": ARCHS, "modes": MODES, "seeds": [0],
               "metrics": ["reconstruction"]},
       "training": {"steps": 10, "batch_size": 32, "sparsity_warm_up_steps": 3}}

#: Hash of each built-in cell's key material without its code entry (and without anything a
#: later change adds to the material), computed from the code before architecture behaviour moved
#: onto the spec (tiny-gauss recommends d_sae 16, target_l0 2).
PINNED = {
    ("relu", "trained"): "4bdbeb2370fb5183d74585bc",
    ("relu", "frozen_decoder"): "c96a0c93290f6784056fa813",
    ("relu", "untrained"): "eb30e5fc42896abf945e326b",
    ("topk", "trained"): "50be96e8b4c814858e08b2ed",
    ("topk", "frozen_decoder"): "f3b806e6febab2b915066c1d",
    ("topk", "untrained"): "bc78efd03a48c205c27a1bc1",
    ("batchtopk", "trained"): "6bb5f5b6d77d3092b8413800",
    ("batchtopk", "frozen_decoder"): "4656a496d915f3e555de49a8",
    ("batchtopk", "untrained"): "2dd0e9d87f1f988b1e200497",
    ("jumprelu", "trained"): "bb2473e21cedadd55bfe703b",
    ("jumprelu", "frozen_decoder"): "973deaf505e681d7cc60faec",
    ("jumprelu", "untrained"): "1d90b1559fba472c1150e5a8",
    ("gated", "trained"): "1164eac730a1494dc6fbc4ab",
    ("gated", "frozen_decoder"): "6f9d1041a7952176e17b8c5e",
    ("gated", "untrained"): "be41d30d91c570890387245b",
    ("matryoshka", "trained"): "956e6dd3151eece6039968a1",
    ("matryoshka", "frozen_decoder"): "6a782b1c6332c22c7c839f03",
    ("matryoshka", "untrained"): "f6fdc9c47c95568deefc7fbb",
}

#: Resolved hyper-parameters at target L0 2 (the table in architectures/sparsity.py).
PINNED_PARAMS = {
    "relu": {"l1_coefficient": 5.0}, "topk": {"k": 2}, "batchtopk": {"k": 2},
    "jumprelu": {"l0_coefficient": 1.0, "jumprelu_sparsity_loss_mode": "quadratic", "target_l0": 2.0},
    "gated": {"l1_coefficient": 5.0}, "matryoshka": {"k": 2, "group_fractions": [0.5, 0.3, 0.2]},
}

#: sae-lens class and sha256 (first 16 hex) of the state dict built at d_in 8, d_sae 16, seed 3, target L0 2.
PINNED_INIT = {
    "relu": ("StandardTrainingSAE", "e78dbb8b960ab2d4"), "topk": ("TopKTrainingSAE", "e78dbb8b960ab2d4"),
    "batchtopk": ("BatchTopKTrainingSAE", "8b459ff0d334f667"), "jumprelu": ("JumpReLUTrainingSAE", "342a3d1954980101"),
    "gated": ("GatedTrainingSAE", "85a5d60b0fb4bfb5"),
    "matryoshka": ("MatryoshkaBatchTopKTrainingSAE", "8b459ff0d334f667"),
}


def _material_hash(cell):
    m = cell.key_material()
    return stable_hash({k: m[k] for k in ("set", "architecture", "mode", "seed", "d_sae", "target_l0",
                                          "training", "dtype")})[:24]


def test_builtin_cell_identities_are_unchanged(fake_registry):
    plan = build_plan(config.from_dict(RUN), fake_registry, build_sets=False)
    got = {(c.arch, c.mode): _material_hash(c) for c in plan.cells}
    assert got == PINNED
    for c in plan.cells:
        assert c.arch_params == PINNED_PARAMS[c.arch]


def _state_hash(sae):
    h = hashlib.sha256()
    for name, p in sorted(sae.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


@pytest.mark.parametrize("arch", ARCHS)
def test_builtin_initial_weights_are_unchanged(fake_registry, arch):
    from saebench_sanity.architectures.sparsity import resolve_arch_params

    spec = fake_registry.get("architecture", arch)
    sae = spec.build(d_in=8, d_sae=16, seed=3, **resolve_arch_params(spec, 2, {}))
    assert (type(sae).__name__, _state_hash(sae)) == PINNED_INIT[arch]


# -- behaviour by declaration, not by name -----------------------------------------------------------
#: What each built-in declares, as a plugin would (the table in architectures/sparsity.py).
DECLARED = {
    "relu": ("l1_warm_up_steps", ("l1",), False), "topk": ("", (), False), "batchtopk": ("", (), True),
    "jumprelu": ("l0_warm_up_steps", ("l0",), False), "gated": ("l1_warm_up_steps", ("l1",), False),
    "matryoshka": ("", (), True),
}


def _twin(spec, **changes):
    """The built-in declared again under another name, as a third-party plugin would register it."""
    import dataclasses

    return dataclasses.replace(spec, name=spec.name + "-twin", plugin="", package="", **changes)


@pytest.mark.parametrize("arch", ARCHS)
def test_a_plugin_declaring_the_builtin_fields_gets_the_builtin_behaviour(fake_registry, arch):
    import torch

    from saebench_sanity.architectures.sparsity import resolve_arch_params
    from saebench_sanity.config import TrainingConfig
    from saebench_sanity.training.sparsity_control import sparsity_coefficients
    from saebench_sanity.training.trainer import build_cell

    spec = fake_registry.get("architecture", arch)
    twin = _twin(spec)
    assert resolve_arch_params(twin, 2, {}) == resolve_arch_params(spec, 2, {}) == PINNED_PARAMS[arch]
    aset = fake_registry.get("activation_set", "tiny-gauss").build()
    training = TrainingConfig(max_steps=10, batch_size=32, n_init_samples=64, sparsity_warm_up_steps=3)
    mode = fake_registry.get("training_mode", "trained")
    built = {}
    for s in (spec, twin):
        sae, _, _ = build_cell(s, mode, aset, d_sae=16, target_l0=2, arch_overrides={}, mode_params={},
                               training=training, seed=0)
        built[s.name] = sae
    warm_up, coefficients, calibrates = DECLARED[arch]
    a, b = built[spec.name], built[twin.name]
    for name, p in a.state_dict().items():
        assert torch.equal(p, b.state_dict()[name]), name
    if warm_up:
        assert getattr(a.cfg, warm_up) == getattr(b.cfg, warm_up) == 3
    assert sparsity_coefficients(twin, b) == sparsity_coefficients(spec, a) == coefficients
    assert (spec.calibration is not None) == calibrates


def test_undeclared_behaviour_is_not_inherited_from_a_builtin_name(fake_registry):
    """A spec that names the same sae-lens class but declares nothing gets nothing: no target-L0
    mapping, no warm-up, no controlled coefficient, no calibration."""
    import torch

    from saebench_sanity.architectures.sparsity import resolve_arch_params
    from saebench_sanity.config import TrainingConfig
    from saebench_sanity.training.sparsity_control import sparsity_coefficients
    from saebench_sanity.training.trainer import build_cell, train_cell

    bare = {a: _twin(fake_registry.get("architecture", a), target_l0_params=None, sparsity_param="",
                     sparsity_warm_up_param="", sparsity_coefficients=(), calibration=None) for a in ARCHS}
    assert resolve_arch_params(bare["jumprelu"], 2, {}) == {"l0_coefficient": 1.0}
    assert resolve_arch_params(bare["topk"], 2, {}) == {"k": 20}
    aset = fake_registry.get("activation_set", "tiny-gauss").build()
    training = TrainingConfig(max_steps=10, batch_size=32, n_init_samples=64, sparsity_warm_up_steps=3)
    trained = fake_registry.get("training_mode", "trained")
    sae, _, _ = build_cell(bare["relu"], trained, aset, d_sae=16, target_l0=2, arch_overrides={}, mode_params={},
                           training=training, seed=0)
    assert sae.cfg.l1_warm_up_steps == 0 and sparsity_coefficients(bare["relu"], sae) == ()
    untrained = fake_registry.get("training_mode", "untrained")
    kw = dict(d_sae=16, target_l0=None, arch_overrides={"k": 2}, mode_params=dict(untrained.params),
              training=training, seed=0)
    declared = train_cell(fake_registry.get("architecture", "batchtopk"), untrained, aset, **kw)
    undeclared = train_cell(bare["batchtopk"], untrained, aset, **kw)
    assert float(declared.sae.topk_threshold) > 0 and float(undeclared.sae.topk_threshold) == 0.0
    assert torch.equal(declared.sae.W_dec, undeclared.sae.W_dec)


def test_a_declared_coefficient_the_sae_does_not_have_is_a_plugin_error(fake_registry):
    from saebench_sanity.errors import PluginError
    from saebench_sanity.training.sparsity_control import sparsity_coefficients

    spec = _twin(fake_registry.get("architecture", "relu"), sparsity_coefficients=("l2",))
    sae = spec.build(d_in=8, d_sae=16, seed=0)
    with pytest.raises(PluginError, match=r"'relu-twin' declares sparsity coefficient\(s\) \['l2'\].*\['l1'\]"):
        sparsity_coefficients(spec, sae)


def test_the_generic_builder_builds_any_sae_lens_architecture_and_names_unknown_ones():
    from saebench_sanity.architectures.build import SaeLensArchitecture
    from saebench_sanity.errors import ConfigError, PluginError

    sae = SaeLensArchitecture("abstopk")(d_in=8, d_sae=16, seed=0, k=3)  # no wrapper module exists for it
    assert type(sae).__name__ == "AbsTopKTrainingSAE" and sae.cfg.k == 3
    with pytest.raises(ConfigError, match="architecture 'abstopk': k = 17 must be an integer in 1..d_sae"):
        SaeLensArchitecture("abstopk")(d_in=8, d_sae=16, seed=0, k=17)
    with pytest.raises(PluginError, match="sae-lens has no training class 'nope'; known: .*topk"):
        SaeLensArchitecture("nope", name="mine")(d_in=8, d_sae=16, seed=0)


def test_declarations_the_built_sae_contradicts_are_named(fake_registry):
    for arch in ARCHS:
        spec = fake_registry.get("architecture", arch)
        assert spec.declaration_problems(spec.build(d_in=8, d_sae=32, seed=0)) == [], arch
    relu = fake_registry.get("architecture", "relu")
    bad = _twin(relu, sparsity_warm_up_param="l0_warm_up_steps", sparsity_coefficients=("l0",),
                target_l0_params=lambda t: {"kk": t}, calibration="no_such_module:calibrate")
    problems = bad.declaration_problems(bad.build(d_in=8, d_sae=16, seed=0))
    assert len(problems) == 4
    assert "'l0_warm_up_steps' is not a field" in problems[0] and "['l0'] are not among" in problems[1]
    assert "sets ['kk']" in problems[2] and "no_such_module" in problems[3]
