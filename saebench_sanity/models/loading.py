"""Load any causal language model through ``transformers.AutoModelForCausalLM``.

``load_causal_lm`` accepts a hub id (``"HuggingFaceTB/SmolLM2-135M"``) or a local folder (a
``save_pretrained`` folder, or a folder holding a GGUF file named by ``gguf_file``) and returns
``(model, tokenizer, info)``. ``info`` is what identifies the weights in an activation-set
manifest: the id plus the resolved hub revision (commit hash) for hub models, or the sha256 of
the weight files for local ones (a local path differs between machines, the weights must not).

Errors a user can act on (unknown id, no network and no local copy, a folder without weights)
become one-line ``DataError``s naming the model and the fix.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from saebench_sanity.errors import ConfigError, DataError

DTYPES = ("float32", "bfloat16", "float16")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf")


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    """sha256 hex of a file's bytes, read in 4 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def weights_sha256(folder: Path, gguf_file: str | None = None) -> str:
    """One sha256 over the weight files of a local model folder (sorted by name).

    With ``gguf_file`` only that file counts. Config/tokenizer files are left out: they are
    small and recorded through the model id; the weights are what change activations.
    """
    if gguf_file is not None:
        return file_sha256(folder / gguf_file)
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    if not files:
        raise DataError(f"model folder {str(folder)!r} holds no weight files (*.safetensors, *.bin, *.gguf); "
                        f"point at a folder written by save_pretrained or pass gguf_file=")
    if len(files) == 1:
        return file_sha256(files[0])
    h = hashlib.sha256()
    for p in files:
        h.update(p.name.encode() + b"\0" + file_sha256(p).encode())
    return h.hexdigest()


def torch_dtype(name: str) -> Any:
    """``"float32" | "bfloat16" | "float16"`` -> the torch dtype (ConfigError otherwise)."""
    import torch

    if name not in DTYPES:
        raise ConfigError(f"model dtype {name!r} is not one of {', '.join(DTYPES)}; pick one of those")
    return getattr(torch, name)


def _offline_default() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes") or \
        os.environ.get("TRANSFORMERS_OFFLINE", "0").lower() in ("1", "true", "yes")


def _source(model_id_or_path: str | os.PathLike, revision: str | None, gguf_file: str | None,
            local_files_only: bool | None) -> tuple[str, str, bool, bool, dict[str, Any]]:
    """``(ref, target, is_local, local_files_only, from_pretrained kwargs)`` of a model reference;
    DataError for a path-like reference that is not a folder."""
    ref = str(model_id_or_path)
    path = Path(ref).expanduser()
    is_local = path.is_dir()
    if not is_local and (ref.startswith((".", "/", "~")) or ref.count("/") > 1):
        raise DataError(f"model folder {ref!r} does not exist; pass an existing folder or a hub id like 'org/name'")
    if local_files_only is None:
        local_files_only = _offline_default()
    kwargs: dict[str, Any] = {}
    if gguf_file is not None:
        kwargs["gguf_file"] = gguf_file
    if not is_local:
        kwargs["revision"] = revision
        kwargs["local_files_only"] = local_files_only
    return ref, (str(path) if is_local else ref), is_local, local_files_only, kwargs


def _load_error(exc: Exception, ref: str, is_local: bool, local_files_only: bool) -> DataError:
    """The one-line error of a model (or its tokenizer) that cannot be loaded."""
    first = (str(exc).splitlines() or [""])[0]
    if is_local:
        return DataError(f"cannot load model from folder {ref!r} ({type(exc).__name__}: {first}); "
                         f"it needs config.json, weights and tokenizer files as written by save_pretrained")
    how = ("it is not in the local Hugging Face cache and offline mode is on; run once with network "
           "(unset HF_HUB_OFFLINE) or pass a local folder") if local_files_only else \
          ("check the id on huggingface.co and your network, or pass a local folder")
    return DataError(f"cannot load model {ref!r} from the hub ({type(exc).__name__}): {how}")


def load_tokenizer(model_id_or_path: str | os.PathLike, *, revision: str | None = None,
                   gguf_file: str | None = None, local_files_only: bool | None = None) -> Any:
    """The tokenizer ``load_causal_lm`` would load with the model, without the weights (a build
    tokenizes its corpus before it loads the model, so a bad corpus line costs no model load)."""
    from transformers import AutoTokenizer

    ref, target, is_local, offline, kwargs = _source(model_id_or_path, revision, gguf_file, local_files_only)
    try:
        return AutoTokenizer.from_pretrained(target, **kwargs)
    except Exception as exc:  # noqa: BLE001 - hub/HTTP/parse errors all mean "cannot load this model"
        raise _load_error(exc, ref, is_local, offline) from exc


def model_skeleton(model_id_or_path: str | os.PathLike, *, revision: str | None = None,
                   gguf_file: str | None = None, local_files_only: bool | None = None) -> Any:
    """The model's module tree on torch's ``meta`` device (its config only: no weights read, no
    memory), for checking a hook point before the weights load; None when the config cannot be
    instantiated that way (custom code, an unknown architecture): the check then waits for the
    loaded model."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    _, target, _, _, kwargs = _source(model_id_or_path, revision, gguf_file, local_files_only)
    try:
        config = AutoConfig.from_pretrained(target, **kwargs)
        with torch.device("meta"):
            return AutoModelForCausalLM.from_config(config)
    except Exception:  # noqa: BLE001 - a skeleton is an early check only; the real load reports errors
        return None


@contextlib.contextmanager
def _no_weight_loading_bar() -> Iterator[None]:
    """transformers' own "Loading weights" bar off while the block runs (restored after): each pool
    worker loads the model once, and its bar, written to stderr from the worker process, broke
    into the run's progress display (a second or less from local files, nothing to watch). The
    hub's download bars are huggingface_hub's, not this switch's, and stay on."""
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            hf_logging.enable_progress_bar()


def load_causal_lm(model_id_or_path: str | os.PathLike, *, revision: str | None = None,
                   gguf_file: str | None = None, dtype: str = "float32",
                   local_files_only: bool | None = None, tokenizer: Any = None) -> tuple[Any, Any, dict[str, Any]]:
    """Load a causal LM and its tokenizer, in eval mode on CPU.

    Args:
        model_id_or_path: hub id or local folder.
        revision: hub branch/tag/commit (ignored for local folders).
        gguf_file: name of a GGUF file inside the folder / repo (de-quantized by transformers).
        dtype: ``"float32"`` (default), ``"bfloat16"`` or ``"float16"``.
        local_files_only: never touch the network; defaults to True when ``HF_HUB_OFFLINE`` or
            ``TRANSFORMERS_OFFLINE`` is set, else False.
        tokenizer: this model's tokenizer if the caller already loaded it (``load_tokenizer``
            with the same arguments), returned as is; None loads it.

    Returns:
        ``(model, tokenizer, info)``; ``info`` has ``id``, ``source`` (``"local"``/``"hub"``),
        ``revision`` (hub commit hash or None), ``sha256`` (local weights, or None), ``gguf_file``,
        ``dtype``, ``architecture``, ``n_layers``, ``d_model``.
    """
    from transformers import AutoModelForCausalLM

    tdtype = torch_dtype(dtype)
    ref, target, is_local, local_files_only, kwargs = _source(model_id_or_path, revision, gguf_file, local_files_only)
    path = Path(ref).expanduser()
    if tokenizer is None:
        tokenizer = load_tokenizer(model_id_or_path, revision=revision, gguf_file=gguf_file, local_files_only=local_files_only)
    try:
        with _no_weight_loading_bar():
            model = AutoModelForCausalLM.from_pretrained(target, dtype=tdtype, **kwargs)
    except Exception as exc:  # noqa: BLE001 - hub/HTTP/parse errors all mean "cannot load this model"
        raise _load_error(exc, ref, is_local, local_files_only) from exc
    model.eval()
    cfg = model.config
    info: dict[str, Any] = {
        "id": ref if not is_local else path.name,
        "source": "local" if is_local else "hub",
        "revision": None if is_local else (getattr(cfg, "_commit_hash", None) or revision),
        "sha256": weights_sha256(path, gguf_file) if is_local else None,
        "gguf_file": gguf_file,
        "dtype": dtype,
        "architecture": (getattr(cfg, "architectures", None) or [type(model).__name__])[0],
        "n_layers": getattr(cfg, "num_hidden_layers", None),
        "d_model": getattr(cfg, "hidden_size", None),
    }
    return model, tokenizer, info
