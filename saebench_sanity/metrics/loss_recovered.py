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

Mean ablation (not in SAEBench; reported next to it): ``ce_mean_ablation`` replaces the
activation at the positions the SAE replaces by the set's mean activation (``ModelHandle.
mean_activation``: for real sets the mean over the training split's stored rows; a handle
without one gets the mean over the scored contexts' non-special positions), and
``loss_recovered_mean_ablation = (ce_mean - ce_sae) / (ce_mean - ce_clean)``, likewise
``kl_div_score_mean_ablation``. An SAE whose output ignores its input and equals the mean scores
exactly 0: it is the chance level of reconstruction, where zero ablation is a floor far below
it. Why both: in a Llama without biases, zeroing the residual stream after layer L zeroes every
later layer's input (RMSNorm(0) = 0), so the logits are 0 and ``ce_zero = ln(vocab)`` exactly
(uniform predictions, 10.8 nats for SmolLM2's 49,152 tokens): a reference so bad that every
reconstruction that keeps the scale of the activations scores near 1.

As in SAELens, the reconstruction replaces the activation only at positions whose token is not
special (BOS/EOS/PAD keep their clean activation: the SAE never saw them) and zero-ablation zeroes
every position; mean ablation replaces the same positions as the SAE. Reconstructions are
computed in the set's normalized space and un-normalized before splicing
(``ModelHandle.normalizer``).

Pure functions (tensors in, numbers out) first; ``loss_recovered_scores`` is the registered
metric's factory.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from saebench_sanity.metrics.base import MetricResult, NotApplicable

logger = logging.getLogger(__name__)

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


def kl_div_score(kl_reference: float, kl_sae: float) -> float:
    """``(kl_reference - kl_sae) / kl_reference``; NaN when the reference changes nothing."""
    return float("nan") if kl_reference < 1e-12 else (kl_reference - kl_sae) / kl_reference


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
                with splice(model, hook_point, lambda x: replace(x, ids)):  # used at once: ids is this batch's
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
        keep = _kept(ids.to(x.device), special)
        return torch.where(keep[..., None], recon, x)

    return replace


def zero_replacement(x: Any, _ids: Any) -> Any:
    """Zero-ablation at every position (as SAELens)."""
    import torch

    return torch.zeros_like(x)


def mean_replacement(mean: Any, excluded_token_ids: list[int]) -> Callable[[Any, Any], Any]:
    """``replace(x, ids)``: the constant ``mean`` ``[d]`` (model space) at non-special positions,
    the clean activation at special ones (the positions ``sae_replacement`` replaces)."""
    import torch

    special = torch.tensor(sorted(excluded_token_ids), dtype=torch.int64)

    def replace(x: Any, ids: Any) -> Any:
        keep = _kept(ids.to(x.device), special)
        return torch.where(keep[..., None], mean.to(device=x.device, dtype=x.dtype).expand_as(x), x)

    return replace


def scored_positions_mean(clean: Any, ids: Any, excluded_token_ids: list[int]) -> Any:
    """Mean ``[d]`` of ``clean`` ``[n, seq, d]`` over positions whose token is not special."""
    import torch

    special = torch.tensor(sorted(excluded_token_ids), dtype=torch.int64)
    keep = _kept(ids.to(clean.device), special)
    return _f64(clean[keep]).mean(0).to(device=clean.device, dtype=clean.dtype)


def _kept(ids: Any, special: Any) -> Any:
    """``[b, s]`` bool: True where the token is not special (``special`` may be on another device)."""
    import torch

    if not special.numel():
        return torch.ones_like(ids, dtype=torch.bool)
    return ~torch.isin(ids, special.to(ids.device))


def _f64(t: Any) -> Any:
    """``t`` in float64, where it is unless its device has no float64 (MPS: then on the CPU)."""
    import torch

    return (t.cpu() if t.device.type == "mps" else t).to(torch.float64)


class _Reference:
    """Per set and process: the clean run of the held-out contexts (hook-point activation, clean
    next-token distribution, CE), the zero-ablation run and the mean-ablation run, computed once
    and shared by every SAE scored in this process (SAELens recomputes them per SAE).

    Kept of the clean run: ``p_clean`` ``[n_ctx, seq, vocab]`` float32 and ``sum p log p`` per
    position (float64), so one SAE costs one float64 log-softmax of its logits, from which both
    its CE and ``KL(p_clean || p_sae) = sum p log p - sum p log q`` follow (computing KL from two
    log-softmaxes took as long as the forward pass). Scoring runs ``batch_size`` contexts at a
    time, so the float64 temporaries stay at ``batch_size * seq * vocab`` (0.2 GB for 4 SmolLM2
    contexts) whatever ``n_ctx`` is."""

    def __init__(self, handle: Any, contexts: Any, batch_size: int) -> None:
        import torch

        from saebench_sanity.models.resume import SplicedRunner

        self.contexts, self.batch_size = contexts, batch_size
        self.runner = SplicedRunner(handle.model, handle.hook_point, contexts, batch_size=batch_size)
        p_clean, plogp, ce, n = [], [], 0.0, 0
        with torch.inference_mode():
            for rows in self._chunks():
                lp = torch.log_softmax(_f64(self.runner.logits(self.runner.clean[rows], rows=rows)), dim=-1)
                p = lp.exp()
                plogp.append((p * lp).sum(-1))
                p_clean.append(p.to(torch.float32))
                s, k = _ce_from_logprobs(lp, contexts[rows])
                ce, n = ce + s, n + k
        self.p_clean, self.plogp = torch.cat(p_clean), torch.cat(plogp)
        self.ce_clean = float(ce) / n
        self.zero = self.score(zero_replacement)
        mean = handle.mean_activation
        self.mean_source = "set" if mean is not None else "scored contexts"
        if mean is None:
            mean = scored_positions_mean(self.runner.clean, contexts, handle.excluded_token_ids)
        self.mean = self.score(mean_replacement(torch.as_tensor(mean), handle.excluded_token_ids))

    def _chunks(self) -> list[Any]:
        import torch

        n = int(self.contexts.shape[0])
        return [torch.arange(s, min(s + self.batch_size, n)) for s in range(0, n, self.batch_size)]

    def score(self, replace: Callable[[Any, Any], Any]) -> dict[str, float]:
        """``{"ce", "kl"}`` with ``replace(activation, ids)`` spliced in at the hook point."""
        return self.score_many([replace])[0]

    def score_many(self, replaces: list[Callable[[Any, Any], Any]]) -> list[dict[str, float]]:
        """``score`` of each replacement, their spliced passes stacked along the batch: one
        forward pass per chunk of contexts runs every replacement of it (the model's weights are
        read once for all; rows do not interact, so the numbers equal one pass each up to float
        rounding, ``tests/test_loss_recovered.py``). Each SAE's
        float64 log-softmax is still its own, one SAE's chunk at a time, so memory grows only by
        the stacked float32 logits."""
        import torch

        m = len(replaces)
        # ce and kl become float64 scalar tensors on the device after the first chunk (read once)
        ce: list[Any] = [0.0] * m
        kl: list[Any] = [0.0] * m
        n, nk = 0, 0
        with torch.inference_mode():
            for rows in self._chunks():
                ids = self.contexts[rows]
                clean = self.runner.clean[rows]
                stacked = torch.cat([replace(clean, ids) for replace in replaces])
                logits = self.runner.logits(stacked, rows=rows.repeat(m), batch_size=len(rows) * m)
                p_clean = self.p_clean[rows].to(torch.float64)
                for i, part in enumerate(logits.split(len(rows))):
                    lq = torch.log_softmax(_f64(part), dim=-1)
                    s, k = _ce_from_logprobs(lq, ids)
                    kl_pos = self.plogp[rows] - (p_clean * lq).sum(-1)
                    ce[i], kl[i] = ce[i] + s, kl[i] + kl_pos.sum()
                n, nk = n + k, nk + int(kl_pos.numel())
        return [{"ce": float(c) / n, "kl": float(d) / nk} for c, d in zip(ce, kl)]


def _ce_from_logprobs(logp: Any, input_ids: Any) -> tuple[Any, int]:
    """``next_token_ce_sum`` from log-probabilities ``[b, s, V]`` already computed, the sum left
    as a float64 scalar tensor on ``logp``'s device: callers add the chunks' sums there (the same
    float64 additions in the same order as Python floats) and read the total once, so a GPU is
    not synchronised per chunk."""
    nll = -logp[:, :-1].gather(-1, input_ids[:, 1:].to(logp.device).unsqueeze(-1)).squeeze(-1)
    return nll.sum(), int(nll.numel())


def _reference(ctx: Any, n_contexts: int, batch_size: int) -> tuple[Any, Any]:
    """``(model handle, _Reference)`` of ``ctx``'s set, from ``ctx.cache`` when already computed."""
    try:
        handle = ctx.resource("model")
    except (KeyError, NotImplementedError):
        raise NotApplicable(f"activation set {getattr(ctx.activation_set, 'name', '?')!r} has no language model; "
                            "loss recovered needs a real (harvested) set") from None
    contexts = handle.eval_contexts[:n_contexts]
    key = (getattr(ctx.activation_set, "name", id(ctx.activation_set)), ctx.activation_set.manifest_hash(),
           handle.hook_point, int(contexts.shape[0]), id(handle.model))
    return handle, ctx.cache.get("loss_recovered.reference", key, lambda: _Reference(handle, contexts, batch_size),
                                 max_entries=2)


def _result(ref: Any, sae_run: dict[str, float]) -> MetricResult:
    n = int(ref.contexts.shape[0])
    details = {"n_contexts": n, "n_predictions": int(n * (ref.contexts.shape[1] - 1)), "mean_ablation_mean": ref.mean_source}
    return MetricResult({
        "loss_recovered": loss_recovered(ref.ce_clean, sae_run["ce"], ref.zero["ce"]),
        "loss_recovered_mean_ablation": loss_recovered(ref.ce_clean, sae_run["ce"], ref.mean["ce"]),
        "kl_div": sae_run["kl"],
        "kl_div_score": kl_div_score(ref.zero["kl"], sae_run["kl"]),
        "kl_div_score_mean_ablation": kl_div_score(ref.mean["kl"], sae_run["kl"]),
        "ce_clean": ref.ce_clean,
        "ce_sae": sae_run["ce"],
        "ce_zero": ref.zero["ce"],
        "ce_mean_ablation": ref.mean["ce"],
    }, details)


#: SAEs whose spliced passes run stacked in one forward pass (``loss_recovered_many``) on an
#: accelerator: a cohort (the trained SAE and its four baselines) fits; the stacked float32
#: logits of one chunk are ``STACK * batch_size * seq * vocab * 4`` bytes (0.8 GB for 8 x 4
#: SmolLM2 contexts of 128 tokens)
STACK = 8
#: the same on the CPU: 1, one pass per SAE. Five SmolLM2 SAEs stacked (20 contexts of 128 tokens
#: per pass) took 1.18x the time of five passes of 4 contexts (``benchmarks/
#: test_bench_loss_recovered.py``, group ``loss-recovered-cohort``): the stacked logits outgrow the
#: caches, and a CPU gains nothing from fewer, larger matmuls at this size
STACK_CPU = 1


def stack_size(device: Any) -> int:
    """SAEs per stacked pass for a model on ``device``: :data:`STACK_CPU` on the CPU, else :data:`STACK`."""
    return STACK_CPU if str(device).split(":")[0] == "cpu" else STACK


def _attempt(fn: Callable[[Any], Any], arg: Any) -> Any:
    """``fn(arg)``, or the exception it raised."""
    try:
        return fn(arg)
    except Exception as exc:  # noqa: BLE001 - returned: the caller records it for its SAE
        return exc


def loss_recovered_many(ctxs: list[Any], n_contexts: int = 16, batch_size: int = 4) -> list[Any]:
    """The ``loss_recovered`` metric of several SAEs of one set (the harness's cohort call,
    ``MetricSpec.batch_factory``): the references are computed once as for one SAE, then the
    SAEs' spliced passes run stacked, up to ``stack_size(device)`` per forward pass
    (``_Reference.score_many``: on a GPU a cohort in one pass; on the CPU one SAE per pass, where
    stacking measured slower). One item per context: what ``loss_recovered_scores`` gives it, or
    the exception it raises. Contexts of different sets, models or devices are scored apart."""
    groups: dict[Any, list[int]] = {}
    refs: dict[int, Any] = {}
    out: list[Any] = [None] * len(ctxs)
    for i, ctx in enumerate(ctxs):
        try:
            handle, ref = _reference(ctx, n_contexts, batch_size)
        except Exception as exc:  # noqa: BLE001 - this context's error, the others go on
            out[i] = exc
            continue
        refs[i] = (handle, ref)
        groups.setdefault(id(ref), []).append(i)
    for members in groups.values():
        handle, ref = refs[members[0]]
        step = stack_size(ref.runner.device)
        for start in range(0, len(members), step):
            part = members[start:start + step]
            replaces = [sae_replacement(ctxs[i].sae, handle.normalizer, handle.excluded_token_ids) for i in part]
            runs: list[Any]
            try:
                runs = ref.score_many(replaces)
            except Exception as exc:  # noqa: BLE001 - e.g. one SAE's output has the wrong shape
                if len(part) == 1:  # one SAE: that is its own error, nothing to retry
                    runs = [exc]
                else:  # a stack: each alone, so only the faulty one records an error
                    logger.debug("stacked loss-recovered pass failed (%s); scored one SAE at a time", exc)
                    runs = [_attempt(ref.score, r) for r in replaces]
            for i, run in zip(part, runs):
                out[i] = run if isinstance(run, BaseException) else _result(ref, run)
    return out


def loss_recovered_scores(ctx: Any, n_contexts: int = 16, batch_size: int = 4) -> MetricResult:
    """Factory of the ``loss_recovered`` metric: scores on the set's first ``n_contexts``
    held-out contexts (``ctx.resource("model")``), against the zero-ablation (SAEBench) and the
    mean-ablation references (module doc); details the number of contexts and predictions and
    where the mean came from.

    The clean and zero-ablation runs are computed once per set and ``ctx.cache`` (the scorer's
    lives as long as its process; a few hundred MB of clean logits each, so the last two sets are
    kept); per SAE only the layers after the hook point run (``models.resume``), with the same
    numbers as a full forward pass with the reconstruction spliced in (``run_with_replacement``,
    the reference path the tests compare against)."""
    handle, ref = _reference(ctx, n_contexts, batch_size)
    return _result(ref, ref.score(sae_replacement(ctx.sae, handle.normalizer, handle.excluded_token_ids)))
