"""The public base class of random-direction baselines: its fairness helpers and frozen checks
reach every tensor through the architecture's roles (an SAE whose tensors are not called
W_enc / W_dec works), and broken invariants are named errors."""

import types

import pytest
import torch

from saebench_sanity import RandomDirectionsBaseline
from saebench_sanity.errors import ConfigError, ModeInvariantError
from saebench_sanity.training.modes import FrozenDecoder, FrozenEncoder, fit_output_scale

ROLES = {"E": "encoder", "D": "decoder", "be": "encoder_bias", "bd": "decoder_bias"}


class OddNames(torch.nn.Module):
    """A ReLU SAE ``[n, d_in] -> [n, d_in]`` whose tensors have none of sae-lens's names."""

    def __init__(self, d_in=6, d_sae=12):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.E = torch.nn.Parameter(torch.randn(d_in, d_sae, generator=g))
        self.D = torch.nn.Parameter(torch.randn(d_sae, d_in, generator=g))
        self.be = torch.nn.Parameter(torch.zeros(d_sae))
        self.bd = torch.nn.Parameter(torch.zeros(d_in))
        self.cfg = types.SimpleNamespace()

    def forward(self, x):
        return torch.relu((x - self.bd) @ self.E + self.be) @ self.D + self.bd


def _sample():
    g = torch.Generator().manual_seed(1)
    return torch.randn(400, 6, generator=g) @ torch.randn(6, 6, generator=g) + 3.0


@pytest.mark.parametrize("cls, frozen, other", [(FrozenDecoder, "D", "E"), (FrozenEncoder, "E", "D")])
def test_builtin_baselines_work_through_roles_on_any_tensor_names(cls, frozen, other):
    sae, x = OddNames(), _sample()
    mode = cls(init="iso", train_biases=False)
    torch.manual_seed(0)
    mode.prepare(sae, ROLES, x)
    assert not getattr(sae, frozen).requires_grad and getattr(sae, other).requires_grad
    assert not sae.bd.requires_grad and torch.allclose(sae.bd.detach(), x.double().mean(0).float(), atol=1e-6)
    rows = sae.D.detach() if frozen == "D" else sae.E.detach().T
    assert torch.allclose(rows.norm(dim=1), torch.ones(12), atol=1e-5)  # the frozen side: unit directions
    assert fit_output_scale(sae, x, roles=ROLES) == pytest.approx(1.0, rel=1e-3)  # starts least-squares scaled
    mode.check(sae)
    with torch.no_grad():
        getattr(sae, frozen).data[0].mul_(-1.0)
    with pytest.raises(ModeInvariantError, match=rf"{mode.name}: \w+ \({frozen}\) moved"):
        cls(init="iso").check(sae)  # a fresh mode object reads what prepare recorded on the SAE


def test_a_plugin_baseline_subclasses_it_with_its_own_directions():
    class Axis(RandomDirectionsBaseline):
        """Decoder rows = coordinate axes (cycled): deterministic directions."""

        name = "axis"
        DEFAULTS = {"train_biases": True, "fit_scale": False}

        def _frozen(self):
            return ("decoder",)

        def directions(self, n, d_in, sample_acts):
            return torch.eye(d_in)[torch.arange(n) % d_in]

        def prepare(self, sae, roles, sample_acts):
            dirs = self.init_tied(sae, roles, sample_acts)
            self.center(sae, roles, sample_acts)
            self.fit_scale(sae, roles, sample_acts, "encoder")
            self.freeze(sae, roles)
            self.record(sae, roles, decoder=dirs)

        def check(self, sae):
            self.check_frozen(sae, "decoder")

    sae, x = OddNames(), _sample()
    mode = Axis()
    assert mode.is_baseline and mode.frozen_roles == ("decoder",)
    mode.prepare(sae, ROLES, x)
    assert torch.equal(sae.D.detach(), torch.eye(6)[torch.arange(12) % 6]) and torch.equal(sae.E.detach(), sae.D.detach().T)
    assert torch.equal(sae.bd.detach(), torch.zeros(6))  # biases train: not centred
    mode.check(sae)
    with pytest.raises(ConfigError, match="training mode 'axis': unknown parameter 'init'"):
        Axis(init="iso")
    with pytest.raises(ModeInvariantError, match="axis: SAE was not prepared by this mode"):
        Axis().check(OddNames())


def test_directions_of_the_wrong_shape_are_refused():
    class Short(FrozenDecoder):
        def directions(self, n, d_in, sample_acts):
            return torch.eye(d_in)

    with pytest.raises(ConfigError, match=r"directions\(\) returned \(6, 6\), expected \[12, 6\]"):
        Short().prepare(OddNames(), ROLES, _sample())
