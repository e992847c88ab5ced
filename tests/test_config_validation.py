"""Every bad input is refused before any work, in one line naming the key, the value and what is
allowed (exit 2); a run that finished with an errored cell or metric exits 3; the precedence of
budgets is announced; docs/configuration.md lists every key the models accept."""

from __future__ import annotations

import errno
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from saebench_sanity import config
from saebench_sanity.cli import EXIT_INCOMPLETE, EXIT_INPUT, check_writable_dir, check_writable_file, main
from saebench_sanity.errors import ConfigError, SaebenchError, UnknownNameError
from saebench_sanity.registry import Registry

ROOT = Path(__file__).resolve().parents[1]
BASE = {"run": {"sets": ["synth-easy"], "architectures": ["topk"], "modes": ["trained", "frozen_decoder"]}}


@pytest.fixture(scope="module")
def builtins():
    return Registry(load_entry_points=False)


def _with(run=None, **tables):
    return {**BASE, "run": {**BASE["run"], **(run or {})}, **tables}


def _refused(data, registry=None) -> str:
    """The one-line ConfigError that ``data`` gets from the loader (and the name / parameter check)."""
    with pytest.raises(ConfigError) as info:
        cfg = config.from_dict(data)
        if registry is not None:
            config.check_names(cfg, registry)
    text = str(info.value)
    assert "\n" not in text and text, text
    return text


# -- the loader ------------------------------------------------------------------------------------
@pytest.mark.parametrize("data, expected", [
    ({**BASE, "training": {"convergence_window": "0.2"}},
     'training.convergence_window = "0.2": must be a number in (0, 1], e.g. 0.2'),
    (_with({"target_l0": True}), "run.target_l0 = true: must be an integer in 1..2,147,483,647 (or omitted)"),
    (_with({"d_sae": 1e8}), "run.d_sae = 100000000.0: must be an integer"),
    ({**BASE, "training": {"n_init_samples": 1e12}}, "training.n_init_samples = 1000000000000.0: must be an integer in 0..1,048,576"),
    ({**BASE, "training": {"n_init_samples": 10**12}}, "training.n_init_samples = 1000000000000: must be an integer in 0..1,048,576"),
    ({**BASE, "training": {"steps": 99999999999999999999}}, "training.steps (max_steps) = 99999999999999999999: must be an integer in 1..10,000,000"),
    ({**BASE, "training": {"max_steps": True}}, "training.max_steps = true: must be an integer"),
    ({**BASE, "training": {"lr": float("nan")}}, "training.lr = NaN: must be a number in (0, 10]"),
    ({**BASE, "training": {"lr": "3e-4"}}, 'training.lr = "3e-4": must be a number'),
    ({**BASE, "training": {"early_stop": 1}}, "training.early_stop = 1: must be true or false"),
    ({**BASE, "training": {"batch_size": 2**21}}, "training.batch_size = 2097152: must be an integer in 1..1,048,576"),
    ({**BASE, "verdict": {"min_effect": float("inf")}}, "verdict.min_effect = Infinity: must be a finite number >= 0"),
    ({**BASE, "verdict": {"min_seeds": 2.5}}, "verdict.min_seeds = 2.5: must be an integer in 2..1,000"),
    (_with({"seeds": [0, True]}), "run.seeds = [0, true]: must be a list of integers"),
    (_with({"seeds": "0,1"}), 'run.seeds = "0,1": must be a list'),
    (_with({"name": "../../x"}), "run.name = \"../../x\": must be a name without '/'"),
    (_with({"expansion": 0}), "run.expansion = 0: must be an integer in 1..1,024"),
    ({**BASE, "sets": {"synth-easy": {"steps": "10"}}}, 'sets.synth-easy.steps = "10": must be an integer in 1..10,000,000'),
    ({**BASE, "sets": {"synth-easy": {"target_l0": False}}}, "sets.synth-easy.target_l0 = false: must be an integer"),
    ({**BASE, "sets": {"synth-easy": {"stepz": 10}}}, "sets.synth-easy.stepz: unknown key; allowed: architectures,"),
    ({**BASE, "sets": {"synth-easy": 5}}, "sets.synth-easy = 5: must be a [sets.synth-easy] table"),
])
def test_a_bad_value_is_one_line_naming_key_value_and_what_is_allowed(data, expected):
    assert _refused(data).startswith(expected)


@pytest.mark.parametrize("tables, expected", [
    ({"metrics": {"ground_truth": {"cos_threshold": "x"}}}, 'metrics.ground_truth.cos_threshold = "x": must be a finite number, e.g. 0.8'),
    ({"metrics": {"ground_truth": {"cos_treshold": 0.5}}}, "metrics.ground_truth.cos_treshold: unknown key; allowed: cos_threshold"),
    ({"metrics": {"sparse_probing": {"k_values": ["1"]}}}, 'metrics.sparse_probing.k_values = ["1"]: must be a list of integers'),
    ({"metrics": {"loss_recovered": {"n_contexts": True}}}, "metrics.loss_recovered.n_contexts = true: must be an integer"),
    ({"architectures": {"topk": {"k": True}}}, "architectures.topk.k = true: must be an integer, e.g. 20"),
    ({"modes": {"frozen_decoder": {"init": 3}}}, 'modes.frozen_decoder.init = 3: must be a string, e.g. "cov"'),
    ({"modes": {"frozen_decoder": {"inti": "cov"}}}, "modes.frozen_decoder: training mode 'frozen_decoder': unknown parameter 'inti'"),
    ({"modes": {"soft_frozen_decoder": {"min_cos": "0.8"}}}, 'modes.soft_frozen_decoder.min_cos = "0.8": must be a finite number'),
    ({"sets": {"synth-easy": {"params": {"n_eval": "many"}}}}, 'sets.synth-easy.params.n_eval = "many": must be an integer, e.g. 8192'),
    ({"sets": {"synth-easy": {"architectures": {"topk": {"k": 2.5}}}}}, "sets.synth-easy.architectures.topk.k = 2.5: must be an integer"),
])
def test_spec_parameters_are_checked_against_the_spec_before_anything_runs(builtins, tables, expected):
    assert _refused({**BASE, "run": {**BASE["run"], "modes": ["trained", "frozen_decoder", "soft_frozen_decoder"]}, **tables},
                    builtins).startswith(expected)


def test_good_spec_parameters_pass_and_keep_their_written_type(builtins):
    cfg = config.from_dict({**BASE, "training": {"lr": 1}, "metrics": {"ground_truth": {"cos_threshold": 1}},
                            "sets": {"synth-easy": {"params": {"n_eval": 4096}, "architectures": {"topk": {"k": 4}}}}})
    config.check_names(cfg, builtins)
    assert cfg.training.lr == 1 and type(cfg.training.lr) is int  # not 1.0: cell identities hash what was written
    assert cfg.training_for("synth-easy").lr == 1


def test_a_declared_params_model_gives_the_bounds(builtins):
    from pydantic import BaseModel, ConfigDict, Field

    from saebench_sanity import MetricSpec

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        cos_threshold: float = Field(0.8, gt=0, le=1)

    spec = MetricSpec(name="bounded", factory="x:y", params={"cos_threshold": 0.8}, params_model=Params)
    config.check_params(spec, {"cos_threshold": 0.5}, "metrics.bounded")
    with pytest.raises(ConfigError, match=r"^metrics.bounded.cos_threshold = 1.5: must be a finite number > 0 and <= 1"):
        config.check_params(spec, {"cos_threshold": 1.5}, "metrics.bounded")
    assert config.params_model(spec) is Params


def test_a_set_table_for_an_unregistered_set_is_an_unknown_name(builtins):
    cfg = config.from_dict({**BASE, "sets": {"synth-typo": {"max_steps": 10}}})
    with pytest.raises(UnknownNameError, match="synth-typo"):
        config.check_names(cfg, builtins)


def test_non_utf8_and_deep_nesting_are_one_line(tmp_path):
    bad = tmp_path / "latin1.toml"
    bad.write_bytes('[run]\nname = "caf\u00e9"\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1.toml: not UTF-8 text \(byte 17"):
        config.load(bad)
    deep = tmp_path / "deep.toml"
    deep.write_text("[run]\nsets = " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError, match="nested"):
        config.load(deep)
    with pytest.raises(ConfigError, match="nested deeper than 16 levels"):
        config.from_dict({**BASE, "metrics": {"m": {"p": [[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]}}})


def test_a_size_that_cannot_fit_in_memory_is_refused_with_the_estimate(monkeypatch):
    monkeypatch.setattr(config, "physical_memory", lambda: 24 * 2**30)
    cfg = config.from_dict({**BASE, "sets": {"synth-easy": {"d_sae": 100_000_000, "target_l0": 4}}})
    with pytest.raises(ConfigError) as info:
        cfg.size_for("synth-easy", d_in=32)
    need = config.cohort_bytes(32, 100_000_000, cfg.training.batch_size, 2 * 3)
    # closed form: 6 members x (8 * 32 * 1e8 weights/grads/moments + 3 * 1024 * 1e8 latents) x 4 bytes
    assert need == 6 * (8 * 32 * 100_000_000 + 3 * 1024 * 100_000_000) * 4
    assert str(info.value) == (f"sets.synth-easy: d_sae = 100000000 with d_in = 32 needs about {need / 2**30:,.1f} GB to train "
                               "one cohort (6 members: weights, gradients, Adam moments, activations of a 1024 batch) but "
                               "this machine has 24.0 GB of RAM; lower d_sae / expansion, seeds or modes")
    ok = config.from_dict({**BASE, "sets": {"synth-easy": {"d_sae": 4096, "target_l0": 4}}})
    assert ok.size_for("synth-easy", d_in=32) == (4096, 4)


# -- precedence of budgets -------------------------------------------------------------------------
def test_a_value_the_user_wrote_beats_the_set_recommendation_and_is_noted():
    recommended = {"steps": 300, "batch_size": 1024, "d_sae": 96, "target_l0": 3}
    cfg = config.from_dict({**BASE, "run": {**BASE["run"], "target_l0": 8}, "training": {"steps": 10, "lr": 1e-3}})
    budget = cfg.training_for("synth-easy", recommended)
    assert budget.max_steps == 10 and budget.lr == 1e-3  # the rule: what you wrote applies
    assert budget.batch_size == 1024  # the recommendation fills what you left out
    assert cfg.size_for("synth-easy", d_in=32, recommended=recommended) == (96, 8)
    notes = cfg.overridden_by_set("synth-easy", recommended)
    assert notes == ["sets.synth-easy: your training.max_steps = 10 replaces the set's recommended max_steps = 300 "
                     "(precedence: set recommendation < [run]/[training] < [sets.synth-easy])",
                     "sets.synth-easy: your run.target_l0 = 8 replaces the set's recommended target_l0 = 3 "
                     "(precedence: set recommendation < [run]/[training] < [sets.synth-easy])"]
    # [sets.NAME] beats both, and nothing is noted
    mine = config.from_dict({**BASE, "training": {"steps": 10}, "sets": {"synth-easy": {"steps": 20, "target_l0": 4}}})
    assert mine.training_for("synth-easy", recommended).max_steps == 20
    assert mine.size_for("synth-easy", d_in=32, recommended=recommended) == (96, 4)
    assert mine.overridden_by_set("synth-easy", recommended) == []
    # a default the user did not write leaves the recommendation in place
    plain = config.from_dict(BASE)
    assert plain.training_for("synth-easy", recommended).max_steps == 300
    assert plain.size_for("synth-easy", d_in=32, recommended=recommended) == (96, 3)
    assert plain.overridden_by_set("synth-easy", recommended) == []


def test_a_size_the_user_wrote_beats_the_recommended_d_sae():
    recommended = {"d_sae": 96, "target_l0": 3}
    assert config.from_dict({**BASE, "run": {**BASE["run"], "expansion": 4}}).size_for(
        "synth-easy", d_in=32, recommended=recommended) == (128, 3)
    assert config.from_dict({**BASE, "run": {**BASE["run"], "d_sae": 64}}).size_for(
        "synth-easy", d_in=32, recommended=recommended) == (64, 3)
    # an expansion under [sets.NAME] beats the recommended d_sae too (it was ignored before)
    assert config.from_dict({**BASE, "sets": {"synth-easy": {"expansion": 2}}}).size_for(
        "synth-easy", d_in=32, recommended=recommended) == (64, 3)


def test_an_architecture_of_a_set_may_have_its_own_target_l0_and_only_a_penalty_one_a_fractional_one(builtins):
    """``[sets.NAME.architectures.ARCH] target_l0`` is that architecture's target on that set:
    its cells carry it and their parameters map it (JumpReLU's quadratic penalty); the other
    architectures keep the set's; a whole number written as 3.0 is the same cell as 3; a TopK-family
    architecture, whose k counts latents, refuses a fractional one in one line."""
    from saebench_sanity.harness.plan import arch_sparsity, build_plan

    def plan(tables):
        cfg = config.from_dict({"run": {"sets": ["synth-easy"], "architectures": ["jumprelu", "topk", "relu"],
                                        "modes": ["trained"], "seeds": [0]},
                                "sets": {"synth-easy": {"target_l0": 3, "architectures": tables}}})
        return {c.arch: c for c in build_plan(cfg, builtins).cells}

    cells = plan({"jumprelu": {"target_l0": 2.7}})
    assert cells["jumprelu"].target_l0 == 2.7 and cells["jumprelu"].arch_params["target_l0"] == 2.7
    assert cells["topk"].target_l0 == 3 and cells["topk"].arch_params["k"] == 3
    assert cells["relu"].target_l0 == 3
    same = plan({"jumprelu": {"target_l0": 3.0}, "topk": {"target_l0": 3.0}})
    base = plan({})
    assert {a: c.key for a, c in same.items()} == {a: c.key for a, c in base.items()}
    assert type(same["topk"].arch_params["k"]) is int

    cfg = config.from_dict({"run": {"sets": ["synth-easy"], "architectures": ["topk"], "modes": ["trained"]},
                            "sets": {"synth-easy": {"architectures": {"topk": {"target_l0": 2.7}}}}})
    with pytest.raises(ConfigError, match=r"^sets\.synth-easy\.architectures\.topk\.target_l0 = 2\.7: architecture 'topk' sets k, "
                                          r"a whole number of latents per sample; give it a whole-number target$"):
        arch_sparsity(cfg, builtins.get("architecture", "topk"), "synth-easy", 96, 3)
    for bad, fragment in ((0, "must be in (0, d_sae]"), (1000, "must be in (0, d_sae]"), ("3", "must be a positive number"),
                          (True, "must be a positive number")):
        cfg = config.from_dict({"run": {"sets": ["synth-easy"], "architectures": ["jumprelu"], "modes": ["trained"]},
                                "sets": {"synth-easy": {"architectures": {"jumprelu": {"target_l0": bad}}}}})
        with pytest.raises(ConfigError, match=r"^sets\.synth-easy\.architectures\.jumprelu\.target_l0 = ") as info:
            cfg.target_l0_for("synth-easy", "jumprelu", 96, 3)
        assert fragment in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), True, "3", None])
def test_a_target_l0_must_be_a_finite_positive_number_in_both_places_it_is_read(bad):
    """``check_target_l0`` (the run's target) and ``RunConfig.target_l0_for`` (a set's
    per-architecture target, also bounded by d_sae) share one number check: both refuse what is
    not a finite positive number, in one line naming the key."""
    from saebench_sanity import config
    from saebench_sanity.architectures.sparsity import check_target_l0

    with pytest.raises(ConfigError, match=r"^target_l0 = .* must be a positive number, e.g. 20$"):
        check_target_l0(bad)
    cfg = config.from_dict({"run": {"sets": ["synth-easy"], "architectures": ["jumprelu"], "modes": ["trained"]},
                            "sets": {"synth-easy": {"architectures": {"jumprelu": {"target_l0": bad}}}}})
    with pytest.raises(ConfigError, match=r"^sets\.synth-easy\.architectures\.jumprelu\.target_l0 = [^\n]*$"):
        cfg.target_l0_for("synth-easy", "jumprelu", 96, 3)
    check_target_l0(2.5)
    check_target_l0(3)


def test_run_refuses_a_fractional_target_for_a_topk_architecture_before_anything_runs(tmp_path, capsys):
    from saebench_sanity.cli import main

    toml = tmp_path / "frac.toml"
    toml.write_text('[run]\nsets = ["synth-easy"]\narchitectures = ["batchtopk"]\nmodes = ["trained"]\n'
                    f'output_dir = "{tmp_path / "out"}"\n[sets.synth-easy.architectures.batchtopk]\ntarget_l0 = 2.5\n')
    assert main(["run", "--config", str(toml), "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: sets.synth-easy.architectures.batchtopk.target_l0 = 2.5: architecture 'batchtopk' sets k") \
        and err.count("\n") == 1, err
    assert not (tmp_path / "out" / "results").exists() and not (tmp_path / "out" / "run.json").exists()


# -- output paths ----------------------------------------------------------------------------------
def test_unwritable_outputs_are_refused_in_one_line(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    for target in (a_file, Path("/dev/null"), a_file / "sub"):
        with pytest.raises(SaebenchError, match="^--out "):
            check_writable_dir(target, "--out")
    with pytest.raises(SaebenchError, match="is a folder"):
        check_writable_file(tmp_path, "--json")
    assert check_writable_dir(tmp_path / "new" / "deeper", "--out").is_dir()
    assert not list((tmp_path / "new" / "deeper").iterdir())  # the probe file is gone
    assert check_writable_file(tmp_path / "report.json", "--json") == tmp_path / "report.json"


@pytest.mark.skipif(sys.platform == "win32" or __import__("os").geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_refused(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(SaebenchError, match="cannot be written"):
            check_writable_dir(ro / "out", "--out")
    finally:
        ro.chmod(0o700)


# -- exit codes of saebench run (the harness is replaced: these test the CLI's reading of a result) --
def _fake_result(tmp_path, *, cell_error=None, metric_error=None):
    outcome = SimpleNamespace(key="k1", label="synth-easy/topk/trained/s0", status="failed" if cell_error else "ok",
                              error=cell_error, error_kind="bug" if cell_error else None,
                              metrics={"ground_truth": {"status": "error" if metric_error else "ok"}})
    record = {"metrics": {"ground_truth:abc": {"name": "ground_truth", "status": "error", "error": metric_error}}}
    store = SimpleNamespace(root=tmp_path / "out", load_result=lambda key: record)
    return SimpleNamespace(outcomes=[outcome], store=store)


def _run_cli(tmp_path, monkeypatch, capsys, result=None, raises=None, extra=()):
    from saebench_sanity.harness import run as run_mod

    def fake_run(cfg, registry, **kw):
        if raises is not None:
            raise raises
        return result

    monkeypatch.setattr(run_mod, "run", fake_run)
    monkeypatch.setattr("saebench_sanity.cli.check_device_here", lambda cfg, device_given, dtype_given: None)
    cfg = tmp_path / "c.toml"
    cfg.write_text('[run]\nsets = ["synth-easy"]\narchitectures = ["topk"]\nmodes = ["trained"]\n'
                   f'output_dir = "{tmp_path / "out"}"\n[training]\nsteps = 10\n')
    code = main(["run", "--config", str(cfg), "--quiet", *extra])
    return code, capsys.readouterr().err


def test_run_exits_3_naming_the_first_errored_metric(tmp_path, monkeypatch, capsys):
    code, err = _run_cli(tmp_path, monkeypatch, capsys, _fake_result(tmp_path, metric_error="ValueError: bad threshold"))
    assert code == EXIT_INCOMPLETE == 3
    assert err.count("\n") == 1 and err.startswith("error: 1 metric result(s) errored (first: synth-easy/topk/trained/s0 "
                                                   "ground_truth: ValueError: bad threshold)")
    code, err = _run_cli(tmp_path, monkeypatch, capsys, _fake_result(tmp_path, cell_error="RuntimeError: boom"))
    assert code == 3 and "1 of 1 cells failed (first: synth-easy/topk/trained/s0: RuntimeError: boom)" in err
    code, err = _run_cli(tmp_path, monkeypatch, capsys, _fake_result(tmp_path))
    assert code == 0 and err == ""  # --quiet: nothing but errors


def test_precedence_note_is_printed_with_verbose(tmp_path, monkeypatch, capsys):
    from saebench_sanity.harness import run as run_mod

    seen = []
    monkeypatch.setattr(run_mod, "run", lambda cfg, registry, **kw: seen.append(cfg) or _fake_result(tmp_path))
    monkeypatch.setattr("saebench_sanity.cli.check_device_here", lambda cfg, device_given, dtype_given: None)
    monkeypatch.setattr("saebench_sanity.report.print_final", lambda console, result: None)
    cfg = tmp_path / "c.toml"
    cfg.write_text('[run]\nsets = ["synth-easy"]\narchitectures = ["topk"]\nmodes = ["trained"]\n'
                   f'output_dir = "{tmp_path / "out"}"\n[training]\nsteps = 10\n')
    assert main(["run", "--config", str(cfg)]) == 0
    assert not [line for line in capsys.readouterr().err.splitlines() if "replaces the set's" in line]  # not a warning
    assert main(["-v", "run", "--config", str(cfg)]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if "replaces the set's" in line]
    assert len(notes) == 1 and notes[0].endswith("sets.synth-easy: your training.max_steps = 10 replaces the set's "
                                                 "recommended max_steps = 2000 (precedence: set recommendation < "
                                                 "[run]/[training] < [sets.synth-easy])")
    assert seen[-1].training_for("synth-easy", {"steps": 2000}).max_steps == 10


def test_verbose_adds_notes_and_quiet_hides_warnings(tmp_path, monkeypatch, capsys):
    _, err = _run_cli(tmp_path, monkeypatch, capsys, _fake_result(tmp_path), extra=["-v"])  # -v after --quiet: still quiet
    assert err == ""
    from saebench_sanity.harness import run as run_mod

    monkeypatch.setattr(run_mod, "run", lambda cfg, registry, **kw: _fake_result(tmp_path))
    monkeypatch.setattr("saebench_sanity.report.print_final", lambda console, result: None)
    cfg = tmp_path / "c.toml"
    assert main(["-v", "run", "--config", str(cfg), "--no-plots"]) == 0
    err = capsys.readouterr().err
    assert f"config {cfg} checked: 1 set(s) x 1 architecture(s) x 1 mode(s) x 3 seed(s) = 3 cells" in err
    assert main(["run", "--config", str(cfg), "--no-plots"]) == 0
    assert "checked:" not in capsys.readouterr().err  # info only with -v


def test_a_full_disk_exits_2_with_the_free_space(tmp_path, monkeypatch, capsys):
    full = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out" / "x.json"))
    code, err = _run_cli(tmp_path, monkeypatch, capsys, raises=full)
    assert code == EXIT_INPUT and err.count("\n") == 1
    assert err.startswith(f"error: no space left on the disk of '{tmp_path / 'out' / 'x.json'}' (free ") and " MB)" in err
    code, err = _run_cli(tmp_path, monkeypatch, capsys,
                         _fake_result(tmp_path, cell_error="SafetensorError: IoError(Os { code: 28, kind: StorageFull })"))
    assert code == EXIT_INPUT and "no space left" in err


def test_help_lists_the_exit_codes():
    from saebench_sanity.cli import build_parser

    text = build_parser().format_help()
    for code in ("0 ", "1 ", "2 ", "3 ", "130"):
        assert f"\n  {code}" in text
    assert "free N MB" in text


# -- the CLI in a fresh process: refused before torch / sae-lens are imported ------------------------
_PROBE = ("import sys\nfrom saebench_sanity.cli import main\n"
          "rc = main({argv!r})\n"
          "print('RC', rc, [m for m in ('torch', 'sae_lens', 'transformers') if m in sys.modules])")


@pytest.mark.parametrize("argv_tail, fragment", [
    (["--out", "/dev/null"], "error: --out '/dev/null' is not a folder"),
    (["--config", "{bad}"], 'error: training.convergence_window = "0.2": must be a number in (0, 1]'),
    (["--config", "{metric}"], 'error: metrics.ground_truth.cos_threshold = "x": must be a finite number'),
])
def test_run_refuses_bad_input_before_importing_torch(tmp_path, argv_tail, fragment):
    bad = tmp_path / "bad.toml"
    bad.write_text('[run]\nsets = ["synth-easy"]\narchitectures = ["topk"]\nmodes = ["trained"]\n'
                   '[training]\nconvergence_window = "0.2"\n')
    metric = tmp_path / "metric.toml"
    metric.write_text('[run]\nsets = ["synth-easy"]\narchitectures = ["topk"]\nmodes = ["trained"]\n'
                      '[metrics.ground_truth]\ncos_threshold = "x"\n')
    argv = ["run", "--quick", *[a.format(bad=bad, metric=metric) for a in argv_tail]]
    if "--config" in argv_tail:
        argv.remove("--quick")
    proc = subprocess.run([sys.executable, "-c", _PROBE.format(argv=argv)], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(fragment), proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "RC 2 []"


def test_check_refuses_bad_numbers_and_report_paths_in_one_line(tmp_path, capsys):
    for argv, fragment in ((["--steps", "99999999999999999999"], "argument --steps: 99999999999999999999 is not an integer in 1..10,000,000"),
                           (["--min-effect", "nan"], "argument --min-effect: nan is not a finite number"),
                           (["--confidence", "1"], "argument --confidence: 1 is not a finite number in [0.5, 1)"),
                           (["--json", str(tmp_path)], f"--json '{tmp_path}' is a folder"),
                           (["--json", "/dev/null/report.json"], "--json folder '/dev/null' is not a folder")):
        try:
            code = main(["check", str(tmp_path / "no-sae"), "--set", "synth-easy", *argv])
        except SystemExit as exc:  # argparse's own refusals
            code = exc.code
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and fragment in err, err


# -- fuzzing: parse or refuse in one line, never anything else -------------------------------------
_scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
                     st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8))
_values = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                          st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                       max_leaves=6)
_good = {"steps": st.integers(1, 5000), "max_steps": st.integers(1, 5000), "lr": st.floats(1e-5, 1e-1),
         "batch_size": st.integers(1, 4096), "convergence_window": st.floats(0.01, 1.0), "early_stop": st.booleans(),
         "match_l0": st.booleans(), "min_steps": st.integers(0, 10), "lr_warm_up_steps": st.integers(0, 10),
         "lr_decay_steps": st.integers(0, 10), "sparsity_warm_up_steps": st.integers(0, 10),
         "dead_feature_window": st.integers(0, 1000), "curve_every": st.integers(1, 50),
         "convergence_rel_tol": st.floats(0, 0.1), "convergence_confidence": st.floats(0.5, 0.99),
         "lr_scheduler": st.just("constant"), "n_init_samples": st.integers(0, 4096), "recovery_every": st.none()}
_good_run = {"seeds": st.lists(st.integers(0, 9), min_size=1, max_size=3, unique=True), "metrics": st.just("all"),
             "expansion": st.integers(1, 16), "d_sae": st.integers(8, 256), "target_l0": st.integers(1, 8),
             "device": st.just("cpu"), "dtype": st.sampled_from(["float32", "float64"]), "name": st.just("fuzz"),
             "output_dir": st.just("out"), "sets": st.just(["synth-easy"])}
_good_param = {"cos_threshold": st.floats(0.1, 1.0), "k": st.integers(1, 8), "init": st.sampled_from(["cov", "iso"]),
               "k_values": st.lists(st.integers(1, 5), max_size=3), "steps": st.integers(1, 100),
               "d_sae": st.integers(8, 256), "min_effect": st.floats(0, 0.1), "confidence": st.floats(0.5, 0.99),
               "min_seeds": st.integers(2, 5)}
_training_keys = sorted({f.name for f in __import__("dataclasses").fields(config.TrainingConfig)} | {"steps", "bogus"})
_run_keys = ["seeds", "metrics", "expansion", "d_sae", "target_l0", "device", "dtype", "name", "output_dir", "sets"]


@st.composite
def fuzzed_configs(draw):
    """A config with a few keys of every table set, each to a sensible value 4 times in 5 and to
    anything (wrong types, huge / NaN numbers, nested junk) otherwise."""
    data = {"run": dict(BASE["run"])}
    for key in draw(st.lists(st.sampled_from(_run_keys), max_size=3, unique=True)):
        data["run"][key] = draw(_good_run[key]) if draw(st.integers(0, 4)) else draw(_values)
    training = {}
    for key in draw(st.lists(st.sampled_from(_training_keys), max_size=4, unique=True)):
        training[key] = draw(_good[key]) if key in _good and draw(st.integers(0, 4)) else draw(_values)
    if training:
        data["training"] = training
    for table, names in (("metrics", ["ground_truth", "sparse_probing", "reconstruction"]),
                         ("architectures", ["topk", "relu"]), ("modes", ["frozen_decoder"]),
                         ("sets", ["synth-easy"]), ("verdict", None)):
        if draw(st.booleans()):
            if names is None:
                keys = draw(st.lists(st.sampled_from(["min_effect", "confidence", "min_seeds", "x"]), max_size=2, unique=True))
            else:
                keys = draw(st.lists(st.sampled_from(["cos_threshold", "k", "init", "k_values", "steps", "params", "d_sae",
                                                      "zz"]), max_size=2, unique=True))
            values = {k: draw(_good_param[k]) if k in _good_param and draw(st.integers(0, 4)) else draw(_values) for k in keys}
            data[table] = values if names is None else {draw(st.sampled_from(names)): values}
    return data


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fuzzed_configs())
def test_fuzzed_configs_parse_or_are_refused_in_one_line(builtins, data):
    try:
        cfg = config.from_dict(data)
        config.check_names(cfg, builtins)
        for set_name in cfg.sets:
            spec = builtins.get("activation_set", set_name)
            cfg.training_for(set_name, spec.training)
            cfg.size_for(set_name, spec.d_in, spec.training)
            cfg.overridden_by_set(set_name, spec.training)
        json.dumps(cfg.to_dict(), default=str)
    except (ConfigError, UnknownNameError) as exc:
        assert str(exc) and "\n" not in str(exc)


# -- docs ------------------------------------------------------------------------------------------
def test_docs_configuration_lists_every_key_with_the_generated_tables():
    doc = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert config.config_doc_tables().strip() in doc, "regenerate with: python -m saebench_sanity.config --doc"
    for prefix, names in (("run.", config._RUN_KEYS), ("training.", [f.name for f in __import__("dataclasses").fields(config.TrainingConfig)]),
                          ("verdict.", [f.name for f in __import__("dataclasses").fields(config.VerdictConfig)])):
        for name in names:
            assert f"`{prefix}{name}`" in doc, f"{prefix}{name} is not documented"
    for name in ("expansion", "d_sae", "target_l0", "params", "architectures"):
        assert f"`sets.NAME.{name}`" in doc
    for code in ("| 0 |", "| 1 |", "| 2 |", "| 3 |", "| 130 |"):
        assert code in doc


def test_the_flat_api_resolves_every_public_name_without_torch():
    import saebench_sanity

    assert set(saebench_sanity.__all__) == {"HOOKSPEC_VERSION", "hookimpl", "__version__", *saebench_sanity._LAZY}
    code = ("import sys, saebench_sanity as s\n"
            "missing = [n for n in s.__all__ if getattr(s, n, None) is None]\n"
            "print(missing, [m for m in ('torch', 'sae_lens') if m in sys.modules])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.stdout.strip() == "[] []", proc.stderr


# -- the batch contract of activation sets ---------------------------------------------------------
class _RowsSet:
    """A set whose training batches have ``rows`` rows whatever batch size is asked for."""

    def __init__(self, rows: int) -> None:
        import torch

        self.d_in, self.rows, self._torch = 4, rows, torch

    def eval_activations(self):
        return self._torch.ones(8, 4)

    def train_batches(self, batch_size, seed):
        while True:
            yield self._torch.ones(self.rows, 4)


@pytest.mark.parametrize("rows, fragment", [(1, "yielded 1 rows; every batch must have exactly batch_size rows"),
                                            (0, "yielded 0 rows")])
def test_a_set_breaking_the_batch_contract_is_refused_before_training(rows, fragment):
    from saebench_sanity.errors import DataError
    from saebench_sanity.harness.plan import validate_set

    spec = SimpleNamespace(name="rows", d_in=4)
    with pytest.raises(DataError, match=fragment):
        validate_set(_RowsSet(rows), spec, batch_size=64)
    validate_set(_RowsSet(64), spec, batch_size=64)  # the contract kept: accepted


@pytest.mark.slow
def test_a_real_run_with_an_erroring_metric_exits_3_and_names_it(tmp_path, use_fake_registry, capsys):
    from tests.conftest import tiny_toml

    cfg = tiny_toml(tmp_path, modes=("trained",), seeds=(0,), metrics=("latent-mean", "exploding"), steps=5)
    code = main(["run", "--config", str(cfg), "--threads", "1", "--no-plots", "--quiet"])
    err = capsys.readouterr().err
    assert code == EXIT_INCOMPLETE, err
    assert "1 metric result(s) errored (first: tiny-gauss/topk/trained/s0 exploding: ValueError: metric exploded)" in err
    from saebench_sanity.harness.store import ResultStore

    (record,) = ResultStore(tmp_path / "out").iter_results()
    assert {m["name"]: m["status"] for m in record["metrics"].values()} == {"latent-mean": "ok", "exploding": "error"}


def test_leaderboard_refuses_an_unwritable_out_before_reading_results(tmp_path, capsys):
    code = main(["leaderboard", "--results", str(tmp_path / "none"), "--out", "/dev/null"])
    err = capsys.readouterr().err
    assert code == 2 and err == "error: --out '/dev/null' is not a folder (it is a file or device); pass a folder path\n"
