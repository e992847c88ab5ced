"""Run a causal LM from a residual-stream hook point onwards, reusing the clean prefix.

Metrics that splice an edited activation back into the model (loss recovered, RAVEL) run the
same token contexts once per SAE. The layers up to the hook point never change, so
:class:`SplicedRunner` records the clean activation at the hook point once and then, per SAE,
runs only the decoder layers after it (``resid_post.12`` of a 30-layer model: 17 layers instead
of 30; ``resid_post.24``: 5). It can also unembed only one position per context (RAVEL reads one
next-token distribution per prompt; the unembedding over a 49k vocabulary is a fifth of the
cost of SmolLM2's forward pass).

Written by hand because transformers has no "resume the forward pass at layer L" API: the fast
path feeds the activation as ``inputs_embeds`` to the model with its decoder-layer list
temporarily cut to the layers after the hook point, so masks, rotary embeddings, the final norm
and the unembedding stay transformers' own code. It is used only for model types whose forward
passes ``inputs_embeds`` to the first layer unchanged (:data:`RESUMABLE_TYPES`; Gemma, for one,
rescales it) and only for ``resid_post`` hook points; everything else runs the full model with
the replacement spliced in by a forward hook (same numbers, slower). Equality of both paths is
tested on a random tiny Llama (``tests/test_models_resume.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from typing import Any, Iterator

from saebench_sanity.models.hook_points import parse_hook_point, record, splice

#: ``config.model_type`` values whose base-model forward feeds ``inputs_embeds`` straight into
#: ``model.model.layers`` (checked in transformers' modeling files for these types).
RESUMABLE_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3"})


def can_resume(model: Any, hook_point: str) -> bool:
    """True when :func:`forward_from` may skip the layers up to ``hook_point``."""
    kind, _ = parse_hook_point(hook_point)
    layers = getattr(getattr(model, "model", None), "layers", None)
    return (kind == "resid_post" and getattr(model.config, "model_type", None) in RESUMABLE_TYPES
            and layers is not None and hasattr(model, "lm_head"))


@contextmanager
def _layers_after(model: Any, layer: int) -> Iterator[None]:
    """Inside the block the model has only the decoder layers after ``layer``."""
    import torch

    base = model.model
    full, n = base.layers, model.config.num_hidden_layers
    base.layers = torch.nn.ModuleList(list(full)[layer + 1:])
    model.config.num_hidden_layers = len(base.layers)
    try:
        yield
    finally:
        base.layers = full
        model.config.num_hidden_layers = n


def forward_from(model: Any, hook_point: str, hidden: Any, attention_mask: Any = None, positions: Any = None) -> Any:
    """Logits of the model when the activation at ``hook_point`` is ``hidden``.

    Args:
        hidden: ``[batch, seq, d_model]``, the residual stream after the hook point's layer.
        attention_mask: ``[batch, seq]`` (1 = real token) or None.
        positions: None for every position, else ``[batch]``: one position per context.
    Returns:
        ``[batch, seq, vocab]`` logits, or ``[batch, vocab]`` with ``positions``.
    """
    import torch

    _, layer = parse_hook_point(hook_point)
    device = model.lm_head.weight.device
    mask = None if attention_mask is None else attention_mask.to(device)
    with torch.inference_mode(), _layers_after(model, layer):
        final = model.model(inputs_embeds=hidden.to(device=device, dtype=model.dtype), attention_mask=mask,
                            use_cache=False).last_hidden_state
        if positions is not None:
            final = final[torch.arange(final.shape[0]), positions]
        return model.lm_head(final)


class SplicedRunner:
    """Logits of fixed token contexts with the hook-point activation replaced.

    ``runner.clean`` is the clean activation ``[n, seq, d]`` float32 on the model's device
    (``runner.device``); ``runner.logits(new)`` returns the logits (on that device) with ``new``
    (same shape, any device) in its place, by :func:`forward_from` when possible, else by a full
    forward pass with ``new`` spliced in. Token ids and masks may be given on any device.
    """

    def __init__(self, model: Any, hook_point: str, input_ids: Any, attention_mask: Any = None,
                 batch_size: int = 16) -> None:
        self.model, self.hook_point = model, hook_point
        self.input_ids, self.attention_mask, self.batch_size = input_ids, attention_mask, batch_size
        self.resumable = can_resume(model, hook_point)
        from saebench_sanity.devices import module_device

        self.device = module_device(model)
        # record() returns CPU activations; a no-op .to() on CPU, so CPU numbers are unchanged
        dev_mask = None if attention_mask is None else attention_mask.to(self.device)
        self.clean = record(model, hook_point, input_ids.to(self.device), dev_mask, batch_size=batch_size).to(self.device)

    def logits(self, new: Any, rows: Any = None, positions: Any = None, batch_size: int | None = None) -> Any:
        """Logits for contexts ``rows`` (index tensor, default all; an index may repeat: several
        replacements of one context in one pass) with the hook-point activation replaced by
        ``new`` ``[len(rows), seq, d]``: ``[len(rows), seq, vocab]``, or ``[len(rows), vocab]``
        at one position per context (``positions`` ``[len(rows)]``). ``batch_size``: rows per
        forward pass (default the runner's)."""
        import torch

        ids = self.input_ids if rows is None else self.input_ids[rows]
        mask = None if self.attention_mask is None else (self.attention_mask if rows is None else self.attention_mask[rows])
        step = batch_size or self.batch_size
        out = []
        for start in range(0, ids.shape[0], step):
            sl = slice(start, start + step)
            h, m = new[sl], None if mask is None else mask[sl]
            pos = None if positions is None else positions[sl]
            if self.resumable:
                out.append(forward_from(self.model, self.hook_point, h, m, pos))
                continue
            with torch.inference_mode(), splice(self.model, self.hook_point, _constant(h)):
                logits = self.model(input_ids=ids[sl].to(self.device), attention_mask=None if m is None else m.to(self.device),
                                    use_cache=False).logits
            out.append(logits if pos is None else logits[torch.arange(logits.shape[0]), pos])
        return torch.cat(out)


def _constant(value: Any) -> Callable[[Any], Any]:
    return lambda act: value.to(device=act.device, dtype=act.dtype)
