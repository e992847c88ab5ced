"""The data_directions plugin honours the training-mode contract (via the conformance kit)."""

import pytest
import torch

from saebench_sanity import ConfigError, testing
from saebench_data_directions.mode import data_directions


@pytest.mark.parametrize("arch", ["topk", "relu", "jumprelu", "gated"])
def test_data_directions_passes_the_conformance_kit(arch):
    testing.check_training_mode("data_directions", architecture=arch)


def test_directions_are_centred_unit_rows_of_the_sample():
    torch.manual_seed(0)
    x = torch.randn(50, 6) + 3.0
    d = data_directions(x, 10)
    assert torch.allclose(d.norm(dim=1), torch.ones(10), atol=1e-6)
    centred = x - x.mean(0)
    unit = centred / centred.norm(dim=1, keepdim=True)
    # every direction is one of the centred sample rows
    assert ((d @ unit.T).max(dim=1).values > 1 - 1e-5).all()


def test_unknown_parameter_is_a_one_line_config_error():
    from saebench_data_directions.mode import DataDirections

    with pytest.raises(ConfigError, match="data_directions"):
        DataDirections(init="iso")


def _prepared(arch="topk", **params):
    from saebench_sanity.builtin.architectures import ARCHITECTURES
    from saebench_data_directions.mode import DataDirections

    spec = {a.name: a for a in ARCHITECTURES}[arch]
    torch.manual_seed(0)
    x = torch.randn(512, 8) @ torch.randn(8, 8) + 2.0
    sae = spec.build(d_in=8, d_sae=16, seed=0, **({"k": 3} if arch == "topk" else {}))
    mode = DataDirections(**params)
    mode.prepare(sae, dict(spec.roles), x)
    return sae, mode, x, spec


def test_it_gets_the_base_class_fairness_helpers():
    """Tied encoder, least-squares output scale, and b_dec at the sample mean with frozen biases."""
    from saebench_sanity.training.modes import fit_output_scale

    sae, mode, x, spec = _prepared(train_biases=False)
    assert torch.allclose(sae.b_dec.detach(), x.double().mean(0).float(), atol=1e-6)
    assert not sae.W_dec.requires_grad and not sae.b_dec.requires_grad and sae.W_enc.requires_grad
    # the encoder was scaled by the fit, so it is W_dec.T times one positive factor ...
    ratio = sae.W_enc.detach() / sae.W_dec.detach().T
    assert torch.allclose(ratio, ratio.flatten()[0].expand_as(ratio), rtol=1e-4) and float(ratio.flatten()[0]) > 0
    # ... the one that makes the output scale least-squares: fitting again gives 1
    assert fit_output_scale(sae, x, roles=dict(spec.roles)) == pytest.approx(1.0, rel=1e-3)
    unscaled, _, _, _ = _prepared(train_biases=False, fit_scale=False)
    assert torch.equal(unscaled.W_enc.detach(), unscaled.W_dec.detach().T)


def test_a_moved_decoder_is_a_named_error_found_through_the_roles():
    from saebench_sanity.errors import ModeInvariantError

    sae, mode, _, _ = _prepared("relu")
    mode.check(sae)
    with torch.no_grad():
        sae.W_dec.data.mul_(-1.0)
    with pytest.raises(ModeInvariantError, match="data_directions: decoder \\(W_dec\\) moved"):
        mode.check(sae)
