"""Plugin manager: the built-ins plus every installed package with a ``saebench_sanity`` entry point.

Failures are isolated and named: a plugin that fails to import, declares an incompatible
hookspec version, raises inside a hook, registers a wrong type or a name that already exists is
recorded as a ``PluginProblem`` (one line naming the plugin and the fix); the other plugins load.
``Registry.raise_problems()`` turns them into a ``PluginError`` for commands that must not run
with a broken plugin set.

Every item is validated when it is registered (:func:`spec_problems`): a spec without a usable
factory, an architecture without ``roles``, a metric without ``scores``... is a named problem of
its plugin, shown by ``saebench list`` (``--strict`` exits 1 on any problem, for a plugin's CI).
An invalid item, a wrong type or a name clash skips that one item only: the plugin's other valid
items still register.

Each item remembers the plugin and installed distribution it came from; :meth:`Registry.origin`
gives ``(distribution, version)``, which the plan folds into cache keys so new plugin code never
reuses results of the old.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import re
from dataclasses import dataclass
from typing import Any, Iterable

import pluggy

from saebench_sanity import hookspecs
from saebench_sanity.errors import PluginError, UnknownNameError

BUILTIN_PLUGIN = "saebench_sanity.builtin"
#: the ``package`` of plugins passed to ``Registry(extra_plugins=...)`` (no installed distribution)
IN_PROCESS = "(in-process)"


@dataclass(frozen=True)
class Kind:
    """One plugin kind: its hook and the spec class its items must be."""

    name: str
    hook: str
    spec_path: str  # "module:Class", imported lazily to keep this module light

    @property
    def spec_class(self) -> type[Any]:
        module, _, cls = self.spec_path.partition(":")
        return getattr(importlib.import_module(module), cls)


KINDS: dict[str, Kind] = {
    k.name: k
    for k in [
        Kind("activation_set", "saebench_register_activation_sets", "saebench_sanity.activations.base:ActivationSetSpec"),
        Kind("architecture", "saebench_register_architectures", "saebench_sanity.architectures.base:ArchitectureSpec"),
        Kind("training_mode", "saebench_register_training_modes", "saebench_sanity.training.base:TrainingModeSpec"),
        Kind("metric", "saebench_register_metrics", "saebench_sanity.metrics.base:MetricSpec"),
        Kind("judge", "saebench_register_judges", "saebench_sanity.judges.base:JudgeSpec"),
        Kind("probing_task", "saebench_register_probing_tasks", "saebench_sanity.probing_tasks.base:ProbingTaskSpec"),
        Kind("executor", "saebench_register_executors", "saebench_sanity.executors.base:ExecutorSpec"),
    ]
}


@dataclass(frozen=True)
class PluginProblem:
    plugin: str
    message: str

    def __str__(self) -> str:
        return f"plugin {self.plugin!r}: {self.message}"


@dataclass(frozen=True)
class PluginInfo:
    name: str
    package: str
    version: str
    hooks: tuple[str, ...]


def _check_version(plugin_name: str, module: Any) -> None:
    declared = getattr(module, "SAEBENCH_HOOKSPEC_VERSION", None)
    if declared is None:
        return
    if str(declared).split(".")[0] != hookspecs.HOOKSPEC_VERSION.split(".")[0]:
        raise PluginError(
            f"plugin {plugin_name!r} was built for hookspec version {declared}, this saebench-sanity "
            f"provides {hookspecs.HOOKSPEC_VERSION}; upgrade the plugin or saebench-sanity so the major versions match"
        )


class Registry:
    """All registered items, by kind and name, with where each came from."""

    def __init__(self, load_entry_points: bool = True, extra_plugins: Iterable[Any] = ()) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self.problems: list[PluginProblem] = []
        self.plugins: dict[str, PluginInfo] = {}
        self.items: dict[str, dict[str, Any]] = {k: {} for k in KINDS}
        self._load_builtin()
        if load_entry_points:
            self._load_entry_points()
        for plugin in extra_plugins:
            name = getattr(plugin, "__name__", None) or type(plugin).__name__
            self._register_plugin(name, plugin, package=IN_PROCESS, version=str(getattr(plugin, "__version__", "") or ""))
        self._collect()

    # -- loading -------------------------------------------------------------------------------
    def _load_builtin(self) -> None:
        from saebench_sanity import __version__

        module = importlib.import_module(BUILTIN_PLUGIN)
        self._register_plugin("builtin", module, package="saebench-sanity", version=__version__)

    def _load_entry_points(self) -> None:
        for ep in importlib.metadata.entry_points(group=hookspecs.ENTRY_POINT_GROUP):
            package = ep.dist.name if ep.dist is not None else "?"
            version = ep.dist.version if ep.dist is not None else ""
            if ep.name in self.plugins or self.pm.get_plugin(ep.name) is not None:
                self.problems.append(PluginProblem(ep.name, f"entry point name clashes with an already loaded plugin (from {package}); rename the entry point"))
                continue
            try:
                module = ep.load()
            except Exception as exc:  # noqa: BLE001 - a broken plugin must not take the others down
                self.problems.append(PluginProblem(ep.name, f"failed to import {ep.value!r} from {package} ({type(exc).__name__}: {exc}); fix or uninstall {package}"))
                continue
            self._register_plugin(ep.name, module, package=package, version=version)

    def _register_plugin(self, name: str, module: Any, package: str, version: str) -> None:
        try:
            _check_version(name, module)
            self.pm.register(module, name=name)
            unknown = [hc.name for hc in self.pm.get_hookcallers(module) or [] if not hc.has_spec()]
            if unknown:
                self.pm.unregister(module)
                raise PluginError(f"implements unknown hook(s) {sorted(unknown)}; known hooks are "
                                  f"{', '.join(k.hook for k in KINDS.values())} (check the spelling)")
        except PluginError as exc:
            self.problems.append(PluginProblem(name, str(exc).split(": ", 1)[-1]))
            return
        except Exception as exc:  # noqa: BLE001 - pluggy validation errors, named per plugin
            self.problems.append(PluginProblem(name, f"does not fit the hook contract ({type(exc).__name__}: {exc}); check its @hookimpl names against saebench_sanity.hookspecs"))
            return
        hooks = tuple(sorted(h.name for h in self.pm.get_hookcallers(module) or []))
        self.plugins[name] = PluginInfo(name=name, package=package, version=version, hooks=hooks)

    def _collect(self) -> None:
        """Call every hook of every plugin, one plugin at a time so a failure is attributable."""
        for kind in KINDS.values():
            caller = getattr(self.pm.hook, kind.hook)
            for impl in caller.get_hookimpls():
                plugin_name = self.pm.get_name(impl.plugin) or "?"
                info = self.plugins.get(plugin_name)
                try:
                    impl.function(register=lambda spec, _k=kind, _p=plugin_name, _i=info: self._add(_k, spec, _p, _i))
                except PluginError as exc:
                    self.problems.append(PluginProblem(plugin_name, str(exc)))
                except Exception as exc:  # noqa: BLE001
                    self.problems.append(PluginProblem(plugin_name, f"hook {kind.hook} raised {type(exc).__name__}: {exc}; fix the plugin or uninstall {info.package if info else 'it'}"))

    def _add(self, kind: Kind, spec: Any, plugin_name: str, info: PluginInfo | None) -> None:
        """Register one item, or record why not as a problem of ``plugin_name``. Never raises:
        one bad item must not cost the plugin the items it registers after it."""
        cls = kind.spec_class
        if not isinstance(spec, cls):
            self.problems.append(PluginProblem(plugin_name, f"registered a {type(spec).__name__} through {kind.hook}; it must register {cls.__name__} objects"))
            return
        what = f"{kind.name.replace('_', ' ')} {spec.name!r}"
        invalid = spec_problems(kind.name, spec)
        if invalid:
            self.problems.append(PluginProblem(plugin_name, f"{what} is not registered: {'; '.join(invalid)}"))
            return
        existing = self.items[kind.name].get(spec.name)
        if existing is not None:
            self.problems.append(PluginProblem(plugin_name, f"{kind.name} name {spec.name!r} is already registered by plugin {existing.plugin!r} ({existing.package}); rename it in one of them"))
            return
        object.__setattr__(spec, "plugin", plugin_name)
        object.__setattr__(spec, "package", info.package if info else "?")
        self.items[kind.name][spec.name] = spec

    # -- queries -------------------------------------------------------------------------------
    def origin(self, spec: Any) -> tuple[str, str]:
        """``(distribution, version)`` of the installed package whose plugin registered ``spec``
        (``("saebench-sanity", <version>)`` for built-ins). An in-process plugin (tests, notebooks)
        has no distribution: ``("(in-process) <plugin name>", <its module's __version__ or "">)``.
        An item added outside any plugin's hook (a user-declared set of a run config, built by
        saebench-sanity's own code from its recipe) is the built-in package's, as it is in every
        process that loads the declaration through the built-in plugin."""
        info = self.plugins.get(getattr(spec, "plugin", "")) or self.plugins.get("builtin")
        if info is None:
            return (getattr(spec, "package", "") or "?", "")
        if info.package == IN_PROCESS:
            return (f"{IN_PROCESS} {info.name}", info.version)
        return (info.package, info.version)

    def raise_problems(self) -> None:
        if self.problems:
            raise PluginError("; ".join(str(p) for p in self.problems))

    def names(self, kind: str) -> list[str]:
        return sorted(self.items[kind])

    def get(self, kind: str, name: str) -> Any:
        try:
            return self.items[kind][name]
        except KeyError:
            known = ", ".join(self.names(kind)) or "(none registered)"
            broken = sorted({p.plugin for p in self.problems})
            hint = f" (plugin(s) {', '.join(broken)} failed to load: see `saebench list`)" if broken else ""
            raise UnknownNameError(f"unknown {kind.replace('_', ' ')} {name!r}; known: {known}{hint}") from None

    def declared_scores(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Metric name -> score -> the fields of the ``ScoreInfo`` the registered metric declares,
        in the form results record them (``score_info``): what the leaderboard falls back to for
        records written before a field was recorded (``leaderboard.headline.DeclaredScores``)."""
        return {name: {score: dataclasses.asdict(info) for score, info in self.get("metric", name).scores.items()}
                for name in self.names("metric")}

    def all_items(self) -> list[Any]:
        return [spec for kind in KINDS for spec in sorted(self.items[kind].values(), key=lambda s: s.name)]


_REF_RE = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")


def _factory_problem(factory: Any) -> str | None:
    if callable(factory):
        return None
    if isinstance(factory, str) and _REF_RE.match(factory):
        return None  # imported when the item is used (keeps `saebench list` free of torch)
    if factory in ("", None):
        return "it has no factory (give a callable or 'package.module:attribute')"
    return f"factory {factory!r} is neither callable nor a 'package.module:attribute' reference"


def spec_problems(kind: str, spec: Any) -> list[str]:
    """What is wrong with ``spec`` as an item of ``kind`` (empty when it can be used): the checks
    that would otherwise fail only when a run reaches the item. Cheap on purpose: nothing is
    imported (factory references are checked for their form, not resolved)."""
    out: list[str] = []
    why = _factory_problem(getattr(spec, "factory", None))
    if why:
        out.append(why)
    for attr in ("params", "training"):
        value = getattr(spec, attr, {})
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            out.append(f"{attr} must be a dict with string keys, not {type(value).__name__}")
    if kind == "architecture":
        from saebench_sanity.architectures.base import ROLES

        roles = getattr(spec, "roles", None)
        if not isinstance(roles, dict) or not roles:
            out.append(f"it declares no roles (map every nn.Parameter name of the built SAE to one of {', '.join(ROLES)})")
        else:
            bad = sorted(f"{k}={v!r}" for k, v in roles.items() if not isinstance(k, str) or v not in ROLES)
            if bad:
                out.append(f"roles {', '.join(bad)} are not among {', '.join(ROLES)}")
            for needed in ("encoder", "decoder"):
                if needed not in roles.values():
                    out.append(f"no parameter has the role {needed!r} (training modes freeze tensors by role)")
        for attr in ("sparsity_param", "sparsity_warm_up_param"):
            if not isinstance(getattr(spec, attr, ""), str):
                out.append(f"{attr} must be a string (a parameter name, or '')")
        for attr in ("target_l0_params", "calibration"):
            hook = getattr(spec, attr, None)
            if hook is not None and _factory_problem(hook) is not None:
                out.append(f"{attr} {hook!r} is neither callable nor a 'package.module:attribute' reference")
        coefficients = getattr(spec, "sparsity_coefficients", ())
        if not isinstance(coefficients, (tuple, list)) or not all(isinstance(c, str) for c in coefficients):
            out.append("sparsity_coefficients must be a tuple of coefficient names (e.g. ('l1',))")
    elif kind == "metric":
        from saebench_sanity.metrics.base import ScoreInfo

        scores = getattr(spec, "scores", None)
        if not isinstance(scores, dict) or not scores:
            out.append("it declares no scores (score name -> ScoreInfo(direction=...))")
        else:
            bad = sorted(str(k) for k, v in scores.items() if not isinstance(k, str) or not isinstance(v, ScoreInfo))
            if bad:
                out.append(f"scores {', '.join(bad)} are not ScoreInfo objects keyed by name")
        needs: object = getattr(spec, "needs", frozenset())
        if not isinstance(needs, (set, frozenset)) or not all(isinstance(n, str) for n in needs):
            out.append("needs must be a frozenset of strings (e.g. frozenset({'ground_truth'}))")
    elif kind == "training_mode":
        for flag in ("is_baseline", "trains"):
            if not isinstance(getattr(spec, flag, False), bool):
                out.append(f"{flag} must be True or False")
    elif kind == "activation_set":
        d_in = getattr(spec, "d_in", None)
        if d_in is not None and (isinstance(d_in, bool) or not isinstance(d_in, int) or d_in <= 0):
            out.append(f"d_in must be a positive integer or None, not {d_in!r}")
    return out


_DEFAULT: Registry | None = None


def get_registry(refresh: bool = False) -> Registry:
    """Process-wide registry (built once; ``refresh`` rebuilds, e.g. after installing a plugin)."""
    global _DEFAULT
    if _DEFAULT is None or refresh:
        _DEFAULT = Registry()
    return _DEFAULT
