"""The plugin registry: built-ins load, broken or clashing plugins are reported by name."""

import types

import pytest

from saebench_sanity import hookimpl
from saebench_sanity.activations.base import ActivationSetSpec
from saebench_sanity.architectures.base import ArchitectureSpec
from saebench_sanity.errors import PluginError, UnknownNameError
from saebench_sanity.registry import KINDS, Registry
from saebench_sanity.metrics.base import MetricSpec, ScoreInfo
from saebench_sanity.training.base import TrainingModeSpec


ROLES_OK = {"W_enc": "encoder", "W_dec": "decoder", "b_dec": "decoder_bias"}


def _plugin(name, **hooks):
    module = types.ModuleType(name)
    for hook_name, fn in hooks.items():
        setattr(module, hook_name, hookimpl(fn))
    return module


def test_builtin_architectures_and_modes_are_registered_with_their_package():
    reg = Registry(load_entry_points=False)
    assert reg.problems == []
    assert {"relu", "topk", "batchtopk", "jumprelu", "gated", "matryoshka"} <= set(reg.names("architecture"))
    assert {"trained", "frozen_decoder", "soft_frozen_decoder", "frozen_encoder", "untrained"} <= set(reg.names("training_mode"))
    spec = reg.get("architecture", "topk")
    assert spec.plugin == "builtin" and spec.package == "saebench-sanity"


def test_an_in_process_plugin_adds_items_through_the_register_callback():
    def saebench_register_architectures(register):
        register(ArchitectureSpec(name="toy-a", factory="x:y", roles=ROLES_OK))
        register(ArchitectureSpec(name="toy-b", factory="x:y", roles=ROLES_OK))

    reg = Registry(load_entry_points=False, extra_plugins=[_plugin("toyplug", saebench_register_architectures=saebench_register_architectures)])
    assert reg.problems == []
    assert reg.get("architecture", "toy-b").plugin == "toyplug"


def test_a_name_clash_is_reported_naming_both_plugins_and_the_rest_still_loads():
    def saebench_register_architectures(register):
        register(ArchitectureSpec(name="topk", factory="x:y", roles=ROLES_OK))
        register(ArchitectureSpec(name="fresh-arch", factory="x:y", roles=ROLES_OK))

    reg = Registry(load_entry_points=False, extra_plugins=[_plugin("clasher", saebench_register_architectures=saebench_register_architectures)])
    assert len(reg.problems) == 1
    message = str(reg.problems[0])
    assert "clasher" in message and "'topk'" in message and "builtin" in message
    assert reg.get("architecture", "topk").plugin == "builtin"
    with pytest.raises(PluginError, match="clasher"):
        reg.raise_problems()


def test_a_hook_that_raises_is_isolated_and_named():
    def saebench_register_training_modes(register):
        raise RuntimeError("boom")

    reg = Registry(load_entry_points=False, extra_plugins=[_plugin("raiser", saebench_register_training_modes=saebench_register_training_modes)])
    assert any(p.plugin == "raiser" and "boom" in p.message for p in reg.problems)
    assert "trained" in reg.names("training_mode")


def test_registering_the_wrong_type_is_a_named_problem():
    def saebench_register_training_modes(register):
        register(ArchitectureSpec(name="not-a-mode", factory="x:y"))

    reg = Registry(load_entry_points=False, extra_plugins=[_plugin("wrongtype", saebench_register_training_modes=saebench_register_training_modes)])
    assert any(p.plugin == "wrongtype" and "TrainingModeSpec" in p.message for p in reg.problems)


def test_an_incompatible_hookspec_version_is_refused_naming_both_versions():
    module = _plugin("oldplug", saebench_register_training_modes=lambda register: register(TrainingModeSpec(name="m", factory="x:y")))
    module.SAEBENCH_HOOKSPEC_VERSION = "0.3"
    reg = Registry(load_entry_points=False, extra_plugins=[module])
    assert any("0.3" in p.message and "1.0" in p.message for p in reg.problems)
    assert "m" not in reg.names("training_mode")


def test_a_misnamed_hookimpl_is_reported_not_raised():
    module = _plugin("typo", saebench_register_architecturez=lambda register: None)
    reg = Registry(load_entry_points=False, extra_plugins=[module])
    assert any(p.plugin == "typo" for p in reg.problems)


def test_unknown_name_lists_the_known_ones():
    reg = Registry(load_entry_points=False)
    with pytest.raises(UnknownNameError, match="unknown architecture 'topkk'.*topk"):
        reg.get("architecture", "topkk")


def test_invalid_spec_names_are_refused():
    with pytest.raises(PluginError, match="invalid"):
        ArchitectureSpec(name="Bad Name", factory="x:y")


def test_every_kind_has_a_spec_class_of_that_kind_and_a_declared_hook():
    import dataclasses

    from saebench_sanity import hookspecs
    from saebench_sanity.spec import Spec

    for name, kind in KINDS.items():
        cls = kind.spec_class
        assert issubclass(cls, Spec), name
        assert {f.name: f.default for f in dataclasses.fields(cls)}["kind"] == name
        assert callable(getattr(hookspecs, kind.hook)), kind.hook


def test_an_unknown_name_points_at_plugins_that_failed_to_load():
    def saebench_register_architectures(register):
        raise RuntimeError("boom")

    reg = Registry(load_entry_points=False, extra_plugins=[_plugin("brokenarch", saebench_register_architectures=saebench_register_architectures)])
    with pytest.raises(UnknownNameError, match="brokenarch failed to load"):
        reg.get("architecture", "its-arch")


def test_a_name_clash_keeps_the_plugins_later_valid_items():
    def saebench_register_architectures(register):
        register(ArchitectureSpec(name="topk", factory="x:y", roles=ROLES_OK))
        register(ArchitectureSpec(name="after-clash", factory="x:y", roles=ROLES_OK))

    reg = Registry(load_entry_points=False, extra_plugins=[_plugin("clasher2", saebench_register_architectures=saebench_register_architectures)])
    assert [p.plugin for p in reg.problems] == ["clasher2"]
    assert reg.get("architecture", "after-clash").plugin == "clasher2"


@pytest.mark.parametrize("bad, fragment", [
    (lambda: ArchitectureSpec(name="no-factory", roles=ROLES_OK), "no factory"),
    (lambda: ArchitectureSpec(name="bad-ref", factory="not a reference", roles=ROLES_OK), "neither callable"),
    (lambda: ArchitectureSpec(name="no-roles", factory="x:y"), "declares no roles"),
    (lambda: ArchitectureSpec(name="bad-role", factory="x:y", roles={**ROLES_OK, "W_x": "wheel"}), "W_x='wheel'"),
    (lambda: ArchitectureSpec(name="no-decoder", factory="x:y", roles={"W_enc": "encoder"}), "'decoder'"),
    (lambda: ArchitectureSpec(name="bad-hook", factory="x:y", roles=ROLES_OK, calibration="nope"), "calibration 'nope'"),
    (lambda: ArchitectureSpec(name="bad-coef", factory="x:y", roles=ROLES_OK, sparsity_coefficients="l1"), "sparsity_coefficients"),
    (lambda: MetricSpec(name="no-scores", factory="x:y"), "declares no scores"),
    (lambda: MetricSpec(name="bad-scores", factory="x:y", scores={"s": "higher"}), "not ScoreInfo"),
    (lambda: MetricSpec(name="bad-needs", factory="x:y", scores={"s": ScoreInfo()}, needs={"model": 1}), "needs must be"),
    (lambda: TrainingModeSpec(name="bad-params", factory="x:y", params=["a"]), "params must be a dict"),
    (lambda: ActivationSetSpec(name="bad-width", factory="x:y", d_in=0), "d_in must be"),
])
def test_an_invalid_spec_is_a_named_problem_and_the_plugins_valid_items_still_register(bad, fragment):
    """Each item is validated at registration; an invalid one is skipped, named with its plugin,
    kind and name, and the items the plugin registers after it are kept."""
    spec = bad()
    kind = spec.kind

    def hook(register):
        register(spec)
        register(MetricSpec(name="valid-after", factory="x:y", scores={"s": ScoreInfo()}))

    hooks = {KINDS[kind].hook: hook}
    if kind != "metric":  # the valid item goes through the metric hook
        hooks["saebench_register_metrics"] = lambda register: register(MetricSpec(name="valid-after", factory="x:y", scores={"s": ScoreInfo()}))
        hooks[KINDS[kind].hook] = lambda register: register(spec)
    reg = Registry(load_entry_points=False, extra_plugins=[_plugin("invalidplug", **hooks)])
    assert len(reg.problems) == 1, reg.problems
    message = str(reg.problems[0])
    assert "invalidplug" in message and repr(spec.name) in message and fragment in message and "\n" not in message
    assert spec.name not in reg.names(kind)
    assert reg.get("metric", "valid-after").plugin == "invalidplug"


def test_every_builtin_and_example_plugin_item_passes_validation():
    from saebench_sanity.registry import spec_problems

    reg = Registry(load_entry_points=True)
    assert [p for p in reg.problems] == []
    for spec in reg.all_items():
        assert spec_problems(spec.kind, spec) == [], spec.name


def test_origin_names_the_distribution_and_version_of_each_items_plugin():
    from saebench_sanity import __version__

    module = _plugin("versioned", saebench_register_architectures=lambda register: register(
        ArchitectureSpec(name="v-arch", factory="x:y", roles=ROLES_OK)))
    module.__version__ = "2.5"
    reg = Registry(load_entry_points=False, extra_plugins=[module])
    assert reg.origin(reg.get("architecture", "topk")) == ("saebench-sanity", __version__)
    assert reg.origin(reg.get("architecture", "v-arch")) == ("(in-process) versioned", "2.5")


def test_an_item_added_outside_a_plugin_hook_counts_as_the_built_in_packages():
    """User-declared sets are added by saebench-sanity itself (``register_user_sets``); in other
    processes the built-in plugin registers the same declaration: both must give one origin, or
    the cells' keys would differ between the first run and the next."""
    from saebench_sanity import __version__

    reg = Registry(load_entry_points=False)
    spec = ActivationSetSpec(name="declared-set", factory="x:y", d_in=4)
    reg._add(KINDS["activation_set"], spec, "user-sets", None)
    assert reg.origin(reg.get("activation_set", "declared-set")) == ("saebench-sanity", __version__)
