"""Loss recovered and KL divergence with an SAE spliced into the model (SAEBench core).

Definitions (SAEBench core ``model_performance_preservation`` / ``model_behavior_preservation``,
computed as in ``sae_lens.evals.get_recons_loss``):

* ``ce_clean``, ``ce_sae``, ``ce_zero``: mean next-token cross-entropy (nats) over every position
  of the held-out contexts, with the hook point left alone, replaced by the SAE reconstruction,
  or replaced by zeros.
* ``loss_recovered = (ce_zero - ce_sae) / (ce_zero - ce_clean)`` (SAEBench's ``ce_loss_score``):
  1 for a perfect reconstruction, 0 for one no better than zero-ablation.
* ``kl_div``: mean over every position (the last one too, as SAELens) of ``KL(p_clean || p_sae)`` of the next-token distributions;
  ``kl_div_score = (kl_zero - kl_sae) / kl_zero``.

As in SAELens, the reconstruction replaces the activation only at positions whose token is not
special (BOS/EOS/PAD keep their clean activation: the SAE never saw them) and zero-ablation zeroes
every position. Reconstructions are computed in the set's normalized space and un-normalized
before splicing (``ModelHandle.normalizer``).

Pure functions (tensors in, numbers out) first; ``loss_recovered_scores`` is the registered
metric's factory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

def next_token_ce_sum(logits: Any, input_ids: Any) -> tuple[float, int]:
    """Sum and count of next-token cross-entropy.

    Args:
        logits: ``[batch, seq, vocab]``; position t predicts token t+1.
        input_ids: ``[batch, seq]``.
    Returns:
        (sum of ``-log p(token_{t+1})`` over the ``batch * (seq - 1)`` predictions, that count).
    """
    import torch

    logp = torch.log_softmax(logits[:, :-1].to(torch.float64), dim=-1)
    target = input_ids[:, 1:].unsqueeze(-1)
    nll = -logp.gather(-1, target).squeeze(-1)
    return float(nll.sum()), int(nll.numel())


def kl_sum(clean_logits: Any, other_logits: Any) -> tuple[float, int]:
    """Sum and count over positions of ``KL(softmax(clean) || softmax(other))``; logits ``[b, s, V]``."""
    import torch

    lp = torch.log_softmax(clean_logits.to(torch.float64), dim=-1)
    lq = torch.log_softmax(other_logits.to(torch.float64), dim=-1)
    kl = (lp.exp() * (lp - lq)).sum(-1)
    return float(kl.sum()), int(kl.numel())


def loss_recovered(ce_clean: float, ce_sae: float, ce_zero: float) -> float:
    """``(ce_zero - ce_sae) / (ce_zero - ce_clean)``; NaN when zero-ablation costs nothing."""
    denom = ce_zero - ce_clean
    return float("nan") if abs(denom) < 1e-12 else (ce_zero - ce_sae) / denom


def run_with_replacement(model: Any, hook_point: str, contexts: Any, replace: Callable[[Any, Any], Any] | None,
                         batch_size: int = 8, clean: bool = True) -> dict[str, float]:
    """Mean CE with ``replace`` spliced in, and its KL to the clean model.

    Args:
        contexts: ``[n_ctx, seq]`` token ids.
        replace: ``replace(activation [b, s, d], input_ids [b, s]) -> [b, s, d]``, or None for
            the clean model.
        clean: also run the clean model per batch and return ``ce_clean`` and ``kl``.
    Returns:
        ``{"ce": ..., "ce_clean": ..., "kl": ...}`` (the last two only when ``clean``).
    """
    import torch

    from saebench_sanity.models.hook_points import splice

    ce, kl, ce0, n, n_kl = 0.0, 0.0, 0.0, 0, 0
    with torch.inference_mode():
        for start in range(0, contexts.shape[0], batch_size):
            ids = contexts[start:start + batch_size]
            base = model(input_ids=ids, use_cache=False).logits if (clean or replace is None) else None
            if replace is None:
                logits = base
            else:
                with splice(model, hook_point, lambda x, _ids=ids: replace(x, _ids)):
                    logits = model(input_ids=ids, use_cache=False).logits
            s, k = next_token_ce_sum(logits, ids)
            ce += s
            n += k
            if clean:
                ce0 += next_token_ce_sum(base, ids)[0]
                k_sum, k_n = kl_sum(base, logits)
                kl += k_sum
                n_kl += k_n
    out = {"ce": ce / n}
    if clean:
        out.update({"ce_clean": ce0 / n, "kl": kl / n_kl})
    return out


def sae_replacement(sae: Any, normalizer: Any, excluded_token_ids: list[int]) -> Callable[[Any, Any], Any]:
    """``replace(x, ids)``: SAE reconstruction (in normalized space, undone) at non-special positions."""
    import torch

    special = torch.tensor(sorted(excluded_token_ids), dtype=torch.int64)

    def replace(x: Any, ids: Any) -> Any:
        recon = normalizer.undo(sae.decode(sae.encode(normalizer.apply(x)))).to(x.dtype)
        keep = ~torch.isin(ids, special) if special.numel() else torch.ones_like(ids, dtype=torch.bool)
        return torch.where(keep[..., None], recon, x)

    return replace


def zero_replacement(x: Any, _ids: Any) -> Any:
    """Zero-ablation at every position (as SAELens)."""
    import torch

    return torch.zeros_like(x)


class _Reference:
    """Per set and process: the clean run of the held-out contexts (hook-point activation, log
    next-token distribution, CE) and the zero-ablation run, computed once and shared by every
    SAE scored in this process (SAELens recomputes them per SAE)."""

    def __init__(self, handle: Any, contexts: Any, batch_size: int) -> None:
        import torch

        from saebench_sanity.models.resume import SplicedRunner

        self.contexts = contexts
        self.runner = SplicedRunner(handle.model, handle.hook_point, contexts, batch_size=batch_size)
        with torch.inference_mode():
            clean = self.runner.logits(self.runner.clean)
        s, n = next_token_ce_sum(clean, contexts)
        self.ce_clean = s / n
        self.clean_logits = clean
        self.zero = self.score(zero_replacement)

    def score(self, replace: Callable[[Any, Any], Any]) -> dict[str, float]:
        """``{"ce", "kl"}`` with ``replace(activation, ids)`` spliced in at the hook point."""
        import torch

        with torch.inference_mode():
            logits = self.runner.logits(replace(self.runner.clean, self.contexts))
        s, n = next_token_ce_sum(logits, self.contexts)
        k, nk = kl_sum(self.clean_logits, logits)
        return {"ce": s / n, "kl": k / nk}


_REFERENCES: dict[tuple, _Reference] = {}


def loss_recovered_scores(ctx: Any, n_contexts: int = 4, batch_size: int = 4) -> dict[str, float]:
    """Factory of the ``loss_recovered`` metric: scores on the set's first ``n_contexts``
    held-out contexts (``ctx.activation_set.resource("model")``).

    The clean and zero-ablation runs are computed once per set and process; per SAE only the
    layers after the hook point run (``models.resume``), with the same numbers as a full
    forward pass with the reconstruction spliced in (``run_with_replacement``, the reference
    path the tests compare against)."""
    handle = ctx.activation_set.resource("model")
    contexts = handle.eval_contexts[:n_contexts]
    key = (getattr(ctx.activation_set, "name", id(ctx.activation_set)), ctx.activation_set.manifest_hash(),
           handle.hook_point, int(contexts.shape[0]), id(handle.model))
    if key not in _REFERENCES:
        while len(_REFERENCES) >= 2:  # a few hundred MB of clean logits each: keep the last two sets
            _REFERENCES.pop(next(iter(_REFERENCES)))
        _REFERENCES[key] = _Reference(handle, contexts, batch_size)
    ref = _REFERENCES[key]
    sae_run = ref.score(sae_replacement(ctx.sae, handle.normalizer, handle.excluded_token_ids))
    kl_zero = ref.zero["kl"]
    return {
        "loss_recovered": loss_recovered(ref.ce_clean, sae_run["ce"], ref.zero["ce"]),
        "kl_div": sae_run["kl"],
        "kl_div_score": float("nan") if kl_zero < 1e-12 else (kl_zero - sae_run["kl"]) / kl_zero,
        "ce_clean": ref.ce_clean,
        "ce_sae": sae_run["ce"],
        "ce_zero": ref.zero["ce"],
    }
