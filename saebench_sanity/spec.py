"""What every registered item has in common: a name, a one-line description, and a factory
that is imported only when the item is used.

A factory is either a callable or an import reference ``"package.module:attribute"``. References
let a plugin register items without importing torch / sae-lens at registration time, which keeps
``saebench list`` fast.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from typing import Any

from saebench_sanity.errors import PluginError

_NAME_RE = re.compile(r"^[a-z][a-z0-9_.\-]*$")



def resolve_ref(ref: Any, *, what: str) -> Any:
    """Return ``ref`` itself if it is not a string, else import ``"module:attr"``."""
    if not isinstance(ref, str):
        return ref
    module_name, _, attr = ref.partition(":")
    if not module_name or not attr:
        raise PluginError(f"{what}: factory reference {ref!r} must look like 'package.module:attribute'")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any import failure is the plugin's, reported by name
        raise PluginError(f"{what}: cannot import {module_name!r} ({type(exc).__name__}: {exc}); "
                          f"reinstall the plugin that provides it") from exc
    obj = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise PluginError(f"{what}: {module_name!r} has no attribute {attr!r}; fix the plugin's factory reference") from exc
    return obj


@dataclass(frozen=True)
class Spec:
    """Base of every registered item.

    ``plugin`` and ``package`` are filled in by the registry (which plugin registered it, which
    installed distribution that plugin came from); plugins leave them empty.
    """

    name: str
    description: str = ""
    plugin: str = field(default="", compare=False)
    package: str = field(default="", compare=False)
    #: optional pydantic model of the item's parameters (bounds, documentation); without one they
    #: are checked against the factory's signature and ``params`` (``config.params_model``)
    params_model: Any = field(default=None, compare=False, repr=False)

    kind: str = field(default="item", init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            raise PluginError(
                f"{type(self).__name__} name {self.name!r} is invalid: use lowercase letters, digits, '_', '-' or '.', starting with a letter"
            )

    def describe(self) -> dict[str, Any]:
        """JSON-ready summary for ``saebench list --json``."""
        return {"kind": self.kind, "name": self.name, "description": self.description,
                "plugin": self.plugin, "package": self.package}
