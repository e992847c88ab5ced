"""Synthetic activation sets with known ground truth.

Two families share the machinery in :class:`GeneratedActivationSet`:

* :class:`SaeLensSyntheticSet` (``synth-easy``, ``synth-zipf``, ``synth-corr-hier``) is built on
  ``sae_lens.synthetic`` (feature dictionary, firing-probability / correlation / hierarchy
  configs and its ``ActivationGenerator``), so the data is exactly what SAELens's synthetic
  benchmark would draw for the same configuration.
* ``saebench_sanity.activations.study_synthetic.StudySyntheticSet`` (``study-*``) is the generator
  of Korznikov et al. (2026), Finding 1, which is *not* SAELens's module.

What is written here by hand, and why (sae-lens has no equivalent):

* per-seed, isolated random streams: SAELens samples from torch's *global* RNG; a training stream
  here is a ``torch.Generator`` seeded from ``(set seed, "train", seed)`` and every batch draws a
  fresh global seed from it inside ``torch.random.fork_rng``, so streams are reproducible per seed,
  never touch the caller's RNG, and the held-out eval set (seeded from ``(set seed, "eval")``)
  cannot coincide with training data;
* mixing ``x = codes @ features + bias`` is done sparsely in float64 and cast to float32, so the
  data (and the probe hash in the manifest) do not depend on BLAS threading;
* the manifest (every generator parameter, seeds, sha256 of the dictionary and of a fixed probe
  batch). Its identity (``manifest_hash``, in every cell's key) is the recipe alone: the
  parameters and seeds, not the sha256 of float values. Another CPU's kernels round the
  generated dictionary and data differently (measured on a 2-core AVX512 Xeon: with torch and
  MKL capped at SSE4.2, ``ATEN_CPU_CAPABILITY=default MKL_ENABLE_INSTRUCTIONS=SSE4_2``, the
  dictionary and probe hashes of synth-easy, synth-zipf and synth-corr-hier all change, those of
  study-constant-mini do not), and a recipe-keyed cell keeps its identity there, so results line
  up and a Ray worker on another machine accepts the set; the float hashes stay in the manifest,
  recorded with the run, as a check on one machine.

Importing this module does not import sae_lens (it is imported on first use).
"""

from __future__ import annotations

import copy
import math
import os
import weakref
from abc import abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Iterator
from functools import cached_property
from typing import TYPE_CHECKING, Any

from saebench_sanity.activations.base import ActivationSet, GroundTruth, stable_hash, tensor_hash
from saebench_sanity.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: Size of the fixed probe batch whose hash goes into every manifest.
N_PROBE = 256
#: Eval activations are drawn in chunks of this many samples (part of the data's definition).
EVAL_CHUNK = 4096
#: manifest entries computed from float values: recorded, but not part of the set's identity
FLOAT_HASHES = frozenset({"features_sha256", "firing_probabilities_sha256", "probe_sha256", "probe_codes_sha256"})


def derive_seed(*parts: Any) -> int:
    """A 60-bit seed from any JSON-able parts (sha256 based, stable across runs and machines)."""
    return int(stable_hash(list(parts))[:15], 16)


def check_int(name: str, value: Any, *, minimum: int = 1, where: str = "activation set") -> int:
    """``value`` as an int >= ``minimum``, else ConfigError naming the parameter."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{where}: {name} = {value!r} must be an integer >= {minimum}")
    return value


def check_float(name: str, value: Any, *, low: float | None = None, high: float | None = None,
                low_open: bool = False, where: str = "activation set") -> float:
    """``value`` as a finite float in the given range, else ConfigError."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        lo = "" if low is None else (f"> {low}" if low_open else f">= {low}")
        hi = "" if high is None else f"<= {high}"
        rng = " and ".join(s for s in (lo, hi) if s) or "finite"
        raise ConfigError(f"{where}: {name} = {value!r} must be a finite number {rng}")
    return float(value)


def mix(codes: "torch.Tensor", features64: "torch.Tensor", bias64: "torch.Tensor | None" = None) -> "torch.Tensor":
    """``codes @ features + bias`` computed sparsely in float64, returned as float32.

    Args:
        codes: feature activations ``[n, n_features]`` (dense, mostly zeros).
        features64: dictionary ``[n_features, d_in]`` in float64.
        bias64: ``[d_in]`` float64 or None.

    Returns:
        ``[n, d_in]`` float32. ``index_add_`` on CPU accumulates serially, so the result does not
        depend on the number of threads (a dense float32 matmul may).
    """
    rows, cols = codes.nonzero(as_tuple=True)
    return mix_sparse(rows, cols, codes[rows, cols], codes.shape[0], features64, bias64)


def mix_sparse(rows: "torch.Tensor", cols: "torch.Tensor", values: "torch.Tensor", n: int,
               features64: "torch.Tensor", bias64: "torch.Tensor | None" = None) -> "torch.Tensor":
    """Like :func:`mix` for codes given as COO triples (``rows``, ``cols``, ``values``: ``[nnz]``)."""
    import torch

    out = torch.zeros(n, features64.shape[1], dtype=torch.float64)
    out.index_add_(0, rows, values.to(torch.float64)[:, None] * features64[cols])
    if bias64 is not None:
        out += bias64
    return out.to(torch.float32)


def _memo_budget() -> int:
    """1 GiB, or a quarter of this machine's memory per core if that is less (a pool runs one
    process per core)."""
    try:
        ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # pragma: no cover - no sysconf (Windows)
        return 1 << 30
    return int(min(1 << 30, ram // (4 * (os.cpu_count() or 1))))


#: bytes of training batches the stream memos of one process may hold together (least recently
#: extended memos are emptied first); 16,000 batches of 256 x 32 float32 are 524 MB
STREAM_MEMO_BYTES = _memo_budget()
#: the process's memos holding batches, least recently extended first (weak: a memo goes with its set)
_MEMO_LRU: "OrderedDict[int, weakref.ref[StreamMemo]]" = OrderedDict()


def memo_bytes() -> int:
    """Bytes the stream memos of this process hold."""
    return sum(m.nbytes for m in (r() for r in list(_MEMO_LRU.values())) if m is not None)


class StreamMemo:
    """The batches of one training stream drawn so far in this process, for replay.

    Written by hand because nothing in torch or sae-lens memoises a generator's output. Drawing a
    synthetic batch (sae-lens's activation generator, then the float64 mix) costs 0.26-2.2 ms at
    256 x 32 (benchmarks/test_bench_streams.py), as much as a small cohort's step, and every architecture's cohort on the same
    (set, seed) draws the identical stream: replaying it is exact and free. The memo keeps the
    batches and the ``torch.Generator`` state after the last of them, so a consumer that runs
    past the memo continues the very same stream (and extends the memo while the process's
    ``STREAM_MEMO_BYTES`` allow; the least recently extended other memos are emptied first).

    Batches are copied into chunks of ``CHUNK`` batches: keeping each drawn tensor instead left
    one small block per step among the training step's freed temporaries, and the training
    steps around them slowed down (the default suite's synthetic half took 38 min 36 s that way,
    against 35 min 52 s with no memo at all on the same machine; docs/performance.md)."""

    #: batches per chunk (one allocation; 8 MB at 256 x 32 float32)
    CHUNK = 256

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.chunks: list[Any] = []  # [CHUNK, *batch shape] tensors
        self.length = 0  # batches held
        self.nbytes = 0  # bytes of the chunks
        self.state: Any = None  # generator state after the last batch held; None: the seed's initial state

    def get(self, i: int) -> Any:
        """A copy of batch ``i`` (``i < length``)."""
        return self.chunks[i // self.CHUNK][i % self.CHUNK].clone()

    def _generator(self, at: int) -> Any:
        """A generator positioned after batch ``at - 1``: the memo's state when ``at`` is its
        length, else (the memo was emptied under a live consumer) None, or a new one at 0."""
        import torch

        g = torch.Generator().manual_seed(self.seed)
        if at == self.length and self.state is not None:
            g.set_state(self.state)
            return g
        return g if at == 0 else None

    def _keep(self, x: Any, g: Any) -> None:
        import torch

        row = self.length % self.CHUNK
        if row and (x.shape != self.chunks[-1].shape[1:] or x.dtype != self.chunks[-1].dtype):
            return  # a batch of another shape than its chunk's: nothing more is kept
        if row == 0:
            size = self.CHUNK * x.element_size() * x.nelement()
            key = id(self)

            def forget(_: Any) -> None:
                _MEMO_LRU.pop(key, None)

            ref = _MEMO_LRU.pop(key, None) or weakref.ref(self, forget)
            _MEMO_LRU[key] = ref  # most recently extended last
            held = memo_bytes()
            for other_ref in list(_MEMO_LRU.values()):
                other = other_ref()
                if held + size <= STREAM_MEMO_BYTES or other is self:
                    break
                if other is not None:
                    held -= other.nbytes
                    other.clear()
            if held + size > STREAM_MEMO_BYTES:
                return
            self.chunks.append(torch.empty((self.CHUNK, *x.shape), dtype=x.dtype))
            self.nbytes += size
        self.chunks[-1][row].copy_(x)
        self.length += 1
        self.state = g.get_state()

    def clear(self) -> None:
        self.chunks, self.length, self.nbytes, self.state = [], 0, 0, None
        _MEMO_LRU.pop(id(self), None)

    def replay(self, draw: Callable[[Any], Any]) -> Iterator[Any]:
        """The endless stream: memoised batches (copies), then ``draw(generator)`` batches."""
        i, g = 0, None
        while True:
            if g is None and i < self.length:
                x = self.get(i)
            else:
                if g is None:
                    g = self._generator(i)
                    if g is None:  # emptied under us: draw the stream again up to here
                        g = self._generator(0)
                        for _ in range(i):
                            draw(g)
                x = draw(g)
                if self.length == i:
                    self._keep(x, g)
            yield x
            i += 1


class GeneratedActivationSet(ActivationSet):
    """An activation set drawn from a generator with known features.

    Subclasses implement ``_draw`` (one batch from a ``torch.Generator``), ``generator_params``
    (everything that defines the generator, JSON-ready) and ``_features`` / ``_firing_probs``.

    Attributes:
        name: registered name.
        d_in: activation width.
        n_features: number of true features.
        seed: the set's seed (dictionary, probabilities, eval data all derive from it).
        n_eval: number of held-out samples returned by :meth:`eval_activations`.
    """

    family = "synthetic"
    #: ``train_batches`` replays the batches this process already drew (``StreamMemo``): the
    #: harness runs the cohorts that share a stream in one worker (``harness.executor.stream_units``)
    replays_streams = True

    def __init__(self, name: str, d_in: int, n_features: int, seed: int = 0, n_eval: int = 8192) -> None:
        where = f"activation set {name!r}"
        self.name = name
        self.d_in = check_int("d_in", d_in, where=where)
        self.n_features = check_int("n_features", n_features, where=where)
        self.seed = check_int("seed", seed, minimum=0, where=where)
        self.n_eval = check_int("n_eval", n_eval, where=where)
        self._where = where

    # -- to implement --------------------------------------------------------------------------
    @abstractmethod
    def generator_params(self) -> dict[str, Any]:
        """Every parameter that defines the generator (JSON-ready)."""

    @abstractmethod
    def _draw(self, n: int, g: "torch.Generator", with_codes: bool = True) -> tuple["torch.Tensor", "torch.Tensor | None"]:
        """One batch: ``(x [n, d_in] float32, codes [n, n_features] sparse COO float32 or None)``.

        ``with_codes=False`` may skip building the codes but must consume ``g`` identically."""

    def _draw_coded(self, n: int, g: "torch.Generator") -> tuple["torch.Tensor", "torch.Tensor"]:
        """:meth:`_draw` with its codes, which every ``with_codes=True`` draw returns."""
        x, codes = self._draw(n, g)
        if codes is None:
            raise TypeError(f"{type(self).__name__}._draw returned no codes for with_codes=True")
        return x, codes

    @property
    @abstractmethod
    def features(self) -> "torch.Tensor":
        """True dictionary ``[n_features, d_in]``, unit rows, float32."""

    @property
    @abstractmethod
    def firing_probabilities(self) -> "torch.Tensor":
        """Per-feature firing probability ``[n_features]``."""

    # -- the ActivationSet contract ------------------------------------------------------------
    def manifest(self) -> dict[str, Any]:
        return copy.deepcopy(self._manifest)

    def manifest_hash(self) -> str:
        """Hash of the recipe: the manifest without the sha256 of float values (module docstring)."""
        return stable_hash({k: v for k, v in self._manifest.items() if k not in FLOAT_HASHES})

    @cached_property
    def _manifest(self) -> dict[str, Any]:
        import torch

        g = torch.Generator().manual_seed(derive_seed(self.seed, "probe"))
        x, codes = self._draw_coded(N_PROBE, g)
        codes = codes.coalesce()
        return {
            "name": self.name,
            "family": self.family,
            "class": f"{type(self).__module__}:{type(self).__qualname__}",
            "d_in": self.d_in,
            "n_features": self.n_features,
            "seed": self.seed,
            "n_eval": self.n_eval,
            "eval_chunk": EVAL_CHUNK,
            "generator": self.generator_params(),
            "features_sha256": tensor_hash(self.features),
            "firing_probabilities_sha256": tensor_hash(self.firing_probabilities),
            "n_probe": N_PROBE,
            "probe_sha256": tensor_hash(x),
            "probe_codes_sha256": stable_hash([tensor_hash(codes.indices().to(torch.float64)),
                                               tensor_hash(codes.values())]),
        }

    def train_batches(self, batch_size: int, seed: int) -> Iterator["torch.Tensor"]:
        """Endless ``[batch_size, d_in]`` float32 batches; the stream is a function of
        ``(set seed, seed, batch_size)`` only and is disjoint from the eval stream.

        Batches already drawn in this process are replayed from a memo (``StreamMemo``): the
        cohorts of every architecture on one (set, seed) train on the same stream, and drawing
        it costs as much as a small cohort's step. Every batch is a fresh tensor (a copy of the
        memo's)."""
        check_int("batch_size", batch_size, where=self._where)
        check_int("seed", seed, minimum=0, where=self._where)
        memos = self.__dict__.setdefault("_stream_memos", {})  # "_": never pickled (__getstate__)
        memo = memos.get((batch_size, seed))
        if memo is None:
            memo = memos[(batch_size, seed)] = StreamMemo(derive_seed(self.seed, "train", seed))
        return memo.replay(lambda g: self._draw(batch_size, g, with_codes=False)[0])

    def eval_activations(self) -> "torch.Tensor":
        """Held-out ``[n_eval, d_in]`` float32 activations (cached; do not modify in place)."""
        return self._eval[0]

    def eval_codes(self) -> "torch.Tensor":
        """True feature activations of :meth:`eval_activations`: sparse COO ``[n_eval, n_features]``."""
        return self._eval[1]

    @cached_property
    def _eval(self) -> tuple["torch.Tensor", "torch.Tensor"]:
        import torch

        g = torch.Generator().manual_seed(derive_seed(self.seed, "eval"))
        xs, codes = [], []
        for start in range(0, self.n_eval, EVAL_CHUNK):
            x, c = self._draw_coded(min(EVAL_CHUNK, self.n_eval - start), g)
            xs.append(x)
            codes.append(c)
        return torch.cat(xs), torch.cat(codes).coalesce()

    @property
    def ground_truth(self) -> GroundTruth:
        return GroundTruth(features=self.features, firing_probabilities=self.firing_probabilities)

    def expected_l0(self) -> float:
        """Expected number of active features per sample (sum of firing probabilities)."""
        return float(self.firing_probabilities.double().sum())

    def __getstate__(self) -> dict[str, Any]:
        """Pickle only the parameters (cached tensors and sae_lens objects, whose hierarchy
        modifier is a closure, are rebuilt on first use), so sets can go to worker processes."""
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_") or k == "_where"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, d_in={self.d_in}, n_features={self.n_features}, seed={self.seed})"


def float64_firing(firing: Any) -> Any:
    """``firing`` (a sae-lens ``FiringProbabilityConfig``) as a config of the same class, fields and
    serialised form whose ``generate`` returns float64.

    sae-lens computes Zipfian probabilities in float32 with ``pow``, whose vectorised kernel rounds
    differently per CPU instruction set (synth-zipf's 512 probabilities differed in their last bit
    under SSE4.2-capped kernels); a probability that differs moves some Bernoulli draws. Here
    ``zipfian`` is the same formula in float64 (checked against sae-lens's to float32 precision
    in the tests); other generators are sae-lens's own values widened (``random`` draws with
    ``torch.rand``, the same bits on any CPU; ``constant`` is exact). The class is made here, per
    call, and never pickled: a set pickles only its parameters and rebuilds this on first use."""
    import dataclasses

    cls = type(firing)

    def generate(self: Any, num_features: int, seed: int | None = None) -> "torch.Tensor":
        import torch

        probs = cls.generate(self, num_features, seed=seed)  # sae-lens's values and argument checks
        if self.generator_name() != "zipfian" or num_features == 1:
            return probs.to(torch.float64)
        ranks = torch.arange(1, num_features + 1, dtype=torch.float64)
        raw = 1.0 / ranks ** float(self.exponent)
        lo, hi = raw.min(), raw.max()
        return float(self.min_prob) + (float(self.max_prob) - float(self.min_prob)) * (raw - lo) / (hi - lo)

    wide = type(cls.__name__, (cls,), {"generate": generate, "__module__": cls.__module__})
    return wide(**{f.name: getattr(firing, f.name) for f in dataclasses.fields(firing)})


def _sae_lens_config_error(where: str, what: str, exc: Exception) -> ConfigError:
    return ConfigError(f"{where}: invalid {what} ({exc}); see sae_lens.synthetic for the accepted fields")


class SaeLensSyntheticSet(GeneratedActivationSet):
    """Activations from ``sae_lens.synthetic.SyntheticModel``.

    Args:
        name: registered name.
        d_in: activation width (SAELens ``hidden_dim``).
        n_features: number of true features.
        firing: firing-probability config in SAELens's serialised form, e.g.
            ``{"generator_name": "zipfian", "exponent": 0.5, "max_prob": 0.3, "min_prob": 0.001}``
            (``FiringProbabilityConfig.from_dict``; generators: constant, linear, random, zipfian).
        mean_magnitude: mean firing magnitude of an active feature.
        std_magnitude: std of the firing magnitude (SAELens draws ``relu(mean + std * N(0, 1))``).
        bias: norm of a random bias vector added to every sample (0 = no bias).
        orthogonalize: run SAELens's ``orthogonalize_embeddings`` on the random dictionary (makes
            features as orthogonal as the width allows: less superposition).
        correlation: ``{"rank": int, "correlation_scale": float}`` for SAELens's low-rank Gaussian
            copula correlation between firings, or None (independent firings).
        hierarchy: ``HierarchyConfig`` fields (``total_root_nodes``, ``branching_factor``,
            ``max_depth``, ``mutually_exclusive_portion``, ``compensate_probabilities``...) or None.
        seed: the set's seed (SAELens ``SyntheticModelConfig.seed``).
        n_eval: held-out sample count.

    Ground truth: ``features`` are SAELens's ``feature_vectors`` (unit rows). With a hierarchy the
    realised firing rates differ from the configured ones (children only fire with their parent),
    so ``firing_probabilities`` are then the empirical rates on the eval set; otherwise they are the
    configured marginals (a Gaussian copula keeps marginals).
    """

    def __init__(self, name: str, d_in: int, n_features: int, firing: dict[str, Any],
                 mean_magnitude: float = 1.0, std_magnitude: float = 0.0, bias: float = 0.0,
                 orthogonalize: bool = False, correlation: dict[str, Any] | None = None,
                 hierarchy: dict[str, Any] | None = None, seed: int = 0, n_eval: int = 8192) -> None:
        super().__init__(name, d_in, n_features, seed=seed, n_eval=n_eval)
        w = self._where
        if not isinstance(firing, dict) or "generator_name" not in firing:
            raise ConfigError(f"{w}: firing must be a table with generator_name, e.g. "
                              "{generator_name = \"zipfian\", exponent = 1.0, max_prob = 0.3, min_prob = 0.01}")
        self.firing = dict(firing)
        self.mean_magnitude = check_float("mean_magnitude", mean_magnitude, low=0.0, low_open=True, where=w)
        self.std_magnitude = check_float("std_magnitude", std_magnitude, low=0.0, where=w)
        self.bias = check_float("bias", bias, low=0.0, where=w)
        if not isinstance(orthogonalize, bool):
            raise ConfigError(f"{w}: orthogonalize = {orthogonalize!r} must be true or false")
        self.orthogonalize = orthogonalize
        if correlation is not None:
            if not isinstance(correlation, dict) or set(correlation) - {"rank", "correlation_scale"}:
                raise ConfigError(f"{w}: correlation must be a table with keys rank and correlation_scale")
            check_int("correlation.rank", correlation.get("rank", 32), where=w)
            check_float("correlation.correlation_scale", correlation.get("correlation_scale", 0.1), low=0.0, where=w)
            correlation = dict(correlation)
        self.correlation = correlation
        if hierarchy is not None and not isinstance(hierarchy, dict):
            raise ConfigError(f"{w}: hierarchy must be a table of sae_lens HierarchyConfig fields or absent")
        self.hierarchy = dict(hierarchy) if hierarchy is not None else None
        self._model  # build now so bad configs fail at construction  # noqa: B018

    def generator_params(self) -> dict[str, Any]:
        return {"library": "sae_lens.synthetic.SyntheticModel", "config": self._config.to_dict(),
                "orthogonalize": self.orthogonalize}

    @cached_property
    def _config(self) -> Any:
        from sae_lens.synthetic import (FiringProbabilityConfig, HierarchyConfig, LowRankCorrelationConfig,
                                        SyntheticModelConfig)

        w = self._where
        try:
            firing = float64_firing(FiringProbabilityConfig.from_dict(self.firing))
        except (ValueError, TypeError, KeyError) as exc:
            raise _sae_lens_config_error(w, "firing", exc) from None
        try:
            probs = firing.generate(self.n_features, seed=self.seed)
        except (ValueError, TypeError) as exc:
            raise _sae_lens_config_error(w, "firing", exc) from None
        if not bool(((probs > 0) & (probs <= 1)).all()):
            raise ConfigError(f"{w}: firing probabilities must lie in (0, 1]; adjust firing = {self.firing}")
        try:
            hierarchy = HierarchyConfig.from_dict(self.hierarchy) if self.hierarchy is not None else None
        except (ValueError, TypeError) as exc:
            raise _sae_lens_config_error(w, "hierarchy", exc) from None
        correlation = LowRankCorrelationConfig(**self.correlation) if self.correlation is not None else None
        return SyntheticModelConfig(
            num_features=self.n_features, hidden_dim=self.d_in, firing_probability=firing,
            hierarchy=hierarchy, orthogonalization=None, correlation=correlation,
            std_firing_magnitudes=self.std_magnitude, mean_firing_magnitudes=self.mean_magnitude,
            bias=self.bias if self.bias > 0 else False, dtype="float64", seed=self.seed,
        )

    @cached_property
    def _model(self) -> Any:
        from sae_lens.synthetic import FeatureDictionary, SyntheticModel, orthogonal_initializer

        import torch

        cfg = self._config
        # Built here (not by SyntheticModel) only to switch off its progress bar; same seed, same
        # initialiser as SyntheticModel._create_feature_dict with OrthogonalizationConfig().
        # The orthogonalisation is 200 Adam steps on a tiny matrix: one thread is ~10x faster
        # than two contended ones, so it runs single-threaded.
        # Everything is drawn in float64 (the config's dtype, and the dictionary under a float64
        # default dtype, since FeatureDictionary draws with the default): torch's float32 normal
        # sampler has a vectorised path whose values depend on the CPU's instruction set (measured
        # here: the same seed's 48 x 32 dictionary 1.8e-6 apart under AVX-512 and SSE4.2 kernels),
        # while its float64 sampler is scalar code, so the sets' data are the same on any CPU.
        threads, default_dtype = torch.get_num_threads(), torch.get_default_dtype()
        torch.set_num_threads(1)
        torch.set_default_dtype(torch.float64)
        try:
            feature_dict = FeatureDictionary(
                num_features=cfg.num_features, hidden_dim=cfg.hidden_dim, bias=cfg.bias,
                initializer=orthogonal_initializer(show_progress=False) if self.orthogonalize else None,
                seed=cfg.seed,
            )
        finally:
            torch.set_num_threads(threads)
            torch.set_default_dtype(default_dtype)
        try:
            return SyntheticModel(cfg, feature_dict=feature_dict)
        except ValueError as exc:
            raise _sae_lens_config_error(self._where, "configuration", exc) from None

    @cached_property
    def _features64(self) -> "torch.Tensor":
        import torch

        return self._model.feature_dict.feature_vectors.detach().to(torch.float64)

    @cached_property
    def _bias64(self) -> "torch.Tensor | None":
        import torch

        return self._model.feature_dict.bias.detach().to(torch.float64) if self.bias > 0 else None

    def _draw(self, n: int, g: "torch.Generator", with_codes: bool = True) -> tuple["torch.Tensor", "torch.Tensor | None"]:
        import torch

        batch_seed = int(torch.randint(0, 2**62, (1,), generator=g))
        with torch.random.fork_rng(devices=[]):
            # the CPU generator only (what torch.manual_seed does for the CPU, without queueing
            # seeds for every other device type: 67 us a batch here)
            torch.default_generator.manual_seed(batch_seed)
            codes = self._model.activation_generator.sample(n)
        if codes.is_sparse:
            codes = codes.to_dense()
        x = mix(codes, self._features64, self._bias64)
        return x, (codes.to_sparse() if with_codes else None)

    @property
    def features(self) -> "torch.Tensor":
        import torch

        return self._model.feature_dict.feature_vectors.detach().to("cpu", torch.float32, copy=True)

    @property
    def firing_probabilities(self) -> "torch.Tensor":
        return self._firing_probs.clone()

    @cached_property
    def _firing_probs(self) -> "torch.Tensor":
        import torch

        if self.hierarchy is None:
            return self._model.activation_generator.firing_probabilities.detach().to(torch.float32).clone()
        codes = self.eval_codes()
        counts = torch.zeros(self.n_features, dtype=torch.float64)
        counts.index_add_(0, codes.indices()[1], (codes.values() != 0).to(torch.float64))
        return (counts / self.n_eval).to(torch.float32)


# -- factories referenced by builtin/synthetic_sets.py --------------------------------------------

def build_sae_lens_set(**params: Any) -> SaeLensSyntheticSet:
    """Factory for ``ActivationSetSpec``: ``SaeLensSyntheticSet(**params)`` with unknown keys reported."""
    return _build(SaeLensSyntheticSet, params)


def build_study_set(**params: Any) -> Any:
    """Factory for the study's generator (``study_synthetic.StudySyntheticSet``)."""
    from saebench_sanity.activations.study_synthetic import StudySyntheticSet

    return _build(StudySyntheticSet, params)


def _build(cls: type[GeneratedActivationSet], params: dict[str, Any]) -> Any:
    import inspect

    allowed = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = set(params) - allowed
    name = params.get("name", cls.__name__)
    if unknown:
        raise ConfigError(f"activation set {name!r}: unknown parameter(s) {sorted(unknown)}; allowed: {sorted(allowed - {'name'})}")
    missing = {p.name for p in inspect.signature(cls.__init__).parameters.values()
               if p.default is inspect.Parameter.empty and p.name != "self"} - set(params)
    if missing:
        raise ConfigError(f"activation set {name!r}: missing parameter(s) {sorted(missing)}")
    return cls(**params)
