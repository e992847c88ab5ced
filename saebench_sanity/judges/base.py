"""The Judge contract.

A judge answers chat prompts: ``judge.complete(messages, max_tokens=...) -> str`` with
``messages`` in the OpenAI chat schema (``[{"role": "system"|"user"|"assistant", "content": str}]``),
deterministically (temperature 0). AutoInterp uses one judge as explainer and as detector.

``judge.identity`` (``"<plugin>:<model>"``) is part of the autointerp metric's result identity:
scores from different judges are never compared in one verdict.

A judge that cannot answer (endpoint down, timeouts after retries, malformed replies, rate
limits that never clear, its time budget used up) raises :class:`JudgeError` with one line; the
harness records the metric as ``skipped`` with that line as the reason (retried on the next run
when the error is ``transient``).

Time: ``with judge.budget(seconds):`` gives every call inside one wall-clock budget (the metric's);
a judge checks :meth:`Judge.remaining` before each request and wait and raises
:class:`JudgeBudgetExceeded` when it is used up. Messages never quote what a server sent
(:func:`redact` removes anything that looks like a credential from the rest).
"""

from __future__ import annotations

import re
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

from saebench_sanity.errors import DataError
from saebench_sanity.spec import Spec, resolve_ref

Messages = Sequence[dict[str, str]]


class JudgeError(DataError):
    """A judge could not answer (one line: which judge, what failed, what to do).

    ``transient``: True when a later run may succeed (endpoint down, rate limits, budget): the
    harness records a skip and retries it next run; False when the same judge would fail the same
    way (e.g. it never gives a parseable answer): the skip is kept."""

    def __init__(self, message: str, transient: bool = True) -> None:
        super().__init__(message)
        self.transient = transient


class JudgeBudgetExceeded(JudgeError):
    """The metric's time budget for its judge ran out."""


# Things that look like credentials in text a server or an exception produced: bearer tokens,
# "api_key=..." / "x-api-key: ..." pairs, OpenAI-style "sk-..." keys, basic-auth URLs.
_SECRET_PATTERNS = [
    re.compile(r"(?i)\b(bearer|basic|token)\s+[A-Za-z0-9._~+/=-]{6,}"),
    re.compile(r"(?i)\b(authorization|api[_-]?key|x-api-key|access[_-]?token|secret|password)(\"?\s*[:=]\s*\"?)[^\s\",;&]+"),
    re.compile(r"\b(sk|rk|pk)-[A-Za-z0-9_-]{8,}"),
    re.compile(r"(?i)(https?://)[^/\s:@]+:[^/\s@]+@"),
]


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with every occurrence of ``secrets`` (e.g. the configured API key) and anything
    matching a credential pattern replaced by ``[redacted]``."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "[redacted]")
    text = _SECRET_PATTERNS[0].sub(lambda m: f"{m.group(1)} [redacted]", text)
    text = _SECRET_PATTERNS[1].sub(lambda m: f"{m.group(1)}{m.group(2)}[redacted]", text)
    text = _SECRET_PATTERNS[2].sub("[redacted]", text)
    return _SECRET_PATTERNS[3].sub(lambda m: f"{m.group(1)}[redacted]@", text)


class Judge:
    """Base class: subclasses implement :meth:`_complete`; :meth:`complete_many` runs prompts
    with the judge's concurrency limit (sequentially unless overridden)."""

    plugin: str = "judge"
    model: str = "?"
    #: True when the judge implements :meth:`yes_logodds` (a local model reads its own next-token
    #: distribution; chat APIs mostly do not expose one, so they answer in text instead).
    scores_yes_no: bool = False

    #: monotonic time at which the current budget (:meth:`budget`) ends; None = unbounded
    _budget_end: float | None = None
    _budget_seconds: float | None = None
    _budget_what: str = ""

    @property
    def identity(self) -> str:
        return f"{self.plugin}:{self.model}"

    @contextmanager
    def budget(self, seconds: float | None, what: str = "metric") -> Iterator["Judge"]:
        """Every call inside shares ``seconds`` of wall-clock time (None: no limit); ``what``
        names the budget's owner in the error. Budgets nest: the inner one cannot outlast the
        outer. Not re-entrant across threads that use one judge for two metrics at once."""
        saved = (self._budget_end, self._budget_seconds, self._budget_what)
        if seconds is not None:
            end = time.monotonic() + float(seconds)
            if self._budget_end is None or end < self._budget_end:
                self._budget_end, self._budget_seconds, self._budget_what = end, float(seconds), what
        try:
            yield self
        finally:
            self._budget_end, self._budget_seconds, self._budget_what = saved

    def remaining(self) -> float:
        """Seconds left of the current budget (``inf`` without one; never negative)."""
        if self._budget_end is None:
            return float("inf")
        return max(0.0, self._budget_end - time.monotonic())

    def check_budget(self, doing: str = "") -> None:
        """:class:`JudgeBudgetExceeded` when the current budget is used up."""
        if self._budget_end is not None and time.monotonic() >= self._budget_end:
            raise JudgeBudgetExceeded(
                f"judge {self.identity}: the {self._budget_seconds:g} s time budget of {self._budget_what} ran out"
                + (f" {doing}" if doing else "") + "; raise its budget or use a faster judge")

    def complete(self, messages: Messages, max_tokens: int = 64) -> str:
        self.check_budget("before a request")
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
