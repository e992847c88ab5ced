"""The saebench-orthogonal plugin honours the contract (via the conformance kit)."""

import torch

from saebench_sanity import testing
from saebench_orthogonal.metric import reconstruction_cosine


def test_synth_orthogonal_passes_the_conformance_kit():
    aset = testing.check_activation_set("synth-orthogonal")
    gt = aset.ground_truth.features
    assert torch.allclose(gt @ gt.T, torch.eye(aset.d_in), atol=1e-5)


def test_reconstruction_cosine_passes_the_conformance_kit():
    testing.check_metric("reconstruction_cosine", activation_set="synth-orthogonal")


def test_reconstruction_cosine_closed_forms():
    x = torch.randn(100, 8)
    assert abs(reconstruction_cosine(x, x) - 1.0) < 1e-6
    assert abs(reconstruction_cosine(x, -2 * x) + 1.0) < 1e-6
    assert reconstruction_cosine(x, torch.zeros_like(x)) == 0.0
