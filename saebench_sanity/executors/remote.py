"""One cohort run away from the driver (a pool process, a Ray worker), the driver writing its results.

The protocol every out-of-process executor uses, so they all keep the driver the single writer of
the results store:

1. the driver packs a :class:`CohortTask` (:func:`prepare_task`): the cohort's cells, the metrics,
   the set's name and parameters, and the bytes of what the store already holds for these cells
   (checkpoint files and records, so a resumed cell is scored, not retrained);
2. a worker (:func:`work_cohort`) builds the activation set by name and checks its manifest hash
   against the plan's, unpacks the bytes into a private temporary store, runs
   ``harness.executor.run_cohort`` there (the very code the in-process executor runs), and returns a
   :class:`CohortReply`: outcomes, records, the files of the checkpoints it wrote, its event lines;
3. the driver (:func:`commit_reply`) writes the checkpoints, events and records into the real store
   through ``ResultStore``'s atomic writers.

A worker that dies mid-task has written nothing the run trusts: its retry (or the next run) starts
the cohort afresh, and no cell is stored twice. The bytes travel through the executor's own channel
(a pipe for the pool, Ray's object store), so the workers need no access to the output folder.
"""

from __future__ import annotations

import json
import logging
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from saebench_sanity.errors import DataError

logger = logging.getLogger(__name__)

#: Files of a checkpoint folder that ``ResultStore.write_checkpoint`` writes itself.
_STORE_OWNED = ("train.json", "COMPLETE")


@dataclass
class CohortTask:
    """Everything a worker needs to run one cohort (picklable; no tensors)."""

    cells: list[Any]  # harness.plan.Cell
    metrics: list[Any]  # harness.plan.MetricPlan
    set_name: str
    set_params: dict[str, Any]
    #: ``harness.executor.Force``: True, False or the keys of the cells redone from scratch
    force: Any
    #: the run's device option, resolved on the worker (``"auto"`` picks that machine's best)
    device: str
    #: ``{cell key: {"checkpoint": {file name: bytes}, "result": bytes}}`` of what the store holds
    seed: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class CohortReply:
    """What a worker sends back for one cohort."""

    outcomes: list[Any]  # harness.executor.CellOutcome, in the task's cell order
    #: ``{cell key: record}`` as the worker's store holds it (without seal fields), None if none
    records: dict[str, dict[str, Any] | None]
    #: ``{cell key: {file name: bytes}}`` of the checkpoints trained in this task
    checkpoints: dict[str, dict[str, bytes]]
    events: list[dict[str, Any]]
    host: str = ""


def fully_cached(cells: list[Any], metrics: list[Any], store: Any, force: Any) -> bool:
    """True when nothing of the cohort needs training or scoring: the driver then reports it
    itself (``run_cohort`` on the real store only reads), without shipping it anywhere.
    ``force``: ``harness.executor.Force``."""
    from saebench_sanity.harness.executor import forced, has_current_checkpoint

    for cell in cells:
        if forced(force, cell.key):
            return False
        if not has_current_checkpoint(store, cell.key, cell.training):
            return False
        rec = store.load_result(cell.key)
        if not rec or rec.get("status") != "ok":
            return False
        for mp in metrics:
            prev = (rec.get("metrics") or {}).get(mp.key)
            if prev is None or prev.get("status") not in ("ok", "skipped") or prev.get("transient"):
                return False
    return True


def _folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def prepare_task(cells: list[Any], metrics: list[Any], store: Any, *, set_params: dict[str, Any],
                 force: Any, device: str) -> CohortTask:
    """The task for one cohort, with the bytes of its cells' stored checkpoints and records
    (none of the cells ``force`` redoes: ``harness.executor.Force``)."""
    from saebench_sanity.harness.executor import forced, has_current_checkpoint

    seed: dict[str, dict[str, Any]] = {}
    for cell in cells:
        if forced(force, cell.key):
            continue
        entry: dict[str, Any] = {}
        if has_current_checkpoint(store, cell.key, cell.training):
            entry["checkpoint"] = _folder_bytes(store.checkpoint_dir(cell.key))
        path = store.result_path(cell.key)
        if path.is_file():
            entry["result"] = path.read_bytes()
        if entry:
            seed[cell.key] = entry
    return CohortTask(cells=list(cells), metrics=list(metrics), set_name=cells[0].set_name,
                      set_params=dict(set_params), force=force, device=device, seed=seed)


# -- worker side -------------------------------------------------------------------------------
_STATE: dict[str, Any] = {}


def worker_registry() -> Any:
    """This process's registry: the built-ins plus every entry-point plugin installed here (the
    same loading as the driver's ``get_registry``), built once per process."""
    if "registry" not in _STATE:
        from saebench_sanity.registry import get_registry

        _STATE["registry"] = get_registry(refresh=True)
    return _STATE["registry"]


def _activation_set(registry: Any, name: str, params: dict[str, Any], manifest_hash: str) -> tuple[Any, Any]:
    """``(set, eval_acts getter)`` for ``name`` built here with ``params``, cached per process,
    refused unless its manifest hash is the plan's (the worker's data is the driver's data)."""
    from saebench_sanity.activations.base import stable_hash

    sets = _STATE.setdefault("sets", {})
    key = stable_hash({"name": name, "params": params})
    if key not in sets:
        sets[key] = registry.get("activation_set", name).build(**params)
    aset = sets[key]
    got = aset.manifest_hash()
    if got != manifest_hash:
        raise DataError(f"activation set {name!r} on worker {socket.gethostname()} has manifest {got[:12]}, the plan "
                        f"has {manifest_hash[:12]}: this machine holds other data under that name (share "
                        "SAEBENCH_CACHE between the nodes, or rebuild the set there)")
    evals = _STATE.setdefault("evals", {})

    def eval_acts() -> Any:
        if key not in evals:
            evals[key] = aset.eval_activations()
        return evals[key]

    return aset, eval_acts


def work_cohort(task: CohortTask, registry: Any = None) -> CohortReply:
    """Run one cohort in a private temporary store and return what the driver must write."""
    from saebench_sanity.devices import resolve_device
    from saebench_sanity.harness.executor import run_cohort
    from saebench_sanity.harness.store import ResultStore

    registry = registry or worker_registry()
    aset, eval_acts = _activation_set(registry, task.set_name, task.set_params, task.cells[0].set_manifest_hash)
    device = resolve_device(task.device, "run.device")
    with tempfile.TemporaryDirectory(prefix="saebench-cohort-") as tmp:
        store = ResultStore(tmp)
        for key, entry in task.seed.items():  # byte copies: the hashes in markers and records still hold
            if "checkpoint" in entry:
                folder = store.checkpoint_dir(key)
                folder.mkdir(parents=True)
                for name, blob in entry["checkpoint"].items():
                    (folder / name).write_bytes(blob)
            if "result" in entry:
                store.result_path(key).parent.mkdir(parents=True, exist_ok=True)
                store.result_path(key).write_bytes(entry["result"])
        outcomes = run_cohort(task.cells, task.metrics, aset, eval_acts, store, registry, force=task.force,
                              device=device)
        trained = {o.key for o in outcomes if o.trained_now}
        checkpoints = {k: _folder_bytes(store.checkpoint_dir(k)) for k in sorted(trained) if store.has_checkpoint(k)}
        records = {c.key: store.load_result(c.key) for c in task.cells}
        events = store.events()
    return CohortReply(outcomes=outcomes, records=records, checkpoints=checkpoints, events=events,
                       host=socket.gethostname())


# -- driver side -------------------------------------------------------------------------------
def commit_reply(reply: CohortReply, store: Any) -> list[Any]:
    """Write a worker's checkpoints, events and records into ``store`` (the driver is the only
    writer); returns the reply's outcomes. Checkpoints go first, so a record is never sealed
    against a checkpoint that is not there yet."""

    def copy_into(files: dict[str, bytes]) -> Any:
        def save(path: Path) -> None:
            for name, blob in files.items():
                if name not in _STORE_OWNED:
                    (path / name).write_bytes(blob)
        return save

    trained = {e.get("key"): e for e in reply.events if e.get("event") == "trained"}
    for key, files in reply.checkpoints.items():
        if "train.json" not in files:
            raise DataError(f"a worker returned checkpoint {key} without its train.json; this is a bug")
        store.write_checkpoint(key, copy_into(files), json.loads(files["train.json"]))
        if key in trained:  # each checkpoint's event right after it, as in a local training
            store.log_event(trained[key])
    for event in reply.events:
        if not (event.get("event") == "trained" and event.get("key") in reply.checkpoints):
            store.log_event(event)
    for key, record in reply.records.items():
        if record is not None and record != store.load_result(key):
            store.write_result(key, record)
    return list(reply.outcomes)


def fail_cohort(cells: list[Any], store: Any, error: str, kind: str = "bug") -> list[Any]:
    """Record every cell of a cohort whose task could not finish as failed with ``error``
    (keeping metrics recorded by earlier runs); returns their outcomes."""
    from saebench_sanity.harness.executor import FAILED, CellOutcome

    outcomes = []
    for cell in cells:
        rec = store.load_result(cell.key) or {"key": cell.key, "label": cell.label, "cell": cell.identity(), "metrics": {}}
        rec.update(status=FAILED, error=error, training=None)
        store.write_result(cell.key, rec)
        outcomes.append(CellOutcome(key=cell.key, label=cell.label, status=FAILED, error=error, error_kind=kind))
    return outcomes
