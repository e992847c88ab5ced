"""The ActivationSet contract.

An activation set yields activation batches ``[batch, d_in]`` (float32) for training, a fixed
held-out evaluation tensor ``[n_eval, d_in]``, and, when it has them, ground truth (the true
feature dictionary ``[n_features, d_in]``) or a model handle (for loss-recovered and friends).

Its manifest is a JSON-ready dict of everything that determines the data (generator parameters,
seed, a hash of a fixed probe batch; for on-disk real sets the recipe: model weights, hook point,
token ids, sizes, not float bytes); ``manifest_hash`` of it is part of every cell's cache key, so
the same name always means the same data.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from saebench_sanity.io import stable_hash  # noqa: F401 - re-exported: it lived here before io.py
from saebench_sanity.spec import Spec, resolve_ref

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: Needs a set can satisfy; metrics declare a subset of these (see metrics.base).
NEED_GROUND_TRUTH = "ground_truth"
NEED_MODEL = "model"
NEED_LABELS = "labels"
NEED_JUDGE = "judge"


def tensor_hash(t: "torch.Tensor") -> str:
    """sha256 hex of a tensor's float32 bytes (contiguous, CPU)."""
    import torch

    data = t.detach().to(torch.float32).contiguous().cpu().numpy().tobytes()
    return hashlib.sha256(data).hexdigest()


@dataclass
class GroundTruth:
    """Known generating features of a synthetic set.

    Attributes:
        features: true feature directions ``[n_features, d_in]`` (rows unit norm).
        firing_probabilities: per-feature firing probability ``[n_features]``, or None.
    """

    features: "torch.Tensor"
    firing_probabilities: "torch.Tensor | None" = None


class ActivationSet(ABC):
    """A source of activations. Subclasses set ``name`` and ``d_in``.

    Training data and evaluation data must not overlap: ``eval_activations`` is a fixed
    held-out tensor (for synthetic sets: drawn from a generator seeded apart from training).
    """

    name: str
    d_in: int

    @abstractmethod
    def manifest(self) -> dict[str, Any]:
        """Everything that determines the data, JSON-ready."""

    def manifest_hash(self) -> str:
        return stable_hash(self.manifest())

    @abstractmethod
    def train_batches(self, batch_size: int, seed: int) -> Iterator["torch.Tensor"]:
        """Endless iterator of training batches ``[batch_size, d_in]``; same seed, same batches."""

    @abstractmethod
    def eval_activations(self) -> "torch.Tensor":
        """Fixed held-out activations ``[n_eval, d_in]``."""

    def sample_activations(self, n: int, seed: int = 0) -> "torch.Tensor":
        """``[n, d_in]`` activations from the training distribution (for cov init, scaling)."""
        import torch

        chunks, got = [], 0
        for batch in self.train_batches(batch_size=min(n, 4096), seed=seed + 7919):
            chunks.append(batch)
            got += batch.shape[0]
            if got >= n:
                break
        return torch.cat(chunks)[:n]

    @property
    def ground_truth(self) -> GroundTruth | None:
        """True features if known (synthetic sets), else None."""
        return None

    @property
    def provides(self) -> frozenset[str]:
        """Needs this set can meet (subset of NEED_* constants)."""
        return frozenset({NEED_GROUND_TRUTH}) if self.ground_truth is not None else frozenset()

    def resource(self, need: str) -> Any:
        """The object behind a need other than ground truth (a model handle, labelled data...)."""
        raise KeyError(need)


@dataclass(frozen=True)
class ActivationSetSpec(Spec):
    """Registered activation set.

    Attributes:
        factory: callable or ``"module:attr"`` returning an ``ActivationSet`` when called with
            ``**params``.
        params: default keyword arguments for the factory (part of the set's identity).
        family: grouping for listings (``"synthetic"``, ``"real"``, ...).
        d_in: the set's activation width, if known without building it (for listings).
        training: recommended training budget overrides for this set (e.g. ``{"steps": 8000}``);
            a run config may override them again.
    """

    factory: "Callable[..., ActivationSet] | str" = ""
    params: dict[str, Any] = field(default_factory=dict)
    family: str = "synthetic"
    d_in: int | None = None
    training: dict[str, Any] = field(default_factory=dict)

    kind: str = field(default="activation_set", init=False, repr=False, compare=False)

    def build(self, **overrides: Any) -> ActivationSet:
        fn = resolve_ref(self.factory, what=f"activation set {self.name!r}")
        return fn(**{**self.params, **overrides})

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "family": self.family, "d_in": self.d_in}
