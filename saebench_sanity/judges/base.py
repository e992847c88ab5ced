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
    #: True when the judge implements :meth:`yes_logodds` (a local model reads its own next-token
    #: distribution; chat APIs mostly do not expose one, so they answer in text instead).
    scores_yes_no: bool = False

    @property
    def identity(self) -> str:
        return f"{self.plugin}:{self.model}"

    def complete(self, messages: Messages, max_tokens: int = 64) -> str:
        return self._complete(list(messages), max_tokens)

    def complete_many(self, prompts: Sequence[Messages], max_tokens: int = 64) -> list[str]:
        return [self.complete(m, max_tokens) for m in prompts]

    def yes_logodds(self, prompts: Sequence[Messages]) -> list[float]:
        """For yes/no questions: ``log p(Yes) - log p(No)`` of the first answer token, per prompt."""
        raise NotImplementedError(f"judge {self.identity} does not score yes/no answers; use complete()")

    def _complete(self, messages: list[dict[str, str]], max_tokens: int) -> str:  # pragma: no cover
        raise NotImplementedError


class CallableJudge(Judge):
    """A judge from a plain function ``fn(messages, max_tokens) -> str`` (oracles in tests,
    quick experiments)."""

    def __init__(self, fn: Callable[[list[dict[str, str]], int], str], model: str = "callable", plugin: str = "callable",
                 yes_no: Callable[[list[dict[str, str]]], float] | None = None) -> None:
        self.fn, self.model, self.plugin, self.yes_no = fn, model, plugin, yes_no
        self.scores_yes_no = yes_no is not None

    def yes_logodds(self, prompts: Sequence[Messages]) -> list[float]:
        if self.yes_no is None:
            return super().yes_logodds(prompts)
        return [float(self.yes_no(list(m))) for m in prompts]

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
