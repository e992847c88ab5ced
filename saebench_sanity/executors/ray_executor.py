"""The ``ray`` executor: each cohort is a Ray task on a Ray cluster (https://docs.ray.io).

Ray schedules, places and retries the tasks; this module only says what a task is and asks for
its resources.

The cohorts that train on one generated stream (a synthetic set's (set, seed, batch size):
``harness.executor.stream_units``, as the local pool forms them) go to one *unit* task when the
cluster has enough work for several units per slot: a Ray generator task
(https://docs.ray.io/en/latest/ray-core/ray-generator.html) that runs them one after the other in
one worker, so the stream is drawn once, and yields each cohort's reply as soon as it is done, so
the driver stores every cohort as it finishes, as for single tasks. A cohort that raises inside a
unit fails alone and the unit goes on; a unit whose worker dies is retried by Ray from its start
(Ray drops the replies the driver already has).

Resources: ``num_cpus=1`` per cohort, plus ``num_gpus=1`` when the run trains on a GPU
(``--device cuda`` / ``cuda:N``, or ``auto`` on a cluster that has GPUs; Ray then picks the GPU
and the worker trains on ``cuda``, the one it was given). A task runs
``executors.remote.work_cohort``: the worker builds its registry from the entry points installed
on its node, finds the activation set by name and checks its manifest hash, trains and scores the
cohort in a private temporary store and returns the records and checkpoint files; the driver
(this process) writes them into the results store. So the output folder need not be shared, and
resume, ``--force`` and the leaderboard work as with the local executor.

Faults:

* a worker process or node that dies mid-task (OOM killer, preemption, SIGKILL) is retried by Ray
  up to ``max_retries`` times (default 3); the dead attempt wrote nothing, so no cell is lost or
  written twice. When the retries run out, the cohort's cells are recorded ``failed`` with the
  Ray error, and the run goes on;
* an exception inside a task (bad data, a manifest mismatch, a bug) is not retried: the cohort's
  cells are recorded ``failed`` with its one-line error, as with the local executor (a cell whose
  training diverges, or a metric that raises, is recorded inside the task as locally);
* Ctrl-C cancels every pending task (``ray.cancel(force=True)``) and disconnects; finished cohorts
  are already stored, so running the same command again resumes;
* Ray not installed, an address nobody answers, or a connection that does not complete within
  ``connect_timeout`` seconds: one-line ``SaebenchError`` (exit 2) before anything runs.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from saebench_sanity.errors import SaebenchError
from saebench_sanity.executors.base import Executor, ExecutorError, Outcomes, default_jobs
from saebench_sanity.executors.remote import CohortTask, commit_reply, fail_cohort, fully_cached, prepare_task

logger = logging.getLogger(__name__)

INSTALL = 'pip install "saebench-sanity[ray]"'
#: seconds a TCP connect to ``--address`` may take before the address counts as unanswered
PROBE_TIMEOUT = 5.0


def import_ray() -> Any:
    """The ``ray`` module, or a one-line ExecutorError with the install command."""
    try:
        import ray
    except ImportError:
        raise ExecutorError(f"--executor ray needs Ray, which is not installed here; install it with: {INSTALL}") from None
    return ray


def _host_port(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of ``host:port`` or ``ray://host:port``; None if it has no port."""
    text = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]") or "127.0.0.1", int(port)


def probe_address(address: str, timeout: float = PROBE_TIMEOUT) -> str:
    """The address Ray should join: ``auto`` becomes the cluster ``ray start`` left on this machine
    (ExecutorError when there is none); ``host:port`` must accept a TCP connection within
    ``timeout`` seconds (Ray itself would retry an unanswered address for minutes)."""
    if address == "auto":
        from ray._private import services  # Ray's own lookup (RAY_ADDRESS, then the last `ray start`)

        try:
            found = services.canonicalize_bootstrap_address("auto")
        except (ConnectionError, ValueError) as exc:
            raise ExecutorError(f"--address auto: no running Ray cluster found on this machine ({str(exc).splitlines()[0]}); "
                                "start one with `ray start --head`, or give its host:port") from None
        if found is None:
            raise ExecutorError("--address auto: no running Ray cluster found on this machine; start one with `ray start --head`")
        address = found
    hp = _host_port(address)
    if hp is None:
        raise ExecutorError(f"--address {address!r} is not host:port (e.g. 10.0.0.1:6379), ray://host:port or auto")
    try:
        with socket.create_connection(hp, timeout=timeout):
            pass
    except OSError as exc:
        why = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or type(exc).__name__)
        raise ExecutorError(f"--address {address}: no Ray cluster answers there ({why} within {timeout:g} s); "
                            "start one with `ray start --head --port PORT` or check the host and port") from None
    return address


def _num_gpus(device: str, ray: Any) -> int:
    if device.startswith("cuda"):
        return 1
    if device == "auto":
        return 1 if ray.cluster_resources().get("GPU", 0) > 0 else 0
    return 0  # cpu; mps is not a Ray resource: such a task trains where it lands


def _worker_setup() -> None:
    """Torch threads as the CPUs Ray assigned to this task, and the allocator tuning."""
    import ray

    from saebench_sanity.executors.base import set_cpu_threads
    from saebench_sanity.training.engine import tune_allocator

    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    set_cpu_threads(int(cpus))
    tune_allocator()


def run_cohort_task(task: CohortTask) -> Any:
    """The Ray task: one cohort on the worker it was placed on (``executors.remote.work_cohort``)."""
    from saebench_sanity.executors.remote import work_cohort

    _worker_setup()
    return work_cohort(task)


@dataclass
class CohortFailure:
    """A unit's reply for a cohort that raised: its one-line error and kind (``input``: bad data
    or a manifest mismatch; ``bug``: anything else)."""

    error: str
    kind: str


def run_unit_task(tasks: list[CohortTask]) -> Iterator[Any]:
    """The Ray generator task of a stream unit: its cohorts one after the other in this worker (the
    set, with its stream memo, stays in the process: the shared stream is drawn once), yielding
    each cohort's ``CohortReply`` as soon as it is done, or a :class:`CohortFailure` when that
    cohort raised (the next cohort still runs)."""
    from saebench_sanity.executors.remote import work_cohort
    from saebench_sanity.harness.executor import one_line

    _worker_setup()
    for task in tasks:
        try:
            reply: Any = work_cohort(task)
        except Exception as exc:  # noqa: BLE001 - this cohort fails, the unit goes on
            reply = CohortFailure(one_line(exc), "input" if isinstance(exc, SaebenchError) else "bug")
        yield reply


class RayExecutor(Executor):
    """Cohorts as Ray tasks (see module docstring).

    ``address``: None starts a local Ray instance with ``jobs`` CPUs (default: every core) and
    stops it at the end; ``"auto"`` joins the cluster ``ray start`` runs on this machine; otherwise
    ``host:port`` of a cluster's head node. If Ray is already initialized in this process (a
    notebook, a test), its connection is used as it is and left open."""

    name = "ray"

    def __init__(self, address: str | None = None, jobs: int | None = None, max_retries: int = 3,
                 connect_timeout: float = 60.0) -> None:
        self.ray = import_ray()
        self.jobs, self.max_retries, self.connect_timeout = jobs, int(max_retries), float(connect_timeout)
        self.address = probe_address(address) if address is not None else None

    # -- connection ------------------------------------------------------------------------------
    def _connect(self) -> bool:
        """Connect (start a local instance, or join ``address``); True when this call connected
        (so :meth:`run` disconnects at the end)."""
        ray = self.ray
        if ray.is_initialized():
            return False
        options = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
        if self.address is None:
            # "local": a new instance even when RAY_ADDRESS or an earlier `ray start` names a cluster
            ray.init(address="local", num_cpus=self.jobs or default_jobs(), **options)
            return True
        box: dict[str, Any] = {}

        def join() -> None:
            try:
                ray.init(address=self.address, **options)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller below
                box["error"] = exc

        # Ray retries an unreachable or refusing GCS for minutes (e.g. a token-protected cluster
        # joined without its token): bound the wait here.
        thread = threading.Thread(target=join, name="saebench-ray-connect", daemon=True)
        thread.start()
        thread.join(self.connect_timeout)
        if thread.is_alive():
            raise ExecutorError(f"--address {self.address}: a server answers but joining it as a Ray cluster did not complete "
                                f"within {self.connect_timeout:g} s (a token-protected cluster needs RAY_AUTH_MODE=token and "
                                "its token: see docs/distributed.md)")
        if "error" in box:
            exc = box["error"]
            raise ExecutorError(f"--address {self.address}: cannot join the Ray cluster "
                                f"({type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''})")
        return True

    # -- run -------------------------------------------------------------------------------------
    def run(self, plan: Any, store: Any, registry: Any, *, force: Any, reporter: Any, device: str) -> list[Any]:
        from saebench_sanity.harness.executor import _SetCache, cohorts, run_cohort, stream_units

        ray = self.ray
        connected = self._connect()
        collected = Outcomes(plan, reporter)
        report = collected.report

        # a single task's ref -> its cohort; a unit's generator -> its cohorts not yet replied
        pending: dict[Any, list[Any] | deque[list[Any]]] = {}
        try:
            gpus = _num_gpus(device, ray)
            task_device = "cuda" if gpus else device  # Ray hides every GPU but the task's: it is cuda:0 there
            options = dict(num_cpus=1, num_gpus=gpus, max_retries=self.max_retries, retry_exceptions=False)
            remote = ray.remote(run_cohort_task).options(**options, name="saebench_cohort")
            unit_remote = ray.remote(run_unit_task).options(**options, name="saebench_unit")
            cache = _SetCache(registry, plan.config, plan.sets)
            todo = []
            for group in cohorts(plan.cells):
                name = group[0].set_name
                if fully_cached(group, plan.metrics, store, force):  # nothing to do but read: here
                    report(group, run_cohort(group, plan.metrics, cache.get(name), cache.eval_acts(name), store,
                                             registry, force=force, device="cpu"))
                else:
                    todo.append(group)
            # the long units first; cohorts share a unit only while the cluster (as it is now) still
            # gets several units per slot, as the local pool does (harness.executor.unit_order)
            slots0 = int(ray.cluster_resources().get("GPU" if gpus else "CPU", 1))
            units = stream_units(todo, plan, store, force, jobs=max(1, slots0))
            if any(len(u) > 1 for u in units):
                logger.info("%d cohorts in %d Ray tasks (cohorts on one generated stream share a task)",
                            len(todo), len(units))
            waiting = iter(units)

            def task_of(group: list[Any]) -> CohortTask:
                return prepare_task(group, plan.metrics, store, set_params=plan.config.set_params_for(group[0].set_name),
                                    force=force, device=task_device)

            def submit() -> None:
                # a few tasks per slot of the cluster as it is now (nodes may join): the bytes of
                # stored checkpoints a resumed task carries are read only when it is submitted
                slots = ray.cluster_resources().get("GPU" if gpus else "CPU", 1)
                while len(pending) < max(2, 2 * int(slots)):
                    unit = next(waiting, None)
                    if unit is None:
                        return
                    if len(unit) == 1:
                        pending[remote.remote(task_of(unit[0]))] = unit[0]
                    else:
                        pending[unit_remote.remote([task_of(g) for g in unit])] = deque(unit)

            submit()
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for item in ready:
                    state = pending[item]
                    if isinstance(state, deque):
                        self._next_of_unit(item, state, pending, store, report)
                    else:
                        pending.pop(item)
                        report(state, self._collect(item, state, store)[0])
                submit()
        except BaseException:
            for ref in pending:  # Ctrl-C or a driver-side error: nothing left running on the cluster
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001 - best effort; the disconnect below ends the job anyway
                    pass
            raise
        finally:
            if connected:
                ray.shutdown()
        return collected.in_plan_order()

    def _collect(self, ref: Any, group: list[Any], store: Any) -> tuple[list[Any], str | None]:
        """Commit one finished task's reply, or record its cohort as failed; also the error when
        the task itself was lost (a unit's later cohorts share that fate), else None."""
        from saebench_sanity.harness.executor import one_line

        exceptions = self.ray.exceptions
        try:
            reply = self.ray.get(ref)
        except exceptions.RayTaskError as exc:  # raised inside the task: recorded, not retried
            cause = exc.cause if isinstance(exc.cause, BaseException) else exc
            kind = "input" if isinstance(cause, SaebenchError) else "bug"
            return fail_cohort(group, store, one_line(cause), kind=kind), one_line(cause)
        except exceptions.RayError as exc:  # worker/node lost after every retry, or the task could not run
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            error = f"ray: {type(exc).__name__} after {self.max_retries} retries: {first}"
            return fail_cohort(group, store, error), error
        if isinstance(reply, CohortFailure):  # a cohort of a unit raised; the unit went on
            return fail_cohort(group, store, reply.error, kind=reply.kind), None
        return commit_reply(reply, store), None

    def _next_of_unit(self, gen: Any, waiting: deque[list[Any]], pending: dict[Any, Any], store: Any,
                      report: Any) -> None:
        """Store the next reply a unit's generator has ready, for its next cohort. When the unit's
        task is lost, or ends early, its remaining cohorts are recorded failed with that error."""
        try:
            ref = next(gen)
        except StopIteration:
            ref = None
        error: str | None = "ray: the unit's task ended before this cohort was run"
        if ref is not None:
            group = waiting.popleft()
            outcomes, error = self._collect(ref, group, store)
            report(group, outcomes)
            if error is None and waiting:
                return
        pending.pop(gen)
        while waiting:
            group = waiting.popleft()
            report(group, fail_cohort(group, store, error or "ray: the unit's task was lost"))


def build(address: str | None = None, jobs: int | None = None) -> RayExecutor:
    return RayExecutor(address=address, jobs=jobs)
