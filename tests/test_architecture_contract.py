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
