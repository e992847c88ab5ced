"""Reading an activation store: verified shards, a seeded buffer-shuffled batch stream and
optional normalization.

Integrity: ``load_shard`` reads a shard's bytes once, checks their size and sha256 against the
manifest, and parses the tensors from those same bytes; a mismatch is a ``DataError`` (truncated
vs. altered named separately) and the data is never returned.

Shuffling (``iter_batches``): shards are visited in a seeded random order each epoch and their
rows appended to a buffer; whenever the buffer holds ``buffer_rows`` rows it is permuted and its
first half is emitted as batches (SAELens's mixing buffer does the same), the other half waits to
mix with the next shard. Memory stays below ``buffer_rows + rows_per_shard`` rows of ``d_in``
float32 (e.g. 65,536 + 8,128 rows x 576 x 4 B = 170 MB for the default sets), whatever the
store's size.

Massive-activation flags (``store`` module doc): a store built with a ``massive_norm_ratio``
holds a ``massive`` bool per row; ``massive_norm_ratio`` / ``eval_massive`` expose them and
``iter_batches(exclude_massive=True)`` drops flagged rows before they enter the buffer.

Normalization (``Normalizer``): SAELens's ``expected_average_only_in``: multiply by
``sqrt(d_in / E||x||^2)`` (E over all training rows, computed at build time and stored in the
manifest) so the mean squared norm is ``d_in``; ``undo`` divides it out again before a
reconstruction is spliced back into the model.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from saebench_sanity.activations.store import read_manifest, sha256_bytes
from saebench_sanity.errors import ConfigError, DataError


@dataclass(frozen=True)
class Normalizer:
    """``apply(x) = x * scale``; ``undo(y) = y / scale`` (scale 1.0 = no normalization)."""

    scale: float = 1.0

    def apply(self, x: Any) -> Any:
        return x if self.scale == 1.0 else x * self.scale

    def undo(self, y: Any) -> Any:
        return y if self.scale == 1.0 else y / self.scale


class StoreReader:
    """Read-only view of a complete store folder."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.manifest = read_manifest(self.path)
        self.name = self.manifest.get("name", self.path.name)
        self.d_in = int(self.manifest["d_in"])

    @property
    def normalizer(self) -> Normalizer:
        return Normalizer(float(self.manifest["normalization"]["scaling_factor"]))

    def load_shard(self, entry: dict[str, Any]) -> dict[str, Any]:
        """Tensors of one shard after checking size and sha256 against ``entry``."""
        from safetensors.torch import load

        path = self.path / entry["file"]
        fix = f"run `saebench activations rm {self.name}` and build it again"
        try:
            data = path.read_bytes()
        except FileNotFoundError as exc:
            raise DataError(f"shard {entry['file']} of activation set {self.name!r} is missing; {fix}") from exc
        if len(data) != entry["bytes"]:
            raise DataError(f"shard {entry['file']} of activation set {self.name!r} is truncated "
                            f"({len(data)} of {entry['bytes']} bytes); {fix}")
        if sha256_bytes(data) != entry["sha256"]:
            raise DataError(f"shard {entry['file']} of activation set {self.name!r} does not match its manifest hash "
                            f"(corrupted); {fix}")
        return load(data)

    def verify(self) -> list[str]:
        """Re-hash every shard; returns one line per problem (empty list = all good)."""
        problems = []
        for entry in [self.manifest["eval_shard"], *self.manifest["shards"]]:
            try:
                self.load_shard(entry)
            except DataError as exc:
                problems.append(str(exc))
        return problems

    @cached_property
    def _eval_shard(self) -> dict[str, Any]:
        """The eval shard, read and hash-checked once per reader (the plan, the executor's set
        cache and the model resource all ask for it)."""
        return self.load_shard(self.manifest["eval_shard"])

    def eval_activations(self, normalize: bool = False) -> Any:
        """Held-out activations ``[n_eval, d_in]`` float32."""
        import torch

        acts = self._eval_shard["activations"].to(torch.float32)
        return self.normalizer.apply(acts) if normalize else acts

    @property
    def massive_norm_ratio(self) -> float | None:
        """The ratio of the store's massive-activation rule, None when it stores no flags."""
        rule = self.manifest["tokens"].get("massive")
        return float(rule["norm_ratio"]) if rule else None

    def eval_massive(self) -> Any:
        """Massive-activation flags of the held-out rows ``[n_eval]`` bool (True = massive), in
        ``eval_activations``' row order; None when the store has no flags."""
        return self._eval_shard["massive"] if self.massive_norm_ratio is not None else None

    def eval_contexts(self) -> Any:
        """Held-out token contexts ``[n_eval_ctx, context_len]`` int64 (never in training shards)."""
        return self._eval_shard["contexts"]

    def iter_batches(self, batch_size: int, seed: int, *, buffer_rows: int = 65536, normalize: bool = False,
                     loop: bool = True, exclude_massive: bool = False) -> Iterator[Any]:
        """Shuffled training batches ``[batch_size, d_in]`` float32 (see module doc).

        Same (store, batch_size, seed, buffer_rows, exclude_massive) -> same batches.
        ``loop=False`` makes one pass over every training row exactly once (the last batch may be
        smaller). ``exclude_massive`` leaves out the rows flagged at harvest (DataError for a
        store without flags).
        """
        import torch

        if batch_size < 1:
            raise ConfigError(f"batch_size = {batch_size} must be >= 1")
        if exclude_massive and self.massive_norm_ratio is None:
            raise DataError(f"activation set {self.name!r} stores no massive-activation flags, so none can be excluded; "
                            "build a set with massive_norm_ratio (user sets have it by default)")
        buffer_rows = max(int(buffer_rows), 2 * batch_size)
        gen = torch.Generator().manual_seed(int(seed) & 0x7FFF_FFFF_FFFF_FFFF)
        norm = self.normalizer if normalize else Normalizer()
        shards = self.manifest["shards"]
        if not shards:
            raise DataError(f"activation set {self.name!r} has no training shards; rebuild it with more contexts")
        # The buffer is kept as the list of its pieces (the previous fill's second half, then each
        # shard's rows) and concatenated once per fill: appending each shard with ``torch.cat``
        # copied the whole growing buffer once per shard (about 5% of a real ReLU cohort's
        # training under cProfile). Same rows in the same order, same ``randperm`` calls: the
        # batches are the same bits (tests/test_activations_store.py compares with the previous
        # path).
        pieces: list[Any] = []
        n_rows = 0
        pending = torch.empty(0, self.d_in)

        def emit(rows: Any) -> Iterator[Any]:
            nonlocal pending
            rows = torch.cat([pending, rows]) if pending.shape[0] else rows
            n_full = rows.shape[0] // batch_size * batch_size
            for s in range(0, n_full, batch_size):
                yield rows[s:s + batch_size]
            pending = rows[n_full:]

        while True:
            for i in torch.randperm(len(shards), generator=gen).tolist():
                shard = self.load_shard(shards[i])
                acts = shard["activations"].to(torch.float32)
                if exclude_massive:
                    acts = acts[~shard["massive"]]
                pieces.append(norm.apply(acts))
                n_rows += acts.shape[0]
                while n_rows >= buffer_rows:
                    buf = torch.cat(pieces) if len(pieces) > 1 else pieces[0]
                    perm = torch.randperm(n_rows, generator=gen)
                    half = buffer_rows // 2
                    out, rest = buf[perm[:half]], buf[perm[half:]]
                    pieces, n_rows = [rest], rest.shape[0]
                    yield from emit(out)
            if not loop:
                buf = torch.cat(pieces) if pieces else torch.empty(0, self.d_in)
                buf = buf[torch.randperm(buf.shape[0], generator=gen)]
                yield from emit(buf)
                if pending.shape[0]:
                    yield pending
                return
