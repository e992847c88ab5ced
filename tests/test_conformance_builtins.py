"""The conformance kit passes on every built-in item it can exercise offline and quickly, so the
kit and the built-ins keep each other honest (plugin authors run the same checks)."""

import pytest

from saebench_sanity import testing
from saebench_sanity.builtin.architectures import ARCHITECTURES
from saebench_sanity.builtin.modes import MODES
from saebench_sanity.builtin.synthetic_sets import SETS as SYNTHETIC_SETS


@pytest.mark.parametrize("arch", [a.name for a in ARCHITECTURES])
def test_builtin_architecture_conforms(arch):
    testing.check_architecture(arch)


@pytest.mark.parametrize("mode", [m.name for m in MODES])
@pytest.mark.parametrize("arch", ["topk", "jumprelu", "gated"])
def test_builtin_training_mode_conforms(mode, arch):
    testing.check_training_mode(mode, architecture=arch)


@pytest.mark.parametrize("name", [s.name for s in SYNTHETIC_SETS if not s.name.startswith("study-") or s.name.endswith("-mini")])
def test_builtin_synthetic_set_conforms(name):
    testing.check_activation_set(name)


@pytest.mark.parametrize("metric", ["reconstruction", "ground_truth"])
def test_builtin_core_metric_conforms(metric):
    testing.check_metric(metric, activation_set="synth-easy")


def test_the_kit_catches_a_broken_promise():
    """A mode that claims to freeze the decoder but lets it train must fail the kit."""
    from saebench_sanity.training.base import TrainingMode, TrainingModeSpec

    class LeakyFrozen(TrainingMode):
        frozen_roles = ("decoder",)  # claims it, never freezes

    spec = TrainingModeSpec(name="leaky", factory=LeakyFrozen, is_baseline=True)
    with pytest.raises(AssertionError, match="frozen parameter W_dec"):
        testing.check_training_mode(spec, architecture="topk")
