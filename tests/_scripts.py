"""The repository's scripts/ as modules, for the tests that check the figures the docs quote from
them (their file names have dashes, so they cannot be imported by name)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load_script(filename: str) -> ModuleType:
    """``scripts/<filename>`` loaded afresh as a module (its ``main`` is not run)."""
    spec = importlib.util.spec_from_file_location(filename.removesuffix(".py").replace("-", "_"), SCRIPTS / filename)
    assert spec is not None and spec.loader is not None, filename
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # as an import would: dataclasses look their module up there
    spec.loader.exec_module(module)
    return module
