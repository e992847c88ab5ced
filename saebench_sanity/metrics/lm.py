"""The language-model handle the model-based metrics share (probing, AutoInterp, RAVEL).

It lives here, below every metric, so a metric reads it from its context
(``MetricContext.lm_handle()``) instead of importing another metric's module.
"""

from __future__ import annotations

from typing import Any


class LMHandle:
    """What the interpretability metrics read from an activation set's ``resource("model")``.

    Attributes:
        model: a transformers causal LM (eval mode), on the metric context's device.
        tokenizer: its tokenizer.
        hook_point: readable hook point (``"resid_post.12"``, see ``models.hook_points``).
        identity: a string that names the weights (model id + sha) for caches.
        source: the original handle (for extras such as held-out contexts).
        scale: the set's normalization factor: the SAE was trained on ``x * scale`` (see
            ``activations.reader.Normalizer``); :meth:`sae_in_model_space` accounts for it.
        weights_id: names the weights across processes (model id + weights sha256 or hub revision
            + hook point), or None when they cannot be named: then nothing is cached on disk.
    """

    def __init__(self, model: Any, tokenizer: Any, hook_point: str, identity: str = "", source: Any = None,
                 scale: float = 1.0, weights_id: str | None = None) -> None:
        self.model, self.tokenizer, self.hook_point = model, tokenizer, hook_point
        self.identity = identity or f"{type(model).__name__}@{id(model)}"
        self.weights_id = weights_id
        self.source = source
        self.scale = float(scale)

    def sae_in_model_space(self, sae: Any) -> Any:
        """The SAE seen from raw model activations: ``encode(x) = sae.encode(x * scale)``,
        ``decode(z) = sae.decode(z) / scale`` (the SAE itself when scale is 1)."""
        return sae if self.scale == 1.0 else _ScaledSAE(sae, self.scale)

    @classmethod
    def from_resource(cls, handle: Any, set_name: str = "?") -> "LMHandle":
        """An ``LMHandle`` over a set's model resource (``activations.real.ModelHandle`` or any
        object with ``model``, ``tokenizer`` and ``hook_point``/``hook``; optional ``info`` with
        ``id`` / ``sha256`` / ``revision`` and ``normalizer.scale``). An ``LMHandle`` is returned
        as is. DataError when the resource lacks one of the three."""
        from saebench_sanity.errors import DataError

        if isinstance(handle, LMHandle):
            return handle
        model = getattr(handle, "model", None)
        tok = getattr(handle, "tokenizer", None)
        hook = getattr(handle, "hook_point", None) or getattr(handle, "hook", None)
        if model is None or tok is None or hook is None:
            raise DataError(f"activation set {set_name!r}: its model handle lacks model/tokenizer/hook_point; "
                            "fix the set's resource('model')")
        info = getattr(handle, "info", None) or {}
        identity = f"{info.get('id', type(model).__name__)}@{id(model)}:{info.get('sha256') or info.get('revision') or ''}:{hook}"
        scale = getattr(getattr(handle, "normalizer", None), "scale", 1.0)
        weights = info.get("sha256") or info.get("revision")
        weights_id = f"{info.get('id')}:{weights}:{hook}" if weights and info.get("id") else None
        return cls(model, tok, hook, identity=identity, source=handle, scale=scale, weights_id=weights_id)


class _ScaledSAE:
    def __init__(self, sae: Any, scale: float) -> None:
        self.sae, self.scale = sae, scale

    def encode(self, x: Any) -> Any:
        return self.sae.encode(x * self.scale)

    def decode(self, z: Any) -> Any:
        return self.sae.decode(z) / self.scale
