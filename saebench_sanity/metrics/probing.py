"""Sparse probing (SAEBench's definition), pure core plus the glue that reads a model handle.

Definition (SAEBench ``sparse_probing``, ``probe_training.py``):

* an example's feature vector is the SAE's latent activations **mean-pooled over its tokens**
  (padding and special tokens such as BOS masked out), ``[n, d_sae]``;
* multi-class tasks are binarised **one-vs-rest per class, with balanced negatives** drawn
  evenly from the other classes (SAEBench's ``prepare_probe_data``), and the accuracies are
  **averaged over classes**; two-class tasks are the same with one "other" class;
* the k latents with the largest ``|mean_pos - mean_neg|`` on the *train* split are kept;
* an L2 ``sklearn.linear_model.LogisticRegression`` (``max_iter=1000``, default C) is fit on
  them and scored by test accuracy (chance 0.5 by balance);
* the reference "full probe" is the same logistic regression on all dimensions of the raw,
  mean-pooled model activations (SAEBench's ``llm_test_accuracy``; SAEBench trains that one with
  a torch loop on GPU, here sklearn is fast enough for d_model 576).
"""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from saebench_sanity.errors import DataError
from saebench_sanity.metrics.base import MetricResult
from saebench_sanity.metrics.lm import LMHandle  # also re-exported: it was defined here before metrics.lm

logger = logging.getLogger(__name__)


def _np(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def top_k_by_mean_diff(feats: Any, labels: Any, k: int) -> np.ndarray:
    """Indices ``[k]`` of the columns of ``feats`` ``[n, d]`` with the largest
    ``|mean(feats[labels == 1]) - mean(feats[labels == 0])|`` (ties broken by lower index)."""
    x, y = _np(feats).astype(np.float64), _np(labels).astype(bool)
    if y.all() or not y.any():
        raise DataError("sparse probing: the train split has only one class; a probe needs both")
    diff = np.abs(x[y].mean(0) - x[~y].mean(0))
    k = min(int(k), x.shape[1])
    return np.argsort(-diff, kind="stable")[:k]


def probe_accuracy(train_feats: Any, train_labels: Any, test_feats: Any, test_labels: Any,
                   k: int | None = None, max_iter: int = 1000) -> float:
    """Binary probe test accuracy.

    Args:
        train_feats: ``[n_train, d]`` features (SAE latents or model activations).
        train_labels: ``[n_train]`` 0/1 (or bool).
        test_feats: ``[n_test, d]``; test_labels: ``[n_test]``.
        k: keep the top-k columns by class mean difference on train (None = all columns).

    Returns:
        accuracy in [0, 1] of an L2 logistic regression on the kept columns.
    """
    from sklearn.linear_model import LogisticRegression

    xtr, xte = _np(train_feats).astype(np.float32), _np(test_feats).astype(np.float32)
    ytr, yte = _np(train_labels).astype(int), _np(test_labels).astype(int)
    if xtr.ndim != 2 or xte.ndim != 2 or xtr.shape[1] != xte.shape[1]:
        raise DataError(f"sparse probing: features must be [n, d] with equal d (got {xtr.shape} and {xte.shape})")
    if k is not None:
        cols = top_k_by_mean_diff(xtr, ytr, k)
        xtr, xte = xtr[:, cols], xte[:, cols]
    if len(np.unique(ytr)) < 2:
        raise DataError("sparse probing: the train split has only one class; a probe needs both")
    clf = LogisticRegression(max_iter=max_iter)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning on unscaled activations is expected
        clf.fit(xtr, ytr)
    return float((clf.predict(xte) == yte).mean())


def balanced_one_vs_rest(feats: Any, labels: Sequence[str], positive: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """SAEBench's ``prepare_probe_data``: all examples of ``positive`` plus as many negatives,
    drawn evenly (``ceil(n_pos / n_other_classes)`` each, then trimmed) from the other classes.

    Returns ``(feats [2 n_pos, d], labels [2 n_pos])`` in a seeded shuffled order."""
    x = _np(feats)
    lab = np.asarray([str(v) for v in labels])
    rng = np.random.default_rng(seed)
    pos = np.flatnonzero(lab == positive)
    others = sorted(set(lab.tolist()) - {positive})
    if not len(pos) or not others:
        raise DataError(f"sparse probing: class {positive!r} needs examples of itself and of another class")
    per = math.ceil(len(pos) / len(others))
    neg = np.concatenate([rng.permutation(np.flatnonzero(lab == o))[:per] for o in others])
    neg = rng.permutation(neg)[:len(pos)]
    idx = np.concatenate([pos, neg])
    y = np.concatenate([np.ones(len(pos), int), np.zeros(len(neg), int)])
    order = rng.permutation(len(idx))
    return x[idx[order]], y[order]


def one_vs_rest_accuracy(train_feats: Any, train_labels: Sequence[str], test_feats: Any, test_labels: Sequence[str],
                         k: int | None, seed: int = 0) -> float:
    """Mean over classes of the binary probe accuracy (class vs balanced rest), as SAEBench.

    ``train_feats`` ``[n_train, d]``, ``test_feats`` ``[n_test, d]``, labels are class names."""
    classes = sorted({str(v) for v in train_labels})
    if len(classes) < 2:
        raise DataError("sparse probing: the train split has only one class; a probe needs at least two")
    accs = []
    for i, c in enumerate(classes):
        xtr, ytr = balanced_one_vs_rest(train_feats, train_labels, c, seed + 2 * i)
        xte, yte = balanced_one_vs_rest(test_feats, test_labels, c, seed + 2 * i + 1)
        accs.append(probe_accuracy(xtr, ytr, xte, yte, k=k))
    return float(np.mean(accs))


def masked_mean(acts: Any, mask: Any) -> Any:
    """Mean over tokens: ``acts`` ``[n, seq, d]``, ``mask`` ``[n, seq]`` (1 = counted) -> ``[n, d]``."""
    m = mask.to(acts.dtype).unsqueeze(-1)
    return (acts * m).sum(1) / m.sum(1).clamp_min(1.0)


# -- glue: token activations of a language model, the registered metric's factory ----------------

def lm_handle(ctx: Any) -> LMHandle:
    """``ctx.lm_handle()``: kept for callers of the function this module used to define."""
    return ctx.lm_handle()


def tokenize_texts(tokenizer: Any, texts: Sequence[str], ctx_len: int) -> tuple[Any, Any, Any]:
    """Right-padded token ids ``[n, L]``, attention mask ``[n, L]`` and a pooling mask ``[n, L]``
    (attention mask minus special tokens such as BOS/EOS, as SAEBench masks them), ``L <= ctx_len``.
    Every row starts with BOS (EOS if the tokenizer has none)."""
    import torch

    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    head = [int(bos)] if bos is not None else []
    # BOS first, as the set's contexts were harvested (activations.corpus): without it the first
    # real token becomes the attention sink, whose activation is tens of times larger
    rows = [(head + list(tokenizer(t, add_special_tokens=False)["input_ids"]))[:ctx_len] for t in texts]
    if not rows:
        raise DataError("no texts to tokenize")
    L = max(1, max(len(r) for r in rows))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    ids = torch.full((len(rows), L), int(pad), dtype=torch.long)
    attn = torch.zeros((len(rows), L), dtype=torch.long)
    pool = torch.zeros((len(rows), L), dtype=torch.bool)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r, dtype=torch.long)
        attn[i, :len(r)] = 1
        pool[i, :len(r)] = torch.tensor([tid not in special for tid in r])
        if not pool[i].any():  # a text made only of special tokens still counts its tokens
            pool[i, :len(r)] = True
    return ids, attn, pool


def token_activations(lm: LMHandle, texts: Sequence[str], ctx_len: int = 48, batch_size: int = 16,
                      cache: Any = None) -> tuple[Any, Any]:
    """Model activations at the hook point for each text: ``([n, L, d] float32, pool mask [n, L])``.

    Kept in ``cache`` (a ``MetricCache``: the scorer's, shared by every cell of the process) by
    (model identity, hook point, texts, ctx_len): every cell of a set probes the same texts, only
    the SAE changes, so the model runs once per set and process. When the weights can be named
    (``LMHandle.weights_id``) the result is also kept on disk (:func:`probing_cache_dir`), so a new
    worker process does not run the model again (measured on the default real set: 60-160 s for a
    worker's first cell)."""
    from saebench_sanity.io import stable_hash
    from saebench_sanity.metrics.base import MetricCache

    key = (lm.identity, lm.hook_point, stable_hash(list(texts)), ctx_len)

    def compute() -> tuple[Any, Any]:
        from saebench_sanity.models.hook_points import record

        path = None
        if lm.weights_id is not None:
            entry = {'weights': lm.weights_id, 'texts': key[2], 'ctx_len': ctx_len, **_computed_by(lm.model, batch_size)}
            path = probing_cache_dir() / f"{stable_hash(entry)[:32]}.safetensors"
        cached = _load_cached(path) if path is not None else None
        if cached is None:
            ids, attn, pool = tokenize_texts(lm.tokenizer, texts, ctx_len)
            acts = record(lm.model, lm.hook_point, ids, attn, batch_size=batch_size)
            if path is not None:
                _save_cached(path, acts, pool)
            cached = (acts, pool)
        return cached

    return (cache if cache is not None else MetricCache()).get("probing.token_activations", key, compute, max_entries=16)


def _computed_by(model: Any, batch_size: int) -> dict[str, Any]:
    """What besides the weights and texts decides the cached activations' last bits: the model's
    device and dtype, the batch size, and on a CPU the thread count and kernels
    (``devices.cpu_kernels``). A file is only reused by a computation that would give the same
    bits, so the cache never decides a number."""
    import torch

    from saebench_sanity.devices import cpu_kernels, module_device

    device = module_device(model)
    params = getattr(model, "parameters", None)  # a plugin's model handle may hold a bare callable
    param = next(iter(params()), None) if callable(params) else None
    out: dict[str, Any] = {"device": str(device), "dtype": str(param.dtype if param is not None else None),
                           "batch_size": int(batch_size)}
    if device.type == "cpu":
        out.update(threads=int(torch.get_num_threads()), kernels=cpu_kernels())
    return out


def probing_cache_dir() -> Path:
    """``$SAEBENCH_CACHE/probing`` (default ``~/.cache/saebench-sanity/probing``): model activations
    of the probing texts, one safetensors file per (weights, hook point, texts, context length, and
    what computed them: ``_computed_by``)."""
    from saebench_sanity.models.default_model import cache_root

    return cache_root() / "probing"


def _load_cached(path: Path) -> tuple[Any, Any] | None:
    """``(acts, pool)`` from a cache file, or None if it is missing or unreadable (then recomputed
    and rewritten: a cache never decides a number)."""
    from safetensors.torch import load_file

    if not path.is_file():
        return None
    try:
        data = load_file(str(path))
        return data["acts"], data["pool"]
    except Exception:  # noqa: BLE001 - a torn or foreign file is recomputed
        logger.warning("probing cache file %s is unreadable; recomputing it", path)
        return None


def _save_cached(path: Path, acts: Any, pool: Any) -> None:
    """Write atomically (a temporary file in the same folder, then rename): two workers that
    compute the same entry at once each leave a whole file."""
    from safetensors.torch import save_file

    from saebench_sanity.io import atomic_path

    try:
        with atomic_path(path) as tmp:
            save_file({"acts": acts.contiguous(), "pool": pool.contiguous()}, str(tmp))
    except OSError as exc:  # a full or read-only cache disk costs speed, not results
        logger.warning("could not write probing cache %s (%s); continuing without it", path, exc)


def sae_pooled(sae: Any, acts: Any, pool: Any, batch_size: int = 4096) -> Any:
    """SAE latents mean-pooled over each example's tokens: ``[n, L, d_in]`` -> ``[n, d_sae]``
    (computed on the SAE's device, returned on ``pool``'s)."""
    import torch

    from saebench_sanity.devices import module_device

    n, L, d = acts.shape
    flat = acts.reshape(n * L, d)
    dev = module_device(sae)
    with torch.no_grad():
        z = torch.cat([sae.encode(chunk.to(dev)) for chunk in flat.split(batch_size)])
    return masked_mean(z.reshape(n, L, -1).float(), pool.to(dev)).to(pool.device)


DEFAULT_TASKS = ("code_language", "name_language", "doc_topic", "city_continent")


def probing_scores_for_task(sae: Any, lm: LMHandle, task: Any, k_values: Sequence[int], ctx_len: int,
                            seed: int, cache: Any = None) -> dict[str, float]:
    """``{"top{k}": acc, ..., "full_probe": acc}`` for one :class:`ProbingTask`; ``cache`` (a
    ``MetricCache``) keeps the model activations and the reference probe, which do not depend on
    the SAE."""
    from saebench_sanity.metrics.base import MetricCache

    cache = cache if cache is not None else MetricCache()
    tr_acts, tr_pool = token_activations(lm, task.train_texts, ctx_len, cache=cache)
    te_acts, te_pool = token_activations(lm, task.test_texts, ctx_len, cache=cache)
    tr_z, te_z = sae_pooled(sae, tr_acts, tr_pool), sae_pooled(sae, te_acts, te_pool)
    out = {f"top{k}": one_vs_rest_accuracy(tr_z, task.train_labels, te_z, task.test_labels, k=k, seed=seed)
           for k in k_values}
    key = (lm.identity, lm.hook_point, task.manifest_hash(), ctx_len, seed)
    out["full_probe"] = cache.get(  # the reference probe does not depend on the SAE: once per process
        "probing.full_probe", key, lambda: one_vs_rest_accuracy(
            masked_mean(tr_acts, tr_pool), task.train_labels, masked_mean(te_acts, te_pool), task.test_labels,
            k=None, seed=seed), max_entries=256)
    return out


def sparse_probing_scores(ctx: Any, tasks: Sequence[str] = DEFAULT_TASKS, k_values: Sequence[int] = (1, 2, 5),
                          ctx_len: int = 48, seed: int = 0, task_params: dict[str, dict] | None = None) -> MetricResult:
    """Factory of the ``sparse_probing`` metric: mean over ``tasks`` (probing-task names, built by
    ``ctx.probing_task``) of the per-task scores; scores ``top{k}`` for each k and ``full_probe``,
    details the per-task scores."""
    lm = ctx.lm_handle()
    per_task = []
    for name in tasks:
        task = ctx.probing_task(name, (task_params or {}).get(name, {}))
        per_task.append(probing_scores_for_task(lm.sae_in_model_space(ctx.sae), lm, task, k_values, ctx_len, seed,
                                                cache=ctx.cache))
    return MetricResult({key: float(np.mean([t[key] for t in per_task])) for key in per_task[0]},
                        details=dict(zip(tasks, per_task)))
