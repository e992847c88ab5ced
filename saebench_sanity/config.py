"""Run configuration: TOML in, validated (pydantic v2) dataclasses out.

One validation mechanism for everything a user writes: the config's tables are pydantic
dataclasses / models with typed, bounded fields, and every spec's parameters are checked against
a pydantic model of that spec (:func:`params_model`) by :func:`check_names`, before any set is
built or any cell trains. Every bad value is a ``ConfigError`` with one line naming the key, the
value and what is allowed. The format with every key, type, bound and default is in
docs/configuration.md (written from these models: ``python -m saebench_sanity.config --doc``).

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

    [sets.study-constant]       # per-set values: training fields, expansion, d_sae,
    max_steps = 20000           # target_l0, and set parameters under `params`
    target_l0 = 20

    [verdict]
    min_effect = 0.01

Precedence of a training / size value for one set: the built-in default < the set's
recommended budget (its spec's ``training``) < what you wrote in ``[run]`` / ``[training]`` <
``[sets.NAME]`` < ``[sets.NAME.architectures.ARCH]``. A value you wrote always applies: a set's
recommendation only fills what you left out (until 2026-12 it replaced ``[run]`` / ``[training]``
values with a warning, which a config of this repository's own scripts fell into).
:meth:`RunConfig.overridden_by_set` lists the recommendations your values replace; ``saebench
run -v`` prints them.
"""

import dataclasses
import inspect
import json
import math
import os
import sys
import tomllib
import typing
from collections.abc import Mapping, Sequence
from dataclasses import field, fields
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import (BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr,
                      ValidationError, create_model)
from pydantic.dataclasses import dataclass

from saebench_sanity.architectures.build import is_finite_number
from saebench_sanity.errors import ConfigError

EMBEDDED_SUITES = ("default", "quick", "real-resid24")

# -- bounds ------------------------------------------------------------------------------------
#: at most this many optimizer steps (the longest built-in budget is 30,000; 1e7 is days of CPU)
MAX_STEPS = 10_000_000
#: at most this many samples per batch / initialisation sample
MAX_BATCH = 1 << 20
MAX_INIT_SAMPLES = 1 << 20
MAX_SEED = 2**32 - 1
MAX_EXPANSION = 1024
#: the memory check (RunConfig.check_memory) refuses sizes this machine cannot train long before
MAX_D_SAE = 2**31 - 1
#: TOML tables nested deeper than this are refused (a config is 3-4 levels deep; deep nesting
#: would only exhaust recursion in hashing and validation)
MAX_DEPTH = 16


class Allowed:
    """Field metadata: what a field accepts, in words (used by error messages and the docs)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"Allowed({self.text!r})"


class IntIn(Allowed):
    """``Annotated[int, IntIn(lo, hi)]``: a strict integer (``true`` and ``2.0`` refused) in
    ``lo..hi``; ``optional`` also takes None (omitted)."""

    def __init__(self, lo: int, hi: int, optional: bool = False) -> None:
        super().__init__(f"an integer in {lo:,}..{hi:,}" + (" (or omitted)" if optional else ""))
        self.lo, self.hi, self.optional = lo, hi, optional

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        schema = core_schema.int_schema(strict=True, ge=self.lo, le=self.hi)
        return core_schema.nullable_schema(schema) if self.optional else schema


class NumIn(Allowed):
    """``Annotated[float, NumIn(...)]``: a finite int or float within the bounds, kept as written
    (``1`` stays an int, so cell identities do not change); a string, a bool or NaN/inf is refused."""

    def __init__(self, lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
                 hi_open: bool = False, optional: bool = False) -> None:
        if lo is not None and hi is not None:
            text = f"a number in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
        elif lo is not None:
            text = f"a finite number {'>' if lo_open else '>='} {lo:g}"
        else:
            text = "a finite number"
        super().__init__(text + (" (or omitted)" if optional else ""))
        self.lo, self.hi, self.lo_open, self.hi_open, self.optional = lo, hi, lo_open, hi_open, optional

    def check(self, value: float) -> float:
        ok = math.isfinite(value)
        if ok and self.lo is not None:
            ok = value > self.lo if self.lo_open else value >= self.lo
        if ok and self.hi is not None:
            ok = value < self.hi if self.hi_open else value <= self.hi
        if not ok:
            raise ValueError(f"must be {self.text}")
        return value

    def check_optional(self, value: float | None) -> float | None:
        return None if value is None else self.check(value)

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        number = core_schema.union_schema([core_schema.int_schema(strict=True), core_schema.float_schema(strict=True)])
        checked = core_schema.no_info_after_validator_function(self.check, number)
        return core_schema.nullable_schema(checked) if self.optional else checked


def repeated(items: Sequence[Any]) -> list[str]:
    """The entries of ``items`` that occur more than once, as sorted strings ([] when none): a
    list of seeds, modes, sets or metrics names each entry once (a repeated seed would count one
    training run as two)."""
    seen: set[Any] = set()
    twice: set[str] = set()
    for x in items:
        if x in seen:
            twice.add(str(x))
        seen.add(x)
    return sorted(twice)


def _int(lo: int, hi: int, optional: bool = False) -> Any:
    """The annotation ``Annotated[int, IntIn(lo, hi)]`` (``Optional`` when ``optional``)."""
    return Annotated[Optional[int], IntIn(lo, hi, True)] if optional else Annotated[int, IntIn(lo, hi)]


def _number(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False, hi_open: bool = False) -> Any:
    """The annotation ``Annotated[float, NumIn(...)]``."""
    return Annotated[float, NumIn(lo, hi, lo_open=lo_open, hi_open=hi_open)]


Bool = Annotated[StrictBool, Allowed("true or false")]
Steps = Annotated[int, IntIn(1, MAX_STEPS)]
StepsOrZero = Annotated[int, IntIn(0, MAX_STEPS)]
Name = Annotated[StrictStr, Field(min_length=1, max_length=200), Allowed("a name")]
Names = Annotated[tuple[Name, ...], Allowed('a list of names, e.g. ["a", "b"]')]
#: a name used in a file path: no separators, no leading dot (writes stay inside their folder)
PathName = Annotated[StrictStr, Field(min_length=1, max_length=120, pattern=r"^[^/\\\x00.][^/\\\x00]*$"),
                     Allowed("a name without '/', '\\' or a leading '.'")]


# -- formatting of one-line errors ---------------------------------------------------------------
def _show(value: Any) -> str:
    """``value`` as a TOML user would write it, cut to one short line."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = json.dumps(value)
    else:
        try:
            text = json.dumps(value, default=repr)
        except (TypeError, ValueError, RecursionError):
            text = repr(value)
    text = text.replace("\n", " ")
    return text if len(text) <= 60 else text[:57] + "..."


def _allowed_text(info: Any) -> str:
    metadata = list(getattr(info, "metadata", ()))
    for meta in metadata:
        if isinstance(meta, Allowed):
            return meta.text
    text = _type_words(getattr(info, "annotation", None))
    bounds = []  # constraints of a plugin's own params_model (annotated_types Gt / Ge / Lt / Le)
    for meta in metadata:
        for attr, sign in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
            if getattr(meta, attr, None) is not None:
                bounds.append(f"{sign} {getattr(meta, attr)}")
    return f"{text} {' and '.join(bounds)}" if bounds else text


def _type_words(ann: Any) -> str:
    if ann in (StrictBool, bool):
        return "true or false"
    if ann in (StrictInt, int):
        return "an integer"
    if ann in (StrictStr, str):
        return "a string"
    origin = typing.get_origin(ann)
    if origin is Annotated:
        for meta in typing.get_args(ann)[1:]:
            if isinstance(meta, Allowed):
                return meta.text
        return _type_words(typing.get_args(ann)[0])
    if origin is Literal:
        return "one of " + ", ".join(_show(a) for a in typing.get_args(ann))
    if origin in (list, tuple, Sequence) or ann in (list, tuple):
        inner = _type_words(typing.get_args(ann)[0]) if typing.get_args(ann) else "a valid value"
        plural = {"an integer": "integers", "a string": "strings", "a finite number": "numbers",
                  "true or false": "booleans"}.get(inner)
        return f"a list of {plural}" if plural else "a list"
    if origin in (dict, Mapping) or ann is dict:
        return "a table of key = value pairs"
    if origin in (Union, getattr(__import__("types"), "UnionType", Union)):
        parts = [a for a in typing.get_args(ann) if a is not type(None)]
        words = [_type_words(a) for a in parts]
        if set(parts) <= {StrictInt, StrictFloat, int, float} or words == ["an integer", "a number"]:
            text = "a finite number"
        else:
            text = " or ".join(dict.fromkeys(words))
        return text + (" (or omitted)" if type(None) in typing.get_args(ann) else "")
    if ann in (StrictFloat, float):
        return "a finite number"
    return "a valid value"


def _example(info: Any) -> str:
    default = getattr(info, "default", None)
    if default is None or default is dataclasses.MISSING or type(default).__name__ == "PydanticUndefinedType":
        return ""
    if isinstance(default, (bool, int, float, str)) and default != "" and typing.get_origin(info.annotation) is not Literal:
        return f", e.g. {_show(default)}"
    return ""


def one_line(exc: ValidationError | dict[str, Any], where: str, infos: Mapping[str, Any], given: Mapping[str, Any],
             names: Mapping[str, str] | None = None) -> ConfigError:
    """The first problem of ``exc`` (a ValidationError, or one of its ``errors()``) as one line:
    ``<where><key> = <value>: must be <allowed>``.

    ``infos``: field name -> pydantic FieldInfo (for the allowed values); ``given``: what the user
    passed (the value is shown as written); ``names``: field name -> key as the user wrote it."""
    err = exc.errors()[0] if isinstance(exc, ValidationError) else exc
    loc = [p for p in err.get("loc", ()) if isinstance(p, (str, int))]
    key = str(loc[0]) if loc else ""
    shown = (names or {}).get(key, key)
    path = f"{where}{shown}" if shown else where.rstrip(".")
    if err["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
        allowed = ", ".join(sorted((names or {}).get(k, k) for k in infos))
        return ConfigError(f"{path}: unknown key; allowed: {allowed}")
    if err["type"] in ("missing", "missing_keyword_argument", "missing_argument"):
        return ConfigError(f"{path} is missing; {_allowed_text(infos.get(key))} is required")
    value = given[key] if key in given else err.get("input")
    info = infos.get(key)
    return ConfigError(f"{path} = {_show(value)}: must be {_allowed_text(info)}{_example(info)}")


def _validating_init(cls: type, where: str, names: Mapping[str, str] | None = None,
                     aliases: Mapping[str, str] | None = None) -> None:
    """Wrap the pydantic dataclass ``__init__`` of ``cls``: alias keywords (``steps`` ->
    ``max_steps``) and pydantic's ValidationError turned into one ConfigError line that names
    the key as the user wrote it. ``dataclasses.replace`` goes through here too."""
    init = getattr(cls, "__init__")
    infos = getattr(cls, "__pydantic_fields__")
    aliases = dict(aliases or {})

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        shown = dict(names or {})
        renamed = {}
        for alias, name in aliases.items():
            if kwargs.get(alias) is not None:
                # dataclasses.replace(cfg, steps=N) passes both: the alias is what the caller asked for
                kwargs[name] = kwargs.pop(alias)
                shown[name] = renamed[name] = f"{alias} ({name})"
            else:
                kwargs.pop(alias, None)
        try:
            init(self, *args, **kwargs)
        except ValidationError as exc:
            raise one_line(exc, where, infos, kwargs, shown) from None
        except ConfigError as exc:
            if not renamed:
                raise
            text = str(exc)
            for name, label in renamed.items():  # name the key the user wrote
                text = text.replace(f"{where}{name}", f"{where}{label}")
            raise ConfigError(text) from None

    __init__.__doc__ = init.__doc__
    setattr(cls, "__init__", __init__)


# -- the tables ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainingConfig:
    """Training budget, schedule and convergence rule for one cell (``[training]``).

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

    #: optimizer steps at most (cells stop earlier once converged when early_stop is true)
    max_steps: Steps = 2000
    #: activation vectors per optimizer step
    batch_size: Annotated[int, IntIn(1, MAX_BATCH)] = 1024
    #: Adam learning rate
    lr: Annotated[float, NumIn(0, 10, lo_open=True)] = 3e-4
    #: learning-rate schedule between the warm-up and the decay
    lr_scheduler: Annotated[Literal["constant"], Allowed(
        "\"constant\" (only 'constant' is supported: the convergence rule judges a constant-lr phase; shape the "
        "schedule with lr_warm_up_steps / lr_decay_steps)")] = "constant"
    #: linear lr warm-up steps at the start
    lr_warm_up_steps: StepsOrZero = 0
    #: linear lr decay to 0 over this many steps at the end (after early stop)
    lr_decay_steps: StepsOrZero = 0
    #: sae-lens's linear warm-up of the sparsity coefficient
    sparsity_warm_up_steps: StepsOrZero = 0
    #: steps without firing after which a latent counts as dead (sae-lens)
    dead_feature_window: StepsOrZero = 1000
    #: steps between training-curve points (the convergence rule judges these)
    curve_every: Steps = 20
    #: fraction of the constant-lr steps the convergence rule looks back over
    convergence_window: Annotated[float, NumIn(0, 1, lo_open=True)] = 0.2
    #: relative improvement over the window below which a curve counts as level
    convergence_rel_tol: Annotated[float, NumIn(0)] = 0.02
    #: one-sided confidence of the convergence decision
    convergence_confidence: Annotated[float, NumIn(0, 1, lo_open=True, hi_open=True)] = 0.9
    #: stop a cell once the convergence rule says it is level
    early_stop: Bool = True
    #: no early stop before this many steps (and never before 10% of max_steps)
    min_steps: StepsOrZero = 0
    #: steps between recovery probes on sets with ground truth (a multiple of curve_every); omitted: every curve point
    recovery_every: Annotated[Optional[int], IntIn(1, MAX_STEPS, optional=True)] = None
    #: activation samples drawn for initialisation (covariance init, scaling)
    n_init_samples: Annotated[int, IntIn(0, MAX_INIT_SAMPLES)] = 8192
    #: steer the sparsity coefficient of penalty SAEs (L1, JumpReLU) so every member of a cohort ends
    #: at the cell's target L0 (``training.sparsity_control``); TopK-family SAEs get it from k
    match_l0: Bool = True

    @property
    def steps(self) -> int:
        """Alias of ``max_steps`` (read-only)."""
        return self.max_steps

    def __post_init__(self) -> None:  # cross-field rules (each field is typed and bounded above)
        if self.recovery_every is not None and self.recovery_every % self.curve_every:
            raise ConfigError(f"training.recovery_every = {self.recovery_every} must be a multiple of training.curve_every "
                              f"({self.curve_every}): recovery is probed at curve points")
        if self.lr_warm_up_steps + self.lr_decay_steps > self.max_steps:
            raise ConfigError(f"training.lr_warm_up_steps + lr_decay_steps ({self.lr_warm_up_steps + self.lr_decay_steps}) "
                              f"exceed training.max_steps ({self.max_steps}); shorten them")
        if self.min_steps > self.max_steps:
            raise ConfigError(f"training.min_steps ({self.min_steps}) exceeds training.max_steps ({self.max_steps}); lower it")


#: accepted in [training] and [sets.NAME] tables and set recommendations as an alias of max_steps
TRAINING_ALIASES = {"steps": "max_steps"}
_validating_init(TrainingConfig, "training.", aliases=TRAINING_ALIASES)


def training_keys(table: dict[str, Any], where: str) -> dict[str, Any]:
    """``table`` with alias keys (``steps``) renamed to their field (``max_steps``); ConfigError
    when both are given."""
    for alias, name in TRAINING_ALIASES.items():
        if alias in table and name in table:
            raise ConfigError(f"{where}: both {alias!r} and {name!r} given; keep {name!r} ({alias!r} is its old name)")
    return {TRAINING_ALIASES.get(k, k): v for k, v in table.items()}  # in the order written


@dataclass(frozen=True)
class VerdictConfig:
    """Parameters of the verdict rule (``[verdict]``; the rule itself lives in
    ``leaderboard.verdict``, docs/verdict-rule.md). ``n_sigma`` (the old fixed-margin rule) is
    retired: a config that sets it is refused with one line naming ``confidence``."""

    #: smallest difference that counts as a real effect (per-score values may be larger)
    min_effect: Annotated[float, NumIn(0)] = 0.01
    #: one-sided confidence of each bound (BEATS / FAILS / AT CHANCE)
    confidence: Annotated[float, NumIn(0.5, 1, hi_open=True)] = 0.95
    #: fewer seeds on a side: SEEDS, no verdict
    min_seeds: Annotated[int, IntIn(2, 1000)] = 3
    #: final L0 within target * (1 +- this), else L0 NOT MATCHED
    l0_tolerance: Annotated[float, NumIn(0, 1, lo_open=True, hi_open=True)] = 0.10


_validating_init(VerdictConfig, "verdict.")


class _SetTableBase(BaseModel):
    """A ``[sets.NAME]`` table: what one activation set changes for its cells.

    Every ``[training]`` key may appear here (it beats the set's recommendation), plus the size
    keys and the set's own parameters. Fields of user-defined sets (a set described in the config
    rather than registered by a plugin) are added in the marked section below: declare each as a
    typed field with an ``Allowed`` text; :meth:`RunConfig.set_table` returns the validated table.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: d_sae = expansion * d_in for this set
    expansion: Annotated[Optional[int], IntIn(1, MAX_EXPANSION, optional=True)] = None
    #: dictionary size for this set (beats expansion)
    d_sae: Annotated[Optional[int], IntIn(1, MAX_D_SAE, optional=True)] = None
    #: target L0 for this set (mapped onto each architecture's sparsity knob)
    target_l0: Annotated[Optional[int], IntIn(1, MAX_D_SAE, optional=True)] = None
    #: parameters passed to the set's factory (checked against the set's parameter model)
    params: Annotated[dict[StrictStr, Any], Allowed("a table of key = value pairs")] = {}
    #: training precision of this set's cells (beats run.dtype; --dtype beats both); part of a cell's identity
    training_dtype: Annotated[Optional[Literal["float32", "float64", "bfloat16"]],
                              Allowed("float32, float64 or bfloat16")] = None
    #: [sets.NAME.architectures.ARCH]: architecture parameters, training keys (max_steps, lr, ...) and target_l0 (a positive number; fractional only for penalty architectures) for this set and architecture only
    architectures: Annotated[dict[StrictStr, dict[StrictStr, Any]],
                             Allowed("[sets.NAME.architectures.ARCH] tables of key = value pairs")] = {}
    # -- fields of user-defined sets (model, hook_point, corpus, ...) go here ------------------
    # A table with ``model`` describes a new real set (``user_set_recipes``; built and bound to its
    # name by ``activations.real.declare_user_set``): no plugin needed.
    #: user-defined real set: the language model (hub id, local folder, or "default")
    model: Annotated[Optional[StrictStr], Field(min_length=1),
                     Allowed("a hub id like 'EleutherAI/pythia-70m', a local model folder, or 'default'")] = None
    #: user-defined real set: model revision (hub commit / tag)
    model_revision: Annotated[Optional[StrictStr], Allowed("a hub revision (commit or tag)")] = None
    #: user-defined real set: where activations are read (resid_post.L, mlp_out.L, attn_out.L)
    hook_point: Annotated[Optional[StrictStr], Field(min_length=1),
                          Allowed("a hook point like 'resid_post.6' (mlp_out.L, attn_out.L)")] = None
    #: user-defined real set: text source
    corpus: Annotated[Optional[StrictStr], Field(min_length=1),
                      Allowed("'default', a folder of .txt/.jsonl files, or 'hf:<dataset>'")] = None
    #: user-defined real set: extra arguments of a hub corpus (split, text_column, data_files...)
    corpus_kwargs: Annotated[Optional[dict[StrictStr, Any]], Allowed("a table of key = value pairs")] = None
    #: user-defined real set: tokens per context, BOS included
    context_len: Annotated[Optional[int], IntIn(2, 65_536, optional=True)] = None
    #: user-defined real set: harvested training tokens
    n_train_tokens: Annotated[Optional[int], IntIn(1, 10**12, optional=True)] = None
    #: user-defined real set: held-out tokens (activations for eval, contexts for model metrics)
    n_eval_tokens: Annotated[Optional[int], IntIn(1, 10**10, optional=True)] = None
    #: user-defined real set: stored activation dtype (served as float32)
    dtype: Annotated[Optional[Literal["float32", "float16", "bfloat16"]], Allowed("float32, float16 or bfloat16")] = None
    #: user-defined real set: start every context with BOS
    prepend_bos: Annotated[Optional[StrictBool], Allowed("true or false")] = None
    #: user-defined real set: flag tokens whose activation norm exceeds this multiple of the
    #: held-out median norm at harvest (default 10; see docs/real-activations.md)
    massive_norm_ratio: Annotated[Optional[float], NumIn(1, 1e6, lo_open=True, optional=True)] = None
    #: user-defined real set: leave the flagged tokens out of training batches
    exclude_massive: Annotated[Optional[StrictBool], Allowed("true or false")] = None


#: [sets.NAME] keys that describe a user-defined real set (see ``user_set_recipes``)
USER_SET_KEYS = ("model", "model_revision", "hook_point", "corpus", "corpus_kwargs", "context_len", "n_train_tokens",
                 "n_eval_tokens", "dtype", "prepend_bos", "massive_norm_ratio", "exclude_massive")


def user_set_recipes(cfg: "RunConfig") -> dict[str, dict[str, Any]]:
    """``{name: recipe}`` of the ``[sets.NAME]`` tables that describe a new real set (they give
    ``model``); a recipe holds the given ``USER_SET_KEYS`` (``activations.real.user_set_params``
    fills the rest). ConfigError when such a table lacks ``hook_point``, or a table without
    ``model`` gives one of the set keys."""
    out: dict[str, dict[str, Any]] = {}
    for name in cfg.set_overrides:
        table = cfg.set_table(name)
        given = {k: getattr(table, k) for k in USER_SET_KEYS if getattr(table, k) is not None}
        if not given:
            continue
        if "model" not in given:
            raise ConfigError(f"sets.{name}: {', '.join(sorted(given))} describe a new activation set, which needs "
                              "model = '<hub id or folder>' too (and hook_point)")
        if "hook_point" not in given:
            raise ConfigError(f"sets.{name}: a new activation set needs hook_point, e.g. hook_point = 'resid_post.6'")
        out[name] = given
    return out


def _optional_training_fields() -> dict[str, Any]:
    """Every TrainingConfig field as an optional field of the same type and bounds (for SetTable)."""
    out: dict[str, Any] = {}
    for name, info in getattr(TrainingConfig, "__pydantic_fields__").items():
        rule = next((m for m in info.metadata if isinstance(m, (IntIn, NumIn))), None)
        if isinstance(rule, IntIn):
            ann: Any = Annotated[Optional[int], IntIn(rule.lo, rule.hi, optional=True)]
        elif isinstance(rule, NumIn):
            ann = Annotated[Optional[float], NumIn(rule.lo, rule.hi, lo_open=rule.lo_open, hi_open=rule.hi_open,
                                                   optional=True)]
        else:  # bool / Literal fields: their own (strict) type, or None
            ann = Annotated[Optional[info.annotation], Allowed(_allowed_text(info))]  # type: ignore[name-defined]
        out[name] = (ann, None)
    return out


SetTable = create_model("SetTable", __base__=_SetTableBase, **_optional_training_fields())  # type: ignore[misc,call-overload]

#: keys a [sets.NAME] table accepts
SET_OVERRIDE_KEYS = set(SetTable.model_fields) | set(TRAINING_ALIASES)
_SIZE_KEYS = ("expansion", "d_sae", "target_l0")

#: RunConfig field -> where the user writes it in TOML
_RUN_NAMES = {"architecture_params": "architectures", "mode_params": "modes", "metric_params": "metrics",
              "set_overrides": "sets", "training": "training", "verdict": "verdict", "source": "source"}


@dataclass(frozen=True)
class RunConfig:
    """A validated run configuration (``[run]`` plus every other table).

    Fields with dotted TOML names: ``architecture_params`` = ``[architectures.NAME]``,
    ``mode_params`` = ``[modes.NAME]``, ``metric_params`` = ``[metrics.NAME]``,
    ``set_overrides`` = ``[sets.NAME]``; ``given`` lists the ``run.KEY`` / ``training.KEY`` the
    user wrote: a written value beats a set's recommendation (``training_for``, ``size_for``), so
    a config rebuilt from ``to_dict()`` (which drops ``given``) can resolve differently; cells
    carry their resolved values, so nothing rebuilds one."""

    #: leaderboard file stem (default: the config file's name)
    name: PathName
    #: activation sets to train on
    sets: Names
    #: SAE architectures
    architectures: Names
    #: training modes; must include "trained"
    modes: Names
    #: training seeds (one cell per seed)
    seeds: Annotated[tuple[_int(0, MAX_SEED), ...], Allowed(f"a list of integers in 0..{MAX_SEED:,}")] = (0, 1, 2)  # type: ignore[valid-type]
    #: metric names, or "all" (every registered metric)
    metrics: Annotated[Optional[tuple[Name, ...]], Allowed('"all" or a list of metric names')] = None
    #: results folder
    output_dir: Annotated[StrictStr, Field(min_length=1), Allowed("a folder path")] = "saebench-runs/default"
    #: d_sae = expansion * d_in (unless d_sae is given)
    expansion: Annotated[int, IntIn(1, MAX_EXPANSION)] = 8
    #: dictionary size for every set
    d_sae: Annotated[Optional[int], IntIn(1, MAX_D_SAE, optional=True)] = None
    #: target L0 for every architecture that has a sparsity knob
    target_l0: Annotated[Optional[int], IntIn(1, MAX_D_SAE, optional=True)] = None
    training: TrainingConfig = field(default_factory=TrainingConfig)
    architecture_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    mode_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    metric_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    set_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    verdict: VerdictConfig = field(default_factory=VerdictConfig)
    #: where SAEs train and are scored (``saebench_sanity.devices``): auto = CUDA, then MPS, then CPU; not part of a
    #: cell's identity (the same recipe on another device is the same cell)
    device: Annotated[StrictStr, Allowed("auto, cpu, cuda, cuda:N or mps")] = "auto"
    #: training precision; part of a cell's identity (float64 and bfloat16 training differ materially); a float64
    #: cell's SAE is also built in float64; checkpoints are saved in float32 whatever the precision
    dtype: Annotated[StrictStr, Allowed("float32, float64 or bfloat16")] = "float32"
    source: str = "<dict>"
    given: frozenset[str] = field(default=frozenset(), compare=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("sets", "architectures", "modes", "seeds"):
            if not getattr(self, name):
                raise ConfigError(f"run.{name} is empty; list at least one entry")
            if repeated(getattr(self, name)):
                raise ConfigError(f"run.{name} lists an entry twice; remove the duplicate")
        if "trained" not in self.modes:
            raise ConfigError("run.modes must include 'trained' (baselines are judged against it)")
        from saebench_sanity.devices import check_device_name, check_dtype_name

        check_device_name(self.device, "run.device")
        check_dtype_name(self.dtype, "run.dtype")
        for table, name in (("architectures", "architecture_params"), ("modes", "mode_params"),
                            ("metrics", "metric_params"), ("sets", "set_overrides")):
            for key, value in getattr(self, name).items():
                if not isinstance(value, dict):
                    raise ConfigError(f"{table}.{key} = {_show(value)}: must be a [{table}.{key}] table of key = value pairs")
        for set_name in self.set_overrides:
            self.set_table(set_name)

    # -- per-set resolution --------------------------------------------------------------------
    def set_table(self, set_name: str) -> Any:
        """The validated ``[sets.NAME]`` table (a ``SetTable``; empty when absent)."""
        where = f"sets.{set_name}"
        table = training_keys(self.set_overrides.get(set_name, {}), where)
        try:
            return SetTable.model_validate(table)
        except ValidationError as exc:
            names = {"max_steps": "steps"} if "steps" in self.set_overrides.get(set_name, {}) else None
            raise one_line(exc, where + ".", SetTable.model_fields, table, names) from None

    def dtype_for(self, set_name: str) -> str:
        """Training precision of ``set_name``'s cells: ``[sets.NAME] training_dtype``, else ``run.dtype``
        (``saebench run --dtype`` replaces both: :meth:`with_dtype`)."""
        own = self.set_overrides.get(set_name, {}).get("training_dtype")
        return str(own) if own is not None else self.dtype

    def with_dtype(self, dtype: str) -> "RunConfig":
        """This config with every set training in ``dtype`` (``saebench run --dtype``): ``run.dtype``
        replaced and each set's own ``training_dtype`` dropped."""
        overrides = {name: {k: v for k, v in table.items() if k != "training_dtype"}
                     for name, table in self.set_overrides.items()}
        return dataclasses.replace(self, dtype=dtype, set_overrides=overrides)

    def training_for(self, set_name: str, recommended: dict[str, Any] | None = None,
                     arch: str | None = None) -> TrainingConfig:
        """Training budget for a set (and, with ``arch``, for that architecture's cells of it): run
        defaults < the set's recommendation < what the user wrote in ``[training]`` <
        ``[sets.NAME]`` < ``[sets.NAME.architectures.ARCH]``.

        The last level exists because architectures of one set converge at very different speeds
        (on the real set the TopK family levels in a few hundred steps, ReLU and Gated baselines
        need thousands): each (set, architecture) keeps one budget for all its modes and seeds,
        so a cohort's members still share every training value."""
        rec = training_keys(recommended or {}, f"set {set_name!r} recommendation")
        merged = {**{k: v for k, v in rec.items() if f"training.{k}" not in self.given},
                  **training_keys(self.set_overrides.get(set_name, {}), f"sets.{set_name}")}
        where = f"sets.{set_name}"
        if arch is not None:
            own = self.architecture_training_for(set_name, arch)
            if own:
                merged.update(own)
                where = f"sets.{set_name}.architectures.{arch}"
        over = {k: v for k, v in merged.items() if k in _TRAINING_FIELDS}
        try:
            return dataclasses.replace(self.training, **over)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None

    def architecture_training_for(self, set_name: str, arch: str) -> dict[str, Any]:
        """The training keys of ``[sets.NAME.architectures.ARCH]`` (aliases renamed: ``steps`` is
        ``max_steps``); empty when it has none."""
        return self._architecture_table(set_name, arch)[1]

    def _set_arch_table(self, set_name: str, arch: str) -> dict[str, Any]:
        """``[sets.NAME.architectures.ARCH]`` as written (empty when absent)."""
        return self.set_overrides.get(set_name, {}).get("architectures", {}).get(arch, {})

    def _architecture_table(self, set_name: str, arch: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """``[sets.NAME.architectures.ARCH]`` split into (architecture parameters, training keys);
        its ``target_l0`` is neither (:meth:`target_l0_for`)."""
        table = self._set_arch_table(set_name, arch)
        training = training_keys(table, f"sets.{set_name}.architectures.{arch}")
        params = {k: v for k, v in table.items()
                  if TRAINING_ALIASES.get(k, k) not in _TRAINING_FIELDS and k != "target_l0"}
        return params, {k: v for k, v in training.items() if k in _TRAINING_FIELDS}

    def target_l0_for(self, set_name: str, arch: str, d_sae: int, target: int | None) -> float | None:
        """The target L0 of one architecture's cells of ``set_name``: ``target_l0`` of
        ``[sets.NAME.architectures.ARCH]`` when given, else the set's ``target`` (``size_for``).

        Only the per-architecture target may be fractional: an SAE whose sparsity is a penalty
        settles at the data's own L0 when it finds the features, and a set's ground truth can hold
        a fractional number of active features per sample (synth-easy: 2.706); a TopK-family
        architecture, whose knob counts latents, refuses a fractional one when its parameters are
        resolved (``architectures.sparsity.apply_target_l0``). A whole number stays an int, so a
        cell's identity does not depend on writing ``3`` or ``3.0``."""
        table = self._set_arch_table(set_name, arch)
        if "target_l0" not in table:
            return target
        value, where = table["target_l0"], f"sets.{set_name}.architectures.{arch}.target_l0"
        if not is_finite_number(value):
            raise ConfigError(f"{where} = {value!r} must be a positive number, e.g. 20 or 2.7")
        if not 0 < value <= int(d_sae):
            raise ConfigError(f"{where} = {value} must be in (0, d_sae] (d_sae {d_sae})")
        return int(value) if float(value).is_integer() else float(value)

    def overridden_by_set(self, set_name: str, recommended: dict[str, Any] | None = None) -> list[str]:
        """One line per recommendation of ``set_name`` (its spec's ``training``) that a value the
        user wrote in ``[run]`` / ``[training]`` replaces (precedence: module docstring). Empty
        when nothing is."""
        rec = training_keys(recommended or {}, f"set {set_name!r} recommendation")
        own = training_keys(self.set_overrides.get(set_name, {}), f"sets.{set_name}")
        notes = []
        for key, value in rec.items():
            if key in own:
                continue
            if key in _TRAINING_FIELDS:
                where, mine = f"training.{key}", getattr(self.training, key)
            elif key == "d_sae":
                given = [k for k in ("d_sae", "expansion") if f"run.{k}" in self.given]
                if not given:
                    continue
                where, mine = f"run.{given[0]}", getattr(self, given[0])
            elif key in _SIZE_KEYS:
                where, mine = f"run.{key}", getattr(self, key)
            else:
                continue
            if where not in self.given or mine == value:
                continue
            notes.append(f"sets.{set_name}: your {where} = {_show(mine)} replaces the set's recommended {key} = "
                         f"{_show(value)} (precedence: set recommendation < [run]/[training] < [sets.{set_name}])")
        return notes

    def size_for(self, set_name: str, d_in: int, recommended: dict[str, Any] | None = None) -> tuple[int, int | None]:
        """``(d_sae, target_l0)`` for a set of width ``d_in``; ConfigError when the target does not
        fit the dictionary or one cohort of this size cannot fit in this machine's memory."""
        rec, own = dict(recommended or {}), self.set_overrides.get(set_name, {})
        if {"run.d_sae", "run.expansion"} & self.given or ("expansion" in own and "d_sae" not in own):
            rec.pop("d_sae", None)  # a size the user wrote wins over the recommended one
            rec.pop("expansion", None)
        if "run.target_l0" in self.given:
            rec.pop("target_l0", None)
        merged = {**rec, **own}
        d_sae = merged.get("d_sae", None if "expansion" in merged else self.d_sae)
        if d_sae is None:
            d_sae = int(merged.get("expansion", self.expansion)) * d_in
        target = merged.get("target_l0", self.target_l0)
        if int(d_sae) <= 0:
            raise ConfigError(f"sets.{set_name}: d_sae = {d_sae} must be positive")
        if target is not None and not 0 < int(target) <= int(d_sae):
            raise ConfigError(f"sets.{set_name}: target_l0 = {target} must be in 1..d_sae ({d_sae})")
        batch = max(self.training_for(set_name, recommended, arch).batch_size for arch in (None, *self.architectures))
        self.check_memory(set_name, int(d_in), int(d_sae), batch)
        return int(d_sae), (int(target) if target is not None else None)

    def check_memory(self, set_name: str, d_in: int, d_sae: int, batch_size: int) -> None:
        """ConfigError when training one cohort of ``set_name`` needs more than this machine's RAM
        (:func:`cohort_bytes`); a size typo (``d_sae = 100000000``) is refused before anything runs."""
        need = cohort_bytes(d_in, d_sae, batch_size, len(self.modes) * len(self.seeds), self.dtype_for(set_name))
        have = physical_memory()
        if have and need > have:
            raise ConfigError(f"sets.{set_name}: d_sae = {d_sae} with d_in = {d_in} needs about {need / 2**30:,.1f} GB to train "
                              f"one cohort ({len(self.modes) * len(self.seeds)} members: weights, gradients, Adam moments, "
                              f"activations of a {batch_size} batch) but this machine has {have / 2**30:,.1f} GB of RAM; "
                              "lower d_sae / expansion, seeds or modes")

    def set_params_for(self, set_name: str) -> dict[str, Any]:
        return dict(self.set_overrides.get(set_name, {}).get("params", {}))

    def architecture_params_for(self, set_name: str, arch: str) -> dict[str, Any]:
        """Architecture hyper-parameters set for this set only (``[sets.NAME.architectures.ARCH]``
        minus its training keys, see :meth:`architecture_training_for`), applied over
        ``[architectures.ARCH]`` (an L1 coefficient that suits unit-scale synthetic data is far
        off for a normalized residual stream)."""
        return self._architecture_table(set_name, arch)[0]

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.pop("given", None)  # how the config was written, not what it is
        return out


_validating_init(RunConfig, "", names={k: v for k, v in _RUN_NAMES.items()} | {
    k: f"run.{k}" for k in ("name", "sets", "architectures", "modes", "seeds", "metrics", "output_dir", "expansion",
                            "d_sae", "target_l0", "device", "dtype")})
_TRAINING_FIELDS = {f.name for f in fields(TrainingConfig)}
_RUN_KEYS = ("name", "sets", "architectures", "modes", "seeds", "metrics", "output_dir", "expansion", "d_sae",
             "target_l0", "device", "dtype")
_TABLES = {"run", "training", "architectures", "modes", "metrics", "sets", "verdict"}


# -- memory --------------------------------------------------------------------------------------
def cohort_bytes(d_in: int, d_sae: int, batch_size: int, members: int, dtype: str = "float32") -> int:
    """Bytes one training cohort needs, roughly: per member the encoder and decoder (``2 * d_in *
    d_sae``) four times (weights, gradients, Adam's two moments) plus ``[batch, d_sae]`` latents
    three times (pre-activations, activations, their gradient). A floor, not a peak: it exists
    to refuse sizes that cannot fit, not to predict use."""
    item = {"float64": 8}.get(dtype, 4)  # bfloat16 cohorts keep float32 optimizer state
    per_member = 8 * d_in * d_sae + 3 * batch_size * d_sae
    return int(members) * per_member * item


def physical_memory() -> int:
    """Bytes of physical RAM (0 when the platform does not say)."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 0


# -- reading TOML --------------------------------------------------------------------------------
def _check_depth(data: Any, source: str) -> None:
    """ConfigError when tables / arrays nest deeper than MAX_DEPTH (iterative: no recursion)."""
    stack = [(data, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ConfigError(f"{source}: tables or arrays nested deeper than {MAX_DEPTH} levels; a run config needs at most 4")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)


def from_dict(data: dict[str, Any], source: str = "<dict>") -> RunConfig:
    """Validate a parsed TOML document into a RunConfig."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a run config is a TOML document of tables, not {type(data).__name__}")
    _check_depth(data, source)
    unknown = set(data) - _TABLES
    if unknown:
        raise ConfigError(f"{source}: unknown table(s) {sorted(unknown)}; allowed: {sorted(_TABLES)}")
    if "run" not in data or not isinstance(data["run"], dict):
        raise ConfigError(f"{source}: missing [run] table; see `saebench run --help` for the layout")
    run = dict(data["run"])
    unknown = set(run) - set(_RUN_KEYS)
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) in [run]: {sorted(unknown)}; allowed: {sorted(_RUN_KEYS)}")
    for key in ("sets", "architectures", "modes"):
        if key not in run:
            raise ConfigError(f"{source}: run.{key} is missing; list the {key} to run")
    for key in ("sets", "architectures", "modes", "seeds") + (("metrics",) if run.get("metrics") != "all" else ()):
        if key in run and not isinstance(run[key], list):  # a bare string would pass as a sequence of characters
            raise ConfigError(f"run.{key} = {_show(run[key])}: must be a list, e.g. {key} = "
                              + ("[0, 1, 2]" if key == "seeds" else '["a", "b"]'))
    kwargs: dict[str, Any] = {"source": source, "name": run.pop("name", Path(source).stem)}
    if run.get("metrics") == "all":
        run["metrics"] = None
    kwargs.update(run)
    given = {f"run.{k}" for k in run}

    for table, target in (("architectures", "architecture_params"), ("modes", "mode_params"),
                          ("metrics", "metric_params"), ("sets", "set_overrides")):
        value = data.get(table, {})
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: [{table}.NAME] tables must hold key = value pairs per name")
        for key, item in value.items():
            if not isinstance(item, dict):
                raise ConfigError(f"{table}.{key} = {_show(item)}: must be a [{table}.{key}] table of key = value pairs")
        kwargs[target] = value

    for table, cls in (("training", TrainingConfig), ("verdict", VerdictConfig)):
        value = data.get(table, {})
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: [{table}] must be a table of key = value pairs")
        if table == "verdict" and "n_sigma" in value:
            raise ConfigError(f"{source}: verdict.n_sigma was retired (the verdict rule now uses t-intervals); "
                              "remove it and set verdict.confidence instead, e.g. 0.95 (docs/verdict-rule.md)")
        allowed = {f.name for f in fields(cls)} | (set(TRAINING_ALIASES) if table == "training" else set())
        unknown = set(value) - allowed
        if unknown:
            raise ConfigError(f"{source}: unknown key(s) in [{table}]: {sorted(unknown)}; allowed: {sorted(allowed)}")
        if table == "training":
            training_keys(value, f"{source}: [training]")  # both steps and max_steps: refused
            given |= {f"training.{TRAINING_ALIASES.get(k, k)}" for k in value}
        kwargs[table] = cls(**value)  # steps= is read as max_steps, errors name it
    kwargs["given"] = frozenset(given)
    return RunConfig(**kwargs)


def parse_toml(raw: bytes, source: str) -> dict[str, Any]:
    """TOML bytes -> dict; ConfigError (one line) for bad encoding, syntax or nesting."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{source}: not UTF-8 text (byte {exc.start}: {raw[exc.start:exc.start + 1]!r}); "
                          "save the config as UTF-8") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: malformed TOML ({exc}); fix the syntax at that line") from None
    except RecursionError:
        raise ConfigError(f"{source}: tables or arrays nested too deeply; a run config needs at most 4 levels") from None


def load(path: str | Path) -> RunConfig:
    """Read and validate a TOML run configuration file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist; pass an existing TOML file to --config")
    if path.stat().st_size > 10 * 2**20:
        raise ConfigError(f"{path}: {path.stat().st_size:,} bytes is not a run config (at most 10 MB); check the path")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"config file {str(path)!r} cannot be read ({exc.strerror}); check its permissions") from None
    return from_dict(parse_toml(raw, str(path)), source=str(path))


def embedded(name: str = "default") -> RunConfig:
    """One of the suites shipped inside the package (``EMBEDDED_SUITES``)."""
    if name not in EMBEDDED_SUITES:
        raise ConfigError(f"unknown embedded suite {name!r}; choose one of {', '.join(EMBEDDED_SUITES)}")
    text = resources.files("saebench_sanity").joinpath("suites", f"{name}.toml").read_text(encoding="utf-8")
    return from_dict(tomllib.loads(text), source=f"embedded:{name}")


# -- spec parameters -----------------------------------------------------------------------------
#: leading factory arguments that are not parameters, per kind: a count or names
_NOT_PARAMS: dict[str, int | tuple[str, ...]] = {"metric": 1, "architecture": ("d_in", "d_sae", "seed")}


def _strict(ann: Any) -> Any:
    """``ann`` with its scalar types made strict (``"x"`` is not a float, ``true`` is not an int);
    containers stay lax (a TOML array is a list where the factory says tuple / Sequence)."""
    if ann is bool:
        return StrictBool
    if ann is int:
        return StrictInt
    if ann is float:
        return _number()
    if ann is str:
        return StrictStr
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is None or not args:
        return ann
    if origin is Annotated:
        return ann
    if origin in (Union, getattr(__import__("types"), "UnionType", Union)):
        return Union[tuple(_strict(a) for a in args)]  # type: ignore[return-value]
    if origin in (list, tuple, set, frozenset, dict, Sequence, Mapping):
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return tuple[_strict(args[0]), ...]  # type: ignore[misc]
        try:
            return origin[tuple(_strict(a) for a in args)]
        except TypeError:
            return ann
    return ann


def _type_of(default: Any) -> Any:
    """A strict type for a parameter known only by its default value."""
    if isinstance(default, bool):
        return StrictBool
    if isinstance(default, int):
        return StrictInt
    if isinstance(default, float):
        return _number()
    if isinstance(default, str):
        return StrictStr
    if isinstance(default, (list, tuple)):
        return Union[list, tuple]
    if isinstance(default, dict):
        return dict
    return Any


@lru_cache(maxsize=256)
def _inferred_model(kind: str, name: str, factory: Any, defaults_json: str) -> tuple[type[BaseModel], bool]:
    """(model, open) for a spec without a declared ``params_model``: typed from the factory's
    signature (annotations, strict scalars) and the spec's default values; ``open`` when the
    factory takes ``**kwargs`` (unknown keys are then left to the factory)."""
    from saebench_sanity.spec import resolve_ref

    defaults = json.loads(defaults_json)
    fields_: dict[str, Any] = {}
    open_ = True
    try:
        fn = resolve_ref(factory, what=f"{kind} {name!r}")
        target = fn.__init__ if inspect.isclass(fn) else fn
        sig = inspect.signature(fn)
        try:
            hints = typing.get_type_hints(target)
        except Exception:  # noqa: BLE001 - unresolvable annotations: fall back to default values
            hints = {}
        open_ = False
        skip = _NOT_PARAMS.get(kind, ())
        for i, (pname, p) in enumerate(sig.parameters.items()):
            if i < skip if isinstance(skip, int) else pname in skip:
                continue
            if p.kind is p.VAR_KEYWORD:
                open_ = True
                continue
            if p.kind is p.VAR_POSITIONAL:
                continue
            default = defaults.get(pname, p.default)
            ann = _strict(hints[pname]) if pname in hints else (_type_of(default) if default is not p.empty else Any)
            fields_[pname] = (ann, ... if default is p.empty else default)
    except Exception:  # noqa: BLE001 - a factory that cannot be inspected is checked when it is used
        open_ = True
    for pname, default in defaults.items():
        fields_.setdefault(pname, (_type_of(default), default))
    model = create_model(f"{kind}:{name}", __config__=ConfigDict(extra="allow" if open_ else "forbid",
                                                                  arbitrary_types_allowed=True), **fields_)
    return model, open_


def params_model(spec: Any) -> type[BaseModel]:
    """The pydantic model of ``spec``'s parameters: the spec's own ``params_model`` (a BaseModel
    class, for bounds and documentation) when it declares one, else one inferred from its
    factory's signature and default ``params``."""
    declared = getattr(spec, "params_model", None)
    if isinstance(declared, type) and issubclass(declared, BaseModel):
        return declared
    defaults = json.dumps(getattr(spec, "params", {}) or {}, sort_keys=True, default=repr)
    factory = spec.factory
    try:
        return _inferred_model(spec.kind, spec.name, factory, defaults)[0]
    except TypeError:  # an unhashable factory: no cache
        return _inferred_model.__wrapped__(spec.kind, spec.name, factory, defaults)[0]


def check_params(spec: Any, given: Mapping[str, Any], where: str) -> None:
    """ConfigError naming ``where.KEY`` when a parameter the user gave (``given``) has the wrong
    type, is out of bounds or is unknown to ``spec``. Problems with the spec's own defaults are
    the plugin's, reported when it is used."""
    if not given:
        return
    model = params_model(spec)
    merged = {**(getattr(spec, "params", {}) or {}), **given}
    try:
        model.model_validate(merged)
    except ValidationError as exc:
        mine = [dict(e) for e in exc.errors() if e.get("loc") and e["loc"][0] in given and e["type"] != "missing"]
        if mine:
            raise one_line(mine[0], where + ".", model.model_fields, given) from None


def check_names(cfg: RunConfig, registry: Any) -> None:
    """Raise UnknownNameError for any name in ``cfg`` that no plugin registered, and ConfigError
    for any parameter the config gives a spec that its parameter model refuses (before anything
    is built or trained)."""
    for kind, names in (("activation_set", cfg.sets), ("architecture", cfg.architectures),
                        ("training_mode", cfg.modes), ("metric", cfg.metrics or ())):
        for name in names:
            registry.get(kind, name)
    for kind, table, label in (("architecture", cfg.architecture_params, "architectures"),
                               ("training_mode", cfg.mode_params, "modes"),
                               ("metric", cfg.metric_params, "metrics")):
        for name, params in table.items():
            check_params(registry.get(kind, name), params, f"{label}.{name}")
    for set_name, over in cfg.set_overrides.items():
        check_params(registry.get("activation_set", set_name), over.get("params", {}), f"sets.{set_name}.params")
        for arch, params in over.get("architectures", {}).items():
            spec = registry.get("architecture", arch)
            where = f"sets.{set_name}.architectures.{arch}"
            clash = sorted(k for k in params if TRAINING_ALIASES.get(k, k) in _TRAINING_FIELDS
                           and k in (getattr(spec, "params", {}) or {}))
            if clash:
                raise ConfigError(f"{where}.{clash[0]}: architecture {arch!r} has a parameter of that name, so it cannot "
                                  f"also be a training key here; set it under [architectures.{arch}] or rename the parameter")
            check_params(spec, cfg.architecture_params_for(set_name, arch), where)
            cfg.training_for(set_name, getattr(registry.get("activation_set", set_name), "training", None), arch)
            if "target_l0" in params:  # its type, and whether the architecture can take it (before any set is built)
                from saebench_sanity.harness.plan import arch_sparsity

                arch_sparsity(cfg, spec, set_name, MAX_D_SAE, None)
    for mode in cfg.modes:  # a mode validates its parameters when built (cheap: no tensors yet)
        spec = registry.get("training_mode", mode)
        params = cfg.mode_params.get(mode, {})
        if params:
            try:
                spec.build(**params)
            except ConfigError as exc:
                raise ConfigError(f"modes.{mode}: {exc}") from None


# -- docs/configuration.md -------------------------------------------------------------------------
_DOC_DEFAULTS = {"run.name": "the config file's name", "run.metrics": '`"all"`'}


def _doc_rows(cls: Any, prefix: str, source: Any = None) -> list[str]:
    comments = _field_comments(source or cls)
    infos = cls.__pydantic_fields__ if hasattr(cls, "__pydantic_fields__") else cls.model_fields
    rows = []
    for name, info in infos.items():
        if name in ("source", "given", "training", "verdict", "architecture_params", "mode_params", "metric_params",
                    "set_overrides"):
            continue
        default = info.default
        if default is dataclasses.MISSING or type(default).__name__ == "PydanticUndefinedType":
            default_text = "required" if info.default_factory is None else "(see below)"
        else:
            default_text = "omitted" if default is None else f"`{_show(default)}`"
        default_text = _DOC_DEFAULTS.get(prefix + name, default_text)
        rows.append(f"| `{prefix}{name}` | {_allowed_text(info)} | {default_text} | {comments.get(name, '')} |")
    return rows


def _field_comments(cls: Any) -> dict[str, str]:
    """``#:`` comments written above each field (the source is the documentation)."""
    try:
        lines = inspect.getsource(cls).splitlines()
    except (OSError, TypeError):
        return {}
    out, pending = {}, []
    for line in lines:
        text = line.strip()
        if text.startswith("#:"):
            pending.append(text[2:].strip())
        elif ":" in text and not text.startswith(("#", "def ", "@", "\"")) and pending:
            out[text.split(":")[0].strip()] = " ".join(pending).replace("|", "\\|")
            pending = []
        elif not text.startswith("#"):
            pending = []
    return out


def config_doc_tables() -> str:
    """The key tables of docs/configuration.md, generated from the models above."""
    head = "| key | allowed | default | meaning |\n|---|---|---|---|\n"
    parts = ["### `[run]`\n\n" + head + "\n".join(_doc_rows(RunConfig, "run.")),
             "### `[training]`\n\n" + head + "\n".join(_doc_rows(TrainingConfig, "training.")),
             "### `[sets.NAME]`\n\nEvery `[training]` key, plus:\n\n" + head
             + "\n".join(r for r in _doc_rows(SetTable, "sets.NAME.", _SetTableBase) if r.split("`")[1].split(".")[-1] not in _TRAINING_FIELDS),
             "### `[verdict]`\n\n" + head + "\n".join(_doc_rows(VerdictConfig, "verdict."))]
    return "\n\n".join(parts) + "\n"


if __name__ == "__main__":  # pragma: no cover - python -m saebench_sanity.config --doc
    if sys.argv[1:] == ["--doc"]:
        sys.stdout.write(config_doc_tables())
