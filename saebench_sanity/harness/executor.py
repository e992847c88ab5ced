"""Run a plan: train each cell once, save it in SAELens format, score it, store every result.

``run_cohort`` / ``run_cell`` are what every executor runs for one cohort (``saebench_sanity.executors``:
``local`` runs them in this process or a process pool, ``ray`` in Ray tasks); ``execute`` hands the
plan's cohorts to the chosen executor.

* A cell whose checkpoint is complete is not retrained; a metric already recorded (``ok`` or
  ``skipped``) for that cell with the same parameters is not recomputed. ``force`` redoes both.
* A cell that raises is recorded as ``failed`` with a one-line error and the run goes on; a
  metric that raises is recorded as ``error`` for that cell.
* A metric whose needs the set cannot meet is recorded as ``skipped`` with the reason (the
  declared ``needs``, or ``NotApplicable`` raised by the metric); so is a metric whose judge
  could not answer (``JudgeError``: endpoint down, deadline, budget), marked
  ``transient`` when a later run may succeed, and then retried by the next run.
* Metrics always score the *inference* SAE loaded back from the checkpoint folder, i.e. exactly
  what a user would load with ``sae_lens.SAE.load_from_disk``.
* KeyboardInterrupt propagates; everything finished before it is already on disk.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass, field
from typing import AbstractSet, Any, Callable, Protocol, Union

from saebench_sanity.devices import KERNEL_ENV, cpu_kernels  # noqa: F401 - KERNEL_ENV re-exported
from saebench_sanity.errors import SaebenchError
from saebench_sanity.harness.plan import Cell, MetricPlan, Plan, code_version
from saebench_sanity.harness.store import ResultStore
from saebench_sanity.judges.base import JudgeError
from saebench_sanity.metrics.base import NotApplicable

logger = logging.getLogger(__name__)

OK, FAILED, SKIPPED, ERROR = "ok", "failed", "skipped", "error"


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message, prefixed by its type unless it is ours."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, SaebenchError):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass
class CellOutcome:
    """What happened to one cell in this run (the store holds the durable record)."""

    key: str
    label: str
    status: str  # ok | failed
    trained_now: bool = False
    train_seconds: float = 0.0
    converged: bool | None = None
    error: str | None = None
    #: "input" when the failure was a SaebenchError (bad data/config), "bug" otherwise
    error_kind: str | None = None
    #: metric name -> (status, seconds this run or recorded, cached?)
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)


class Reporter(Protocol):  # pragma: no cover - structural type
    def start(self, plan: Plan) -> None: ...
    def cell_start(self, cell: Cell, index: int) -> None: ...
    def train_progress(self, cell: Cell, step: int, total: int, loss: float) -> None: ...
    def phase(self, cell: Cell, text: str) -> None: ...
    def cell_done(self, cell: Cell, outcome: CellOutcome) -> None: ...
    def finish(self) -> None: ...


class NullReporter:
    def start(self, plan: Plan) -> None:
        pass

    def cell_start(self, cell: Cell, index: int) -> None:
        pass

    def train_progress(self, cell: Cell, step: int, total: int, loss: float) -> None:
        pass

    def phase(self, cell: Cell, text: str) -> None:
        pass

    def cell_done(self, cell: Cell, outcome: CellOutcome) -> None:
        pass

    def finish(self) -> None:
        pass


def score_infos(registry: Any, name: str) -> dict[str, dict[str, Any]]:
    spec = registry.get("metric", name)
    return {s: dataclasses.asdict(info) for s, info in spec.scores.items()}


def _training_summary(info: dict[str, Any]) -> dict[str, Any]:
    keep = ("steps", "seconds", "converged", "convergence", "dead_fraction", "l0_train", "final_loss")
    # where, in what precision, on how many torch threads and on which bytes of a stored set it
    # trained: recorded since device selection (threads: since a float32 run was found to round
    # differently at 1 and 2 threads; data: since cells keep their key across builds of a set);
    # older checkpoints lack them, and leaving them out keeps their cached records unchanged;
    # cpu_kernels since pinning MKL's code branch was measured to change float64 results
    return {**{k: info.get(k) for k in keep},
            **{k: info[k] for k in ("device", "dtype", "threads", "cpu_kernels", "data_sha256") if k in info}}


def data_sha256(aset: Any) -> dict[str, str]:
    """``{"data_sha256": ...}``: the bytes a stored set serves (``content_sha256``: a real set's
    shard hashes), for a record to say which build of the set its numbers came from; empty for
    sets that are generated (the same bits on any CPU: tests/test_synthetic_sets.py)."""
    value = getattr(aset, "content_sha256", None)
    return {"data_sha256": str(value)} if value else {}


def _train_info(cell: Cell, result: Any, device: str = "cpu", aset: Any = None) -> dict[str, Any]:
    """The checkpoint's ``train.json`` for one trained cell (``result``: a ``TrainResult``;
    ``device``: the resolved device it trained on; ``aset``: the set it trained on)."""
    import torch

    loss_curve = [[int(s), float(v)] for s, v in result.loss_curve]
    return {
        "key": cell.key, "cell": cell.identity(), "code": code_version(), "device": str(device), "dtype": cell.dtype,
        "threads": int(torch.get_num_threads()), **({"cpu_kernels": cpu_kernels()} if str(device) == "cpu" else {}),
        **data_sha256(aset),
        "steps": int(result.steps), "seconds": float(result.seconds), "converged": bool(result.converged),
        "convergence": dict(result.convergence), "dead_fraction": float(result.dead_fraction),
        "l0_train": float(result.l0_train), "final_loss": loss_curve[-1][1] if loss_curve else None,
        "loss_curve": loss_curve, "mse_curve": [[int(s), float(v)] for s, v in result.mse_curve],
    }


#: The fields of a cell's identity (``Cell.identity()``, a record's ``"cell"``) its cohort shares.
COHORT_FIELDS = ("set", "set_manifest_hash", "arch", "arch_params", "d_sae", "target_l0", "training", "dtype", "seed")


def cohort_key(identity: dict[str, Any]) -> str:
    """The cohort of a cell, from its identity (``Cell.identity()``, or a stored record's ``cell``)."""
    from saebench_sanity.activations.base import stable_hash

    return stable_hash({name: identity.get(name) for name in COHORT_FIELDS})


def cohorts(cells: list[Cell]) -> list[list[Cell]]:
    """The plan's cells grouped into cohorts, in plan order of their first cell.

    A cohort is every cell that shares a set, an architecture (with its resolved params), a size,
    a training config, a dtype and a seed (``COHORT_FIELDS``): the trained SAE and its baselines of
    one seed, which train on the identical batches (``train_batches(batch_size, seed)``). Cells
    that take no optimizer step (``trains = False``, e.g. ``untrained``) join their cohort too:
    they cost no training and are scored like the others."""
    groups: dict[str, list[Cell]] = {}
    for cell in cells:
        groups.setdefault(cohort_key(cell.identity()), []).append(cell)
    return list(groups.values())


#: The cost model behind ``longest_first``: a member step costs a fixed overhead plus its
#: encoder/decoder multiply-adds (``batch x d_in x d_sae``) at an effective single-thread rate; a
#: metric that needs a language model costs a fixed time per cell. Rough fits on these 2-core
#: machines (a 4-member mini cohort step ~1.5 ms per member, a real-set 576 x 1152 step ~25 ms, a
#: model-based metric 3-11 s per cell on the real set): only the *order* they give matters.
STEP_OVERHEAD_S = 1e-3
MACS_PER_S = 7e9
MODEL_METRIC_S = 8.0


def estimate_seconds(to_train: list[dict[str, Any]], d_in: int | None, model_metrics: int, n_cells: int) -> float:
    """The cost model of ``longest_first``, in seconds at one thread: ``to_train`` are the
    identities (``Cell.identity()``, or a stored record's ``cell``) of the members that still have
    to train, each counted at its ``max_steps`` (early stop only shortens it); ``d_in`` None when
    unknown (taken as half of ``d_sae``); ``model_metrics`` metrics that run a language model on
    each of the cohort's ``n_cells`` cells."""
    train = 0.0
    for ident in to_train:
        d_sae, training = int(ident["d_sae"]), ident["training"]
        width = d_in or max(1, d_sae // 2)
        train += int(training["max_steps"]) * (STEP_OVERHEAD_S + int(training["batch_size"]) * width * d_sae / MACS_PER_S)
    return train + model_metrics * MODEL_METRIC_S * n_cells


#: an executor's ``force``: True redoes every cell, False none, a set of cell keys only those
#: cells (``saebench check`` redoes its cached records of another store build this way, in the
#: same pass that reads the rest)
Force = Union[bool, AbstractSet[str]]


def forced(force: Force, key: str) -> bool:
    """True when ``force`` says cell ``key`` is redone from scratch (trained and scored again)."""
    return key in force if isinstance(force, AbstractSet) else bool(force)


def cohort_estimate(group: list[Cell], plan: Plan, store: ResultStore | None = None, force: Force = False) -> float:
    """``estimate_seconds`` of what ``run_cohort`` will spend on ``group``: its members without a
    current checkpoint, and the metrics that need a model when the set provides one."""
    from saebench_sanity.activations.base import NEED_MODEL

    aset = plan.sets.get(group[0].set_name)
    to_train = [c.identity() for c in group
                if c.trains and (store is None or forced(force, c.key) or not has_current_checkpoint(store, c.key, c.training))]
    provides = set(getattr(aset, "provides", ()) or ())
    model_metrics = sum(1 for mp in plan.metrics if NEED_MODEL in mp.needs and not (set(mp.needs) - provides))
    return estimate_seconds(to_train, getattr(aset, "d_in", None), model_metrics, len(group))


def longest_first(groups: list[list[Cell]], plan: Plan, store: ResultStore | None = None,
                  force: Force = False) -> list[list[Cell]]:
    """``groups`` in the order a pool of workers should start them: the longest estimated
    (``cohort_estimate``) first, ties in plan order. Handing the long cohorts out first keeps
    one worker from starting a long cohort (a real-set ReLU or Gated cohort at its 10,000-step
    maximum) when the others are about to run out of work (longest-processing-time-first list
    scheduling). Results are still reported and returned in plan order."""
    costs = [cohort_estimate(g, plan, store, force) for g in groups]
    return [groups[unit[0]] for unit in unit_order([None] * len(groups), costs)]


#: cohorts join a stream unit only while that leaves at least this many units per worker:
#: coarser units would leave workers idle at the end of the run (list scheduling balances
#: well only with several units per worker)
UNITS_PER_WORKER = 3


def stream_units(groups: list[list[Cell]], plan: Plan, store: ResultStore | None = None, force: Force = False,
                 jobs: int = 1, longest: bool = True) -> list[list[list[Cell]]]:
    """``groups`` (cohorts) as units a worker runs one after the other (``unit_order``: the
    longest estimated unit first, each unit's cohorts longest first; ``longest=False``: plan order).

    A set that replays its training streams (``replays_streams``: the generated sets, whose
    batches cost as much to draw as a small cohort's step) keeps every stream drawn in the
    process (``activations.synthetic.StreamMemo``); the cohorts of every architecture that
    share a (set, seed, batch size) train on that one stream, so they form one unit and the
    stream is drawn once per unit instead of once per cohort. Every other cohort is a unit alone."""
    keys: list[Any] = []
    for g in groups:
        lead = g[0]
        shares = bool(getattr(plan.sets.get(lead.set_name), "replays_streams", False))
        keys.append((lead.set_name, lead.seed, int(lead.training.batch_size)) if shares else None)
    # plan order needs no estimate (it reads the store for every cell)
    costs = [cohort_estimate(g, plan, store, force) for g in groups] if longest else [0.0] * len(groups)
    return [[groups[i] for i in unit] for unit in unit_order(keys, costs, jobs, longest)]


def unit_order(keys: list[Any], costs: list[float], jobs: int = 1, longest: bool = True) -> list[list[int]]:
    """Indices of cohorts grouped into units by ``keys`` (equal keys share a stream; ``None``:
    alone), ordered by summed ``costs``, longest first (ties in index order), each unit's
    cohorts longest first; ``longest=False`` keeps index order. With ``jobs`` > 1 workers and
    fewer than ``UNITS_PER_WORKER`` units per worker every cohort is a unit alone (balance first;
    one worker runs every unit anyway)."""
    units: dict[Any, list[int]] = {}
    for i, key in enumerate(keys):
        units.setdefault(("alone", i) if key is None else ("shared", key), []).append(i)
    members = list(units.values())
    if jobs > 1 and len(members) < UNITS_PER_WORKER * jobs:
        members = [[i] for i in range(len(keys))]
    if longest:
        members = [sorted(m, key=lambda i: (-costs[i], i)) for m in members]
        members.sort(key=lambda m: (-sum(costs[i] for i in m), m[0]))
    return members


def _train_and_save(cells: list[Cell], aset: Any, store: ResultStore, registry: Any, reporter: Any,
                    device: str = "cpu") -> dict[str, dict[str, Any]]:
    """Train the cells of one cohort together, save each as soon as the cohort is done; returns
    ``{cell key: train info}`` of the cells whose checkpoints were written."""
    from saebench_sanity.activations.real import checkpoint_metadata, set_scale
    from saebench_sanity.architectures.checkpoint import save_checkpoint
    from saebench_sanity.training.cohort import train_cells

    lead = cells[0]
    results = train_cells(
        [(registry.get("architecture", c.arch), registry.get("training_mode", c.mode), dict(c.mode_params), c.seed)
         for c in cells],
        aset, d_sae=lead.d_sae, target_l0=lead.target_l0, arch_overrides=dict(lead.arch_overrides),
        training=lead.training, device=device, dtype=lead.dtype,
        progress=lambda i, step, total, loss: reporter.train_progress(cells[i], step, total, loss),
    )
    infos: dict[str, dict[str, Any]] = {}
    for cell, result in zip(cells, results):
        if isinstance(result, BaseException):  # this member failed (diverged); the others are saved
            infos[cell.key] = {"error": result}
            continue
        info = _train_info(cell, result, device, aset)
        reporter.phase(cell, "saving")
        # the set's normalization is folded into the saved weights: checkpoints take raw activations
        # write_checkpoint calls the function at once, so it may read this iteration's cell and result
        store.write_checkpoint(cell.key, lambda path: save_checkpoint(
            result.sae, path, batch_size=cell.training.batch_size, activation_scale=set_scale(aset),
            metadata=checkpoint_metadata(aset, cell.set_name)), info)
        store.log_event({"event": "trained", "key": cell.key, "label": cell.label, "seconds": info["seconds"]})
        infos[cell.key] = info
    return infos


def has_current_checkpoint(store: ResultStore, key: str, training: Any) -> bool:
    """True when ``key`` has an intact checkpoint that the current rule would not train further:
    a checkpoint whose early stop came before the rule's earliest level step (trained by an
    older rule, ``convergence.stopped_too_early``) counts as absent, so its cell is trained again
    (and its record, computed from the replaced checkpoint, becomes stale and is rescored)."""
    if not store.has_checkpoint(key):
        return False
    from saebench_sanity.training.convergence import stopped_too_early

    if stopped_too_early(store.load_train_info(key), training):
        logger.info("%s stopped before the earliest step the current convergence rule allows; trained again", key)
        return False
    return True


def rejudge_convergence(info: dict[str, Any], cell: Cell) -> dict[str, Any]:
    """A stored cell's training info with ``converged``/``convergence`` from the UNDERTRAINED rule
    of the code reading it, applied to the stored curves (``convergence.series``: loss, MSE,
    recovery; records from before it: ``loss_curve`` / ``mse_curve``) up to the recorded end of
    the constant-lr phase: a changed rule re-judges cached cells without retraining them. 0-step
    cells stay converged by definition."""
    if int(info.get("steps") or 0) <= 0 or not info.get("loss_curve"):
        return info
    from saebench_sanity.training.convergence import assess_training

    stored = dict(info.get("convergence") or {})
    series = stored.get("series") or {k: info[f"{k}_curve"] for k in ("loss", "mse") if info.get(f"{k}_curve")}
    converged, convergence = assess_training(series, cell.training, end_step=stored.get("end_step"))
    return {**info, "converged": bool(converged), "convergence": {**stored, **convergence}}


def run_cell(cell: Cell, metrics: list[MetricPlan], aset: Any, eval_acts: Callable[[], Any], store: ResultStore,
             registry: Any, *, force: Force = False, reporter: Any = None,
             trained: dict[str, Any] | None = None, device: str = "cpu", metric_cache: Any = None,
             sae: Any = None, cohort_scores: "CohortScores | None" = None) -> CellOutcome:
    """Train (unless checkpointed), score (unless recorded) and store one cell.

    ``trained``: this cell's train info when its cohort trained it just now (``run_cohort``), or
    ``{"error": exception}`` when its training failed there. ``device``: the resolved device the
    cell trains and is scored on (its checkpoint is loaded there; each metric entry records the
    ``device`` and ``dtype`` it was scored in). ``metric_cache``: the ``MetricCache`` its metrics
    share work through (default: this process's, ``harness.scoring.PROCESS_CACHE``). A metric
    that raises ``NotApplicable`` is recorded as ``skipped`` with its reason. ``sae``: a *provided*
    cell's SAE, already in the set's space (``saebench check``'s user SAE): it is scored as it is,
    nothing trains or loads a checkpoint, and the record's ``training`` is null. ``cohort_scores``:
    this cell's context and the metrics its cohort scored together (``score_cohort``): those are
    stored as they came, not computed again."""
    reporter = reporter or NullReporter()
    loaded = None if forced(force, cell.key) else store.load_result(cell.key)
    record = json.loads(json.dumps(loaded)) if loaded else {}
    record.update({"key": cell.key, "label": cell.label, "cell": cell.identity()})
    record.setdefault("metrics", {})
    out = CellOutcome(key=cell.key, label=cell.label, status=OK)
    info: dict[str, Any] | None = None
    try:
        if sae is not None:  # provided: not trained here
            pass
        elif trained is not None and "error" in trained:
            raise trained["error"]
        elif trained is not None:
            info = trained
            out.trained_now = True
        elif forced(force, cell.key) or not has_current_checkpoint(store, cell.key, cell.training):
            reporter.phase(cell, "training")
            info = _train_and_save([cell], aset, store, registry, reporter, device=device)[cell.key]
            if "error" in info:
                raise info["error"]
            out.trained_now = True
        else:
            info = rejudge_convergence(store.load_train_info(cell.key), cell)
        record.update(status=OK, error=None, training=None if info is None else _training_summary(info))
        if info is not None:
            out.train_seconds = float(info.get("seconds") or 0.0)
            out.converged = bool(info.get("converged"))
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - a failing cell is recorded, the run goes on
        out.status, out.error = FAILED, one_line(exc)
        out.error_kind = "input" if isinstance(exc, SaebenchError) else "bug"
        record.update(status=FAILED, error=out.error, training=None)
        store.write_result(cell.key, record)
        return out
    if record != loaded:  # a fully cached cell is not rewritten
        store.write_result(cell.key, record)

    ctx = None if cohort_scores is None else cohort_scores.ctx
    batch = {} if cohort_scores is None else cohort_scores.results
    for mp in metrics:
        prev = _recorded(record, mp)
        if prev is not None:  # (force starts from an empty record)
            out.metrics[mp.name] = {"status": prev["status"], "seconds": prev.get("seconds", 0.0), "cached": True,
                                    "reason": prev.get("reason")}
            continue
        entry: dict[str, Any] = {"name": mp.name, "params": mp.params}
        missing = _missing_needs(mp, aset)
        if missing:
            entry.update(status=SKIPPED, seconds=0.0,
                         reason=f"needs {', '.join(missing)}; set {cell.set_name!r} provides "
                                f"{', '.join(sorted(aset.provides)) or 'nothing extra'}")
        else:
            if mp.key not in batch:
                reporter.phase(cell, mp.name)
            t0 = time.perf_counter()
            shared = 0.0
            try:
                if ctx is None:
                    ctx = cell_context(cell, aset, eval_acts, store, registry, device=device, metric_cache=metric_cache,
                                       sae=sae)
                entry.update(device=ctx.device, dtype=ctx.dtype, **data_sha256(aset))
                if mp.key in batch:  # scored with its cohort: this cell's share of that call's seconds
                    item, shared = batch[mp.key]
                    entry["batched"] = True
                    if isinstance(item, BaseException):
                        raise item
                    result = item
                else:
                    result = registry.get("metric", mp.name).evaluate(ctx, **mp.params)
                info_by_score = score_infos(registry, mp.name)
                unknown = set(result.scores) - set(info_by_score)
                if unknown:
                    raise SaebenchError(f"metric {mp.name!r} returned undeclared score(s) {sorted(unknown)}; declare them in its MetricSpec.scores")
                entry.update(status=OK, scores={k: float(v) for k, v in result.scores.items()}, score_info=info_by_score,
                             score_order=list(info_by_score))
                if result.details is not None:  # e.g. autointerp's judge identity and explanations
                    entry["details"] = json.loads(json.dumps(result.details, default=str))
            except KeyboardInterrupt:
                raise
            except JudgeError as exc:  # the judge could not answer: a recorded skip, as judges.base documents
                entry.update(status=SKIPPED, reason=one_line(exc), transient=bool(getattr(exc, "transient", True)))
            except NotApplicable as exc:  # the set (or its model) cannot support this metric: a kept skip
                entry.update(status=SKIPPED, reason=one_line(exc))
            except Exception as exc:  # noqa: BLE001 - recorded per metric, other metrics still run
                entry.update(status=ERROR, error=one_line(exc))
            entry["seconds"] = shared + time.perf_counter() - t0
        record["metrics"][mp.key] = entry
        store.write_result(cell.key, record)
        out.metrics[mp.name] = {"status": entry["status"], "seconds": entry["seconds"], "cached": False,
                                "reason": entry.get("reason")}
    return out


def cell_context(cell: Cell, aset: Any, eval_acts: Callable[[], Any], store: ResultStore, registry: Any, *,
                 device: str = "cpu", metric_cache: Any = None, sae: Any = None) -> Any:
    """The ``MetricContext`` one cell's metrics share: its SAE loaded back from the checkpoint
    folder (or the provided ``sae``) in the set's space, on ``device``."""
    from saebench_sanity.activations.real import checkpoint_in_set_space
    from saebench_sanity.architectures.checkpoint import load_checkpoint
    from saebench_sanity.harness.scoring import metric_context

    # metrics score on the set's served activations; a checkpoint takes raw ones
    scored = sae if sae is not None else checkpoint_in_set_space(
        load_checkpoint(store.checkpoint_dir(cell.key), device=device), aset)
    return metric_context(scored, aset, eval_acts(), registry, device=device, cache=metric_cache)


@dataclass
class CohortScores:
    """One cell's share of its cohort's joint scoring (``score_cohort``): its metric context and,
    per metric key, ``(result or the exception scoring raised, seconds)``."""

    ctx: Any
    results: dict[str, tuple[Any, float]] = field(default_factory=dict)


def _missing_needs(mp: MetricPlan, aset: Any) -> list[str]:
    """What ``mp`` needs that the set does not provide (sorted; empty: it can be scored)."""
    return sorted(set(mp.needs) - set(aset.provides))


def _recorded(record: dict[str, Any] | None, mp: MetricPlan) -> dict[str, Any] | None:
    """``mp``'s stored entry in a cell's ``record`` when it stands (``ok``, or a kept skip), else
    None: the metric is to be computed."""
    prev = (record or {}).get("metrics", {}).get(mp.key)
    return prev if prev is not None and prev.get("status") in (OK, SKIPPED) and not prev.get("transient") else None


def score_cohort(cells: list[Cell], metrics: list[MetricPlan], aset: Any, eval_acts: Callable[[], Any],
                 store: ResultStore, registry: Any, *, force: Force = False, reporter: Any = None,
                 device: str = "cpu", metric_cache: Any = None) -> dict[str, CohortScores]:
    """Score together, per metric whose spec has a ``batch_factory``, the cells of one cohort that
    still need it (``MetricSpec.evaluate_many``: e.g. one batched spliced pass, one batch of judge
    prompts for all of them); ``{cell key: CohortScores}`` for ``run_cell`` to store. Cells are
    taken only when they have a checkpoint; fewer than two such cells leave everything to
    ``run_cell``. A failure of the joint call as a whole is every member's error, as a
    per-cell failure would be."""
    reporter = reporter or NullReporter()
    # metrics the set can feed (a synthetic set's cohorts skip the model metrics without reading anything)
    batched = [mp for mp in metrics if getattr(registry.get("metric", mp.name), "batch_factory", "")
               and not _missing_needs(mp, aset)]
    if not batched:
        return {}
    ready = [c for c in cells if store.has_checkpoint(c.key)]
    records = {c.key: (None if forced(force, c.key) else store.load_result(c.key)) for c in ready}
    out: dict[str, CohortScores] = {}
    for mp in batched:
        todo = [c for c in ready if _recorded(records[c.key], mp) is None]
        if len(todo) < 2:
            continue
        try:
            for c in todo:
                if c.key not in out:
                    out[c.key] = CohortScores(cell_context(c, aset, eval_acts, store, registry, device=device,
                                                           metric_cache=metric_cache))
        except KeyboardInterrupt:
            raise
        except Exception:  # noqa: BLE001 - a checkpoint that does not load: run_cell records that cell's failure
            logger.debug("cohort scoring of %s skipped: a checkpoint did not load", mp.name, exc_info=True)
            continue
        for c in todo:
            reporter.phase(c, f"{mp.name} (cohort of {len(todo)})")
        t0 = time.perf_counter()
        try:
            items = registry.get("metric", mp.name).evaluate_many([out[c.key].ctx for c in todo], **mp.params)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - the joint call failed: each member records it
            items = [exc] * len(todo)
        share = (time.perf_counter() - t0) / len(todo)
        for c, item in zip(todo, items):
            out[c.key].results[mp.key] = (item, share)
    return out


class _SetCache:
    """Activation sets and their eval tensors, built once per process."""

    def __init__(self, registry: Any, cfg: Any, built: dict[str, Any] | None = None) -> None:
        self.registry, self.cfg = registry, cfg
        self.sets: dict[str, Any] = dict(built or {})
        self.evals: dict[str, Any] = {}

    def get(self, name: str) -> Any:
        if name not in self.sets:
            self.sets[name] = self.registry.get("activation_set", name).build(**self.cfg.set_params_for(name))
        return self.sets[name]

    def eval_acts(self, name: str) -> Callable[[], Any]:
        def get() -> Any:
            if name not in self.evals:
                self.evals[name] = self.get(name).eval_activations()
            return self.evals[name]
        return get


def write_run_manifest(plan: Plan, store: ResultStore) -> None:
    store.write_run({
        "name": plan.config.name, "source": plan.config.source, "config": plan.config.to_dict(),
        "cell_keys": plan.cell_keys, "metric_keys": plan.metric_keys, "code": code_version(),
    })


def run_cohort(cells: list[Cell], metrics: list[MetricPlan], aset: Any, eval_acts: Callable[[], Any],
               store: ResultStore, registry: Any, *, force: Force = False, reporter: Any = None,
               device: str = "cpu", on_done: Callable[[Cell, CellOutcome], None] | None = None) -> list[CellOutcome]:
    """Train the cells of one cohort (``cohorts``) that have no checkpoint yet as one program,
    score together what the cohort's metrics can score jointly (``score_cohort``), then score
    the rest and store each cell (``run_cell``). A cell whose training failed is recorded as failed;
    the others of its cohort go on. ``on_done(cell, outcome)`` is called as each cell is stored."""
    from saebench_sanity.devices import resolve_device

    reporter = reporter or NullReporter()
    device = resolve_device(device, "run.device")  # "auto"/"cuda" -> the device string torch uses here
    todo = [c for c in cells if forced(force, c.key) or not has_current_checkpoint(store, c.key, c.training)]
    infos: dict[str, dict[str, Any]] = {}
    if todo:
        for c in todo:
            reporter.phase(c, "training")
        try:
            infos = _train_and_save(todo, aset, store, registry, reporter, device=device)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - the cohort failed as a whole (e.g. its data): each cell records it
            infos = {c.key: {"error": exc} for c in todo}
    failed = {k for k, info in infos.items() if "error" in info}
    joint = score_cohort([c for c in cells if c.key not in failed], metrics, aset, eval_acts, store, registry,
                         force=force, reporter=reporter, device=device)
    outcomes = []
    for cell in cells:
        outcome = run_cell(cell, metrics, aset, eval_acts, store, registry, force=force,
                           reporter=reporter, trained=infos.get(cell.key), device=device,
                           cohort_scores=joint.pop(cell.key, None))  # popped: its context is freed after the cell
        if on_done is not None:
            on_done(cell, outcome)
        outcomes.append(outcome)
    return outcomes


def execute(plan: Plan, store: ResultStore, registry: Any, *, force: Force = False, reporter: Any = None,
            jobs: int | None = 1, executor: Any = "local", address: str | None = None) -> list[CellOutcome]:
    """Run every cohort of ``plan`` (see module docstring) with ``executor``: a registered
    executor's name (built with ``jobs`` and ``address``, see ``saebench_sanity.executors``) or an
    ``Executor`` instance. Returns this run's outcomes in plan order."""
    reporter = reporter or NullReporter()
    if isinstance(executor, str):
        executor = registry.get("executor", executor).build(jobs=jobs, address=address)
    store.clean_temporaries()  # leftovers of a killed run; nothing else writes here now
    write_run_manifest(plan, store)
    reporter.start(plan)
    try:
        return executor.run(plan, store, registry, force=force, reporter=reporter, device=plan.config.device)
    finally:
        reporter.finish()


def summarize(outcomes: list[CellOutcome]) -> dict[str, Any]:
    """Counts of one run; ``skip_reasons``: ``{(metric, reason): number of cells}`` of the
    metrics skipped (unmet needs, a judge that could not answer)."""
    n_failed = sum(o.status == FAILED for o in outcomes)
    skips: dict[tuple[str, str], int] = {}
    for o in outcomes:
        for name, m in o.metrics.items():
            if m["status"] == SKIPPED:
                skips[(name, m.get("reason") or "")] = skips.get((name, m.get("reason") or ""), 0) + 1
    return {
        "cells": len(outcomes), "failed": n_failed, "trained_now": sum(o.trained_now for o in outcomes),
        "metric_errors": sum(m["status"] == ERROR for o in outcomes for m in o.metrics.values()),
        "metric_skipped": sum(skips.values()), "skip_reasons": skips,
        "train_seconds": math.fsum(o.train_seconds for o in outcomes if o.trained_now),
    }
