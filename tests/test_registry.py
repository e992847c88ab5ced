"""The plugin registry: built-ins load, broken or clashing plugins are reported by name."""

import types

import pytest

from saebench_sanity import hookimpl
from saebench_sanity.architectures.base import ArchitectureSpec
from saebench_sanity.errors import PluginError, UnknownNameError
from saebench_sanity.registry import KINDS, Registry
from saebench_sanity.training.base import TrainingModeSpec


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
        register(ArchitectureSpec(name="toy-a", factory="x:y"))
        register(ArchitectureSpec(name="toy-b", factory="x:y"))

    reg = Registry(load_entry_points=False, extra_plugins=[_plugin("toyplug", saebench_register_architectures=saebench_register_architectures)])
    assert reg.problems == []
    assert reg.get("architecture", "toy-b").plugin == "toyplug"


def test_a_name_clash_is_reported_naming_both_plugins_and_the_rest_still_loads():
    def saebench_register_architectures(register):
        register(ArchitectureSpec(name="topk", factory="x:y"))
        register(ArchitectureSpec(name="fresh-arch", factory="x:y"))

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
