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

Massive-activation flags (``StoreConfig.massive_norm_ratio`` = r, off when None): every shard
also holds ``massive`` ``[rows]`` bool, True where the row's L2 norm (float64, of the row as
stored) exceeds r times the median norm of the held-out (eval) rows. The eval shard is harvested
first, so its median is known before any training shard; on the eval rows the rule is exactly
``metrics.reconstruction.bulk_mask`` (which ``reconstruction_bulk`` then reads instead of
recomputing). The rule (r and its reference) is in the recipe (``tokens.massive``), so another r
is another set; how many rows it flagged is in the manifest (``massive``), outside the identity
(a float at the boundary may flip between machines).

Atomicity and resume: a shard is serialized in memory, hashed, written to a temporary file,
fsynced and renamed into place, then its sidecar is written the same way. A re-run skips every
shard whose sidecar exists and whose file re-hashes to it; anything else is rebuilt. Ctrl-C or a
full disk therefore loses at most the shard being written (its temporary file is removed).

Manifest: model (id, revision / weight sha256, dtype, sha256 of the loaded weight tensors), hook
point, d_in, corpus (id, sha256), tokenization (context length, BOS handling, excluded ids, sha256
of the token contexts), stored dtype, token counts, per-shard sha256 of the file and of the rows'
token and context ids, library versions, the normalization statistics and the set's fingerprint
(``fingerprint``). No timestamps or paths.

Identity (``identity`` / ``identity_hash``): the *recipe* of the set, i.e. the manifest without
anything that depends on float bytes: model and weights hash, hook point, corpus and token
hashes, context length, sizes, shard layout and the token ids of every stored row, dtype. The
same recipe built on another machine (other CPU kernels: the float32 activations differ in their
last bits) or with another forward batch size therefore has the same identity, and cells keyed
by it keep their keys. What the numbers are is checked separately: the per-shard file sha256s
verify integrity on the machine that built the store (bit for bit), and the fingerprint
(``fingerprint`` module: per-dimension moments and fixed projections) must match a fresh build
anywhere within a stated tolerance (``saebench activations verify NAME --against FILE``).
Library versions are provenance: recorded, never hashed.

Content (``content_hash``): the hash of the shard file sha256s, i.e. of the bytes the set serves.
Two builds of one recipe on different machines share the identity and differ here. Results record
it (``data_sha256``), so a results folder can say which build its numbers came from, and a run
that would mix two builds in one board says so.

Integrity when reading (``reader``): a shard's bytes are read once, hashed, compared with the
manifest and only then parsed from those same bytes, so a flipped byte or a truncated file is a
``DataError`` and never data. Hashing costs ~1 s/GB, small next to training on the rows.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from saebench_sanity.activations.base import stable_hash
from saebench_sanity.errors import ConfigError, DataError
from saebench_sanity.io import atomic_write_bytes

FORMAT = "saebench-activations/2"
MANIFEST = "manifest.json"
PLAN = "build-plan.json"
STORE_DTYPES = ("float32", "float16", "bfloat16")
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
        dtype: stored activation dtype, ``"float32"``, ``"float16"`` or ``"bfloat16"``.
        batch_size: contexts per forward pass.
        prepend_bos: every context starts with BOS (SAELens's default); False cuts the token
            stream into contexts as it is.
        massive_norm_ratio: flag rows whose norm exceeds this multiple of the held-out rows'
            median norm (see module doc); None stores no flags (the registered sets).
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
    prepend_bos: bool = True
    massive_norm_ratio: float | None = None

    def __post_init__(self) -> None:
        r = self.massive_norm_ratio
        if r is not None and (isinstance(r, bool) or not isinstance(r, (int, float)) or not math.isfinite(r) or r <= 1):
            raise ConfigError(f"activation store massive_norm_ratio = {r!r} must be a number > 1 (a multiple of the "
                              "median norm), or None for no flags")
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
    """Write ``data`` to ``path`` atomically (``io.atomic_write_bytes``); no partial file remains."""
    atomic_write_bytes(path, data)


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def store_dir(root: str | Path, name: str) -> Path:
    """``<root>/<name>``; ``name`` (a registered set name) must be one plain folder name."""
    from saebench_sanity.paths import safe_name

    return Path(root).expanduser() / safe_name("activation set name", name)


def is_complete(path: str | Path) -> bool:
    return (Path(path) / MANIFEST).is_file()


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of a complete store (DataError if missing or unreadable)."""
    p = Path(path) / MANIFEST
    if not p.is_file():
        raise DataError(f"activation store {str(path)!r} is not built (no {MANIFEST}); run `saebench activations build {Path(path).name}`")
    try:
        manifest = json.loads(p.read_text())
    except ValueError as exc:
        raise DataError(f"activation store manifest {str(p)!r} is corrupt; run `saebench activations rm {Path(path).name}` and build again") from exc
    if manifest.get("format") != FORMAT:
        raise DataError(f"activation store {str(path)!r} has format {manifest.get('format')!r}, this version reads {FORMAT!r} "
                        f"(identity by recipe, fingerprint); run `saebench activations rm {Path(path).name}` and build again")
    return manifest


def _load_model(cfg: StoreConfig, console: Any, tokenizer: Any = None) -> tuple[Any, Any, dict[str, Any]]:
    """The recipe's model; ``tokenizer``: its tokenizer if already loaded (the build tokenizes
    the corpus before the weights load)."""
    if cfg.model == "default":
        from saebench_sanity.models.default_model import default_model

        return default_model(console)
    from saebench_sanity.models.loading import load_causal_lm

    return load_causal_lm(cfg.model, revision=cfg.model_revision, gguf_file=cfg.gguf_file, tokenizer=tokenizer)


def model_identity(info: dict[str, Any]) -> dict[str, Any]:
    """The part of ``load_causal_lm``'s info that identifies the weights (no paths, no timings)."""
    return {k: info.get(k) for k in ("id", "source", "revision", "sha256", "gguf_file", "dtype", "architecture",
                                     "n_layers", "d_model")}


def weights_hash(model: Any) -> str:
    """sha256 over the model's state dict as loaded (names, dtypes, shapes and tensor bytes, in
    name order): the weights the activations were computed with, whatever file format they came
    from (a GGUF de-quantized on load, safetensors, .bin). Bit-exact loading makes it the same on
    every machine; ~1 s for SmolLM2-135M."""
    import torch

    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _ids_sha256(*tensors: Any) -> str:
    """sha256 of integer tensors as little-endian int32 bytes (the same on every machine)."""
    import torch

    h = hashlib.sha256()
    for t in tensors:
        h.update(t.to(torch.int32).numpy().astype("<i4").tobytes())
    return h.hexdigest()


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


def recipe_contexts(cfg: StoreConfig, tokenizer: Any, spill: str | Path | None = None, corpus: Any = None
                    ) -> tuple[dict[str, Any], Any, list[int], list[int], Any]:
    """The token side of a recipe: ``(corpus record, contexts [n_ctx, context_len], train context
    indices, eval context indices, keep mask [n_ctx, context_len] bool)`` (DataError if the
    corpus is too short). Contexts are an int32 tensor, or with ``spill`` (a file path) a
    ``corpus.TokenContexts`` over that file (then the keep mask is None: ``keep_mask`` of the
    contexts a caller reads).

    The corpus record is what the manifest says of the corpus: id, sha256, n_documents, n_chars
    of every document for the embedded corpus (held in memory), of the documents read for a
    streamed one (folder, hub), which then also says ``"hashed": "documents read"``
    (``corpus.tokenize_corpus``). ``corpus``: the recipe's corpus already opened
    (``corpus.load_corpus``), else it is opened here."""
    from saebench_sanity.activations.corpus import keep_mask, load_corpus, split_contexts, tokenize_corpus

    if corpus is None:
        corpus = load_corpus(cfg.corpus, **cfg.corpus_kwargs)
    max_ctx = None if cfg.n_train_contexts is None else cfg.n_train_contexts + cfg.n_eval_contexts
    contexts, read = tokenize_corpus(corpus, tokenizer, cfg.context_len, prepend_bos=cfg.prepend_bos,
                                     max_contexts=max_ctx, spill=spill)
    n_ctx = contexts.shape[0]
    if max_ctx is not None and n_ctx < max_ctx:
        raise DataError(f"corpus {corpus.id!r} gives {n_ctx} contexts of {cfg.context_len} tokens, fewer than the "
                        f"{max_ctx} requested; lower the token counts (n_train_tokens / n_train_contexts) or use more text")
    train_idx, eval_idx = split_contexts(n_ctx, cfg.n_eval_contexts, SPLIT_SALT)
    if corpus.streamed:
        record = {"id": corpus.id, "sha256": read.sha256, "n_documents": read.n_documents, "n_chars": read.n_chars,
                  "hashed": "documents read"}
    else:
        docs = corpus.documents
        record = {"id": corpus.id, "sha256": corpus.sha256, "n_documents": len(docs), "n_chars": corpus.n_chars}
    return record, contexts, train_idx, eval_idx, (None if spill is not None else keep_mask(contexts, tokenizer))


def _context_chunks(contexts: Any, rows: int = 4096) -> Any:
    """The contexts in order, ``rows`` at a time, as int64 (a tensor or a ``TokenContexts``)."""
    import torch

    if hasattr(contexts, "chunks"):
        yield from contexts.chunks(rows)
        return
    for s in range(0, contexts.shape[0], rows):
        yield contexts[s:s + rows].to(torch.int64)


def _contexts_sha256(contexts: Any, rows: int = 4096) -> str:
    """sha256 of the contexts as int64 bytes (the definition from when they were held as int64),
    hashed ``rows`` contexts at a time so no int64 copy of the whole array is made."""
    h = hashlib.sha256()
    for chunk in _context_chunks(contexts, rows):
        h.update(chunk.numpy().tobytes())
    return h.hexdigest()


#: what ``tokens.massive.reference`` says the ratio multiplies
MASSIVE_REFERENCE = "median L2 norm of the held-out (eval) rows as stored"


def massive_rule(cfg: StoreConfig) -> dict[str, Any] | None:
    """The massive-activation rule of a recipe (``tokens.massive``), None without flags."""
    if cfg.massive_norm_ratio is None:
        return None
    return {"norm_ratio": float(cfg.massive_norm_ratio), "reference": MASSIVE_REFERENCE,
            "flag": "norm > norm_ratio x reference"}


def massive_flags(rows: Any, norm_ratio: float, reference: float | None = None) -> tuple[Any, float]:
    """``(flags [n] bool, reference)``: True where a row's L2 norm (float64) exceeds
    ``norm_ratio`` x ``reference``; ``reference`` None = the median norm of ``rows`` (the eval
    shard). The comparison is ``metrics.reconstruction.bulk_mask``'s, negated."""
    import torch

    norms = rows.to(torch.float64).norm(dim=-1)
    ref = float(norms.median()) if reference is None else float(reference)
    return ~(norms <= norm_ratio * torch.tensor(ref, dtype=torch.float64)), ref


def build_store(name: str, cfg: StoreConfig, root: str | Path, *, console: Any = None, progress: bool = True,
                model_bundle: tuple[Any, Any, dict[str, Any]] | None = None,
                load_model: Callable[[Any], tuple[Any, Any, dict[str, Any]]] | None = None) -> Path:
    """Build (or finish building) the store ``root/name``; returns its folder (see ``_build_store``).

    Two builds of one set take turns (``locks.folder_lock``, ``.<name>.lock`` beside the folder):
    the second waits, saying so on ``console``, then finds the store complete and returns it.
    """
    from saebench_sanity.locks import folder_lock

    out = store_dir(root, name)
    if is_complete(out):
        return out

    def waiting(message: str) -> None:
        if console is not None:
            console.print(message, markup=False)

    with folder_lock(out, f"activation set {name!r} (a build)", on_wait=waiting):
        if is_complete(out):  # built by the process this one waited for
            return out
        return _build_store(name, cfg, root, console=console, progress=progress, model_bundle=model_bundle,
                            load_model=load_model)


def _build_store(name: str, cfg: StoreConfig, root: str | Path, *, console: Any = None, progress: bool = True,
                 model_bundle: tuple[Any, Any, dict[str, Any]] | None = None,
                 load_model: Callable[[Any], tuple[Any, Any, dict[str, Any]]] | None = None) -> Path:
    """Build (or finish building) the store ``root/name``; returns its folder.

    ``model_bundle`` = ``(model, tokenizer, info)`` skips loading (tests, or building several
    hook points of one model). ``load_model(tokenizer)``: how the model loads when it is needed
    (default ``load_causal_lm`` of the recipe's model), given the tokenizer the build already
    loaded to tokenize the corpus (None if it did not), so it need not load it again. Raises
    DataError for a missing hook point, an empty corpus, a store half-built from different
    inputs, or a full disk.

    Without a bundle the checks that need no weights come first: the hook point is resolved on
    the model's module tree built from its config on the ``meta`` device (``model_skeleton``),
    and the corpus is tokenized with the tokenizer alone; the weights load after that, so a bad
    hook point or a bad corpus line anywhere in the text the set reads costs no model load
    (minutes for a big model). The embedded default model is small and brings its own tokenizer:
    it loads first, as a bundle.
    """
    from saebench_sanity.activations.corpus import load_corpus
    from saebench_sanity.models.hook_points import resolve_hook_point

    out = store_dir(root, name)
    if is_complete(out):
        return out
    # the corpus opens first (a folder's first document read, a hub dataset's first row): a wrong
    # path or column costs nothing of the model, not even its tokenizer
    corpus = load_corpus(cfg.corpus, **cfg.corpus_kwargs)
    given = model_bundle
    loader = load_model or (lambda tok: given or _load_model(cfg, console, tok))
    if model_bundle is None and cfg.model == "default":
        model_bundle = first = loader(None)
        loader = lambda _tok: first  # noqa: E731 - loaded once
    if model_bundle is not None:
        tokenizer = model_bundle[1]
        resolve_hook_point(model_bundle[0], cfg.hook_point)  # DataError listing valid names if absent
    else:
        from saebench_sanity.models.loading import load_tokenizer, model_skeleton

        skeleton = model_skeleton(cfg.model, revision=cfg.model_revision, gguf_file=cfg.gguf_file)
        if skeleton is not None:
            resolve_hook_point(skeleton, cfg.hook_point)
        tokenizer = load_tokenizer(cfg.model, revision=cfg.model_revision, gguf_file=cfg.gguf_file)
    # the token stream goes to a file beside the store (removed afterwards; one left by a killed
    # build of this set is removed here, under the set's build lock) and each shard reads its
    # contexts from it: a build's memory does not grow with the set's token count
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in out.parent.glob(f".{name}-tokens-*"):
        shutil.rmtree(stale, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix=f".{name}-tokens-", dir=out.parent) as tmp:
        return _harvest(name, cfg, out, corpus, tokenizer, loader, Path(tmp) / "tokens.i32", console, progress)


def _harvest(name: str, cfg: StoreConfig, out: Path, corpus: Any, tokenizer: Any,
             load_model: Callable[[Any], tuple[Any, Any, dict[str, Any]]], spill: Path, console: Any,
             progress: bool) -> Path:
    """``_build_store`` once the checks before loading passed: tokenize ``corpus`` (the
    recipe's, opened; into ``spill``), load the model, write the plan, the missing shards and the
    manifest."""
    import torch

    from saebench_sanity.activations.corpus import keep_mask, special_token_ids
    from saebench_sanity.models.hook_points import resolve_hook_point

    corpus_record, contexts, train_idx, eval_idx, _ = recipe_contexts(cfg, tokenizer, spill=spill, corpus=corpus)
    model, _, info = load_model(tokenizer)
    resolve_hook_point(model, cfg.hook_point)  # the skeleton's check, on the loaded model
    n_ctx = contexts.shape[0]
    config = asdict(cfg)
    if cfg.massive_norm_ratio is None:  # the plans of sets without flags read as before flags existed
        config.pop("massive_norm_ratio")
    rule = massive_rule(cfg)
    plan = {
        "format": FORMAT, "name": name, "config": config,
        "model": {**model_identity(info), "weights_sha256": weights_hash(model)},
        "corpus": corpus_record,
        "tokens": {"context_len": cfg.context_len, "prepend_bos": cfg.prepend_bos, "separator": "bos",
                   "excluded_token_ids": special_token_ids(tokenizer), "n_contexts": n_ctx,
                   "n_train_contexts": len(train_idx), "n_eval_contexts": len(eval_idx), "split_salt": SPLIT_SALT,
                   "contexts_sha256": _contexts_sha256(contexts), **({"massive": rule} if rule else {})},
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
    total_tokens = sum(int(keep_mask(chunk, tokenizer).sum()) for chunk in _context_chunks(contexts))
    n_kept = {tag: int(keep_mask(contexts[idx], tokenizer).sum()) for tag, idx in todo}
    todo_tokens = sum(n_kept.values())
    t0 = time.perf_counter()
    bar = _progress(console, progress)
    try:
        with bar:
            task = bar.add_task(f"harvest {name} ({cfg.hook_point})", total=total_tokens,
                                completed=total_tokens - todo_tokens)
            reference = None  # the eval rows' median norm, once the eval shard exists (it is built first)
            for tag, idx in todo:
                if tag != "eval" and cfg.massive_norm_ratio is not None and reference is None:
                    # the eval shard was built first, by this call: None only if it changed from outside since
                    eval_meta = _valid_sidecar(out / "shards" / "eval.safetensors")
                    if eval_meta is None:
                        raise DataError(f"activation store {str(out)!r}: its eval shard changed while the store was being "
                                        f"built; re-run `saebench activations build {name}`")
                    reference = eval_meta["norm_median"]
                _build_shard(model, cfg, contexts, tokenizer, idx, tag, out / "shards" / f"{tag}.safetensors", dtype,
                             name, reference)
                bar.advance(task, n_kept[tag])
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


def _build_shard(model: Any, cfg: StoreConfig, contexts: Any, tokenizer: Any, idx: list[int], tag: str, path: Path,
                 dtype: Any, name: str, reference: float | None = None) -> None:
    """Harvest one shard: contexts ``idx`` (read from ``contexts``, a tensor or
    ``TokenContexts``), their non-special positions. ``reference``: the eval rows' median norm
    for a training shard's massive flags (None for the eval shard, which computes it)."""
    import torch

    from saebench_sanity.activations.corpus import keep_mask
    from saebench_sanity.models.hook_points import record

    sel = torch.tensor(idx, dtype=torch.int64)
    ids = contexts[sel].to(torch.int64)
    acts = record(model, cfg.hook_point, ids, None, batch_size=cfg.batch_size)  # [n_ctx, ctx_len, d]
    mask = keep_mask(ids, tokenizer)
    rows = acts[mask].to(dtype)
    if not torch.isfinite(rows.float()).all():
        if torch.isfinite(acts[mask]).all():  # finite in float32: they overflow the storage dtype
            raise DataError(f"activations at {cfg.hook_point!r} exceed the range of {cfg.dtype} (largest "
                            f"{float(acts[mask].abs().max()):.3g}); store the set as bfloat16 or float32")
        raise DataError(f"hook point {cfg.hook_point!r} produced NaN/inf activations in shard {tag}; check the model")
    tensors = {"activations": rows,
               "token_ids": ids[mask].to(torch.int32),
               "context_ids": sel[:, None].expand_as(ids)[mask].to(torch.int32)}
    if tag == "eval":
        tensors["contexts"] = ids
    massive = {}
    if cfg.massive_norm_ratio is not None:
        # on the rows as stored (after the dtype cast), as readers serve them
        flags, ref = massive_flags(rows, float(cfg.massive_norm_ratio), reference)
        tensors["massive"] = flags
        massive = {"n_massive": int(flags.sum()), **({"norm_median": ref} if tag == "eval" else {})}
    # One metadata key only: safetensors writes the metadata map in hash-map order, so several
    # keys would make the bytes (and the shard sha256) differ from run to run.
    data = _serialize_shard(tensors, {"saebench": json.dumps({"set": name, "shard": tag, "format": FORMAT}, sort_keys=True)})
    rows32 = rows.to(torch.float64)
    side = {"file": f"shards/{path.name}", "sha256": sha256_bytes(data), "bytes": len(data), "rows": int(rows.shape[0]),
            "d": int(rows.shape[1]), "contexts": len(idx), "sum_sq_norm": float((rows32 ** 2).sum()),
            "ids_sha256": _ids_sha256(tensors["token_ids"], tensors["context_ids"]), **massive}
    _fsync_write(path, data)
    _fsync_write(path.with_name(path.name + ".json"), _json_bytes(side))


def _finish_manifest(out: Path, plan: dict[str, Any], jobs: list, cfg: StoreConfig) -> dict[str, Any]:
    import torch
    from safetensors.torch import load

    from saebench_sanity.activations import fingerprint as fp

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
    shard_fields = ("file", "sha256", "bytes", "rows", "contexts", "ids_sha256")

    def shard_rows(entry: dict[str, Any]) -> Any:
        # the sidecar check above re-hashed every file; parse them again for the fingerprint
        return load((out / entry["file"]).read_bytes())["activations"].to(torch.float32)

    fingerprint = fp.compute((shard_rows(e) for e in train), shard_rows(eval_entry))
    rule = plan["tokens"].get("massive")
    massive = {} if rule is None else {"massive": {
        **rule, "eval_median_norm": eval_entry["norm_median"], "n_eval_flagged": eval_entry["n_massive"],
        "n_train_flagged": sum(e["n_massive"] for e in train)}}
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
        "fingerprint": fingerprint,
        **massive,
    }


#: Version of the identity's definition (part of it: a new definition gives new hashes).
IDENTITY_FORMAT = "saebench-activations-identity/1"
#: shard fields that depend only on the recipe (not on float bytes or the file format).
_SHARD_RECIPE_FIELDS = ("file", "rows", "contexts", "ids_sha256")


def identity(manifest: dict[str, Any]) -> dict[str, Any]:
    """The recipe part of a manifest (see module doc): everything that decides what the set is,
    nothing that depends on float bytes (shard file sha256s and sizes, normalization
    statistics, the fingerprint) or on the install (library versions)."""
    def shard(e: dict[str, Any]) -> dict[str, Any]:
        return {k: e[k] for k in _SHARD_RECIPE_FIELDS}

    return {
        "identity_format": IDENTITY_FORMAT,
        **{k: manifest[k] for k in ("format", "name", "model", "corpus", "tokens", "hook_point", "d_in", "dtype",
                                    "n_train_tokens", "n_eval_tokens")},
        "shards": [shard(e) for e in manifest["shards"]],
        "eval_shard": shard(manifest["eval_shard"]),
        "normalization": {"method": manifest["normalization"]["method"]},
    }


def identity_hash(path: str | Path) -> str:
    """The store's identity: ``stable_hash(identity(manifest))``, equal for the same recipe on
    any machine or install. It keys every cell trained on the set."""
    return stable_hash(identity(read_manifest(path)))


#: Version of the content hash's definition.
CONTENT_FORMAT = "saebench-activations-content/1"


def content_hash(path: str | Path) -> str:
    """The bytes the set serves: ``stable_hash`` of the train and eval shard files' sha256s (from
    the manifest, so nothing is re-read). Equal for the same build; another machine's build of
    the same recipe (same ``identity_hash``) differs in its float bytes and so here."""
    return content_hash_of(read_manifest(path))


def content_hash_of(manifest: dict[str, Any]) -> str:
    """:func:`content_hash` of a manifest already read."""
    return stable_hash({"content_format": CONTENT_FORMAT, "shards": [e["sha256"] for e in manifest["shards"]],
                        "eval_shard": manifest["eval_shard"]["sha256"]})


def fingerprint(path: str | Path) -> dict[str, Any]:
    """The set's fingerprint (``fingerprint.compute`` at build time) with the set's name, identity
    hash and recipe: what ``saebench activations fingerprint`` writes and ``verify --against``
    compares."""
    m = read_manifest(path)
    return {"set": m["name"], "identity_sha256": stable_hash(identity(m)), **m["fingerprint"], "recipe": identity(m)}


def remove_store(path: str | Path) -> None:
    shutil.rmtree(Path(path))
