"""The run matrix: sets x architectures x modes x seeds -> cells, plus the metrics that score them.

Every cell carries everything that determines its trained SAE, and a *training key* that is the
stable hash of exactly that (set manifest hash, architecture + resolved params, mode + resolved
params, seed, d_sae, target L0, training config, package + hookspec version, and the distribution
name and version of every plugin that contributes the cell's set, architecture or mode). Metric
results are keyed separately (metric name + resolved params hash, and the metric's plugin
distribution and version), so adding a metric or changing its parameters scores the existing
checkpoints without retraining anything, and a new release of a plugin never reuses what its
previous code computed.

Built-in items contribute the ``saebench-sanity`` version, which every key already holds
(:func:`code_version`); only items of other distributions add a ``plugins`` entry, so the keys
of built-in cells stay what they were.

Building a plan builds each activation set once (its manifest hash is part of the keys) and
validates its data at the edge: eval activations and one training batch must be finite
``[n, d_in]`` float tensors, and ``d_in`` must match what the set's spec declares. A bad set is a
``DataError`` before any cell trains.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from saebench_sanity import __version__
from saebench_sanity.activations.base import stable_hash
from saebench_sanity.architectures.sparsity import resolve_arch_params
from saebench_sanity.config import RunConfig, TrainingConfig, repeated
from saebench_sanity.errors import ConfigError, DataError
from saebench_sanity.hookspecs import HOOKSPEC_VERSION
from saebench_sanity.training.trainer import init_key_material

#: Bump when the meaning of a stored checkpoint or result changes without the code version changing.
STORE_FORMAT = 1


def code_version() -> dict[str, Any]:
    """What of the code goes into every cache key."""
    return {"package": __version__, "hookspec": HOOKSPEC_VERSION, "store_format": STORE_FORMAT}


def plugin_versions(registry: Any, specs: list[Any]) -> tuple[tuple[str, str], ...]:
    """Sorted ``(distribution, version)`` of the plugins that registered ``specs``, leaving out the
    built-in package (its version is in :func:`code_version`). A registry without ``origin``
    (a stand-in in tests) contributes nothing."""
    origin = getattr(registry, "origin", None)
    if origin is None:
        return ()
    found = {origin(spec) for spec in specs}
    return tuple(sorted(o for o in found if o != ("saebench-sanity", __version__)))


@dataclass(frozen=True)
class Cell:
    """One (set, architecture, mode, seed) training job.

    ``arch_overrides`` are the run config's explicit architecture parameters (what
    ``train_cell(arch_overrides=...)`` takes); ``arch_params`` are the fully resolved
    hyper-parameters, recorded and hashed. Both sides resolve through
    ``architectures.sparsity.resolve_arch_params``.
    """

    set_name: str
    arch: str
    mode: str
    seed: int
    d_sae: int
    target_l0: float | None
    arch_params: dict[str, Any]
    arch_overrides: dict[str, Any]
    mode_params: dict[str, Any]
    training: TrainingConfig
    set_manifest_hash: str
    is_baseline: bool = False
    trains: bool = True
    #: training precision (``run.dtype``); the device is not part of a cell (``saebench_sanity.devices``)
    dtype: str = "float32"
    #: ``(distribution, version)`` of the non-built-in plugins behind the set, architecture and mode
    plugins: tuple[tuple[str, str], ...] = ()
    key: str = ""

    @property
    def label(self) -> str:
        return f"{self.set_name}/{self.arch}/{self.mode}/s{self.seed}"

    def key_material(self) -> dict[str, Any]:
        material: dict[str, Any] = {
            "set": {"name": self.set_name, "manifest": self.set_manifest_hash},
            "architecture": {"name": self.arch, "params": self.arch_params},
            "mode": {"name": self.mode, "params": self.mode_params},
            "seed": self.seed,
            "d_sae": self.d_sae,
            "target_l0": self.target_l0,
            "training": dataclasses.asdict(self.training),
            "dtype": self.dtype,
            "code": code_version(),
            **init_key_material(self.dtype),
        }
        if self.plugins:  # absent for built-in-only cells: their keys predate plugin versions
            material["plugins"] = [list(p) for p in self.plugins]
        return material

    def identity(self) -> dict[str, Any]:
        """JSON-ready description stored with every result."""
        return {"set": self.set_name, "arch": self.arch, "mode": self.mode, "seed": self.seed,
                "d_sae": self.d_sae, "target_l0": self.target_l0, "arch_params": self.arch_params,
                "mode_params": self.mode_params, "training": dataclasses.asdict(self.training),
                "set_manifest_hash": self.set_manifest_hash, "is_baseline": self.is_baseline,
                "trains": self.trains, "dtype": self.dtype, **init_key_material(self.dtype),
                **({"plugins": {d: v for d, v in self.plugins}} if self.plugins else {})}


@dataclass(frozen=True)
class MetricPlan:
    """A metric with its resolved parameters and the key its results are stored under."""

    name: str
    params: dict[str, Any]
    needs: frozenset[str]
    key: str


def metric_key(name: str, params: dict[str, Any], plugins: tuple[tuple[str, str], ...] = ()) -> str:
    """``name:<12 hex>`` of the metric's resolved parameters (a judge identity goes in params) and,
    for a metric of another distribution than saebench-sanity, that distribution and version
    (``plugin_versions``)."""
    material: dict[str, Any] = {"name": name, "params": params}
    if plugins:
        material["plugins"] = [list(p) for p in plugins]
    return f"{name}:{stable_hash(material)[:12]}"


@dataclass
class Plan:
    config: RunConfig
    cells: list[Cell]
    metrics: list[MetricPlan]
    #: built activation sets by name (the executor reuses them)
    sets: dict[str, Any] = field(default_factory=dict)

    @property
    def cell_keys(self) -> list[str]:
        return [c.key for c in self.cells]

    @property
    def metric_keys(self) -> list[str]:
        return [m.key for m in self.metrics]


def validate_set(aset: Any, spec: Any, batch_size: int = 64) -> None:
    """DataError unless ``aset`` yields finite float ``[n, d_in]`` data of the declared width."""
    import torch

    name = spec.name
    d_in = getattr(aset, "d_in", None)
    if not isinstance(d_in, int) or d_in <= 0:
        raise DataError(f"activation set {name!r} has d_in = {d_in!r}; it must be a positive integer")
    if spec.d_in is not None and spec.d_in != d_in:
        raise DataError(f"activation set {name!r} was registered with d_in {spec.d_in} but builds data of width {d_in} (d_in mismatch); fix the set's spec or parameters")
    for what, tensor in (("eval activations", aset.eval_activations()),
                         ("training batch", next(iter(aset.train_batches(batch_size, 0))))):
        if not isinstance(tensor, torch.Tensor) or tensor.ndim != 2:
            shape = tuple(tensor.shape) if hasattr(tensor, "shape") else type(tensor).__name__
            raise DataError(f"activation set {name!r}: {what} have shape {shape}; expected [n, {d_in}]")
        if tensor.shape[1] != d_in:
            raise DataError(f"activation set {name!r}: {what} have width {tensor.shape[1]} but d_in is {d_in} (d_in mismatch); rebuild the set")
        if what == "training batch" and tensor.shape[0] != batch_size:  # the contract: [batch_size, d_in]
            raise DataError(f"activation set {name!r}: train_batches({batch_size}, seed) yielded {tensor.shape[0]} rows; "
                            f"every batch must have exactly batch_size rows (fix the set's train_batches)")
        if tensor.shape[0] == 0:
            raise DataError(f"activation set {name!r}: {what} are empty; the set needs at least one row")
        if not tensor.is_floating_point():
            raise DataError(f"activation set {name!r}: {what} have dtype {tensor.dtype}; expected floating point")
        if not bool(torch.isfinite(tensor).all()):
            raise DataError(f"activation set {name!r}: {what} contain NaN/inf; clean or regenerate the set")


def arch_sparsity(cfg: Any, arch_spec: Any, set_name: str, d_sae: int,
                  target_l0: int | None) -> tuple[float | None, dict[str, Any], dict[str, Any]]:
    """``(target L0, parameter overrides, resolved parameters)`` of one architecture's cells of
    ``set_name``: the set's ``target_l0`` unless ``[sets.NAME.architectures.ARCH]`` gives one
    (``RunConfig.target_l0_for``), mapped onto the architecture's knob, then ``[architectures.ARCH]``
    and the per-set table's parameters over it (``resolve_arch_params``). ConfigError for a
    fractional target on a TopK-family architecture."""
    target = cfg.target_l0_for(set_name, arch_spec.name, d_sae, target_l0)
    overrides = {**cfg.architecture_params.get(arch_spec.name, {}), **cfg.architecture_params_for(set_name, arch_spec.name)}
    try:
        return target, overrides, resolve_arch_params(arch_spec, target, overrides)
    except ConfigError as exc:  # a fractional target comes only from the per-architecture table
        raise ConfigError(f"sets.{set_name}.architectures.{arch_spec.name}.{exc}") from None


def build_plan(cfg: RunConfig, registry: Any, *, metrics: list[str] | None = None,
               build_sets: bool = True) -> Plan:
    """Resolve ``cfg`` against ``registry`` into cells and metric plans.

    ``metrics`` (from ``--metrics``) narrows the config's metric list. ``build_sets=False`` skips
    building sets (manifest hashes become the hash of the set's spec params; for tests/dry runs).
    """
    from saebench_sanity.config import check_names

    check_names(cfg, registry)
    metric_names = list(cfg.metrics) if cfg.metrics is not None else registry.names("metric")
    if metrics is not None:
        if twice := repeated(metrics):  # each would be planned twice (its key twice in the run manifest)
            raise ConfigError(f"--metrics lists {', '.join(twice)} twice; each entry once")
        for name in metrics:
            registry.get("metric", name)
        metric_names = [m for m in metrics]
    metric_plans = []
    for name in metric_names:
        spec = registry.get("metric", name)
        params = {**spec.params, **cfg.metric_params.get(name, {})}
        metric_plans.append(MetricPlan(name=name, params=params, needs=frozenset(spec.needs),
                                       key=metric_key(name, params, plugin_versions(registry, [spec]))))

    built: dict[str, Any] = {}
    cells: list[Cell] = []
    for set_name in cfg.sets:
        set_spec = registry.get("activation_set", set_name)
        set_params = cfg.set_params_for(set_name)
        if build_sets:
            try:
                aset = set_spec.build(**set_params)
            except TypeError as exc:
                raise ConfigError(f"sets.{set_name}.params: {exc}; check the parameter names") from None
            validate_set(aset, set_spec)
            built[set_name] = aset
            d_in, manifest = int(aset.d_in), aset.manifest_hash()
        else:
            if set_spec.d_in is None:
                raise ConfigError(f"activation set {set_name!r} does not declare d_in; build_sets=False needs it")
            d_in, manifest = int(set_spec.d_in), stable_hash({**set_spec.params, **set_params})
        d_sae, target_l0 = cfg.size_for(set_name, d_in, set_spec.training)
        for arch in cfg.architectures:
            training = cfg.training_for(set_name, set_spec.training, arch)
            arch_spec = registry.get("architecture", arch)
            arch_target, overrides, arch_params = arch_sparsity(cfg, arch_spec, set_name, d_sae, target_l0)
            for mode in cfg.modes:
                mode_spec = registry.get("training_mode", mode)
                mode_params = {**mode_spec.params, **cfg.mode_params.get(mode, {})}
                for seed in cfg.seeds:
                    cell = Cell(set_name=set_name, arch=arch, mode=mode, seed=int(seed), d_sae=d_sae,
                                target_l0=arch_target, arch_params=arch_params, arch_overrides=overrides,
                                mode_params=mode_params, training=training, set_manifest_hash=manifest,
                                is_baseline=bool(mode_spec.is_baseline), trains=bool(mode_spec.trains),
                                dtype=cfg.dtype_for(set_name), plugins=plugin_versions(registry, [set_spec, arch_spec, mode_spec]))
                    cells.append(dataclasses.replace(cell, key=stable_hash(cell.key_material())[:24]))
    return Plan(config=cfg, cells=cells, metrics=metric_plans, sets=built)
