"""One call that does a whole run: config -> plan -> execute -> leaderboard files.

The CLI's ``saebench run`` is a thin layer over :func:`run`; tests and notebooks call it directly.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from saebench_sanity.config import RunConfig
from saebench_sanity.harness.executor import CellOutcome, execute, summarize
from saebench_sanity.harness.plan import Plan, build_plan
from saebench_sanity.harness.store import ResultStore


@dataclass
class RunResult:
    plan: Plan
    store: ResultStore
    outcomes: list[CellOutcome]
    leaderboard_paths: list[Path] = field(default_factory=list)
    collected: Any = None
    table: Any = None

    @property
    def summary(self) -> dict[str, Any]:
        return summarize(self.outcomes)


def load_config(config: str | None = None, quick: bool = False) -> RunConfig:
    """``--config FILE``, else the embedded ``quick`` (``--quick``) or ``default`` suite."""
    from saebench_sanity import config as config_mod

    if config is not None:
        return config_mod.load(config)
    return config_mod.embedded("quick" if quick else "default")


def leaderboard_dir(cfg: RunConfig) -> Path:
    return Path(cfg.output_dir) / "leaderboards"


def run(cfg: RunConfig, registry: Any = None, *, out: str | None = None, force: bool = False,
        metrics: list[str] | None = None, jobs: int = 1, reporter: Any = None, plots: bool = True,
        leaderboards: str | None = None) -> RunResult:
    """Plan and execute ``cfg`` and write its leaderboard to ``<leaderboards>/<name>.*`` (default
    ``<output_dir>/leaderboards``)."""
    from saebench_sanity.leaderboard import aggregate, render
    from saebench_sanity.registry import get_registry

    if out is not None:
        cfg = dataclasses.replace(cfg, output_dir=str(out))
    registry = registry or get_registry()
    plan = build_plan(cfg, registry, metrics=metrics)
    store = ResultStore(cfg.output_dir)
    outcomes = execute(plan, store, registry, force=force, reporter=reporter, jobs=jobs)
    col = aggregate.collect(cfg.output_dir)
    lb_dir = Path(leaderboards) if leaderboards else leaderboard_dir(cfg)
    rendered = render.render(col, name=cfg.name, results=str(cfg.output_dir), out=str(lb_dir))
    paths = render.write(col, name=cfg.name, results=str(cfg.output_dir), out=str(lb_dir), plots=plots,
                         rendered=rendered)
    return RunResult(plan=plan, store=store, outcomes=outcomes, leaderboard_paths=paths, collected=col,
                     table=rendered.table)
