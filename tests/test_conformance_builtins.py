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


def test_the_kit_checks_a_batch_factory_against_the_per_sae_factory():
    """A metric whose cohort call gives an SAE another number than it scores alone fails the kit;
    one that agrees passes."""
    from saebench_sanity.metrics.base import MetricSpec, ScoreInfo

    def one(ctx):
        return {"v": float(ctx.feature_acts.abs().mean())}

    good = MetricSpec(name="joint-good", description="t", factory=one, batch_factory=lambda ctxs: [one(c) for c in ctxs],
                      scores={"v": ScoreInfo(direction=None)})
    testing.check_metric(good, activation_set="synth-easy")
    swapped = MetricSpec(name="joint-swapped", description="t", factory=one,
                         batch_factory=lambda ctxs: [one(c) for c in reversed(ctxs)], scores={"v": ScoreInfo(direction=None)})
    with pytest.raises(AssertionError, match="batch_factory gives SAE 0 v"):
        testing.check_metric(swapped, activation_set="synth-easy")


def test_the_kit_catches_a_broken_promise():
    """A mode that claims to freeze the decoder but lets it train must fail the kit."""
    from saebench_sanity.training.base import TrainingMode, TrainingModeSpec

    class LeakyFrozen(TrainingMode):
        frozen_roles = ("decoder",)  # claims it, never freezes

    spec = TrainingModeSpec(name="leaky", factory=LeakyFrozen, is_baseline=True)
    with pytest.raises(AssertionError, match="frozen parameter W_dec"):
        testing.check_training_mode(spec, architecture="topk")


@pytest.mark.parametrize("arch", [a.name for a in ARCHITECTURES])
def test_the_kit_names_the_batched_path_for_every_builtin_architecture(arch):
    assert testing.training_path(arch) == "batched"


def test_a_plugin_subclass_of_a_builtin_sae_lens_class_gets_the_solo_path():
    from sae_lens.saes.topk_sae import TopKTrainingSAE

    from saebench_sanity.training.batched import batched_for

    class OrthoTopK(TopKTrainingSAE):  # other math: must not borrow the built-in batched TopK
        pass

    builtin = {a.name: a for a in ARCHITECTURES}["topk"].build(d_in=8, d_sae=32, seed=0)
    plugin = OrthoTopK(builtin.cfg)
    assert batched_for(builtin) is not None
    assert batched_for(plugin) is None
