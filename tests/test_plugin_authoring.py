"""Plugin authors first: `saebench new-plugin` writes a package that installs with `pip install -e`
and whose own tests pass as written; `saebench list --strict` fails a plugin's CI on any problem.

The starter package is installed for real, but into a throw-away virtual environment layered on
this one (``venv --system-site-packages``: saebench-sanity, torch and sae-lens come from here,
the plugin's entry point only exists inside it), so the shared environment never sees it."""

import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from saebench_sanity import hookimpl
from saebench_sanity.cli import main
from saebench_sanity.cli_new_plugin import names_for, render


def _venv(tmp_path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(tmp_path / "venv")],
                   check=True)
    return tmp_path / "venv" / "bin" / "python"


def _run(python: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([str(python), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_the_starter_plugin_installs_and_its_tests_pass_as_written(tmp_path, capsys):
    assert main(["new-plugin", "saebench-starter", "--dir", str(tmp_path)]) == 0
    assert "pip install -e" in capsys.readouterr().out
    pkg = tmp_path / "saebench-starter"
    python = _venv(tmp_path)
    install = _run(python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "-e", str(pkg), cwd=tmp_path)
    assert install.returncode == 0, install.stderr
    tests = _run(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(pkg / "tests"), cwd=pkg)
    assert tests.returncode == 0, tests.stdout[-3000:]
    assert "6 passed" in tests.stdout
    listed = _run(python, "-m", "saebench_sanity.cli", "list", "--strict", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert '"starter-topk"' in listed.stdout and '"package": "saebench-starter"' in listed.stdout
    origin = _run(python, "-c", "from saebench_sanity.registry import Registry; r = Registry(); "
                  "print(r.origin(r.get('architecture', 'starter-topk')))", cwd=tmp_path)
    assert origin.stdout.strip() == "('saebench-starter', '0.1.0')", origin.stderr  # what the cache keys hold

    # a spec that loses its roles: a named plugin problem, the plugin's other items still register
    plugin = pkg / "saebench_starter" / "plugin.py"
    text = plugin.read_text()
    start = text.index("        roles=")
    plugin.write_text(text[:start] + text[text.index("\n", start) + 1:])
    broken = _run(python, "-m", "saebench_sanity.cli", "list", "--strict", "--json", cwd=tmp_path)
    assert broken.returncode == 1
    assert "'starter-topk' is not registered: it declares no roles" in broken.stdout
    assert '"starter-set"' in broken.stdout and '"starter-decoder-redundancy"' in broken.stdout
    assert _run(python, "-m", "saebench_sanity.cli", "list", "--json", cwd=tmp_path).returncode == 0  # without --strict


def test_starter_names_and_refusals(tmp_path, capsys):
    assert names_for("saebench-mine") == {"dist": "saebench-mine", "package": "saebench_mine", "slug": "mine"}
    assert names_for("cool_sae") == {"dist": "cool_sae", "package": "cool_sae", "slug": "cool-sae"}
    files = render("saebench-mine")
    assert 'saebench_mine = "saebench_mine.plugin"' in files["pyproject.toml"]
    for path, text in files.items():
        if path.endswith(".py"):
            compile(text, path, "exec")  # the templates are valid Python after formatting
    assert main(["new-plugin", "Bad Name", "--dir", str(tmp_path)]) == 2
    assert "not a distribution name" in capsys.readouterr().err
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("")
    assert main(["new-plugin", "taken", "--dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and err.count("\n") == 1
    # an invalid name that is also an existing path: the name is what is wrong (was "already exists")
    (tmp_path / "Taken File").write_text("")
    assert main(["new-plugin", "Taken File", "--dir", str(tmp_path)]) == 2
    assert "not a distribution name" in capsys.readouterr().err


def test_list_strict_exits_1_on_a_plugin_problem_and_0_without(monkeypatch, capsys):
    from saebench_sanity import registry as registry_mod
    from saebench_sanity.architectures.base import ArchitectureSpec
    from saebench_sanity.registry import Registry

    monkeypatch.setattr(registry_mod, "_DEFAULT", Registry(load_entry_points=False))
    assert main(["list", "--strict", "--json"]) == 0
    module = types.ModuleType("half-broken")
    module.saebench_register_architectures = hookimpl(lambda register: register(ArchitectureSpec(name="roleless", factory="x:y")))
    monkeypatch.setattr(registry_mod, "_DEFAULT", Registry(load_entry_points=False, extra_plugins=[module]))
    capsys.readouterr()
    assert main(["list"]) == 0  # problems are shown, not fatal, without --strict
    assert "half-broken" in capsys.readouterr().out
    assert main(["list", "--strict"]) == 1
    assert "'roleless' is not registered" in capsys.readouterr().out
