"""One call that does a whole run: config -> plan -> execute, under the results folder's lock.

The harness never renders: ``saebench run`` (``cli.cmd_run``) calls :func:`run`, then writes the
leaderboards from what the run stored (``then=``, still under the lock, so the boards show exactly
what this run left). Tests and notebooks call :func:`run` directly and read the store, or render
with ``saebench_sanity.leaderboard`` themselves.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from saebench_sanity.config import RunConfig
from saebench_sanity.harness.executor import CellOutcome, execute, summarize
from saebench_sanity.harness.plan import Plan, build_plan
from saebench_sanity.locks import run_lock
from saebench_sanity.paths import safe_name
from saebench_sanity.results import ResultStore


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
        outcomes = execute(plan, store, registry, force=force, reporter=reporter, jobs=jobs, executor=executor,
                           address=address)
        result = RunResult(plan=plan, store=store, outcomes=outcomes)
        if then is not None:
            then(result)
        return result


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
