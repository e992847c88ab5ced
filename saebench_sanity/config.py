"""Run configuration: TOML in, validated dataclasses out.

Everything a user can get wrong is checked here, at the edge, and reported as one line naming
the field and the fix (``ConfigError``). Names of sets / architectures / modes / metrics are
checked against the registry by :func:`check_names`.

Layout of a config file (every table optional except ``[run]``)::

    [run]
    name = "default"
    output_dir = "saebench-runs/default"
    sets = ["synth-easy"]
    architectures = ["topk", "relu"]
    modes = ["trained", "frozen_decoder", "soft_frozen_decoder", "frozen_encoder", "untrained"]
    seeds = [0, 1, 2]
    metrics = "all"             # or a list of metric names
    expansion = 8               # d_sae = expansion * d_in (ignored when d_sae is set)
    # d_sae = 512
    target_l0 = 8               # sets k / target L0 for every architecture that has one
    device = "auto"             # auto | cpu | cuda | cuda:N | mps (saebench_sanity/devices.py)
    dtype = "float32"           # float32 | float64 | bfloat16

    [training]                  # defaults for every cell
    max_steps = 2000            # a maximum: cells stop early when converged (early_stop = true);
                                # `steps` is read as an alias of max_steps
    batch_size = 1024
    lr = 3e-4

    [architectures.relu]        # hyper-parameters per architecture
    l1_coefficient = 5.0

    [modes.frozen_decoder]      # parameters per training mode
    init = "cov"

    [metrics.ground_truth]      # parameters per metric
    cos_threshold = 0.8

    [sets.study-constant]       # per-set overrides: training fields, expansion, d_sae,
    max_steps = 20000           # target_l0, and set parameters under `params`
    target_l0 = 20

    [verdict]
    min_effect = 0.01
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

from saebench_sanity.errors import ConfigError

EMBEDDED_SUITES = ("default", "quick", "real-resid24")


@dataclass(frozen=True)
class TrainingConfig:
    """Training budget, schedule and convergence rule for one cell.

    ``max_steps`` is a maximum: with ``early_stop`` a cell stops when the convergence rule
    (``training.convergence``) says its loss, MSE and (with ground truth) recovery are level, after
    its lr decay (``lr_decay_steps``, linear to 0 as SAELens's constant + decay schedule). The lr
    is constant after SAELens's linear warm-up (``lr_warm_up_steps``); the sparsity-coefficient
    warm-up is SAELens's own. ``curve_every`` / ``convergence_*`` / ``recovery_every`` drive the
    UNDERTRAINED rule (a cell whose improvement over the last ``convergence_window`` of its
    constant-lr steps exceeds ``convergence_rel_tol`` with ``convergence_confidence`` is marked
    UNDERTRAINED, not judged). ``steps`` (the name before budgets became maxima) is accepted as an
    alias of ``max_steps`` as a keyword, in TOML tables and in set recommendations; giving both is
    an error.
    """

    max_steps: int = 2000
    batch_size: int = 1024
    lr: float = 3e-4
    lr_scheduler: str = "constant"
    lr_warm_up_steps: int = 0
    lr_decay_steps: int = 0
    sparsity_warm_up_steps: int = 0
    dead_feature_window: int = 1000
    curve_every: int = 20
    convergence_window: float = 0.2
    convergence_rel_tol: float = 0.02
    convergence_confidence: float = 0.9
    early_stop: bool = True
    min_steps: int = 0
    #: steps between recovery probes on sets with ground truth (a multiple of curve_every); None: every curve point
    recovery_every: int | None = None
    n_init_samples: int = 8192
    #: steer the sparsity coefficient of penalty SAEs (L1, JumpReLU) so every member of a cohort ends
    #: at the cell's target L0 (``training.sparsity_control``); TopK-family SAEs get it from k
    match_l0: bool = True

    @property
    def steps(self) -> int:
        """Alias of ``max_steps`` (read-only)."""
        return self.max_steps

    def __post_init__(self) -> None:
        _positive(self, "max_steps", allow_zero=False)
        _positive(self, "batch_size", allow_zero=False)
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"training.lr = {self.lr!r} must be a positive finite number, e.g. 3e-4")
        for name in ("lr_warm_up_steps", "lr_decay_steps", "sparsity_warm_up_steps", "dead_feature_window",
                     "n_init_samples", "min_steps"):
            _positive(self, name, allow_zero=True)
        _positive(self, "curve_every", allow_zero=False)
        if not (isinstance(self.convergence_window, (int, float)) and 0 < self.convergence_window <= 1):
            raise ConfigError(f"training.convergence_window = {self.convergence_window!r} must be in (0, 1], e.g. 0.2")
        if not (isinstance(self.convergence_rel_tol, (int, float)) and 0 <= self.convergence_rel_tol < math.inf):
            raise ConfigError(f"training.convergence_rel_tol = {self.convergence_rel_tol!r} must be a finite number >= 0, e.g. 0.02")
        if not (isinstance(self.convergence_confidence, (int, float)) and 0 < self.convergence_confidence < 1):
            raise ConfigError(f"training.convergence_confidence = {self.convergence_confidence!r} must be in (0, 1), e.g. 0.9")
        for flag in ("early_stop", "match_l0"):
            if not isinstance(getattr(self, flag), bool):
                raise ConfigError(f"training.{flag} = {getattr(self, flag)!r} must be true or false")
        if self.recovery_every is not None:
            _positive(self, "recovery_every", allow_zero=False)
            if self.recovery_every % self.curve_every:
                raise ConfigError(f"training.recovery_every = {self.recovery_every} must be a multiple of training.curve_every "
                                  f"({self.curve_every}): recovery is probed at curve points")
        if self.lr_scheduler != "constant":
            raise ConfigError(f"training.lr_scheduler = {self.lr_scheduler!r}; only 'constant' is supported (the convergence "
                              "rule judges a constant-lr phase; use lr_warm_up_steps / lr_decay_steps for the schedule)")
        if self.lr_warm_up_steps + self.lr_decay_steps > self.max_steps:
            raise ConfigError(f"training.lr_warm_up_steps + lr_decay_steps ({self.lr_warm_up_steps + self.lr_decay_steps}) "
                              f"exceed training.max_steps ({self.max_steps}); shorten them")
        if self.min_steps > self.max_steps:
            raise ConfigError(f"training.min_steps ({self.min_steps}) exceeds training.max_steps ({self.max_steps}); lower it")


def _training_with_alias(cls: type, init: Any) -> Any:
    """Wrap the dataclass ``__init__`` so ``steps=N`` means ``max_steps=N``.

    ``dataclasses.replace(cfg, steps=N)`` passes both names (the old ``max_steps`` and the new
    ``steps``): there ``steps`` wins, as the caller asked for it."""

    def __init__(self: Any, *args: Any, steps: Any = None, **kwargs: Any) -> None:
        if steps is None:
            init(self, *args, **kwargs)
            return
        kwargs["max_steps"] = steps
        try:
            init(self, *args, **kwargs)
        except ConfigError as exc:  # name the key the user wrote
            raise ConfigError(str(exc).replace("training.max_steps", "training.steps (max_steps)")) from None

    __init__.__doc__ = init.__doc__
    return __init__


TrainingConfig.__init__ = _training_with_alias(TrainingConfig, TrainingConfig.__init__)  # type: ignore[method-assign]
#: accepted in [training] and [sets.NAME] tables and set recommendations as an alias of max_steps
TRAINING_ALIASES = {"steps": "max_steps"}


def training_keys(table: dict[str, Any], where: str) -> dict[str, Any]:
    """``table`` with alias keys (``steps``) renamed to their field (``max_steps``); ConfigError
    when both are given."""
    out = dict(table)
    for alias, name in TRAINING_ALIASES.items():
        if alias in out:
            if name in out:
                raise ConfigError(f"{where}: both {alias!r} and {name!r} given; keep {name!r} ({alias!r} is its old name)")
            out[name] = out.pop(alias)
    return out


@dataclass(frozen=True)
class VerdictConfig:
    """Parameters of the verdict rule (the rule itself lives in ``leaderboard.verdict``;
    docs/verdict-rule.md). ``n_sigma`` (the old fixed-margin rule) is retired: a config that sets
    it is refused with one line naming ``confidence``."""

    min_effect: float = 0.01
    confidence: float = 0.95     # one-sided confidence of each bound (BEATS / FAILS / AT CHANCE)
    min_seeds: int = 3           # fewer seeds on a side: SEEDS, no verdict
    l0_tolerance: float = 0.10   # final L0 within target * (1 ± this), else L0 NOT MATCHED

    def __post_init__(self) -> None:
        if not (self.min_effect >= 0 and math.isfinite(self.min_effect)):
            raise ConfigError(f"verdict.min_effect = {self.min_effect!r} must be a finite number >= 0, e.g. 0.01")
        if isinstance(self.confidence, bool) or not isinstance(self.confidence, (int, float)) or not 0.5 <= self.confidence < 1:
            raise ConfigError(f"verdict.confidence = {self.confidence!r} must be a number in [0.5, 1), e.g. 0.95")
        if isinstance(self.min_seeds, bool) or not isinstance(self.min_seeds, int) or self.min_seeds < 2:
            raise ConfigError(f"verdict.min_seeds = {self.min_seeds!r} must be an integer >= 2, e.g. 3")
        if isinstance(self.l0_tolerance, bool) or not isinstance(self.l0_tolerance, (int, float)) or not 0 < self.l0_tolerance < 1:
            raise ConfigError(f"verdict.l0_tolerance = {self.l0_tolerance!r} must be a number in (0, 1), e.g. 0.1")


SET_OVERRIDE_KEYS = ({f.name for f in fields(TrainingConfig)} | set(TRAINING_ALIASES)
                     | {"expansion", "d_sae", "target_l0", "params", "architectures"})


@dataclass(frozen=True)
class RunConfig:
    name: str
    sets: tuple[str, ...]
    architectures: tuple[str, ...]
    modes: tuple[str, ...]
    seeds: tuple[int, ...] = (0, 1, 2)
    metrics: tuple[str, ...] | None = None  # None = every registered metric
    output_dir: str = "saebench-runs/default"
    expansion: int = 8
    d_sae: int | None = None
    target_l0: int | None = None
    training: TrainingConfig = field(default_factory=TrainingConfig)
    architecture_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    mode_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    metric_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    set_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    verdict: VerdictConfig = field(default_factory=VerdictConfig)
    #: where SAEs train (``saebench_sanity.devices``): auto = CUDA, then MPS, then CPU; not part of a
    #: cell's identity (the same recipe on another device is the same cell)
    device: str = "auto"
    #: training precision; part of a cell's identity (float64 and bfloat16 training differ materially)
    dtype: str = "float32"
    source: str = "<dict>"

    def __post_init__(self) -> None:
        for name in ("sets", "architectures", "modes", "seeds"):
            if not getattr(self, name):
                raise ConfigError(f"run.{name} is empty; list at least one entry")
            if len(set(getattr(self, name))) != len(getattr(self, name)):
                raise ConfigError(f"run.{name} lists an entry twice; remove the duplicate")
        if "trained" not in self.modes:
            raise ConfigError("run.modes must include 'trained' (baselines are judged against it)")
        if self.expansion <= 0:
            raise ConfigError(f"run.expansion = {self.expansion} must be a positive integer, e.g. 8")
        if self.d_sae is not None and self.d_sae <= 0:
            raise ConfigError(f"run.d_sae = {self.d_sae} must be a positive integer, e.g. 512")
        if self.target_l0 is not None and self.target_l0 <= 0:
            raise ConfigError(f"run.target_l0 = {self.target_l0} must be a positive integer, e.g. 20")
        from saebench_sanity.devices import check_device_name, check_dtype_name

        check_device_name(self.device, "run.device")
        check_dtype_name(self.dtype, "run.dtype")
        for set_name, over in self.set_overrides.items():
            unknown = set(over) - SET_OVERRIDE_KEYS
            if unknown:
                raise ConfigError(f"sets.{set_name}: unknown key(s) {sorted(unknown)}; allowed: {sorted(SET_OVERRIDE_KEYS)}")
            training_keys(over, f"sets.{set_name}")
            archs = over.get("architectures", {})
            if not isinstance(archs, dict) or not all(isinstance(v, dict) for v in archs.values()):
                raise ConfigError(f"sets.{set_name}.architectures: use [sets.{set_name}.architectures.NAME] tables of key = value pairs")

    # -- per-set resolution --------------------------------------------------------------------
    def training_for(self, set_name: str, recommended: dict[str, Any] | None = None) -> TrainingConfig:
        """Training budget for a set: run defaults < the set's recommendation < ``[sets.NAME]``."""
        merged = {**training_keys(recommended or {}, f"set {set_name!r} recommendation"),
                  **training_keys(self.set_overrides.get(set_name, {}), f"sets.{set_name}")}
        over = {k: v for k, v in merged.items() if k in {f.name for f in fields(TrainingConfig)}}
        try:
            return dataclasses.replace(self.training, **over)
        except ConfigError as exc:
            raise ConfigError(f"sets.{set_name}: {exc}") from None

    def size_for(self, set_name: str, d_in: int, recommended: dict[str, Any] | None = None) -> tuple[int, int | None]:
        """``(d_sae, target_l0)`` for a set of width ``d_in``."""
        merged = {**(recommended or {}), **self.set_overrides.get(set_name, {})}
        d_sae = merged.get("d_sae", None if "expansion" in merged else self.d_sae)
        if d_sae is None:
            d_sae = int(merged.get("expansion", self.expansion)) * d_in
        target = merged.get("target_l0", self.target_l0)
        if int(d_sae) <= 0:
            raise ConfigError(f"sets.{set_name}: d_sae = {d_sae} must be positive")
        if target is not None and not 0 < int(target) <= int(d_sae):
            raise ConfigError(f"sets.{set_name}: target_l0 = {target} must be in 1..d_sae ({d_sae})")
        return int(d_sae), (int(target) if target is not None else None)

    def set_params_for(self, set_name: str) -> dict[str, Any]:
        return dict(self.set_overrides.get(set_name, {}).get("params", {}))

    def architecture_params_for(self, set_name: str, arch: str) -> dict[str, Any]:
        """Architecture hyper-parameters set for this set only (``[sets.NAME.architectures.ARCH]``),
        applied over ``[architectures.ARCH]`` (an L1 coefficient that suits unit-scale synthetic
        data is far off for a normalized residual stream)."""
        return dict(self.set_overrides.get(set_name, {}).get("architectures", {}).get(arch, {}))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _positive(obj: Any, name: str, allow_zero: bool) -> None:
    value = getattr(obj, name)
    ok = isinstance(value, int) and not isinstance(value, bool) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"training.{name} = {value!r} must be an integer {bound}")


def _expect(table: dict[str, Any], key: str, types: tuple[type, ...], where: str) -> Any:
    value = table[key]
    if isinstance(value, bool) and bool not in types:
        raise ConfigError(f"{where}.{key} = {value!r} has the wrong type; expected {' or '.join(t.__name__ for t in types)}")
    if not isinstance(value, types):
        raise ConfigError(f"{where}.{key} = {value!r} has the wrong type; expected {' or '.join(t.__name__ for t in types)}")
    return value


def _str_list(table: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = _expect(table, key, (list,), where)
    if not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}.{key} must be a list of names, e.g. {key} = [\"a\", \"b\"]")
    return tuple(value)


def from_dict(data: dict[str, Any], source: str = "<dict>") -> RunConfig:
    """Validate a parsed TOML document into a RunConfig."""
    known_tables = {"run", "training", "architectures", "modes", "metrics", "sets", "verdict"}
    unknown = set(data) - known_tables
    if unknown:
        raise ConfigError(f"{source}: unknown table(s) {sorted(unknown)}; allowed: {sorted(known_tables)}")
    if "run" not in data or not isinstance(data["run"], dict):
        raise ConfigError(f"{source}: missing [run] table; see `saebench run --help` for the layout")
    run = dict(data["run"])
    allowed_run = {"name", "sets", "architectures", "modes", "seeds", "metrics", "output_dir", "expansion", "d_sae", "target_l0",
                   "device", "dtype"}
    unknown = set(run) - allowed_run
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) in [run]: {sorted(unknown)}; allowed: {sorted(allowed_run)}")
    for key in ("sets", "architectures", "modes"):
        if key not in run:
            raise ConfigError(f"{source}: run.{key} is missing; list the {key} to run")
    kwargs: dict[str, Any] = {"source": source, "name": str(run.get("name", Path(source).stem))}
    for key in ("sets", "architectures", "modes"):
        kwargs[key] = _str_list(run, key, "run")
    if "seeds" in run:
        seeds = _expect(run, "seeds", (list,), "run")
        if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
            raise ConfigError("run.seeds must be a list of non-negative integers, e.g. seeds = [0, 1, 2]")
        kwargs["seeds"] = tuple(seeds)
    if "metrics" in run:
        if run["metrics"] == "all":
            kwargs["metrics"] = None
        else:
            kwargs["metrics"] = _str_list(run, "metrics", "run")
    if "output_dir" in run:
        kwargs["output_dir"] = str(_expect(run, "output_dir", (str,), "run"))
    for key in ("expansion", "d_sae", "target_l0"):
        if key in run:
            kwargs[key] = _expect(run, key, (int,), "run")
    for key in ("device", "dtype"):
        if key in run:
            kwargs[key] = str(_expect(run, key, (str,), "run"))

    for table, target in (("architectures", "architecture_params"), ("modes", "mode_params"),
                          ("metrics", "metric_params"), ("sets", "set_overrides")):
        value = data.get(table, {})
        if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
            raise ConfigError(f"{source}: [{table}.NAME] tables must hold key = value pairs per name")
        kwargs[target] = {k: dict(v) for k, v in value.items()}

    training = data.get("training", {})
    allowed_training = {f.name for f in fields(TrainingConfig)} | set(TRAINING_ALIASES)
    unknown = set(training) - allowed_training
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) in [training]: {sorted(unknown)}; allowed: {sorted(allowed_training)}")
    training_keys(training, f"{source}: [training]")  # both steps and max_steps: refused
    kwargs["training"] = TrainingConfig(**training)  # steps= is read as max_steps, errors name it

    verdict = data.get("verdict", {})
    if "n_sigma" in verdict:
        raise ConfigError(f"{source}: verdict.n_sigma was retired (the verdict rule now uses t-intervals); "
                          "remove it and set verdict.confidence instead, e.g. 0.95 (docs/verdict-rule.md)")
    allowed_verdict = {f.name for f in fields(VerdictConfig)}
    unknown = set(verdict) - allowed_verdict
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) in [verdict]: {sorted(unknown)}; allowed: {sorted(allowed_verdict)}")
    kwargs["verdict"] = VerdictConfig(**verdict)
    try:
        return RunConfig(**kwargs)
    except TypeError as exc:  # pragma: no cover - guarded by the checks above
        raise ConfigError(f"{source}: {exc}") from None


def load(path: str | Path) -> RunConfig:
    """Read and validate a TOML run configuration file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist; pass an existing TOML file to --config")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: malformed TOML ({exc}); fix the syntax at that line") from None
    return from_dict(data, source=str(path))


def embedded(name: str = "default") -> RunConfig:
    """One of the suites shipped inside the package (``EMBEDDED_SUITES``)."""
    if name not in EMBEDDED_SUITES:
        raise ConfigError(f"unknown embedded suite {name!r}; choose one of {', '.join(EMBEDDED_SUITES)}")
    text = resources.files("saebench_sanity").joinpath("suites", f"{name}.toml").read_text(encoding="utf-8")
    return from_dict(tomllib.loads(text), source=f"embedded:{name}")


def check_names(cfg: RunConfig, registry: Any) -> None:
    """Raise UnknownNameError for any name in ``cfg`` that no plugin registered."""
    for kind, names in (("activation_set", cfg.sets), ("architecture", cfg.architectures),
                        ("training_mode", cfg.modes), ("metric", cfg.metrics or ())):
        for name in names:
            registry.get(kind, name)
    for kind, table in (("architecture", cfg.architecture_params), ("training_mode", cfg.mode_params),
                        ("metric", cfg.metric_params), ("activation_set", cfg.set_overrides)):
        for name in table:
            registry.get(kind, name)
    for over in cfg.set_overrides.values():
        for arch in over.get("architectures", {}):
            registry.get("architecture", arch)
