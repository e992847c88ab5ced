"""On-disk activation store: safetensors shards + ``manifest.json``, built resumably.

Layout of a store folder (``<cache>/activations/<set name>/``)::

    build-plan.json                 inputs of the build (written first; a resume must match it)
    shards/eval.safetensors         held-out activations + their token contexts
    shards/eval.safetensors.json    sidecar: sha256, rows, sum of squared norms
    shards/train-00000.safetensors  training activations, ``contexts_per_shard`` contexts each
    shards/train-00000.safetensors.json
    ...
    manifest.json                   written last; its presence means the store is complete

Each shard holds ``activations`` ``[rows, d_in]`` (float32 or bfloat16), ``token_ids``
``[rows]`` int32 and ``context_ids`` ``[rows]`` int32 (index of the corpus context each row came
from); the eval shard also holds ``contexts`` ``[n_eval_ctx, context_len]`` int64, the held-out
token contexts model-based metrics run on. Rows at special-token positions (BOS, EOS, PAD) are
not stored (see ``corpus``).

Atomicity and resume: a shard is serialized in memory, hashed, written to a temporary file,
fsynced and renamed into place, then its sidecar is written the same way. A re-run skips every
shard whose sidecar exists and whose file re-hashes to it; anything else is rebuilt. Ctrl-C or a
full disk therefore loses at most the shard being written (its temporary file is removed).

Manifest: model (id, revision / weight sha256, dtype), hook point, d_in, corpus (id, sha256),
tokenization (context length, BOS handling, excluded ids, sha256 of the token contexts), stored
dtype, token counts, per-shard sha256, library versions and the normalization statistics. No
timestamps or paths, so the same inputs give the same ``manifest_hash`` (build timings go to
``build-log.json``, outside the manifest). The library versions are provenance, not identity:
they are recorded but not hashed, since the per-shard sha256s already pin every stored number.

Integrity when reading (``reader``): a shard's bytes are read once, hashed, compared with the
manifest and only then parsed from those same bytes, so a flipped byte or a truncated file is a
``DataError`` and never data. Hashing costs ~1 s/GB, small next to training on the rows.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from saebench_sanity.activations.base import stable_hash
from saebench_sanity.errors import ConfigError, DataError

FORMAT = "saebench-activations/1"
MANIFEST = "manifest.json"
PLAN = "build-plan.json"
STORE_DTYPES = ("float32", "bfloat16")
SPLIT_SALT = "saebench-split"


@dataclass(frozen=True)
class StoreConfig:
    """What to harvest. Every field is part of the build plan (and so of the data's identity).

    Attributes:
        model: ``"default"`` (the embedded SmolLM2-135M) or a hub id / local folder.
        model_revision, gguf_file: passed to ``load_causal_lm`` for non-default models.
        hook_point: ``resid_post.L`` / ``mlp_out.L`` / ``attn_out.L``.
        corpus: ``"default"``, a folder of .txt/.jsonl, or ``"hf:<dataset>"``.
        corpus_kwargs: extra arguments for hub corpora (split, text_column, data_files...).
        context_len: tokens per context, BOS included.
        n_train_contexts: training contexts (None: all the corpus gives after the eval ones).
        n_eval_contexts: held-out contexts (activations for eval + contexts for model metrics).
        contexts_per_shard: training contexts per shard file.
        dtype: stored activation dtype, ``"float32"`` or ``"bfloat16"``.
        batch_size: contexts per forward pass.
    """

    model: str = "default"
    model_revision: str | None = None
    gguf_file: str | None = None
    hook_point: str = "resid_post.12"
    corpus: str = "default"
    corpus_kwargs: dict[str, Any] = field(default_factory=dict)
    context_len: int = 128
    n_train_contexts: int | None = 512
    n_eval_contexts: int = 64
    contexts_per_shard: int = 64
    dtype: str = "float32"
    batch_size: int = 16

    def __post_init__(self) -> None:
        if self.dtype not in STORE_DTYPES:
            raise ConfigError(f"activation store dtype {self.dtype!r} must be one of {', '.join(STORE_DTYPES)}")
        for name in ("context_len", "n_eval_contexts", "contexts_per_shard", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < (2 if name == "context_len" else 1):
                raise ConfigError(f"activation store {name} = {v!r} must be a positive integer")
        if self.n_train_contexts is not None and (not isinstance(self.n_train_contexts, int) or self.n_train_contexts < 1):
            raise ConfigError(f"activation store n_train_contexts = {self.n_train_contexts!r} must be a positive integer or None")


def library_versions() -> dict[str, str]:
    """Versions of the libraries whose code shapes the stored numbers."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("torch", "transformers", "safetensors", "tokenizers", "saebench-sanity"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "absent"
    return out


def _fsync_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file + fsync + rename); no partial file remains."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def store_dir(root: str | Path, name: str) -> Path:
    return Path(root).expanduser() / name


def is_complete(path: str | Path) -> bool:
    return (Path(path) / MANIFEST).is_file()


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of a complete store (DataError if missing or unreadable)."""
    p = Path(path) / MANIFEST
    if not p.is_file():
        raise DataError(f"activation store {str(path)!r} is not built (no {MANIFEST}); run `saebench activations build {Path(path).name}`")
    try:
        return json.loads(p.read_text())
    except ValueError as exc:
        raise DataError(f"activation store manifest {str(p)!r} is corrupt; run `saebench activations rm {Path(path).name}` and build again") from exc


def _load_model(cfg: StoreConfig, console: Any) -> tuple[Any, Any, dict[str, Any]]:
    if cfg.model == "default":
        from saebench_sanity.models.default_model import default_model

        return default_model(console)
    from saebench_sanity.models.loading import load_causal_lm

    return load_causal_lm(cfg.model, revision=cfg.model_revision, gguf_file=cfg.gguf_file)


def model_identity(info: dict[str, Any]) -> dict[str, Any]:
    """The part of ``load_causal_lm``'s info that identifies the weights (no paths, no timings)."""
    return {k: info.get(k) for k in ("id", "source", "revision", "sha256", "gguf_file", "dtype", "architecture",
                                     "n_layers", "d_model")}


def _serialize_shard(tensors: dict[str, Any], meta: dict[str, str]) -> bytes:
    from safetensors.torch import save

    return save({k: v.contiguous() for k, v in tensors.items()}, metadata=meta)


def _valid_sidecar(shard: Path) -> dict[str, Any] | None:
    """The sidecar of a finished shard whose file still hashes to it, else None."""
    side = shard.with_name(shard.name + ".json")
    if not (shard.is_file() and side.is_file()):
        return None
    try:
        meta = json.loads(side.read_text())
    except ValueError:
        return None
    if shard.stat().st_size != meta.get("bytes") or sha256_bytes(shard.read_bytes()) != meta.get("sha256"):
        return None
    return meta


def build_store(name: str, cfg: StoreConfig, root: str | Path, *, console: Any = None, progress: bool = True,
                model_bundle: tuple[Any, Any, dict[str, Any]] | None = None) -> Path:
    """Build (or finish building) the store ``root/name``; returns its folder.

    ``model_bundle`` = ``(model, tokenizer, info)`` skips loading (tests, or building several
    hook points of one model). Raises DataError for a missing hook point, an empty corpus, a
    store half-built from different inputs, or a full disk.
    """
    import torch

    from saebench_sanity.activations.corpus import keep_mask, load_corpus, special_token_ids, split_contexts, tokenize_contexts
    from saebench_sanity.models.hook_points import resolve_hook_point

    out = store_dir(root, name)
    if is_complete(out):
        return out
    model, tokenizer, info = model_bundle or _load_model(cfg, console)
    resolve_hook_point(model, cfg.hook_point)  # DataError listing valid names if absent
    corpus = load_corpus(cfg.corpus, **cfg.corpus_kwargs)
    max_ctx = None if cfg.n_train_contexts is None else cfg.n_train_contexts + cfg.n_eval_contexts
    contexts = tokenize_contexts(corpus, tokenizer, cfg.context_len, max_contexts=max_ctx)
    n_ctx = contexts.shape[0]
    if max_ctx is not None and n_ctx < max_ctx:
        raise DataError(f"corpus {corpus.id!r} gives {n_ctx} contexts of {cfg.context_len} tokens, fewer than the "
                        f"{max_ctx} requested; lower n_train_contexts or use more text")
    train_idx, eval_idx = split_contexts(n_ctx, cfg.n_eval_contexts, SPLIT_SALT)
    keep = keep_mask(contexts, tokenizer)
    plan = {
        "format": FORMAT, "name": name, "config": asdict(cfg), "model": model_identity(info),
        "corpus": {"id": corpus.id, "sha256": corpus.sha256, "n_documents": len(corpus.documents), "n_chars": corpus.n_chars},
        "tokens": {"context_len": cfg.context_len, "prepend_bos": True, "separator": "bos",
                   "excluded_token_ids": special_token_ids(tokenizer), "n_contexts": n_ctx,
                   "n_train_contexts": len(train_idx), "n_eval_contexts": len(eval_idx), "split_salt": SPLIT_SALT,
                   "contexts_sha256": sha256_bytes(contexts.numpy().tobytes())},
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "shards").mkdir(exist_ok=True)
    plan_path = out / PLAN
    if plan_path.is_file():
        old = json.loads(plan_path.read_text())
        if stable_hash(old) != stable_hash(plan):
            raise DataError(f"activation store {str(out)!r} was partly built from different inputs; "
                            f"run `saebench activations rm {name}` and build again")
    else:
        _fsync_write(plan_path, _json_bytes(plan))

    dtype = getattr(torch, cfg.dtype)
    jobs = [("eval", eval_idx)] + [
        (f"train-{i:05d}", train_idx[s:s + cfg.contexts_per_shard])
        for i, s in enumerate(range(0, len(train_idx), cfg.contexts_per_shard))]
    todo = [(tag, idx) for tag, idx in jobs if _valid_sidecar(out / "shards" / f"{tag}.safetensors") is None]
    total_tokens = int(keep.sum())
    todo_tokens = sum(int(keep[idx].sum()) for _, idx in todo)
    t0 = time.perf_counter()
    bar = _progress(console, progress)
    try:
        with bar:
            task = bar.add_task(f"harvest {name} ({cfg.hook_point})", total=total_tokens,
                                completed=total_tokens - todo_tokens)
            for tag, idx in todo:
                _build_shard(model, cfg, contexts, keep, idx, tag, out / "shards" / f"{tag}.safetensors", dtype, name)
                bar.advance(task, int(keep[idx].sum()))
    except OSError as exc:
        raise DataError(f"writing activation store {str(out)!r} failed ({exc.strerror or exc}); free disk space and "
                        f"re-run `saebench activations build {name}` (finished shards are kept)") from exc
    seconds = time.perf_counter() - t0
    manifest = _finish_manifest(out, plan, jobs, cfg)
    _fsync_write(out / MANIFEST, _json_bytes(manifest))
    log = {"seconds": round(seconds, 2), "tokens_harvested": todo_tokens,
           "tokens_per_second": round(todo_tokens / seconds, 1) if seconds > 0 and todo_tokens else None,
           "model_load_seconds": info.get("load_seconds")}
    _fsync_write(out / "build-log.json", _json_bytes(log))
    return out


def _progress(console: Any, enabled: bool) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

    class _TokensPerSecond(TextColumn):
        def __init__(self) -> None:
            super().__init__("")

        def render(self, task: Any) -> Any:  # noqa: D102
            from rich.text import Text

            speed = task.finished_speed or task.speed
            return Text(f"{speed:,.0f} tok/s" if speed else "? tok/s")

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
                    _TokensPerSecond(), TimeRemainingColumn(), console=console, disable=not enabled, transient=False)


def _build_shard(model: Any, cfg: StoreConfig, contexts: Any, keep: Any, idx: list[int], tag: str, path: Path,
                 dtype: Any, name: str) -> None:
    import torch

    from saebench_sanity.models.hook_points import record

    sel = torch.tensor(idx, dtype=torch.int64)
    ids = contexts[sel]
    acts = record(model, cfg.hook_point, ids, None, batch_size=cfg.batch_size)  # [n_ctx, ctx_len, d]
    mask = keep[sel]
    rows = acts[mask].to(dtype)
    if not torch.isfinite(rows.float()).all():
        raise DataError(f"hook point {cfg.hook_point!r} produced NaN/inf activations in shard {tag}; check the model")
    tensors = {"activations": rows,
               "token_ids": ids[mask].to(torch.int32),
               "context_ids": sel[:, None].expand_as(ids)[mask].to(torch.int32)}
    if tag == "eval":
        tensors["contexts"] = ids
    # One metadata key only: safetensors writes the metadata map in hash-map order, so several
    # keys would make the bytes (and the shard sha256) differ from run to run.
    data = _serialize_shard(tensors, {"saebench": json.dumps({"set": name, "shard": tag, "format": FORMAT}, sort_keys=True)})
    rows32 = rows.to(torch.float64)
    side = {"file": f"shards/{path.name}", "sha256": sha256_bytes(data), "bytes": len(data), "rows": int(rows.shape[0]),
            "d": int(rows.shape[1]), "contexts": len(idx), "sum_sq_norm": float((rows32 ** 2).sum())}
    _fsync_write(path, data)
    _fsync_write(path.with_name(path.name + ".json"), _json_bytes(side))


def _finish_manifest(out: Path, plan: dict[str, Any], jobs: list, cfg: StoreConfig) -> dict[str, Any]:
    import math

    entries = []
    for tag, _ in jobs:
        side = _valid_sidecar(out / "shards" / f"{tag}.safetensors")
        if side is None:
            raise DataError(f"shard {tag} of {str(out)!r} failed its hash right after writing; check the disk and re-run the build")
        entries.append(side)
    eval_entry, train = entries[0], entries[1:]
    d_in = int(eval_entry["d"])
    n_train = sum(e["rows"] for e in train)
    msn = sum(e["sum_sq_norm"] for e in train) / max(n_train, 1)
    shard_fields = ("file", "sha256", "bytes", "rows", "contexts")
    return {
        **{k: plan[k] for k in ("format", "name", "model", "corpus", "tokens")},
        "hook_point": cfg.hook_point,
        "d_in": d_in,
        "dtype": cfg.dtype,
        "n_train_tokens": n_train,
        "n_eval_tokens": eval_entry["rows"],
        "shards": [{k: e[k] for k in shard_fields} for e in train],
        "eval_shard": {k: eval_entry[k] for k in shard_fields},
        "normalization": {"method": "expected_average_only_in",
                          "definition": "x * sqrt(d_in / mean_train ||x||^2): mean squared norm becomes d_in (SAELens)",
                          "mean_squared_norm": msn,
                          "scaling_factor": math.sqrt(d_in / msn) if msn > 0 and d_in else 1.0},
        "library_versions": library_versions(),
    }


#: manifest fields that record how a store was made, not what it holds: left out of its hash.
PROVENANCE_FIELDS = ("library_versions",)


def manifest_hash(path: str | Path) -> str:
    """The store's identity: sha256 of its manifest without the provenance fields. A newer
    transformers or torch that computes the same activations gives the same shard sha256s and so
    the same hash (results stay comparable across installs); one that changes a single number
    changes a shard's sha256 and with it the hash."""
    return stable_hash({k: v for k, v in read_manifest(path).items() if k not in PROVENANCE_FIELDS})


def remove_store(path: str | Path) -> None:
    shutil.rmtree(Path(path))
