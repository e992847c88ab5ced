"""The ``local`` executor: cohorts in this process, or in a process pool on this machine.

``jobs = 1`` runs the cohorts in this process, in plan order (the cohorts that share a generated
training stream one after the other), with live training progress.
``jobs > 1`` runs them in ``jobs`` spawned worker processes (``concurrent.futures``), each with
``cores // jobs`` torch threads, handed out longest estimated first
(``harness.executor.longest_first``: a long cohort does not start last while the other workers
run dry) and, on generated sets, by unit: the cohorts that share a training stream run on one
worker, which draws the stream once (``harness.executor.stream_units``). Each worker builds its
own registry (so entry-point plugins load there too) and runs a cohort through
``executors.remote``: this process stays the only writer of the results store.
``jobs = None`` (``saebench run`` without ``--jobs``) uses every core this process may use, capped
at the number of cohorts with work to do; one such cohort runs in-process.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, wait
from typing import Any

from saebench_sanity.executors.base import Executor, Outcomes, default_jobs, oversubscription
from saebench_sanity.executors.remote import commit_reply, fail_cohort, fully_cached, prepare_task, work_cohort

logger = logging.getLogger(__name__)


def worker_threads(jobs: int) -> int:
    """Torch threads of each of ``jobs`` pool workers: this process's cores shared out."""
    return max(1, default_jobs() // jobs)


def local_oversubscription(jobs: int | None) -> str | None:
    """``executors.base.oversubscription`` of this executor: one process at torch's thread count
    (``--threads``) for ``jobs == 1``, else ``jobs`` workers of :func:`worker_threads` each
    (``jobs`` None: one per core)."""
    import torch

    cores = default_jobs()
    jobs = jobs or cores
    threads = torch.get_num_threads() if jobs == 1 else worker_threads(jobs)
    return oversubscription(jobs, threads, cores=cores)


def warn_oversubscription(jobs: int | None) -> None:
    """Warn (one line, the run goes on) when ``jobs`` processes' torch threads and the machine's
    load ask for more cores than there are (:func:`local_oversubscription`)."""
    note = local_oversubscription(jobs)
    if note:
        logger.warning("%s", note)


class LocalExecutor(Executor):
    """Cohorts on this machine (see module docstring)."""

    name = "local"

    def __init__(self, jobs: int | None = None) -> None:
        self.jobs = jobs

    def run(self, plan: Any, store: Any, registry: Any, *, force: Any, reporter: Any, device: str) -> list[Any]:
        from saebench_sanity.devices import resolve_device
        from saebench_sanity.harness.executor import cohorts

        device = resolve_device(device, "run.device")
        groups = cohorts(plan.cells)
        busy = [not fully_cached(g, plan.metrics, store, force) for g in groups]
        jobs = self.jobs or max(1, min(default_jobs(), sum(busy)))
        if any(busy):  # `saebench run` and `saebench check` both come through here; a resume that only reads is not warned
            warn_oversubscription(jobs)
        if jobs > 1:
            return self._pool(plan, groups, busy, store, registry, force=force, reporter=reporter, jobs=jobs,
                              device=device)
        return self._in_process(plan, groups, store, registry, force=force, reporter=reporter, device=device)

    @staticmethod
    def _in_process(plan: Any, groups: list[list[Any]], store: Any, registry: Any, *, force: Any, reporter: Any,
                    device: str) -> list[Any]:
        from saebench_sanity.harness.executor import _SetCache, run_cohort, stream_units
        from saebench_sanity.training.engine import tune_allocator

        tune_allocator()  # this process trains
        cache = _SetCache(registry, plan.config, plan.sets)
        index = {c.key: i for i, c in enumerate(plan.cells)}
        done: dict[str, Any] = {}

        def finished(cell: Any, outcome: Any) -> None:
            reporter.cell_done(cell, outcome)
            done[cell.key] = outcome

        # plan order, except that the cohorts sharing a generated stream run one after the other
        for unit in stream_units(groups, plan, store, force, jobs=1, longest=False):
            for group in unit:
                for cell in group:
                    reporter.cell_start(cell, index[cell.key])
                run_cohort(group, plan.metrics, cache.get(group[0].set_name), cache.eval_acts(group[0].set_name),
                           store, registry, force=force, reporter=reporter, device=device, on_done=finished)
        return [done[c.key] for c in plan.cells if c.key in done]

    @staticmethod
    def _pool(plan: Any, groups: list[list[Any]], busy: list[bool], store: Any, registry: Any, *, force: Any,
              reporter: Any, jobs: int, device: str) -> list[Any]:
        """Cohorts as tasks of ``jobs`` worker processes; this process commits each reply as it arrives.

        Each worker is a one-process pool (a slot) that takes a whole unit
        (``harness.executor.stream_units``: the cohorts that share a generated training stream,
        which the worker then draws once) and runs its cohorts one task each, so every cohort is
        still committed as soon as it is done. Units go out longest estimated first; a slot
        that runs dry while another still has cohorts waiting takes one of them."""
        import multiprocessing

        from saebench_sanity.harness.executor import _SetCache, one_line, run_cohort, stream_units

        threads = worker_threads(jobs)
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
        # the long units first (a cohort's time is unknown before it runs: estimated)
        units = deque(stream_units([g for g, b in zip(groups, busy) if b], plan, store, force, jobs=jobs))
        if not units:
            return collected.in_plan_order()
        slots = [_Slot(ctx, threads) for _ in range(min(jobs, sum(len(u) for u in units)))]
        futures: dict[Any, tuple[_Slot, list[Any]]] = {}

        def next_group(slot: _Slot) -> list[Any] | None:
            if slot.pending:
                return slot.pending.popleft()
            if slot.in_flight:  # a new unit goes to whichever slot runs dry first
                return None
            if units:
                slot.pending = deque(units.popleft())
                return slot.pending.popleft()
            # dry, and no unit left: take the last waiting cohort of the slot with the most waiting
            donor = max((o for o in slots if o.pending), key=lambda o: len(o.pending), default=None)
            return donor.pending.pop() if donor is not None else None

        def submit() -> None:
            # two tasks per slot in flight: a resumed task carries its stored checkpoints' bytes,
            # read only when it is submitted
            for slot in slots:
                while slot.in_flight < 2:
                    group = next_group(slot)
                    if group is None:
                        break
                    task = prepare_task(group, plan.metrics, store, set_params=plan.config.set_params_for(group[0].set_name),
                                        force=force, device=device)
                    futures[slot.submit(work_cohort, task)] = (slot, group)

        try:
            submit()
            while futures:
                done, _ = wait(list(futures), return_when=FIRST_COMPLETED)
                for fut in done:
                    slot, group = futures.pop(fut)
                    slot.in_flight -= 1
                    try:
                        results = commit_reply(fut.result(), store)
                    except Exception as exc:  # noqa: BLE001 - a crashed worker fails its cohort's cells, not the run
                        results = fail_cohort(group, store, one_line(exc),
                                              kind="input" if _is_input_error(exc) else "bug")
                    report(group, results)
                submit()
        except BaseException:
            for slot in slots:
                slot.shutdown(wait=False)
            raise
        for slot in slots:
            slot.shutdown(wait=True)
        return collected.in_plan_order()


class _Slot:
    """One worker process (a one-process ``ProcessPoolExecutor``) and the cohorts waiting for it."""

    def __init__(self, ctx: Any, threads: int) -> None:
        self.ctx, self.threads = ctx, threads
        self.pending: Any = deque()  # cohorts of the unit this worker runs, not yet submitted
        self.in_flight = 0
        self.pool = self._start()

    def _start(self) -> Any:
        from concurrent.futures import ProcessPoolExecutor

        return ProcessPoolExecutor(max_workers=1, mp_context=self.ctx, initializer=_worker_init,
                                   initargs=(self.threads, os.getpid()))

    def submit(self, fn: Any, task: Any) -> Any:
        from concurrent.futures.process import BrokenProcessPool

        try:
            fut = self.pool.submit(fn, task)
        except BrokenProcessPool:  # its worker died (its tasks were failed): a new worker goes on
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = self._start()
            fut = self.pool.submit(fn, task)
        self.in_flight += 1
        return fut

    def shutdown(self, wait: bool) -> None:
        self.pool.shutdown(wait=wait, cancel_futures=not wait)


def _is_input_error(exc: BaseException) -> bool:
    from saebench_sanity.errors import SaebenchError

    return isinstance(exc, SaebenchError)


def _worker_init(threads: int, parent: int) -> None:
    """Pool worker set-up: torch threads, allocator, and an exit when the parent dies (a pool
    worker of a SIGKILLed run would otherwise wait on its task queue forever)."""
    from saebench_sanity.executors.base import set_cpu_threads
    from saebench_sanity.executors.remote import worker_registry
    from saebench_sanity.training.engine import tune_allocator

    set_cpu_threads(threads)
    tune_allocator()
    worker_registry()  # plugins load in every worker process

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="saebench-parent-watch", daemon=True).start()


def build(jobs: int | None = None) -> LocalExecutor:
    return LocalExecutor(jobs=jobs)
