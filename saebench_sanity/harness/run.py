"""One call that does a whole run: config -> plan -> execute, under the results folder's lock.

The harness never renders: ``saebench run`` (``cli.cmd_run``) calls :func:`run`, then writes the
leaderboards from what the run stored (``then=``, still under the lock, so the boards show exactly
what this run left). Tests and notebooks call :func:`run` directly and read the store, or render
with ``saebench_sanity.leaderboard`` themselves.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from saebench_sanity.config import RunConfig
from saebench_sanity.harness.executor import CellOutcome, execute, summarize
from saebench_sanity.harness.plan import Plan, build_plan
from saebench_sanity.locks import run_lock
from saebench_sanity.paths import safe_name
from saebench_sanity.results import ResultStore

logger = logging.getLogger(__name__)


@dataclass
class RunResult:
    """What one run did: its plan, the store it wrote and each cell's outcome. The last three
    fields are filled by whoever renders the run's leaderboards (the CLI): the files written, the
    ``leaderboard.aggregate.Collected`` of every set and its summary table."""

    plan: Plan
    store: ResultStore
    outcomes: list[CellOutcome]
    leaderboard_paths: list[Path] = field(default_factory=list)
    collected: Any = None
    table: Any = None

    @property
    def summary(self) -> dict[str, Any]:
        return summarize(self.outcomes)


def load_config(config: str | None = None, quick: bool = False, suite: str | None = None) -> RunConfig:
    """``--config FILE``, else the embedded suite ``suite`` (``--suite NAME``), ``quick``
    (``--quick``) or ``default``."""
    from saebench_sanity import config as config_mod

    cfg = config_mod.load(config) if config is not None else config_mod.embedded(suite or ("quick" if quick else "default"))
    safe_name("run.name", cfg.name)  # it names the leaderboard files: refused before any work
    return cfg


def leaderboard_dir(cfg: RunConfig) -> Path:
    return Path(cfg.output_dir) / "leaderboards"


def run(cfg: RunConfig, registry: Any = None, *, out: str | None = None, force: bool = False,
        metrics: list[str] | None = None, jobs: int | None = 1, reporter: Any = None, executor: Any = "local",
        address: str | None = None, then: Callable[[RunResult], None] | None = None) -> RunResult:
    """Plan and execute ``cfg`` (results under ``out`` or ``cfg.output_dir``). The results folder is
    locked for the whole run (``locks.run_lock``) and healed before any cell runs
    (``ResultStore.heal``); ``then(result)``, if given, runs before the lock is released (the CLI
    writes the leaderboards there)."""
    from saebench_sanity.registry import get_registry

    if out is not None:
        cfg = dataclasses.replace(cfg, output_dir=str(out))
    safe_name("run.name", cfg.name)  # it names the leaderboard files: refused before any work
    from saebench_sanity.activations.real import register_user_sets
    from saebench_sanity.config import user_set_recipes

    registry = registry or get_registry()
    register_user_sets(user_set_recipes(cfg), registry)  # [sets.NAME] tables with a model: new real sets
    with run_lock(cfg.output_dir):  # one writer per results folder: a second run refuses (exit 2)
        plan = build_plan(cfg, registry, metrics=metrics)
        store = ResultStore(cfg.output_dir)
        store.heal(plan.cell_keys)  # damaged records/checkpoints of this plan go to quarantine/ and are redone
        if not force:
            for note in other_builds(plan, store):
                logger.warning("%s", note)
        outcomes = execute(plan, store, registry, force=force, reporter=reporter, jobs=jobs, executor=executor,
                           address=address)
        result = RunResult(plan=plan, store=store, outcomes=outcomes)
        if then is not None:
            then(result)
        return result


def recorded_data(record: dict[str, Any] | None) -> set[str]:
    """The ``data_sha256`` values a stored record carries (its training's and its metrics')."""
    if not record:
        return set()
    found = {(record.get("training") or {}).get("data_sha256")}
    found |= {entry.get("data_sha256") for entry in (record.get("metrics") or {}).values() if isinstance(entry, dict)}
    return {str(v) for v in found if v}


def from_other_builds(store: Any, keys: list[str], current: str | None) -> dict[str, set[str]]:
    """``{key: the other builds' data_sha256}`` for the ``keys`` whose records in ``store`` came, in
    part, from another build of their set than ``current`` (its store's content hash); empty when
    ``current`` is None (a generated set, or a set not built yet). Records from before
    ``data_sha256`` are not judged. What ``saebench run`` warns about (:func:`other_builds`) and
    ``saebench check`` redoes (its cache)."""
    if not current:
        return {}
    found = {key: recorded_data(store.load_result(key)) - {current} for key in keys}
    return {key: other for key, other in found.items() if other}


def other_builds(plan: Any, store: Any) -> list[str]:
    """One line per stored set of ``plan`` whose results already in ``store`` came, in part, from
    another build of it: a cell keeps its key across builds of one recipe (the set's identity),
    but its numbers are those of the bytes it saw (``data_sha256``, ``store.content_hash``).
    Resuming reuses them and trains or scores the rest on this machine's build, so a board would
    mix two builds; the note names both and the two ways out. Sets not built yet, generated sets
    and records from before ``data_sha256`` are not judged."""
    notes = []
    for name, aset in plan.sets.items():
        current = getattr(aset, "stored_content_sha256", None)
        keys = [c.key for c in plan.cells if c.set_name == name]
        other: dict[str, int] = {}
        for digests in from_other_builds(store, keys, current).values():
            for digest in digests:
                other[digest] = other.get(digest, 0) + 1
        if other and current:  # (other is empty without a current build)
            digest, n = max(other.items(), key=lambda kv: kv[1])
            notes.append(f"{n} of the {len(keys)} stored results of set {name!r} in {store.root} came from another build of "
                         f"it (data sha256 {digest[:12]}; this machine's store: {current[:12]}); they are reused and the rest "
                         "is trained and scored on this store, so the board mixes two builds: to reproduce those results, "
                         "copy that build's store into this machine's cache; to redo them here, pass --force")
    return notes


def sets_of_family(registry: Any, family: str) -> list[str]:
    """Names of the registered activation sets of ``family`` (``"synthetic"``, ``"real"``, ...)."""
    return [name for name in registry.names("activation_set")
            if getattr(registry.get("activation_set", name), "family", None) == family]


def leaderboard_groups(cfg: RunConfig, registry: Any) -> list[tuple[str, str | None, list[str] | None]]:
    """``(leaderboard name, family, sets)`` to write for a run: one leaderboard named after the run
    when its sets are of one family, else one per family named after the family (the default suite
    writes ``synthetic`` and ``real``)."""
    families: dict[str, list[str]] = {}
    for set_name in cfg.sets:
        families.setdefault(getattr(registry.get("activation_set", set_name), "family", "synthetic"), []).append(set_name)
    if len(families) <= 1:
        return [(cfg.name, None, None)]
    return [(family, family, sets) for family, sets in families.items()]
