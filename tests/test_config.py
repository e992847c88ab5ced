"""Run configuration: validated at the edge, one-line errors naming the field."""

import pytest

from saebench_sanity import config
from saebench_sanity.errors import ConfigError, UnknownNameError
from saebench_sanity.registry import Registry

BASE = {"run": {"sets": ["synth-easy"], "architectures": ["topk"], "modes": ["trained", "frozen_decoder"]}}


def _with(**run):
    return {**BASE, "run": {**BASE["run"], **run}}


def test_minimal_config_gets_study_faithful_defaults():
    cfg = config.from_dict(BASE)
    assert cfg.seeds == (0, 1, 2)  # the study reports 3 seeds
    assert cfg.metrics is None     # every registered metric
    # the study's synthetic SAE: "about 2000 steps of 1024, Adam lr 3e-4" (Korznikov et al. 2026), constant lr
    t = cfg.training
    assert (t.steps, t.batch_size, t.lr, t.lr_scheduler) == (2000, 1024, 3e-4, "constant")
    v = cfg.verdict
    assert (v.min_effect, v.confidence, v.min_seeds, v.l0_tolerance) == (0.01, 0.95, 3, 0.1)


@pytest.mark.parametrize(
    "data, fragment",
    [
        (_with(expansion=0), "run.expansion"),
        (_with(d_sae=-4), "run.d_sae"),
        (_with(seeds=[0, -1]), "run.seeds"),
        (_with(modes=["frozen_decoder"]), "'trained'"),
        (_with(sets=[]), "run.sets is empty"),
        (_with(sets="synth-easy"), "run.sets"),
        ({**BASE, "training": {"steps": 0}}, "training.steps"),
        ({**BASE, "training": {"lr": float("nan")}}, "training.lr"),
        ({**BASE, "training": {"stepz": 10}}, "stepz"),
        ({**BASE, "bogus": {}}, "bogus"),
        ({**BASE, "sets": {"synth-easy": {"stepz": 1}}}, "sets.synth-easy"),
        ({"training": {}}, "[run]"),
    ],
)
def test_bad_fields_are_named_in_one_line(data, fragment):
    with pytest.raises(ConfigError) as info:
        config.from_dict(data)
    message = str(info.value)
    assert fragment in message and "\n" not in message


def test_malformed_toml_names_the_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[run\nsets = 1\n")
    with pytest.raises(ConfigError, match="bad.toml: malformed TOML"):
        config.load(path)


def test_missing_file_says_so(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(tmp_path / "nope.toml")


def test_per_set_overrides_beat_written_values_which_beat_recommendations_which_beat_defaults():
    cfg = config.from_dict({**BASE, "training": {"steps": 100, "lr": 1e-3},
                            "sets": {"synth-easy": {"steps": 300, "target_l0": 4}}})
    t = cfg.training_for("synth-easy", recommended={"steps": 200, "batch_size": 64})
    assert (t.steps, t.batch_size, t.lr) == (300, 64, 1e-3)
    assert cfg.training_for("other", recommended={"steps": 200}).steps == 100  # [training] as written
    assert config.from_dict(BASE).training_for("other", recommended={"steps": 200}).steps == 200  # a default: replaced
    assert cfg.size_for("synth-easy", d_in=16) == (16 * cfg.expansion, 4)
    assert cfg.size_for("other", d_in=16, recommended={"d_sae": 50, "target_l0": 5}) == (50, 5)


def test_target_l0_larger_than_the_dictionary_is_refused():
    cfg = config.from_dict({**BASE, "sets": {"synth-easy": {"d_sae": 8, "target_l0": 9}}})
    with pytest.raises(ConfigError, match="target_l0"):
        cfg.size_for("synth-easy", d_in=4)


def test_unknown_names_are_checked_against_the_registry():
    import types

    from saebench_sanity import hookimpl
    from saebench_sanity.activations.base import ActivationSetSpec

    plugin = types.ModuleType("setplug")
    plugin.saebench_register_activation_sets = hookimpl(lambda register: register(ActivationSetSpec(name="toy-set", factory="x:y")))
    reg = Registry(load_entry_points=False, extra_plugins=[plugin])
    cfg = config.from_dict(_with(sets=["toy-set"], architectures=["topk", "nope"]))
    with pytest.raises(UnknownNameError, match="unknown architecture 'nope'"):
        config.check_names(cfg, reg)


def test_embedded_suites_parse():
    reg = Registry()
    for name in config.EMBEDDED_SUITES:
        cfg = config.embedded(name)
        assert cfg.name
        config.check_names(cfg, reg)  # every set / architecture / mode / metric it names is registered
