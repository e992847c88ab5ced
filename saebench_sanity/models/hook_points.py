"""Readable hook points on transformers causal LMs, recording and splicing.

Names (``L`` counts decoder layers from 0):

* ``resid_post.L`` - residual stream after decoder layer ``L`` (the layer module's output;
  TransformerLens's ``blocks.L.hook_resid_post``);
* ``mlp_out.L`` - output of layer ``L``'s MLP, before it is added to the residual stream;
* ``attn_out.L`` - output of layer ``L``'s attention block (after the output projection).

Layers are found at ``model.model.layers`` (Llama, Mistral, Qwen, Gemma, ...),
``model.transformer.h`` (GPT-2 family) or ``model.gpt_neox.layers``; the MLP at ``.mlp`` and the
attention at ``.self_attn`` / ``.attn`` / ``.attention``. A name the model does not have is a
``DataError`` listing the valid ones.

Written by hand because transformers has no named-hook API (TransformerLens does, but would need
its own copy of the weights); these are plain ``register_forward_hook`` calls.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from saebench_sanity.errors import DataError

KINDS = ("resid_post", "mlp_out", "attn_out")
_NAME_RE = re.compile(r"^(resid_post|mlp_out|attn_out)\.(\d+)$")
_LAYER_PATHS = ("model.layers", "transformer.h", "gpt_neox.layers", "model.decoder.layers")
_SUBMODULES = {"mlp_out": ("mlp", "feed_forward"), "attn_out": ("self_attn", "attn", "attention")}


def _get(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def decoder_layers(model: Any) -> Any:
    """The model's list of decoder layers (DataError if the layout is unknown)."""
    for path in _LAYER_PATHS:
        layers = _get(model, path)
        if layers is not None and hasattr(layers, "__len__"):
            return layers
    raise DataError(f"cannot find decoder layers in {type(model).__name__} (looked at {', '.join(_LAYER_PATHS)}); "
                    f"use a Llama/GPT-2/GPT-NeoX-style causal LM")


def valid_hook_points(model: Any) -> list[str]:
    """Every hook point name the model has, in layer order."""
    layers = decoder_layers(model)
    names = []
    for i, layer in enumerate(layers):
        names.append(f"resid_post.{i}")
        for kind, attrs in _SUBMODULES.items():
            if any(getattr(layer, a, None) is not None for a in attrs):
                names.append(f"{kind}.{i}")
    return names


def _summary(model: Any) -> str:
    n = len(decoder_layers(model))
    return f"resid_post.L, mlp_out.L, attn_out.L for L in 0..{n - 1}"


def parse_hook_point(name: str) -> tuple[str, int]:
    """``"resid_post.12"`` -> ``("resid_post", 12)`` (DataError if malformed)."""
    m = _NAME_RE.match(str(name))
    if not m:
        raise DataError(f"hook point {name!r} is not a valid name; use resid_post.L, mlp_out.L or attn_out.L")
    return m.group(1), int(m.group(2))


def transformer_lens_name(name: str) -> str:
    """The TransformerLens hook name of a hook point, as SAELens records it in an SAE's metadata
    (``hook_name``): ``"resid_post.12"`` -> ``"blocks.12.hook_resid_post"`` (``mlp_out``,
    ``attn_out`` alike; ``check.hook_point_of`` reads it back)."""
    kind, layer = parse_hook_point(name)
    return f"blocks.{layer}.hook_{kind}"


def resolve_hook_point(model: Any, name: str) -> tuple[Any, int]:
    """The module whose output is the hook point, and its layer index."""
    kind, layer = parse_hook_point(name)
    layers = decoder_layers(model)
    if layer >= len(layers):
        raise DataError(f"hook point {name!r}: {type(model).__name__} has {len(layers)} layers; valid: {_summary(model)}")
    block = layers[layer]
    if kind == "resid_post":
        return block, layer
    for attr in _SUBMODULES[kind]:
        sub = getattr(block, attr, None)
        if sub is not None:
            return sub, layer
    raise DataError(f"hook point {name!r}: layer {layer} of {type(model).__name__} has no {kind} module; "
                    f"valid: {', '.join(valid_hook_points(model)[:6])}...")


def _main(output: Any) -> Any:
    return output[0] if isinstance(output, tuple) else output


class _StopForward(Exception):
    """Raised by a recording hook to skip the layers after the hook point."""


def record(model: Any, hook_point: str, input_ids: Any, attention_mask: Any = None, *,
           batch_size: int = 16, stop_early: bool = True) -> Any:
    """Activations at ``hook_point`` for token contexts.

    Args:
        input_ids: ``[n_ctx, ctx_len]`` token ids.
        attention_mask: ``[n_ctx, ctx_len]`` (1 = real token) or None.
        batch_size: contexts per forward pass.
        stop_early: abort each forward pass right after the hook point (the later layers
            cannot change it), like TransformerLens's ``stop_at_layer``.

    Returns:
        float32 ``[n_ctx, ctx_len, d]`` (CPU), whatever device the model is on (its forward passes
        run there: the token batches are moved to it).
    """
    import torch

    module, _ = resolve_hook_point(model, hook_point)
    captured: list[Any] = []
    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")

    def hook(_mod: Any, _inp: Any, output: Any) -> None:
        captured.append(_main(output).detach().to(torch.float32).cpu())
        if stop_early:
            raise _StopForward

    handle = module.register_forward_hook(hook)
    try:
        with torch.inference_mode():
            for start in range(0, input_ids.shape[0], batch_size):
                ids = input_ids[start:start + batch_size].to(device)
                mask = None if attention_mask is None else attention_mask[start:start + batch_size].to(device)
                try:
                    model(input_ids=ids, attention_mask=mask, use_cache=False)
                except _StopForward:
                    pass
    finally:
        handle.remove()
    return torch.cat(captured) if captured else torch.empty(0)


@contextmanager
def splice(model: Any, hook_point: str, fn: Callable[[Any], Any]) -> Iterator[None]:
    """Inside the block, the activation at ``hook_point`` is replaced by ``fn(activation)``.

    ``fn`` gets ``[batch, seq, d]`` and must return the same shape. Tuple outputs (attention
    modules) keep their other members.
    """
    module, _ = resolve_hook_point(model, hook_point)

    def hook(_mod: Any, _inp: Any, output: Any) -> Any:
        if isinstance(output, tuple):
            new = fn(output[0])
            _check_shape(hook_point, output[0], new)
            return (new, *output[1:])
        new = fn(output)
        _check_shape(hook_point, output, new)
        return new

    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def _check_shape(hook_point: str, old: Any, new: Any) -> None:
    if getattr(new, "shape", None) != old.shape:
        raise DataError(f"splice at {hook_point!r}: replacement has shape {tuple(getattr(new, 'shape', ()))}, "
                        f"expected {tuple(old.shape)}; the function must keep [batch, seq, d]")
