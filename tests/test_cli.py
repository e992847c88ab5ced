"""The CLI: fast start-up, `list`, one-line errors with the documented exit codes."""

import json
import subprocess
import sys

import pytest

from saebench_sanity import cli
from saebench_sanity.cli import main
from tests.conftest import tiny_toml

HEAVY = ("torch", "sae_lens", "transformers")


def run_py(code):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("argv", [["--help"], ["list"], ["list", "--json"], ["run", "--help"], ["leaderboard", "--help"],
                                  ["check", "--help"], ["activations", "--help"]])
def test_help_and_list_do_not_import_torch_or_sae_lens(argv):
    code = ("import sys, io, contextlib\nfrom saebench_sanity.cli import main\n"
            "buf = io.StringIO()\n"
            "with contextlib.redirect_stdout(buf):\n"
            "    try:\n"
            f"        rc = main({argv!r})\n"
            "    except SystemExit as exc:\n"
            "        rc = exc.code or 0\n"
            f"print(rc, [m for m in {HEAVY!r} if m in sys.modules])")
    proc = run_py(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "0 []"


def test_console_script_help_works():
    proc = subprocess.run([sys.executable, "-m", "saebench_sanity.cli", "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    for command in ("run", "list", "leaderboard", "activations", "check"):
        assert command in proc.stdout


def test_list_json_names_every_kind_with_plugin_and_package(capsys):
    assert main(["list", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    kinds = {it["kind"] for it in data["items"]}
    assert {"activation_set", "architecture", "training_mode", "metric"} <= kinds
    names = {(it["kind"], it["name"]) for it in data["items"]}
    assert ("architecture", "topk") in names and ("training_mode", "frozen_decoder") in names
    assert all(it["plugin"] and it["package"] for it in data["items"])
    assert any(p["name"] == "builtin" for p in data["plugins"])
    assert isinstance(data["problems"], list)


def test_list_table_shows_problems(use_fake_registry, monkeypatch, capsys):
    from saebench_sanity.registry import PluginProblem

    monkeypatch.setattr(use_fake_registry, "problems", [PluginProblem("bad-plugin", "failed to import")])
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "tiny-gauss" in out and "bad-plugin" in out


def one_line_error(capsys, code, expected_rc=2):
    err = capsys.readouterr().err
    assert code == expected_rc, err
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("kwargs, fragment", [
    ({"sets": ("nosuchset",)}, "unknown activation set 'nosuchset'"),
    ({"archs": ("nosucharch",)}, "unknown architecture 'nosucharch'"),
    ({"modes": ("trained", "nosuchmode")}, "unknown training mode 'nosuchmode'"),
    ({"metrics": ("nosuchmetric",)}, "unknown metric 'nosuchmetric'"),
    ({"sets": ("tiny-nan",)}, "NaN/inf"),
    ({"sets": ("tiny-width",)}, "d_in mismatch"),
    ({"steps": 0}, "training.steps"),
    ({"steps": -3}, "training.steps"),
    ({"extra": "[sets.tiny-gauss]\nd_sae = 0\n"}, "d_sae"),
    ({"extra": "[sets.tiny-gauss]\nd_sae = -8\n"}, "d_sae"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, use_fake_registry, capsys, kwargs, fragment):
    path = tiny_toml(tmp_path, **kwargs)
    line = one_line_error(capsys, main(["run", "--config", str(path)]))
    assert fragment in line


def test_a_metric_named_twice_on_the_command_line_is_one_line(tmp_path, use_fake_registry, capsys):
    """``--metrics reconstruction,reconstruction`` planned the metric twice (its key twice in the run
    manifest)."""
    path = tiny_toml(tmp_path)
    line = one_line_error(capsys, main(["run", "--config", str(path), "--metrics", "reconstruction,reconstruction"]))
    assert "--metrics lists reconstruction twice" in line


def test_malformed_toml_and_missing_file_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[run\nsets = [")
    assert "malformed TOML" in one_line_error(capsys, main(["run", "--config", str(bad)]))
    assert "does not exist" in one_line_error(capsys, main(["run", "--config", str(tmp_path / "none.toml")]))


def test_bad_command_line_exits_2_with_one_line(capsys):
    with pytest.raises(SystemExit) as info:
        main(["run", "--jobs", "0"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


def test_unexpected_error_is_one_line_with_debug_hint_and_traceback_only_with_debug(monkeypatch, capsys):
    def boom(args):
        raise RuntimeError("something internal\nsecond line")

    monkeypatch.setitem(cli.COMMANDS, "list", boom)
    line = one_line_error(capsys, main(["list"]), expected_rc=1)
    assert "RuntimeError: something internal" in line and "--debug" in line
    assert main(["--debug", "list"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_ctrl_c_exits_130_with_one_line(monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setitem(cli.COMMANDS, "run", interrupted)
    assert main(["run", "--quick"]) == 130
    err = capsys.readouterr().err
    assert err.startswith("interrupted:") and err.count("\n") == 1


def test_config_and_quick_together_is_an_error(tmp_path, capsys):
    path = tiny_toml(tmp_path)
    assert "only one" in one_line_error(capsys, main(["run", "--config", str(path), "--quick"]))


def test_suite_flag_names_an_embedded_suite_and_refuses_unknown_names_and_a_second_choice(capsys):
    from saebench_sanity.harness.run import load_config

    assert load_config(suite="real-resid24").name == "real-resid24"
    assert load_config(suite="quick") == load_config(quick=True)
    assert "unknown embedded suite 'nope'" in one_line_error(capsys, main(["run", "--suite", "nope"]))
    assert "only one" in one_line_error(capsys, main(["run", "--suite", "quick", "--quick"]))



def test_run_sets_narrows_the_suite_and_refuses_foreign_sets(capsys, tmp_path):
    from saebench_sanity.cli import main, only_sets
    from saebench_sanity.config import embedded

    cfg = only_sets(embedded("default"), ["study-constant-mini"])
    assert cfg.sets == ("study-constant-mini",) and cfg.set_overrides == embedded("default").set_overrides
    code = main(["run", "--quick", "--sets", "synth-zipf", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: --sets: synth-zipf not in this suite's sets (synth-easy, study-variable-mini)")
    assert not (tmp_path / "o").exists()
