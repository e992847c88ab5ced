"""Layers point down only: the import graph of the package, read with ``ast`` (every import, also
those inside functions), checked against the rules below. A test fails when someone re-adds an
upward import, e.g. the leaderboard reading the store through the harness, or a metric looking
something up in the registry."""

from __future__ import annotations

import ast
from pathlib import Path

import saebench_sanity

PACKAGE = Path(saebench_sanity.__file__).parent

#: (modules the rule covers, modules they must not import, why); a name covers the module and
#: everything under it; "saebench_sanity.cli" also covers the cli_* modules
RULES = [
    ("saebench_sanity.leaderboard",
     ("saebench_sanity.harness", "saebench_sanity.executors", "saebench_sanity.training", "saebench_sanity.metrics",
      "saebench_sanity.activations", "saebench_sanity.check", "saebench_sanity.cli", "saebench_sanity.registry",
      "saebench_sanity.builtin"),
     "the leaderboard reads results through saebench_sanity.results, never through the harness, and gets what "
     "the installed plugins declare from its caller, never from the registry"),
    ("saebench_sanity.metrics",
     ("saebench_sanity.harness", "saebench_sanity.registry", "saebench_sanity.builtin", "saebench_sanity.executors",
      "saebench_sanity.leaderboard", "saebench_sanity.training", "saebench_sanity.check", "saebench_sanity.cli"),
     "a metric gets what it needs through its MetricContext"),
    ("saebench_sanity.harness",
     ("saebench_sanity.leaderboard", "saebench_sanity.report", "saebench_sanity.cli"),
     "the harness never renders: the CLI calls the harness, then the leaderboard"),
    ("saebench_sanity.results",
     ("saebench_sanity.harness", "saebench_sanity.leaderboard", "saebench_sanity.registry"),
     "the results module sits below both its writer and its reader"),
]

#: metrics that must not import one another (the shared pieces live in metrics.base / metrics.lm)
METRIC_MODULES = ("probing", "autointerp", "ravel", "loss_recovered", "core_adapters")


def module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, name: str) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved against ``name``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # "from pkg import module"
    return found


def covers(prefix: str, module: str) -> bool:
    if prefix == "saebench_sanity.cli":
        return module == prefix or module.startswith("saebench_sanity.cli_") or module.startswith(prefix + ".")
    return module == prefix or module.startswith(prefix + ".")


def violations(root: Path) -> list[str]:
    """One line per import that breaks :data:`RULES` or imports one metric from another."""
    out = []
    for path in sorted(root.rglob("*.py")):
        name = module_name(path, root)
        imported = imports_of(path, name)
        for scope, forbidden, why in RULES:
            if not covers(scope, name):
                continue
            bad = {m for m in imported if any(covers(f, m) for f in forbidden)}
            # "from a.b import c" reads as a.b and a.b.c: report the statement once
            out += [f"{name} imports {m} ({why})" for m in sorted(bad) if not any(m.startswith(b + ".") for b in bad)]
        metric = name.removeprefix("saebench_sanity.metrics.")
        if name.startswith("saebench_sanity.metrics.") and metric in METRIC_MODULES:
            for other in METRIC_MODULES:
                if other != metric and any(covers(f"saebench_sanity.metrics.{other}", m) for m in imported):
                    out.append(f"{name} imports metrics.{other} (no metric imports another metric)")
    return out


def test_the_package_imports_only_downward():
    assert violations(PACKAGE) == []


def test_the_check_catches_an_upward_import_in_each_layer(tmp_path):
    """The checker itself: a copy of the layout with one upward import per rule is caught, line by
    line, including an import inside a function and a relative one."""
    root = tmp_path / "saebench_sanity"
    files = {
        "__init__.py": "",
        "results.py": "import json\n",
        "leaderboard/__init__.py": "",
        "leaderboard/inputs.py": "from saebench_sanity.harness.store import ResultStore\n",
        "leaderboard/headline.py": "def h():\n    from saebench_sanity.registry import get_registry\n",
        "leaderboard/ok.py": "from saebench_sanity.results import ResultStore\nfrom saebench_sanity.io import stable_hash\n",
        "metrics/__init__.py": "",
        "metrics/probing.py": "def f():\n    from saebench_sanity.registry import get_registry\n",
        "metrics/ravel.py": "from .probing import lm_handle\n",
        "metrics/lm.py": "",
        "metrics/autointerp.py": "from saebench_sanity.metrics.lm import LMHandle\n",
        "harness/__init__.py": "",
        "harness/run.py": "def g():\n    from saebench_sanity.leaderboard import render\n",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    found = violations(root)
    assert any(v.startswith("saebench_sanity.leaderboard.inputs imports saebench_sanity.harness.store") for v in found)
    assert any(v.startswith("saebench_sanity.leaderboard.headline imports saebench_sanity.registry") for v in found)
    assert any(v.startswith("saebench_sanity.metrics.probing imports saebench_sanity.registry") for v in found)
    assert any(v.startswith("saebench_sanity.metrics.ravel imports metrics.probing") for v in found)
    assert any(v.startswith("saebench_sanity.harness.run imports saebench_sanity.leaderboard") for v in found)
    assert not any(v.startswith(("saebench_sanity.leaderboard.ok", "saebench_sanity.metrics.autointerp")) for v in found)
    assert len(found) == 5, found
