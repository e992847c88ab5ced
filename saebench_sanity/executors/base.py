"""The Executor contract: what runs the cohorts of a plan.

An executor gets a :class:`~saebench_sanity.harness.plan.Plan` whose run manifest is already
written, and runs every cohort (``harness.executor.cohorts``): train the cells that have no
checkpoint, score the metrics not yet recorded, store each cell. Built-ins: ``local`` (this
process, or a process pool with ``jobs > 1``) and ``ray`` (tasks on a Ray cluster). Whatever runs
the work, the process that called :meth:`Executor.run` (the *driver*) is the only writer of the
results store, so resume, ``--force`` and the leaderboard behave alike for every executor.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable

from saebench_sanity.errors import ConfigError, SaebenchError
from saebench_sanity.spec import Spec, resolve_ref


class ExecutorError(SaebenchError):
    """An executor cannot start: its engine is not installed or its cluster cannot be reached
    (one line, exit 2, before anything runs)."""


def default_jobs() -> int:
    """CPU cores this process may use (its affinity mask where the platform has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS / Windows
        return max(1, os.cpu_count() or 1)


#: what the BLAS and OpenMP libraries bundled with numpy, scipy and scikit-learn read when they load
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def set_cpu_threads(threads: int) -> None:
    """Use ``threads`` CPU threads in this process: torch's (``torch.set_num_threads``) and the
    BLAS / OpenMP pools of numpy, scipy and scikit-learn, which torch's setting does not reach:
    the pools already loaded through ``threadpoolctl``, the ones loaded later (scikit-learn's
    OpenMP when a metric first fits a probe) through the variables they read when they load.
    Without this each of ``--jobs 2``'s one-thread workers fitted its sparse-probing logistic
    regressions on two OpenMP and two OpenBLAS threads of the same two cores: beside one busy
    core those fits ran 2.3x slower than on one thread, with the same accuracies
    (benchmarks/test_bench_probe_threads.py; docs/performance.md)."""
    import torch
    from threadpoolctl import threadpool_limits

    threads = max(1, int(threads))
    for name in THREAD_ENV:
        os.environ[name] = str(threads)
    torch.set_num_threads(threads)
    threadpool_limits(limits=threads)


def machine_load() -> float | None:
    """The machine's 1-minute load average, or None where the platform reports none."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # pragma: no cover - no load average on this platform
        return None


def oversubscription(processes: int, threads: int, *, cores: int | None = None,
                     load: float | None = None) -> str | None:
    """A one-line warning when this run's ``processes`` x ``threads`` torch threads plus the
    machine's current load (1-minute load average) ask for more cores than this process may use;
    None otherwise (and where the platform reports no load average).

    Torch's CPU threads wait for each other at every parallel region, so one that shares a core
    with a busy process stalls the rest: beside two busy processes on 2 cores, a synth-zipf TopK
    cohort trained in 309 s wall (298 s of CPU) at 2 threads against 171 s (98 s) at one
    (``bash scripts/busy-threads.sh``, 2026-12-03). The run does not lower its threads on its own: a float32
    result can differ in its last bits between thread counts (recorded per cell), so the count
    stays the user's choice."""
    cores = default_jobs() if cores is None else cores
    load = machine_load() if load is None else load
    if load is None:
        return None
    asked = processes * threads
    if threads <= 1 or load + asked <= cores + 0.5:
        return None
    return (f"this run starts {processes} process(es) x {threads} torch threads on {cores} core(s) while the "
            f"machine's load is already {load:.1f}: torch threads that wait for a busy core slow training "
            f"(measured: 1.8x); pass --threads 1 (or fewer --jobs) while other work runs")


class Executor:
    """Base class of executors; :meth:`run` is the whole contract."""

    name: str = "executor"

    def run(self, plan: Any, store: Any, registry: Any, *, force: Any, reporter: Any,
            device: str) -> list[Any]:
        """Run every cohort of ``plan`` into ``store``; return this run's ``CellOutcome`` of every
        cell that finished, in plan order.

        ``force`` is ``harness.executor.Force``: True redoes every cell, False none, a set of
        cell keys only those (test a cell with ``harness.executor.forced(force, key)``).
        ``device`` is the run's device *option* (``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``,
        ``"mps"``), resolved where the cells train. ``reporter`` gets ``cell_start`` /
        ``cell_done`` per cell (and ``train_progress`` / ``phase`` where the executor can)."""
        raise NotImplementedError


class Outcomes:
    """What an executor's driver collects: ``report(group, results)`` tells the reporter about each
    finished cell of a cohort (``cell_start`` then ``cell_done``, with the cell's plan index) and
    keeps its ``CellOutcome``; ``in_plan_order()`` is :meth:`Executor.run`'s return value."""

    def __init__(self, plan: Any, reporter: Any) -> None:
        self.plan, self.reporter = plan, reporter
        self.index = {c.key: i for i, c in enumerate(plan.cells)}
        self.by_key: dict[str, Any] = {}

    def report(self, group: list[Any], results: list[Any]) -> None:
        for cell, outcome in zip(group, results):
            self.reporter.cell_start(cell, self.index[cell.key])
            self.reporter.cell_done(cell, outcome)
            self.by_key[cell.key] = outcome

    def in_plan_order(self) -> list[Any]:
        return [self.by_key[c.key] for c in self.plan.cells if c.key in self.by_key]


@dataclass(frozen=True)
class ExecutorSpec(Spec):
    """Registered executor.

    Attributes:
        factory: callable or ``"module:attr"``; ``factory(**options)`` returns an :class:`Executor`.
        options: the option names the factory takes (``jobs``, ``address``, ...); a run that gives
            an option the executor does not take is refused with the option named.
        install: how to install what the executor needs beyond the core package (shown by
            ``saebench list``; the executor itself raises the one-line error when it is missing).
    """

    factory: "Callable[..., Executor] | str" = ""
    options: tuple[str, ...] = ()
    install: str = ""

    kind: str = field(default="executor", init=False, repr=False, compare=False)

    def build(self, **options: Any) -> Executor:
        """The executor with ``options`` (``None`` values mean "the executor's default")."""
        given = {k: v for k, v in options.items() if v is not None}
        foreign = sorted(set(given) - set(self.options))
        if foreign:
            takes = ", ".join(f"--{o}" for o in self.options) or "no options"
            raise ConfigError(f"{', '.join('--' + f for f in foreign)}: not an option of the {self.name!r} executor "
                              f"(it takes {takes})")
        fn = resolve_ref(self.factory, what=f"executor {self.name!r}")
        return fn(**given)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "options": list(self.options), "install": self.install}
