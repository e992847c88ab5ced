"""Entry-point discovery: a package that declares the `saebench_sanity` entry point appears in
the registry with its distribution name; removing it removes its items; a broken one is named."""

import sys
import textwrap

import pytest

from saebench_sanity.registry import Registry


def _fake_distribution(root, dist, module, body):
    (root / f"{module}.py").write_text(textwrap.dedent(body))
    info = root / f"{dist.replace('-', '_')}-0.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text(f"[saebench_sanity]\n{module} = {module}\n")


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in ("ep_good_plugin", "ep_broken_plugin"):
        sys.modules.pop(name, None)


def test_an_installed_entry_point_plugin_appears_with_its_package_and_goes_when_removed(site, monkeypatch):
    _fake_distribution(site, "ep-good", "ep_good_plugin", """
        from saebench_sanity import hookimpl
        from saebench_sanity.training.base import TrainingModeSpec

        @hookimpl
        def saebench_register_training_modes(register):
            register(TrainingModeSpec(name="ep-mode", factory="x:y", is_baseline=True))
    """)
    reg = Registry()
    spec = reg.get("training_mode", "ep-mode")
    assert (spec.plugin, spec.package) == ("ep_good_plugin", "ep-good")
    assert reg.plugins["ep_good_plugin"].version == "0.3"
    monkeypatch.syspath_prepend("/nonexistent")  # keep fixture bookkeeping simple
    sys.path.remove(str(site))
    sys.modules.pop("ep_good_plugin", None)
    assert "ep-mode" not in Registry().names("training_mode")


def test_a_plugin_that_fails_to_import_is_named_and_the_others_load(site):
    _fake_distribution(site, "ep-broken", "ep_broken_plugin", "raise ImportError('needs libfoo')\n")
    reg = Registry()
    problems = [p for p in reg.problems if p.plugin == "ep_broken_plugin"]
    assert len(problems) == 1 and "needs libfoo" in problems[0].message and "ep-broken" in problems[0].message
    assert "topk" in reg.names("architecture")
