"""The ProbingTask contract: a labelled text task with a fixed, balanced train/test split.

A task is a list of ``(text, label)`` examples turned into a split by :func:`make_task`:
``n_train`` + ``n_test`` examples per class, drawn with a fixed seed, so every class has the same
count on both sides (balanced) and the same name always means the same split. The manifest holds
the split's sha256 (texts and labels in order); it is part of the probing metric's identity.

Bad input (one class, too few examples of a class for the split, empty texts) raises a one-line
``DataError`` naming the task and the fix.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from saebench_sanity.activations.base import stable_hash
from saebench_sanity.errors import DataError
from saebench_sanity.spec import Spec, resolve_ref


@dataclass(frozen=True)
class ProbingTask:
    """A fixed, balanced split of a labelled text task.

    Attributes:
        name: task name (registry name).
        classes: class labels, sorted.
        train_texts / train_labels: ``n_train`` examples per class (labels are class names).
        test_texts / test_labels: ``n_test`` examples per class, disjoint from train.
        source: where the text comes from (one line, for manifests and listings).
    """

    name: str
    classes: tuple[str, ...]
    train_texts: tuple[str, ...]
    train_labels: tuple[str, ...]
    test_texts: tuple[str, ...]
    test_labels: tuple[str, ...]
    source: str = ""

    def manifest(self) -> dict[str, Any]:
        return {
            "task": self.name,
            "source": self.source,
            "classes": list(self.classes),
            "n_train": len(self.train_texts),
            "n_test": len(self.test_texts),
            "split_sha256": stable_hash([self.train_texts, self.train_labels, self.test_texts, self.test_labels]),
        }

    def manifest_hash(self) -> str:
        return stable_hash(self.manifest())

    def sizes(self) -> dict[str, int]:
        """Examples per class on each side (they are equal by construction)."""
        return {"classes": len(self.classes), "train_per_class": len(self.train_texts) // max(1, len(self.classes)),
                "test_per_class": len(self.test_texts) // max(1, len(self.classes))}


def make_task(name: str, examples: Iterable[tuple[str, str]], *, n_train: int, n_test: int, seed: int = 0,
              source: str = "", classes: Iterable[str] | None = None) -> ProbingTask:
    """Balanced fixed split of ``examples`` (``(text, label)`` pairs).

    Duplicated texts are dropped (a text in both train and test would leak); each class keeps
    ``n_train + n_test`` examples drawn with ``random.Random(seed)`` after sorting, so the split
    depends only on the data and the seed. ``classes`` restricts (and orders) the labels used.
    """
    if n_train < 1 or n_test < 1:
        raise DataError(f"probing task {name!r}: n_train and n_test must be >= 1 (got {n_train}, {n_test})")
    by_class: dict[str, set[str]] = defaultdict(set)
    seen: set[str] = set()
    for text, label in examples:
        text = str(text).strip()
        if not text or text in seen:
            continue
        seen.add(text)
        by_class[str(label)].add(text)
    wanted = sorted(by_class) if classes is None else [str(c) for c in classes]
    if len(wanted) < 2:
        raise DataError(f"probing task {name!r} has {len(wanted)} class(es) ({', '.join(wanted) or 'none'}); "
                        f"a probing task needs at least 2 labels")
    need = n_train + n_test
    short = {c: len(by_class.get(c, ())) for c in wanted if len(by_class.get(c, ())) < need}
    if short:
        worst = ", ".join(f"{c}={n}" for c, n in sorted(short.items()))
        raise DataError(f"probing task {name!r}: too few examples for a {n_train}+{n_test} per-class split "
                        f"({worst}); lower n_train/n_test or add examples")
    rng = random.Random(seed)
    train, test = [], []
    for c in sorted(wanted):
        pool = sorted(by_class[c])
        rng.shuffle(pool)
        train += [(t, c) for t in pool[:n_train]]
        test += [(t, c) for t in pool[n_train:need]]
    rng.shuffle(train)
    rng.shuffle(test)
    return ProbingTask(
        name=name, classes=tuple(sorted(wanted)),
        train_texts=tuple(t for t, _ in train), train_labels=tuple(c for _, c in train),
        test_texts=tuple(t for t, _ in test), test_labels=tuple(c for _, c in test), source=source,
    )


@dataclass(frozen=True)
class ProbingTaskSpec(Spec):
    """Registered probing task.

    Attributes:
        factory: callable or ``"module:attr"``; ``factory(name=..., **params)`` returns a
            :class:`ProbingTask`.
        params: default factory arguments (split sizes, seed, source options); part of the
            task's identity through the manifest.
        source: ``"offline"`` (built from installed packages) or ``"hub"`` (needs network or a
            local copy of a Hugging Face dataset).
    """

    factory: "Callable[..., ProbingTask] | str" = ""
    params: dict[str, Any] = field(default_factory=dict)
    source: str = "offline"

    kind: str = field(default="probing_task", init=False, repr=False, compare=False)

    def build(self, **overrides: Any) -> ProbingTask:
        fn = resolve_ref(self.factory, what=f"probing task {self.name!r}")
        task = fn(name=self.name, **{**self.params, **overrides})
        if not isinstance(task, ProbingTask):
            raise DataError(f"probing task {self.name!r}: factory returned {type(task).__name__}, not a ProbingTask; "
                            f"build it with saebench_sanity.probing_tasks.base.make_task")
        return task

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "source": self.source, "params": self.params}
