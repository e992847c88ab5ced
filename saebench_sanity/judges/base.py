"""The Judge contract.

A judge answers chat prompts: ``judge.complete(messages, max_tokens=...) -> str`` with
``messages`` in the OpenAI chat schema (``[{"role": "system"|"user"|"assistant", "content": str}]``),
deterministically (temperature 0). AutoInterp uses one judge as explainer and as detector.

``judge.identity`` (``"<plugin>:<model>"``) is part of the autointerp metric's result identity:
scores from different judges are never compared in one verdict.

A judge that cannot answer (endpoint down, timeouts after retries, malformed replies, rate
limits that never clear) raises :class:`JudgeError` with one line; the metric turns it into a
recorded skip.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from saebench_sanity.errors import DataError
from saebench_sanity.spec import Spec, resolve_ref

Messages = Sequence[dict[str, str]]


class JudgeError(DataError):
    """A judge could not answer (one line: which judge, what failed, what to do)."""


class Judge:
    """Base class: subclasses implement :meth:`_complete`; :meth:`complete_many` runs prompts
    with the judge's concurrency limit (sequentially unless overridden)."""

    plugin: str = "judge"
    model: str = "?"

    @property
    def identity(self) -> str:
        return f"{self.plugin}:{self.model}"

    def complete(self, messages: Messages, max_tokens: int = 64) -> str:
        return self._complete(list(messages), max_tokens)

    def complete_many(self, prompts: Sequence[Messages], max_tokens: int = 64) -> list[str]:
        return [self.complete(m, max_tokens) for m in prompts]

    def _complete(self, messages: list[dict[str, str]], max_tokens: int) -> str:  # pragma: no cover
        raise NotImplementedError


class CallableJudge(Judge):
    """A judge from a plain function ``fn(messages, max_tokens) -> str`` (oracles in tests,
    quick experiments)."""

    def __init__(self, fn: Callable[[list[dict[str, str]], int], str], model: str = "callable", plugin: str = "callable") -> None:
        self.fn, self.model, self.plugin = fn, model, plugin

    def _complete(self, messages: list[dict[str, str]], max_tokens: int) -> str:
        return self.fn(messages, max_tokens)


@dataclass(frozen=True)
class JudgeSpec(Spec):
    """Registered judge plugin.

    Attributes:
        factory: callable or ``"module:attr"``; ``factory(**params)`` returns a :class:`Judge`.
        params: default parameters (model name, endpoint, cache folder...).
        offline: True when the judge runs without network (the default suite only uses those).
    """

    factory: "Callable[..., Judge] | str" = ""
    params: dict[str, Any] = field(default_factory=dict)
    offline: bool = True

    kind: str = field(default="judge", init=False, repr=False, compare=False)

    def build(self, **overrides: Any) -> Judge:
        fn = resolve_ref(self.factory, what=f"judge {self.name!r}")
        return fn(**{**self.params, **overrides})

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "params": self.params, "offline": self.offline}
