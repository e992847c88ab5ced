"""The ``local`` executor: cohorts in this process, or in a process pool on this machine.

``jobs = 1`` runs the cohorts in this process, in plan order, with live training progress.
``jobs > 1`` runs them in a pool of ``jobs`` spawned processes (``concurrent.futures``), each with
``cores // jobs`` torch threads, handed out longest estimated first
(``harness.executor.longest_first``: a long cohort does not start last while the other workers
run dry); each worker builds its own registry (so entry-point plugins load there too) and runs a
cohort through ``executors.remote``: this process stays the only writer of the results store.
``jobs = None`` (``saebench run`` without ``--jobs``) uses every core this process may use, capped
at the number of cohorts with work to do; one such cohort runs in-process.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from saebench_sanity.executors.base import Executor, Outcomes, default_jobs
from saebench_sanity.executors.remote import commit_reply, fail_cohort, fully_cached, prepare_task, work_cohort

logger = logging.getLogger(__name__)


class LocalExecutor(Executor):
    """Cohorts on this machine (see module docstring)."""

    name = "local"

    def __init__(self, jobs: int | None = None) -> None:
        self.jobs = jobs

    def run(self, plan: Any, store: Any, registry: Any, *, force: bool, reporter: Any, device: str) -> list[Any]:
        from saebench_sanity.devices import resolve_device
        from saebench_sanity.harness.executor import cohorts

        device = resolve_device(device, "run.device")
        groups = cohorts(plan.cells)
        jobs = self.jobs
        if jobs is None or jobs > 1:
            busy = [not fully_cached(g, plan.metrics, store, force) for g in groups]
            jobs = jobs or max(1, min(default_jobs(), sum(busy)))
        if jobs > 1:
            return self._pool(plan, groups, busy, store, registry, force=force, reporter=reporter, jobs=jobs,
                              device=device)
        return self._in_process(plan, groups, store, registry, force=force, reporter=reporter, device=device)

    @staticmethod
    def _in_process(plan: Any, groups: list[list[Any]], store: Any, registry: Any, *, force: bool, reporter: Any,
                    device: str) -> list[Any]:
        from saebench_sanity.harness.executor import _SetCache, run_cohort
        from saebench_sanity.training.engine import tune_allocator

        tune_allocator()  # this process trains
        cache = _SetCache(registry, plan.config, plan.sets)
        index = {c.key: i for i, c in enumerate(plan.cells)}
        done: dict[str, Any] = {}

        def finished(cell: Any, outcome: Any) -> None:
            reporter.cell_done(cell, outcome)
            done[cell.key] = outcome

        for group in groups:
            for cell in group:
                reporter.cell_start(cell, index[cell.key])
            run_cohort(group, plan.metrics, cache.get(group[0].set_name), cache.eval_acts(group[0].set_name),
                       store, registry, force=force, reporter=reporter, device=device, on_done=finished)
        return [done[c.key] for c in plan.cells if c.key in done]

    @staticmethod
    def _pool(plan: Any, groups: list[list[Any]], busy: list[bool], store: Any, registry: Any, *, force: bool,
              reporter: Any, jobs: int, device: str) -> list[Any]:
        """Cohorts as process-pool tasks; this process commits each reply as it arrives."""
        import multiprocessing
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

        from saebench_sanity.harness.executor import _SetCache, longest_first, one_line, run_cohort

        threads = max(1, default_jobs() // jobs)
        ctx = multiprocessing.get_context("spawn")  # no forked torch state; workers import afresh
        collected = Outcomes(plan, reporter)
        report = collected.report

        cached = [g for g, b in zip(groups, busy) if not b]
        if cached:  # nothing to train or score: read here, no worker needed
            cache = _SetCache(registry, plan.config, plan.sets)
            for group in cached:
                name = group[0].set_name
                report(group, run_cohort(group, plan.metrics, cache.get(name), cache.eval_acts(name), store, registry,
                                         force=force, device=device))
        # the long cohorts first (a cohort's time is unknown before it runs: estimated)
        todo = longest_first([g for g, b in zip(groups, busy) if b], plan, store, force)
        if not todo:
            return collected.in_plan_order()
        pool = ProcessPoolExecutor(max_workers=min(jobs, len(todo)), mp_context=ctx, initializer=_worker_init,
                                   initargs=(threads, os.getpid()))
        try:
            futures: dict[Any, list[Any]] = {}
            waiting = iter(todo)

            def submit() -> None:
                # two tasks per worker in flight: a resumed task carries its stored checkpoints'
                # bytes, read only when it is submitted
                while len(futures) < 2 * jobs:
                    group = next(waiting, None)
                    if group is None:
                        return
                    task = prepare_task(group, plan.metrics, store, set_params=plan.config.set_params_for(group[0].set_name),
                                        force=force, device=device)
                    futures[pool.submit(work_cohort, task)] = group

            submit()
            while futures:
                done, _ = wait(futures, return_when=FIRST_COMPLETED)
                for fut in done:
                    group = futures.pop(fut)
                    try:
                        results = commit_reply(fut.result(), store)
                    except Exception as exc:  # noqa: BLE001 - a crashed worker fails its cohort's cells, not the run
                        results = fail_cohort(group, store, one_line(exc),
                                              kind="input" if _is_input_error(exc) else "bug")
                    report(group, results)
                submit()
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
        return collected.in_plan_order()


def _is_input_error(exc: BaseException) -> bool:
    from saebench_sanity.errors import SaebenchError

    return isinstance(exc, SaebenchError)


def _worker_init(threads: int, parent: int) -> None:
    """Pool worker set-up: torch threads, allocator, and an exit when the parent dies (a pool
    worker of a SIGKILLed run would otherwise wait on its task queue forever)."""
    import torch

    from saebench_sanity.executors.remote import worker_registry
    from saebench_sanity.training.engine import tune_allocator

    torch.set_num_threads(max(1, threads))
    tune_allocator()
    worker_registry()  # plugins load in every worker process

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="saebench-parent-watch", daemon=True).start()


def build(jobs: int | None = None) -> LocalExecutor:
    return LocalExecutor(jobs=jobs)
