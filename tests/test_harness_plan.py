"""The plan: the matrix, resolved parameters, cache keys that change exactly when they should,
and bad sets rejected before anything trains."""


import pytest

from saebench_sanity import config
from saebench_sanity.errors import ConfigError, DataError, UnknownNameError
from saebench_sanity.harness.plan import build_plan, metric_key

BASE = {"run": {"sets": ["tiny-gauss"], "architectures": ["topk", "relu"],
                "modes": ["trained", "frozen_decoder", "untrained"], "seeds": [0, 1],
                "metrics": ["reconstruction"]},
        "training": {"steps": 10, "batch_size": 32}}


def plan_for(reg, data=BASE, **kw):
    return build_plan(config.from_dict(data), reg, **kw)


def keys(plan):
    return {(c.arch, c.mode, c.seed): c.key for c in plan.cells}


def test_matrix_is_sets_x_archs_x_modes_x_seeds(fake_registry):
    plan = plan_for(fake_registry)
    assert len(plan.cells) == 1 * 2 * 3 * 2
    assert len(set(plan.cell_keys)) == len(plan.cells)
    cell = next(c for c in plan.cells if c.arch == "topk" and c.mode == "frozen_decoder")
    assert cell.d_sae == 16 and cell.target_l0 == 2  # the set's recommendation
    assert cell.arch_params["k"] == 2  # target L0 mapped onto TopK's k
    assert cell.mode_params["init"] == "cov" and cell.is_baseline
    assert not next(c for c in plan.cells if c.mode == "untrained").trains


def test_keys_are_stable_and_change_with_each_ingredient(fake_registry):
    base = keys(plan_for(fake_registry))
    assert keys(plan_for(fake_registry)) == base
    variants = [
        {**BASE, "training": {"steps": 11, "batch_size": 32}},
        {**BASE, "architectures": {"topk": {"k": 3}}},
        {**BASE, "modes": {"frozen_decoder": {"init": "iso"}}},
        {**BASE, "sets": {"tiny-gauss": {"params": {"seed": 5}}}},
        {**BASE, "sets": {"tiny-gauss": {"d_sae": 24}}},
    ]
    changed = [sum(base[k] != v for k, v in keys(plan_for(fake_registry, d)).items()) for d in variants]
    assert changed[0] == 12  # training config: every cell
    assert changed[1] == 6   # topk params: only topk cells
    assert changed[2] == 4   # frozen_decoder params: only its cells
    assert changed[3] == 12  # set data (manifest hash): every cell
    assert changed[4] == 12


def test_metric_params_do_not_touch_training_keys(fake_registry):
    data = {**BASE, "metrics": {"reconstruction": {}}}
    assert keys(plan_for(fake_registry, data)) == keys(plan_for(fake_registry))
    a = metric_key("ground_truth", {"cos_threshold": 0.8})
    assert a != metric_key("ground_truth", {"cos_threshold": 0.9}) and a.startswith("ground_truth:")


def test_metrics_option_narrows_and_checks_names(fake_registry):
    plan = plan_for(fake_registry, metrics=["latent-mean"])
    assert [m.name for m in plan.metrics] == ["latent-mean"]
    with pytest.raises(UnknownNameError, match="nope"):
        plan_for(fake_registry, metrics=["nope"])


@pytest.mark.parametrize("set_name, fragment", [
    ("tiny-nan", "NaN/inf"),
    ("tiny-width", "d_in mismatch"),
    ("tiny-wrongdecl", "d_in mismatch"),
])
def test_bad_sets_are_rejected_before_training(fake_registry, set_name, fragment):
    data = {**BASE, "run": {**BASE["run"], "sets": [set_name]}}
    with pytest.raises(DataError, match=fragment) as info:
        plan_for(fake_registry, data)
    assert "\n" not in str(info.value) and set_name in str(info.value)


def test_unknown_names_and_bad_sizes_are_one_line_errors(fake_registry):
    with pytest.raises(UnknownNameError, match="'nosuchset'"):
        plan_for(fake_registry, {**BASE, "run": {**BASE["run"], "sets": ["nosuchset"]}})
    with pytest.raises(ConfigError, match="d_sae"):
        plan_for(fake_registry, {**BASE, "sets": {"tiny-gauss": {"d_sae": 0}}})


def test_embedded_suites_resolve_against_the_builtin_registry():
    from saebench_sanity.registry import get_registry

    for name in ("quick", "default"):
        cfg = config.embedded(name)
        plan = build_plan(cfg, get_registry(), build_sets=False)
        assert len(plan.cells) == len(cfg.sets) * len(cfg.architectures) * len(cfg.modes) * len(cfg.seeds)
        assert {c.mode for c in plan.cells} == {"trained", "frozen_decoder", "soft_frozen_decoder", "frozen_encoder", "untrained"}
        assert len({c.arch for c in plan.cells}) == 6
    late = build_plan(config.embedded("real-resid24"), get_registry(), build_sets=False)
    default_real = [c for c in build_plan(config.embedded("default"), get_registry(), build_sets=False).cells
                    if c.set_name == "smollm2-135m-resid12"]
    assert len(late.cells) == 90 and {c.set_name for c in late.cells} == {"smollm2-135m-resid24"}
    # the same SAEs and budgets as the default suite's real half, cell for cell, but for Gated's
    # maximum: ReLU at most 10,000 steps in both, the rest 3,000, Gated 10,000 at layer 12 and
    # 20,000 at layer 24 (its soft-frozen baseline needs more there)
    import dataclasses

    def shape(c):
        training = dataclasses.asdict(c.training) | ({"max_steps": None} if c.arch == "gated" else {})
        return (c.arch, c.mode, c.seed, c.d_sae, c.target_l0, sorted(training.items(), key=str), tuple(sorted(c.arch_params.items())))

    assert sorted(map(shape, late.cells)) == sorted(map(shape, default_real))
    assert {c.training.max_steps for c in late.cells if c.arch == "relu"} == {10000}
    assert {c.training.max_steps for c in late.cells if c.arch == "gated"} == {20000}
    assert {c.training.max_steps for c in default_real if c.arch == "gated"} == {10000}
    assert {c.training.max_steps for c in late.cells if c.arch not in ("relu", "gated")} == {3000}


def test_per_set_architecture_params_apply_to_that_set_only_and_change_its_keys(fake_registry):
    data = {**BASE, "architectures": {"relu": {"l1_coefficient": 1.0}},
            "sets": {"tiny-gauss": {"architectures": {"relu": {"l1_coefficient": 0.25}}}}}
    plan = plan_for(fake_registry, data)
    relu = next(c for c in plan.cells if c.arch == "relu")
    assert relu.arch_params["l1_coefficient"] == 0.25  # the set's table wins over [architectures.relu]
    assert keys(plan) != keys(plan_for(fake_registry, {**BASE, "architectures": {"relu": {"l1_coefficient": 1.0}}}))
    topk_keys = {k: v for k, v in keys(plan).items() if k[0] == "topk"}
    assert topk_keys == {k: v for k, v in keys(plan_for(fake_registry)).items() if k[0] == "topk"}


def test_per_set_architecture_training_keys_budget_that_architecture_only(fake_registry):
    """``[sets.NAME.architectures.ARCH]`` may hold training keys (the real set's ReLU and Gated
    baselines need far more steps than its TopK family): they budget every mode and seed of that
    (set, architecture) alike, are not architecture parameters, and change only its cells' keys."""
    data = {**BASE, "sets": {"tiny-gauss": {"architectures": {"relu": {"steps": 40, "l1_coefficient": 0.25}}}}}
    plan = plan_for(fake_registry, data)
    relu = [c for c in plan.cells if c.arch == "relu"]
    assert {c.training.max_steps for c in relu} == {40}  # `steps` is read as max_steps here too
    assert {c.training.max_steps for c in plan.cells if c.arch == "topk"} == {10}
    assert relu[0].arch_params["l1_coefficient"] == 0.25 and "steps" not in relu[0].arch_params
    assert "max_steps" not in relu[0].arch_overrides
    before = keys(plan_for(fake_registry, {**BASE, "sets": {"tiny-gauss": {"architectures": {"relu": {"l1_coefficient": 0.25}}}}}))
    after = keys(plan)
    assert all((after[k] == before[k]) == (k[0] == "topk") for k in before)
    cfg = config.from_dict(data)
    assert cfg.training_for("tiny-gauss", None, "relu").max_steps == 40
    assert cfg.training_for("tiny-gauss", None).max_steps == 10  # the set's own budget is unchanged


def test_per_set_architecture_training_keys_are_checked_before_anything_runs(fake_registry):
    bad = config.from_dict({**BASE, "sets": {"tiny-gauss": {"architectures": {"relu": {"max_steps": "many"}}}}})
    with pytest.raises(ConfigError, match=r"^sets.tiny-gauss.architectures.relu: .*max_steps"):
        config.check_names(bad, fake_registry)
    both = config.from_dict({**BASE, "sets": {"tiny-gauss": {"architectures": {"relu": {"max_steps": 5, "steps": 5}}}}})
    with pytest.raises(ConfigError, match=r"sets.tiny-gauss.architectures.relu: both 'steps' and 'max_steps'"):
        config.check_names(both, fake_registry)


def test_a_training_key_that_is_also_an_architecture_parameter_is_refused():
    import types

    from saebench_sanity import hookimpl
    from saebench_sanity.architectures.base import ArchitectureSpec
    from saebench_sanity.registry import Registry
    from tests.conftest import FakePlugin

    plug = types.ModuleType("lr-arch-plugin")
    plug.saebench_register_architectures = hookimpl(lambda register: register(ArchitectureSpec(
        name="lr-arch", factory="x:y", roles={"W_enc": "encoder", "W_dec": "decoder"}, params={"lr": 0.1})))
    reg = Registry(load_entry_points=False, extra_plugins=[FakePlugin(), plug])
    data = {**BASE, "run": {**BASE["run"], "architectures": ["lr-arch"]},
            "sets": {"tiny-gauss": {"architectures": {"lr-arch": {"lr": 0.5}}}}}
    with pytest.raises(ConfigError, match=r"^sets.tiny-gauss.architectures.lr-arch.lr: architecture 'lr-arch' has a "
                                          r"parameter of that name"):
        config.check_names(config.from_dict(data), reg)


def test_per_set_architecture_tables_are_validated(fake_registry):
    with pytest.raises(ConfigError, match=r"sets.tiny-gauss.architectures"):
        config.from_dict({**BASE, "sets": {"tiny-gauss": {"architectures": {"relu": 3}}}})
    bad = config.from_dict({**BASE, "sets": {"tiny-gauss": {"architectures": {"nonesuch": {"k": 1}}}}})
    with pytest.raises(UnknownNameError, match="nonesuch"):
        config.check_names(bad, fake_registry)


def _versioned_registry(arch_version: str, other_version: str, metric_version: str = "1.0"):
    """The fake plugin's items plus two more in-process plugins: one contributes an architecture
    (and a metric) with ``arch_version``, the other an unrelated mode with ``other_version``."""
    import types

    from saebench_sanity import hookimpl
    from saebench_sanity.architectures.base import ArchitectureSpec
    from saebench_sanity.metrics.base import MetricSpec, ScoreInfo
    from saebench_sanity.registry import Registry
    from saebench_sanity.training.base import TrainingModeSpec
    from tests.conftest import FakePlugin

    archs = types.ModuleType("arch-plugin")
    archs.__version__ = arch_version
    archs.saebench_register_architectures = hookimpl(lambda register: register(ArchitectureSpec(
        name="plug-arch", factory="x:y", roles={"W_enc": "encoder", "W_dec": "decoder"}, sparsity_param="k")))
    metrics = types.ModuleType("metric-plugin")
    metrics.__version__ = metric_version
    metrics.saebench_register_metrics = hookimpl(lambda register: register(MetricSpec(
        name="plug-metric", factory="x:y", scores={"s": ScoreInfo()})))
    other = types.ModuleType("other-plugin")
    other.__version__ = other_version
    other.saebench_register_training_modes = hookimpl(lambda register: register(TrainingModeSpec(
        name="plug-mode", factory="x:y")))
    reg = Registry(load_entry_points=False, extra_plugins=[FakePlugin(), archs, metrics, other])
    assert not reg.problems, reg.problems
    return reg


def test_a_plugins_version_is_part_of_the_keys_of_exactly_the_cells_and_metrics_it_contributes_to():
    data = {**BASE, "run": {**BASE["run"], "architectures": ["topk", "plug-arch"], "modes": ["trained"],
                            "metrics": ["reconstruction", "plug-metric"]}}

    def plan(arch_v, other_v, metric_v="1.0"):
        p = plan_for(_versioned_registry(arch_v, other_v, metric_v), data, build_sets=False)
        return {(c.arch, c.seed): c.key for c in p.cells}, {m.name: m.key for m in p.metrics}, p

    base_cells, base_metrics, p = plan("1.0", "1.0")
    plug = next(c for c in p.cells if c.arch == "plug-arch")
    assert ("(in-process) arch-plugin", "1.0") in plug.plugins
    assert plug.identity()["plugins"]["(in-process) arch-plugin"] == "1.0"
    bumped_cells, bumped_metrics, _ = plan("1.1", "1.0")
    assert {k for k in base_cells if base_cells[k] != bumped_cells[k]} == {("plug-arch", 0), ("plug-arch", 1)}
    assert bumped_metrics == base_metrics  # the architecture's plugin does not score anything
    assert plan("1.0", "9.9")[:2] == (base_cells, base_metrics)  # the unrelated mode's plugin: nothing changes
    cells_m, metrics_m, _ = plan("1.0", "1.0", metric_v="2.0")
    assert cells_m == base_cells  # a metric's version never retrains
    assert metrics_m["plug-metric"] != base_metrics["plug-metric"]
    assert metrics_m["reconstruction"] == base_metrics["reconstruction"]


def test_built_in_cells_keep_keys_without_plugin_versions(fake_registry):
    """Built-in items add no ``plugins`` entry (their package version is in code_version), so
    results stored before plugin versions entered the keys are still found."""
    from saebench_sanity.activations.base import stable_hash
    from saebench_sanity.registry import Registry

    reg = Registry(load_entry_points=False)
    data = {"run": {"sets": ["synth-easy"], "architectures": ["topk"], "modes": ["trained", "frozen_decoder"],
                    "seeds": [0], "metrics": ["reconstruction"]}, "training": {"steps": 10, "batch_size": 32}}
    plan = build_plan(config.from_dict(data), reg, build_sets=False)
    for cell in plan.cells:
        assert cell.plugins == () and "plugins" not in cell.key_material() and "plugins" not in cell.identity()
        assert cell.key == stable_hash(cell.key_material())[:24]
    assert plan.metrics[0].key == metric_key("reconstruction", plan.metrics[0].params)


def test_saebench_checks_baseline_key_includes_plugin_versions_only_when_there_are_any():
    from saebench_sanity.check import baseline_key
    from saebench_sanity.config import TrainingConfig

    kw = dict(set_manifest_hash="m", arch="topk", arch_overrides={}, mode="frozen_decoder", seed=0, d_sae=16,
              target_l0=2, training=TrainingConfig())
    assert baseline_key(**kw) == baseline_key(**kw, plugins=())
    assert baseline_key(**kw, plugins=(("saebench-x", "1.0"),)) != baseline_key(**kw)
    assert baseline_key(**kw, plugins=(("saebench-x", "1.0"),)) != baseline_key(**kw, plugins=(("saebench-x", "1.1"),))


def test_a_set_trains_in_its_own_dtype_and_dtype_flag_beats_it():
    """[sets.NAME] training_dtype sets that set's cells' precision (and their keys); the others keep
    run.dtype; `--dtype` (RunConfig.with_dtype) makes every set train in it; the default suite's
    synthetic sets train in float64, its real set in float32."""
    from saebench_sanity.cli import apply_device_options, check_device_here
    from saebench_sanity.registry import get_registry

    data = {"run": {"sets": ["synth-easy", "study-variable-mini"], "architectures": ["topk"],
                    "modes": ["trained", "frozen_decoder"], "seeds": [0]},
            "sets": {"synth-easy": {"training_dtype": "float64"}}}
    cfg = config.from_dict(data)
    cells = build_plan(cfg, get_registry(), build_sets=False).cells
    assert {(c.set_name, c.dtype) for c in cells} == {("synth-easy", "float64"), ("study-variable-mini", "float32")}
    assert all(("init_dtype" in c.key_material()) == (c.dtype == "float64") for c in cells)
    same = build_plan(config.from_dict({**data, "sets": {}}), get_registry(), build_sets=False).cells
    assert {c.key for c in same if c.set_name == "study-variable-mini"} == {c.key for c in cells if c.set_name == "study-variable-mini"}
    assert {c.key for c in same}.isdisjoint(c.key for c in cells if c.set_name == "synth-easy")
    for flag in ("float32", "float64"):
        forced_cfg = apply_device_options(cfg, None, flag)
        check_device_here(forced_cfg, False, True)  # this machine can train it
        forced = build_plan(forced_cfg, get_registry(), build_sets=False).cells
        assert {c.dtype for c in forced} == {flag}
    assert apply_device_options(cfg, None, None).dtype_for("synth-easy") == "float64"
    default = config.embedded("default")
    assert {s: default.dtype_for(s) for s in default.sets} == {
        **{s: "float64" for s in default.sets if s != "smollm2-135m-resid12"}, "smollm2-135m-resid12": "float32"}


def test_a_bad_training_dtype_is_one_line():
    data = {"run": {"sets": ["synth-easy"], "architectures": ["topk"], "modes": ["trained"]},
            "sets": {"synth-easy": {"training_dtype": "float16"}}}
    with pytest.raises(ConfigError) as info:
        config.from_dict(data)
    assert str(info.value).startswith("sets.synth-easy.training_dtype = \"float16\": must be float32, float64 or bfloat16"), info.value
