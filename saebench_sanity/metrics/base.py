"""The Metric contract.

A metric is a named computation over one trained SAE on one activation set. It yields one or
more *scores* (the units a leaderboard compares), each declared up front with its direction and
chance level, and it declares what it *needs* from the set (``ground_truth``, ``model``,
``labels``, ``judge``: see ``activations.base``). The harness skips a metric whose needs the set
cannot meet and records the reason; it is never silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, Literal

from saebench_sanity.errors import PluginError
from saebench_sanity.spec import Spec, resolve_ref

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
    """

    direction: Direction | None = "higher"
    chance: float | None = None
    min_effect: float | None = None
    definition: str = ""
    headline: str = ""
    headline_priority: int = 0

    def __post_init__(self) -> None:
        if self.headline and self.direction is None:
            raise PluginError(f"ScoreInfo(headline={self.headline!r}) needs a direction: a descriptive score "
                              "gets no verdict, so it cannot fill a headline column")


@dataclass(frozen=True)
class MetricSpec(Spec):
    """Registered metric.

    Attributes:
        factory: callable or ``"module:attr"``; ``factory(ctx: MetricContext, **params)`` returns
            ``dict[score_name, float]`` with exactly the keys of ``scores``.
        scores: score name -> ScoreInfo.
        needs: what the activation set must provide.
        params: default parameters (e.g. ``{"cos_threshold": 0.8}``).
    """

    factory: "Callable[..., dict[str, float]] | str" = ""
    scores: dict[str, ScoreInfo] = field(default_factory=dict)
    needs: frozenset[str] = frozenset()
    params: dict[str, Any] = field(default_factory=dict)

    kind: str = field(default="metric", init=False, repr=False, compare=False)

    def compute(self, ctx: "MetricContext", **overrides: Any) -> dict[str, float]:
        fn = resolve_ref(self.factory, what=f"metric {self.name!r}")
        return fn(ctx, **{**self.params, **overrides})

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "needs": sorted(self.needs), "scores": sorted(self.scores),
                "headline": {s: i.headline for s, i in self.scores.items() if i.headline}, "params": self.params}


class MetricContext:
    """Everything a metric may read about one cell, with shared work cached.

    Attributes:
        sae: the trained sae-lens SAE (eval mode), on ``device``.
        activation_set: the cell's ``ActivationSet``.
        eval_acts: held-out activations ``[n_eval, d_in]`` (CPU; moved to ``device`` chunk by chunk).
        device: where metrics run the SAE and the language model (``"cpu"``, ``"cuda:0"``, ``"mps"``):
            the SAE's own device unless given. Reductions may still move results to the CPU (in
            float64); no metric moves the SAE or the model off this device.
        extras: anything the harness adds (judge, labels...).
    """

    def __init__(self, sae: Any, activation_set: Any, eval_acts: Any, batch_size: int = 4096,
                 device: Any = None, **extras: Any) -> None:
        from saebench_sanity.devices import module_device

        self.sae = sae
        self.activation_set = activation_set
        self.eval_acts = eval_acts
        self.batch_size = batch_size
        self.device = str(device if device is not None else module_device(sae))
        self.extras = extras

    @property
    def dtype(self) -> str:
        """The SAE's parameter dtype (``"float32"``...), recorded with every metric's result."""
        w = getattr(self.sae, "W_dec", None)
        return str(getattr(w, "dtype", "unknown")).replace("torch.", "")

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
