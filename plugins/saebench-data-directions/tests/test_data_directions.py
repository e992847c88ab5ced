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
