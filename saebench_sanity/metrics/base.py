"""The Metric contract.

A metric is a named computation over one trained SAE on one activation set. It yields one or
more *scores* (the units a leaderboard compares), each declared up front with its direction and
chance level, and it declares what it *needs* from the set (``ground_truth``, ``model``,
``labels``, ``judge``: see ``activations.base``). The harness skips a metric whose needs the set
cannot meet and records the reason; it is never silently dropped.

A metric is pure: everything it reads comes through its :class:`MetricContext` (the SAE, the
set, the held-out activations, the language-model handle, a judge and probing-task resolver, a
cache for work shared across SAEs), filled in by whoever scores (the harness:
``harness.scoring.metric_context``; a test: by hand). It returns a :class:`MetricResult` (scores
plus JSON-ready details) or raises :class:`NotApplicable` when the set cannot support it; it
never looks anything up in the plugin registry.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, Literal, TypeVar

from saebench_sanity.errors import DataError, PluginError
from saebench_sanity.spec import Spec, resolve_ref

T = TypeVar("T")

Direction = Literal["higher", "lower"]


@dataclass(frozen=True)
class ScoreInfo:
    """How to read one score.

    Attributes:
        direction: ``"higher"`` or ``"lower"`` is better; ``None`` for descriptive scores (L0,
            counts) that never get a verdict.
        chance: the chance level or floor a random/collapsed SAE gets (printed next to scores),
            or None when there is no meaningful one.
        min_effect: the smallest difference that counts as a real effect for this score; None
            takes the default of ``leaderboard.verdict``.
        definition: one line saying which definition this follows (SAELens / SAEBench / study).
        headline: title of the leaderboard's headline column this score fills (e.g. ``"explained
            variance"``); ``""`` keeps it to the full table. Only scores with a direction can
            be headline scores. Recorded with every result, so a board names what the run declared.
        headline_priority: where several scores recorded for one activation set fill the same
            headline column, the highest priority shows (``reconstruction_bulk``'s explained
            variance over ``reconstruction``'s on sets where both ran).
        improves_with_training: True when training an SAE longer does not make this score worse
            because it measures what the convergence rule follows (reconstruction error,
            explained variance, recovery of ground-truth features). The verdict rule then lets
            a side that is still improving move only in its own favour (a BEATS against final
            baselines stands while the trained SAE still improves; see
            ``leaderboard.verdict``). False (default): such rows wait for convergence
            (UNDERTRAINED); right for scores that training can move either way (probing,
            AutoInterp, RAVEL).
        best: the best value the score can take at all (a bound, not a target): 0 for a dead
            fraction or an MSE, 1 for explained variance or a recovered fraction; None when
            there is none. The verdict rule uses it for one thing: a baseline already at ``best``
            (within ``min_effect``, with confidence) cannot be beaten by more than
            ``min_effect`` however long the trained SAE trains, so a FAILS it supports is final
            (``leaderboard.verdict``).
    """

    direction: Direction | None = "higher"
    chance: float | None = None
    min_effect: float | None = None
    definition: str = ""
    headline: str = ""
    headline_priority: int = 0
    improves_with_training: bool = False
    best: float | None = None

    def __post_init__(self) -> None:
        if self.headline and self.direction is None:
            raise PluginError(f"ScoreInfo(headline={self.headline!r}) needs a direction: a descriptive score "
                              "gets no verdict, so it cannot fill a headline column")
        if self.best is not None and self.direction is None:
            raise PluginError(f"ScoreInfo(best={self.best!r}) needs a direction: the best value only matters to a "
                              "verdict, and a descriptive score gets none; drop best or give a direction")


@dataclass(frozen=True)
class MetricSpec(Spec):
    """Registered metric.

    Attributes:
        factory: callable or ``"module:attr"``; ``factory(ctx: MetricContext, **params)`` returns
            a :class:`MetricResult` whose scores have exactly the keys of ``scores`` (a plain
            ``dict[score_name, float]`` is accepted too: the contract before ``MetricResult``), or
            raises :class:`NotApplicable`.
        scores: score name -> ScoreInfo.
        needs: what the activation set must provide.
        params: default parameters (e.g. ``{"cos_threshold": 0.8}``).
        batch_factory: optional callable or ``"module:attr"``; ``batch_factory(ctxs, **params)``
            scores several SAEs of one activation set at once (the harness gives it the cells of
            a cohort that still need this metric) and returns one item per context, in order: its
            ``MetricResult`` (or dict), or the exception ``factory(ctx)`` would have raised. Each
            item must be what ``factory`` gives for that context alone (to the precision the
            metric documents); it exists to share work across SAEs that one call cannot (one
            batched model pass, one batch of judge prompts). Without it the harness calls
            ``factory`` per cell.
    """

    factory: "Callable[..., dict[str, float]] | str" = ""
    scores: dict[str, ScoreInfo] = field(default_factory=dict)
    needs: frozenset[str] = frozenset()
    params: dict[str, Any] = field(default_factory=dict)
    batch_factory: "Callable[..., list[Any]] | str" = ""

    kind: str = field(default="metric", init=False, repr=False, compare=False)

    def evaluate(self, ctx: "MetricContext", **overrides: Any) -> "MetricResult":
        """Run the factory with ``params`` updated by ``overrides``; its result as a
        :class:`MetricResult`. A plain dict return is wrapped, its details taken from where the
        older contract put them (``ctx.extras["details"][name]``)."""
        fn = resolve_ref(self.factory, what=f"metric {self.name!r}")
        return self._result(ctx, fn(ctx, **{**self.params, **overrides}))

    def evaluate_many(self, ctxs: "list[MetricContext]", **overrides: Any) -> "list[MetricResult | BaseException]":
        """One item per context: its :class:`MetricResult`, or the exception scoring it raised.
        With a ``batch_factory`` the contexts are scored in one call; without, one by one
        (``evaluate``). ``KeyboardInterrupt`` is never captured."""
        if not self.batch_factory or len(ctxs) < 2:
            out: list[MetricResult | BaseException] = []
            for ctx in ctxs:
                try:
                    out.append(self.evaluate(ctx, **overrides))
                except Exception as exc:  # noqa: BLE001 - returned per context, as the batch path does
                    out.append(exc)
            return out
        fn = resolve_ref(self.batch_factory, what=f"metric {self.name!r} (batch_factory)")
        items = list(fn(list(ctxs), **{**self.params, **overrides}))
        if len(items) != len(ctxs):
            raise PluginError(f"metric {self.name!r}: batch_factory returned {len(items)} items for {len(ctxs)} contexts; "
                              "it must return one result (or exception) per context, in order")
        results: list[MetricResult | BaseException] = []
        for ctx, item in zip(ctxs, items):
            if isinstance(item, BaseException):
                results.append(item)
                continue
            try:
                results.append(self._result(ctx, item))
            except PluginError as exc:
                results.append(exc)
        return results

    def _result(self, ctx: "MetricContext", out: Any) -> "MetricResult":
        if isinstance(out, MetricResult):
            return out
        if isinstance(out, Mapping):
            legacy = (ctx.extras.get("details") or {}).pop(self.name, None) if isinstance(ctx.extras, dict) else None
            return MetricResult(dict(out), legacy)
        raise PluginError(f"metric {self.name!r} returned {type(out).__name__}; its factory must return a "
                          "MetricResult(scores, details) or a dict of scores")

    def compute(self, ctx: "MetricContext", **overrides: Any) -> dict[str, float]:
        """The scores alone (``evaluate(ctx, **overrides).scores`` as a dict)."""
        return dict(self.evaluate(ctx, **overrides).scores)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "needs": sorted(self.needs), "scores": sorted(self.scores),
                "headline": {s: i.headline for s, i in self.scores.items() if i.headline}, "params": self.params,
                "batched": bool(self.batch_factory)}


class NotApplicable(DataError):
    """Raised by a metric whose needs this activation set (or its model) cannot meet, e.g. a set
    without ground truth, or a model that answers too few RAVEL questions to edit. The harness
    records the metric as ``skipped`` with ``reason`` (kept: a later run skips it again without
    recomputing), never as an error."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, eq=False)
class MetricResult(Mapping[str, float]):
    """What a metric returns for one SAE.

    Attributes:
        scores: score name -> value, exactly the keys the spec declares (the harness stores them
            as floats).
        details: anything the metric reports beside its scores (per-task accuracies, a judge's
            explanations), stored with the result as JSON (values it cannot encode as their
            ``str``); None for none.

    It reads as the mapping of its scores (``result["top1"]``, ``dict(result)``), so code that
    took a metric's dict return keeps working.
    """

    scores: Mapping[str, float]
    details: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.scores, Mapping):
            raise PluginError(f"MetricResult.scores must be a mapping of score name -> float, got {type(self.scores).__name__}")
        object.__setattr__(self, "scores", dict(self.scores))
        if self.details is not None:
            if not isinstance(self.details, Mapping):
                raise PluginError(f"MetricResult.details must be a mapping or None, got {type(self.details).__name__}")
            object.__setattr__(self, "details", dict(self.details))

    def __getitem__(self, key: str) -> float:
        return self.scores[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.scores)

    def __len__(self) -> int:
        return len(self.scores)

    def __repr__(self) -> str:
        return f"MetricResult(scores={self.scores!r}, details={'...' if self.details else None})"


class MetricCache:
    """Work shared by the SAEs scored in one process (model activations of the probing texts, a
    set's clean and ablated reference runs, built probing tasks...): one bounded LRU store per
    namespace. The scorer owns it (the harness keeps one per worker process and gives it to every
    context it builds); a context built by hand gets a fresh one.

    Written here rather than with ``functools.lru_cache``: entries are keyed by a computed identity
    (model weights, hashed texts) rather than by the call's arguments, and whoever owns the cache,
    not the function, decides its lifetime (a test clears it; a new worker starts empty). Values
    must never decide a number: a miss recomputes exactly what a hit returns."""

    def __init__(self) -> None:
        self._stores: dict[str, OrderedDict[Hashable, Any]] = {}

    def get(self, namespace: str, key: Hashable, compute: Callable[[], T], max_entries: int = 8) -> T:
        """The value stored under ``(namespace, key)``, else ``compute()`` stored there; a
        namespace keeps its ``max_entries`` most recently used entries."""
        store = self._stores.setdefault(namespace, OrderedDict())
        if key in store:
            store.move_to_end(key)
            return store[key]
        value = compute()
        store[key] = value
        while len(store) > max(1, int(max_entries)):
            store.popitem(last=False)
        return value

    def size(self, namespace: str) -> int:
        """Entries held in ``namespace``."""
        return len(self._stores.get(namespace, ()))

    def clear(self, namespace: str | None = None) -> None:
        """Drop one namespace's entries, or every entry."""
        if namespace is None:
            self._stores.clear()
        else:
            self._stores.pop(namespace, None)


#: ``resolver(name, params) -> Judge`` / ``-> ProbingTask``: how a context builds a judge or a
#: probing task named in a metric's parameters (the harness backs them with the registry)
JudgeResolver = Callable[[str, dict], Any]
TaskResolver = Callable[[str, dict], Any]


@dataclass(frozen=True, eq=False)
class MetricContext:
    """Everything a metric may read about one cell, with shared work cached.

    Attributes:
        sae: the trained sae-lens SAE (eval mode), on ``device``.
        activation_set: the cell's ``ActivationSet``.
        eval_acts: held-out activations ``[n_eval, d_in]`` (CPU; moved to ``device`` chunk by chunk).
        batch_size: rows per chunk when encoding ``eval_acts``.
        device: where metrics run the SAE and the language model (``"cpu"``, ``"cuda:0"``, ``"mps"``):
            the SAE's own device unless given. Reductions may still move results to the CPU (in
            float64); no metric moves the SAE or the model off this device.
        lm: a ready language-model handle (``metrics.lm.LMHandle`` or any object with ``model``,
            ``tokenizer``, ``hook_point``); None: the set's ``resource("model")`` on ``device``
            (see :meth:`lm_handle`).
        judge: a ready ``Judge`` used whatever judge a metric's parameters name, or a
            :data:`JudgeResolver`; None: no judge available (:meth:`get_judge` raises NotApplicable).
        probing_tasks: a :data:`TaskResolver` or a mapping name -> built ``ProbingTask``; None:
            none available.
        cache: work shared across the contexts of one scorer (:class:`MetricCache`).
        extras: anything else a caller hands a plugin metric.
    """

    sae: Any
    activation_set: Any
    eval_acts: Any
    batch_size: int = 4096
    device: Any = None
    lm: Any = None
    judge: Any = None
    probing_tasks: Any = None
    cache: MetricCache = field(default_factory=MetricCache)
    extras: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from saebench_sanity.devices import module_device

        object.__setattr__(self, "device", str(self.device if self.device is not None else module_device(self.sae)))

    @property
    def dtype(self) -> str:
        """The SAE's parameter dtype (``"float32"``...), recorded with every metric's result."""
        w = getattr(self.sae, "W_dec", None)
        return str(getattr(w, "dtype", "unknown")).replace("torch.", "")

    @property
    def set_name(self) -> str:
        return str(getattr(self.activation_set, "name", "?"))

    def resource(self, need: str) -> Any:
        """The activation set's ``resource(need)`` with its language model (a ``model`` attribute)
        on ``device`` (``devices.model_on``: moved once per process, the set's own copy untouched)."""
        import copy

        from saebench_sanity.devices import model_on

        res = self.activation_set.resource(need)
        model = getattr(res, "model", None)
        if model is None or not hasattr(model, "parameters"):
            return res
        moved = model_on(model, self.device)
        if moved is model:
            return res
        res = copy.copy(res)
        object.__setattr__(res, "model", moved)  # also for a frozen dataclass handle (a plugin's)
        return res

    def lm_handle(self) -> Any:
        """The language model behind this cell as a ``metrics.lm.LMHandle``: ``lm`` if given, else
        the set's ``resource("model")`` with the model on ``device``. NotApplicable when the set
        has no language model."""
        from saebench_sanity.metrics.lm import LMHandle

        if isinstance(self.lm, LMHandle):
            return self.lm
        cached = self.__dict__.get("_lm_handle")
        if cached is not None:
            return cached
        source = self.lm
        if source is None:
            try:
                source = self.resource("model")
            except (KeyError, NotImplementedError):
                raise NotApplicable(f"activation set {self.set_name!r} has no language model; this metric needs "
                                    "a real (harvested) set") from None
        handle = LMHandle.from_resource(source, self.set_name)
        self.__dict__["_lm_handle"] = handle  # per context: every metric of the cell shares it
        return handle

    def get_judge(self, name: str, params: dict[str, Any] | None = None) -> Any:
        """The judge ``name`` built with ``params`` (the given ``judge`` if it is a ready Judge),
        moved to ``device`` when it runs a model here (the local judge)."""
        from saebench_sanity.judges.base import Judge

        if isinstance(self.judge, Judge):
            return self.judge
        if self.judge is None:
            raise NotApplicable(f"no judge available to this metric context (wanted {name!r}); "
                                "the scorer passes MetricContext(judge=...)")
        built = self.judge(name, dict(params or {}))
        use_device = getattr(built, "use_device", None)  # a judge that runs a model here follows the scoring device
        if callable(use_device):
            use_device(self.device)
        return built

    def probing_task(self, name: str, params: dict[str, Any] | None = None) -> Any:
        """The probing task ``name`` built with ``params``."""
        tasks = self.probing_tasks
        if tasks is None:
            raise NotApplicable(f"no probing tasks available to this metric context (wanted {name!r}); "
                                "the scorer passes MetricContext(probing_tasks=...)")
        if isinstance(tasks, Mapping):
            if name not in tasks:
                raise DataError(f"probing task {name!r} is not among the context's tasks ({', '.join(sorted(tasks))})")
            return tasks[name]
        return tasks(name, dict(params or {}))

    @cached_property
    def feature_acts(self) -> Any:
        """SAE latent activations on ``eval_acts``: ``[n_eval, d_sae]`` (on ``device``)."""
        import torch

        with torch.no_grad():
            return torch.cat([self.sae.encode(chunk.to(self.device))
                              for chunk in self.eval_acts.split(self.batch_size)])

    @cached_property
    def reconstruction(self) -> Any:
        """SAE reconstruction of ``eval_acts``: ``[n_eval, d_in]`` (on ``device``)."""
        import torch

        with torch.no_grad():
            return torch.cat([self.sae.decode(chunk) for chunk in self.feature_acts.split(self.batch_size)])
