"""Typed result records: what ``results/<key>.json`` holds, with a schema version.

One record per cell (set, architecture, mode, seed)::

    ResultRecord
      schema_version   0 (legacy: written before this field existed) or SCHEMA_VERSION
      key, label       the cell's training key (``harness.plan.Cell.key``) and its readable label
      cell             CellIdentity: everything that decided what trained
      status, error    "ok" | "failed" (training failed: ``error`` says why, ``training`` is null)
      training         TrainingSummary: steps, seconds, convergence, dead fraction, L0 while training
      metrics          metric key ("name:<12 hex>") -> MetricEntry (status ok | skipped | error)

Records written before ``schema_version`` existed (every committed record under
``leaderboards/results/``) are read as version 0: they have the same fields, so they validate
against the same models and are never rewritten just to add the number (``ResultStore`` writes a
record only when its content changes). A record whose ``schema_version`` is newer than
:data:`SCHEMA_VERSION` was written by a newer saebench-sanity and is refused with one line.

The models accept extra fields (``extra="allow"``): a record may carry more than this module
names (a plugin's details, fields a later minor version adds) without being damaged; what is
named is type-checked, because the harness and the leaderboard index into it.

Validation uses pydantic v2 (already installed with sae-lens) instead of hand-written checks.
"""

from __future__ import annotations

from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError

#: Version of the record layout this code writes. 0 = legacy (no ``schema_version`` field).
SCHEMA_VERSION = 1
LEGACY_SCHEMA_VERSION = 0
SCHEMA_FIELD = "schema_version"


class _Open(BaseModel):
    # strict: a seed of "1" or 1.5, a score of "0.5" or true is damage, not something to coerce
    model_config = ConfigDict(extra="allow", strict=True)


class CellIdentity(_Open):
    """What determined a cell's trained SAE (``harness.plan.Cell.identity``)."""

    set: str
    arch: str
    mode: str
    seed: int
    d_sae: int
    target_l0: float | None = None
    arch_params: dict[str, Any] = Field(default_factory=dict)
    mode_params: dict[str, Any] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict)
    set_manifest_hash: str
    is_baseline: bool = False
    trains: bool = True
    #: training precision; records from before dtypes were selectable trained in float32
    dtype: str = "float32"
    #: distribution -> version of the non-built-in plugins behind the set, architecture and mode
    plugins: dict[str, str] = Field(default_factory=dict)


class TrainingSummary(_Open):
    """How a cell trained (units: steps, seconds; ``l0_train``: mean active latents per sample
    over the last training interval; ``dead_fraction``: fraction of latents)."""

    steps: int | None = None
    seconds: float | None = None
    converged: bool | None = None
    convergence: dict[str, Any] | None = None
    dead_fraction: float | None = None
    l0_train: float | None = None
    final_loss: float | None = None
    device: str | None = None
    dtype: str | None = None
    #: torch threads it trained on (records since a float32 run rounded differently at 1 and 2)
    threads: int | None = None
    #: CPU training only: ``cpu`` (processor), ``aten`` (torch's vector capability) and the kernel
    #: settings of the environment that were set (``harness.executor.cpu_kernels``)
    cpu_kernels: dict[str, str] | None = None
    data_sha256: str | None = None


class MetricEntry(_Open):
    """One metric's result on one cell. ``scores`` holds floats (null where a score was not
    finite); ``score_info`` the ``ScoreInfo`` of each score as declared when it was computed."""

    name: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    status: Literal["ok", "skipped", "error"]
    scores: dict[str, float | None] | None = None
    score_info: dict[str, dict[str, Any]] | None = None
    score_order: list[str] | None = None
    details: Any = None
    reason: str | None = None
    error: str | None = None
    transient: bool | None = None
    seconds: float | None = None
    device: str | None = None
    dtype: str | None = None
    data_sha256: str | None = None


class ResultRecord(_Open):
    """The stored result of one cell (see the module docstring)."""

    schema_version: int = LEGACY_SCHEMA_VERSION
    key: str
    label: str | None = None
    cell: CellIdentity
    status: Literal["ok", "failed"]
    error: str | None = None
    training: TrainingSummary | None = None
    metrics: dict[str, MetricEntry] = Field(default_factory=dict)

    @property
    def is_legacy(self) -> bool:
        return self.schema_version == LEGACY_SCHEMA_VERSION


_EXPECTED = {"int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
             "float_type": "a number", "float_parsing": "a number", "string_type": "a string",
             "bool_type": "true or false", "bool_parsing": "true or false", "dict_type": "an object",
             "model_type": "an object", "model_attributes_type": "an object", "list_type": "a list"}


def _describe(err: Mapping[str, Any]) -> str:
    """One pydantic error as ``'cell.seed' is 'x', not an integer`` (scores: ``score KEY/NAME``)."""
    loc = [str(p) for p in err.get("loc", ())]
    if len(loc) == 4 and loc[0] == "metrics" and loc[2] == "scores":
        where = f"score {loc[1]}/{loc[3]}"
    else:
        where = repr(".".join(loc) or "(record)")
    if err.get("type") == "missing":
        return f"{where} is missing"
    if err.get("type") == "literal_error":
        return f"{where} is {str(err.get('input'))[:40]!r}, not {err.get('ctx', {}).get('expected', 'an allowed value')}"
    expected = _EXPECTED.get(str(err.get("type")))
    if expected is None:
        return f"{where}: {err.get('msg', 'invalid')}"
    value = err.get("input")
    shown = repr(value)[:40] if not isinstance(value, (dict, list)) else f"a JSON {'object' if isinstance(value, dict) else 'list'}"
    return f"{where} is {shown}, not {expected}"


def record_problem(data: Any, *, complete: bool = False) -> str | None:
    """Why ``data`` (a parsed record without its seal fields) is not a result record, in one
    line, or None when it is one (of this or an older schema).

    ``complete=False`` (what the store's read path uses) checks the type of every field that is
    present and lets absent ones pass: a partial record is readable, and a reader that needs a
    field says so itself (the leaderboard names a record without ``cell.mode``). ``complete=True``
    also requires every field the models require (``parse_record``, ``saebench export``)."""
    if not isinstance(data, dict):
        return f"holds a JSON {type(data).__name__}, not an object"
    version = data.get(SCHEMA_FIELD, LEGACY_SCHEMA_VERSION)
    if isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION:
        return (f"has schema_version {version}, newer than this saebench-sanity reads ({SCHEMA_VERSION}); "
                "upgrade saebench-sanity to read it")
    try:
        ResultRecord.model_validate(data)
    except ValidationError as exc:
        errors = [e for e in exc.errors() if complete or e.get("type") != "missing"]
        if errors:
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            return _describe(errors[0]) + more
    return None


def parse_record(data: Any) -> ResultRecord:
    """``data`` as a :class:`ResultRecord`; ``DataError`` (one line) when it is not one."""
    from saebench_sanity.errors import DataError

    problem = record_problem(data, complete=True)
    if problem is not None:
        raise DataError(f"not a result record: {problem}")
    return ResultRecord.model_validate(data)


