"""AutoInterp detection scoring (SAEBench ``autointerp`` / delphi "detection"), pure core + glue.

Per sampled live latent:

1. **contexts**: held-out token contexts ``[n_ctx, ctx_len]`` run through the model and the SAE;
   the latent's activation per token (special tokens such as BOS masked out);
2. **explain**: the ``n_explain`` contexts with the highest max activation, tokens where it
   fires wrapped in ``<<...>>``, go to the explainer, which answers with a one-line explanation;
3. **detect**: ``n_activating`` other firing contexts (drawn uniformly among the remaining firing
   contexts, so at varying strengths) and ``n_random`` contexts where the latent never fires are
   shuffled and judged against the explanation, in one of two ways:

   * ``list`` (SAEBench's prompt; every chat judge): the texts are numbered and shown together,
     the judge replies with the numbers of the matching ones;
   * ``yes_no`` (judges that read their own next-token distribution, i.e. the ``local`` judge):
     one yes/no question per text, scored by ``log p(Yes) - log p(No)`` of the first answer
     token (delphi's detection scorer can also read log-probabilities); the judge's pick is the
     ``n_activating`` texts with the highest log-odds, i.e. it is told how many texts match,
     as the mix is balanced by construction. Measured on SmolLM2-135M: asked for a list of
     numbers it never replied with one (every latent unparseable), and asked yes/no its raw
     answer is the same for nearly every text, so a fixed threshold would score exactly chance
     whatever the explanation; ranking keeps what the judge does distinguish;
4. **score**: balanced accuracy (mean of the hit rate on activating and the correct-rejection
   rate on non-activating contexts) of the judge's pick; a list reply with no parseable answer
   counts as "none match" (0.5) and is counted in ``parse_failure_rate``.

The metric's score is the mean over latents. Differences from SAEBench, forced by 2 CPU cores and
a 135M default judge: fewer latents (default 4, SAEBench 1000 / the study 200), shorter
contexts (16 tokens, SAEBench 128), 3 + 3 test contexts (SAEBench/study 50 + 50), and one judge
that is both explainer and detector. The prompts are written for this suite (SAEBench's say the
same things: what the highlights mean, one short sentence; list the matching numbers).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any, Sequence

from saebench_sanity.errors import ConfigError, DataError
from saebench_sanity.judges.base import Judge
from saebench_sanity.metrics.base import MetricResult

EXPLAIN_SYSTEM = ("In these texts a language model feature is active on the tokens marked <<like this>>. "
                  "In one short sentence, say what the marked tokens have in common.")
DETECT_ONE_SYSTEM = "Answer Yes or No."  # short: one prompt per text, the prompt's length is the metric's cost
DETECT_SYSTEM = ("A feature of a language model is described by an explanation. For each numbered text decide "
                 "whether the feature would be active in it. Reply only with the numbers of the matching texts, "
                 "separated by commas, or with None if no text matches.")


# -- pure core ------------------------------------------------------------------------------------

def balanced_accuracy(predicted: Sequence[bool], actual: Sequence[bool]) -> float:
    """Mean of the true-positive rate and the true-negative rate; both classes must be present.
    A judge that says yes to everything (or nothing) scores 0.5."""
    pos = [p for p, a in zip(predicted, actual) if a]
    neg = [p for p, a in zip(predicted, actual) if not a]
    if not pos or not neg or len(predicted) != len(actual):
        raise DataError("balanced accuracy needs both activating and non-activating examples of equal-length lists")
    return 0.5 * (sum(pos) / len(pos) + sum(not p for p in neg) / len(neg))


def parse_selection(reply: str, n: int) -> set[int] | None:
    """Numbers (1..n) the judge named, ``set()`` for an explicit "none", None if unparseable."""
    nums = {int(m) for m in re.findall(r"\b(\d{1,3})\b", reply or "")}
    picked = {i for i in nums if 1 <= i <= n}
    if picked:
        return picked
    if re.search(r"\bnone\b|\bno text", reply or "", re.IGNORECASE):
        return set()
    return None


def highlight(tokens: Sequence[str], acts: Sequence[float], threshold: float = 0.0) -> str:
    """Join token strings, wrapping runs of tokens whose activation exceeds ``threshold`` in
    ``<<...>>``."""
    out, inside = [], False
    for tok, a in zip(tokens, acts):
        on = a > threshold
        if on and not inside:
            out.append("<<")
        if not on and inside:
            out.append(">>")
        out.append(tok)
        inside = on
    if inside:
        out.append(">>")
    return "".join(out)


def explain_messages(highlighted: Sequence[str]) -> list[dict[str, str]]:
    body = "\n".join(f"Text {i + 1}: {t}" for i, t in enumerate(highlighted))
    return [{"role": "system", "content": EXPLAIN_SYSTEM},
            {"role": "user", "content": f"{body}\n\nExplanation of the feature:"}]


def detect_messages(explanation: str, texts: Sequence[str]) -> list[dict[str, str]]:
    body = "\n".join(f"{i + 1}. {t}" for i, t in enumerate(texts))
    return [{"role": "system", "content": DETECT_SYSTEM},
            {"role": "user", "content": f"Explanation: {explanation}\n\nTexts:\n{body}\n\nMatching text numbers:"}]


def detect_one_messages(explanation: str, text: str) -> list[dict[str, str]]:
    """One yes/no detection question (``yes_no`` detection)."""
    return [{"role": "system", "content": DETECT_ONE_SYSTEM},
            {"role": "user", "content": f"Feature: {explanation}\nText: {text}\nIs the feature active in this text?"}]


def top_k_pick(scores: Sequence[float], k: int, seed: int) -> list[bool]:
    """True for the ``k`` highest scores; ties broken by a seeded random order (so a judge that
    gives every text the same score picks at random: expected balanced accuracy 0.5)."""
    rng = random.Random(seed)
    tiebreak = [rng.random() for _ in scores]
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), tiebreak[i]))
    chosen = set(order[:k])
    return [i in chosen for i in range(len(scores))]


@dataclass
class LatentExamples:
    """Texts for one latent: ``explain`` (highlighted, strongest first), ``activating`` and
    ``non_activating`` test texts (plain)."""

    latent: int
    explain: list[str]
    activating: list[str]
    non_activating: list[str]


@dataclass
class LatentResult:
    latent: int
    explanation: str
    score: float
    parse_failed: bool


def clean_explanation(reply: str, max_chars: int = 200) -> str:
    """First non-empty line of the explainer's reply, highlight marks removed, one line."""
    for line in (reply or "").splitlines():
        line = " ".join(line.replace("<<", "").replace(">>", "").split())
        if line:
            return line[:max_chars]
    return ""


DETECTIONS = ("auto", "list", "yes_no")


def detection_mode(judge: Judge, detection: str = "auto") -> str:
    """``list`` or ``yes_no`` for this judge (``auto``: yes_no when the judge scores yes/no)."""
    if detection not in DETECTIONS:
        raise ConfigError(f"autointerp: detection must be one of {', '.join(DETECTIONS)}, got {detection!r}")
    if detection == "auto":
        return "yes_no" if getattr(judge, "scores_yes_no", False) else "list"
    if detection == "yes_no" and not getattr(judge, "scores_yes_no", False):
        raise ConfigError(f"autointerp: judge {judge.identity} cannot score yes/no answers; use detection = \"list\"")
    return detection


def score_latents(judge: Judge, examples: Sequence[LatentExamples], seed: int = 0, explain_tokens: int = 16,
                  detect_tokens: int = 16, detection: str = "auto") -> list[LatentResult]:
    """Explain then detect for each latent; returns per-latent balanced accuracies.

    Explanations are requested together (``judge.complete_many``: an HTTP judge runs them in
    parallel, the local judge in one padded batch), then the detection prompts; the test texts
    are shuffled with ``seed``. Generation lengths are capped (one line of explanation, a list of
    numbers): on CPU the decode steps of a local judge are most of the metric's cost."""
    return score_latents_many(judge, [examples], seed, explain_tokens, detect_tokens, detection)[0]


def score_latents_many(judge: Judge, groups: Sequence[Sequence[LatentExamples]], seed: int = 0,
                       explain_tokens: int = 16, detect_tokens: int = 16,
                       detection: str = "auto") -> list[list[LatentResult]]:
    """``score_latents`` of several SAEs' latents (one group per SAE), their explanations
    requested in one ``complete_many`` call: the local judge generates them in one padded batch
    (the decode steps of a 135M model on CPU cost about the same for 4 prompts as for 20), an
    HTTP judge in parallel. Yes/no detection is asked per SAE, in the same batches as for one
    SAE alone (batching it wider saves nothing on CPU, and a prompt's log-odds then never depend
    on another SAE's prompts); list detection, a request per latent, in one call. Padding is
    the only difference from scoring each SAE alone: it can move a local judge's logits by
    float rounding, which changes a greedy explanation only at a near-tie."""
    mode = detection_mode(judge, detection)
    judge.check_budget("before the explanations")
    flat_ex = [ex for group in groups for ex in group]
    explanations = [clean_explanation(r) for r in
                    judge.complete_many([explain_messages(ex.explain) for ex in flat_ex], explain_tokens)]
    keys = []
    for ex in flat_ex:
        rng = random.Random(f"{seed}-{ex.latent}")
        items = [(t, True) for t in ex.activating] + [(t, False) for t in ex.non_activating]
        rng.shuffle(items)
        keys.append(items)
    judge.check_budget("before detection")
    results: list[LatentResult] = []
    if mode == "yes_no":
        at = 0
        for group in groups:
            part = range(at, at + len(group))
            at += len(group)
            flat = judge.yes_logodds([detect_one_messages(explanations[i] or "(no explanation)", t)
                                      for i in part for t, _ in keys[i]])
            pos = 0
            for i in part:
                vals, pos = flat[pos:pos + len(keys[i])], pos + len(keys[i])
                actual = [a for _, a in keys[i]]
                pred = top_k_pick(vals, sum(actual), seed + flat_ex[i].latent)
                results.append(LatentResult(flat_ex[i].latent, explanations[i], balanced_accuracy(pred, actual), False))
    else:
        prompts = [detect_messages(expl or "(no explanation)", [t for t, _ in items])
                   for expl, items in zip(explanations, keys)]
        replies = judge.complete_many(prompts, detect_tokens)
        for ex, expl, items, reply in zip(flat_ex, explanations, keys, replies):
            picked = parse_selection(reply, len(items))
            chosen = picked or set()
            pred = [i + 1 in chosen for i in range(len(items))]
            results.append(LatentResult(ex.latent, expl, balanced_accuracy(pred, [a for _, a in items]),
                                        picked is None))
    out, at = [], 0
    for group in groups:
        out.append(results[at:at + len(group)])
        at += len(group)
    return out


def select_live_latents(max_acts: Any, n_latents: int, min_firing: int, seed: int, min_silent: int = 0) -> list[int]:
    """Latents firing (max activation > 0) in at least ``min_firing`` contexts and silent in at
    least ``min_silent`` (so there are non-activating contexts to test against), a seeded sample
    of ``n_latents`` of them (sorted). ``max_acts`` is ``[n_ctx, d_sae]`` (max over tokens)."""
    counts = (max_acts > 0).sum(0)
    ok = (counts >= min_firing) & (counts <= max_acts.shape[0] - min_silent)
    live = [int(i) for i in ok.nonzero().flatten().tolist()]
    if not live:
        raise DataError(f"autointerp: no latent fires in >= {min_firing} held-out contexts while staying silent in "
                        f">= {min_silent} (dead, dense or collapsed SAE); nothing to explain")
    rng = random.Random(seed)
    return sorted(rng.sample(live, min(n_latents, len(live))))


def pick_examples(latent_max: Any, n_explain: int, n_activating: int, n_random: int, seed: int) -> tuple[list[int], list[int], list[int]]:
    """Context indices for one latent from its per-context max activation ``[n_ctx]``:
    the ``n_explain`` strongest, ``n_activating`` drawn among the other firing contexts, and
    ``n_random`` drawn among the contexts where it never fires."""
    order = sorted(range(len(latent_max)), key=lambda i: (-float(latent_max[i]), i))
    firing = [i for i in order if float(latent_max[i]) > 0]
    silent = [i for i in order if float(latent_max[i]) <= 0]
    rng = random.Random(seed)
    explain = firing[:n_explain]
    rest = firing[n_explain:]
    act = sorted(rng.sample(rest, min(n_activating, len(rest))))
    rand = sorted(rng.sample(silent, min(n_random, len(silent))))
    return explain, act, rand


# -- glue -------------------------------------------------------------------------------------

def heldout_contexts(lm: Any, n_contexts: int, ctx_len: int) -> Any:
    """Held-out token contexts ``[n, ctx_len]`` for AutoInterp.

    Uses the model handle's held-out contexts when it has them (``eval_contexts`` of a real set,
    cut into ``ctx_len`` windows), else the held-out split of the default corpus (CPython's docs,
    ``activations.corpus``) tokenized at ``ctx_len``."""
    ids = getattr(lm.source, "eval_contexts", None)
    if ids is not None:
        if ids.shape[1] >= 2 * ctx_len:  # cut long held-out contexts into ctx_len windows
            n_win = ids.shape[1] // ctx_len
            ids = ids[:, :n_win * ctx_len].reshape(-1, ctx_len)
        return ids[:n_contexts, :ctx_len]
    from saebench_sanity.activations.corpus import default_corpus, split_contexts, tokenize_contexts

    ids = tokenize_contexts(default_corpus(), lm.tokenizer, ctx_len, max_contexts=8 * n_contexts)
    _, held = split_contexts(ids.shape[0], n_contexts, salt="saebench-autointerp")
    return ids[held]


def _latent_acts(sae: Any, acts: Any, keep: Any, latents: list[int] | None, batch: int = 64) -> Any:
    """SAE activations ``[n, L, len(latents)]`` (or max over tokens ``[n, d_sae]`` when
    ``latents`` is None), zero at masked positions; computed on the SAE's device, returned on
    ``acts``'s."""
    import torch

    from saebench_sanity.devices import module_device

    dev = module_device(sae)
    out = []
    with torch.no_grad():
        for a, k in zip(acts.split(batch), keep.split(batch)):
            z = sae.encode(a.reshape(-1, a.shape[-1]).to(dev)).reshape(a.shape[0], a.shape[1], -1).float()
            z = z * k.to(dev).unsqueeze(-1)
            out.append(z.amax(1) if latents is None else z[:, :, latents])
    return torch.cat(out).to(acts.device)


def heldout_tokens(lm: Any, n_contexts: int, ctx_len: int, cache: Any = None) -> tuple[Any, Any, list[list[str]]]:
    """``(activations [n, L, d], keep mask [n, L], token strings)`` of the held-out contexts:
    identical for every SAE of a set, so recorded and decoded once per ``cache`` (a
    ``MetricCache``; the scorer's lives as long as its process)."""
    import hashlib

    from saebench_sanity.activations.corpus import keep_mask
    from saebench_sanity.metrics.base import MetricCache
    from saebench_sanity.models.hook_points import record

    ids = heldout_contexts(lm, n_contexts, ctx_len)
    key = (lm.identity, lm.hook_point, tuple(ids.shape), hashlib.sha256(ids.numpy().tobytes()).hexdigest())
    return (cache if cache is not None else MetricCache()).get(
        "autointerp.heldout_tokens", key,
        lambda: (record(lm.model, lm.hook_point, ids), keep_mask(ids, lm.tokenizer),
                 [[lm.tokenizer.decode([t]) for t in row.tolist()] for row in ids]), max_entries=4)


def build_examples(sae: Any, lm: Any, n_latents: int, n_explain: int, n_activating: int, n_random: int,
                   ctx_len: int, n_contexts: int, seed: int, cache: Any = None) -> list[LatentExamples]:
    acts, keep, tok_strs = heldout_tokens(lm, n_contexts, ctx_len, cache=cache)
    max_acts = _latent_acts(sae, acts, keep, None)
    latents = select_live_latents(max_acts, n_latents, n_explain + n_activating, seed, min_silent=n_random)
    per_tok = _latent_acts(sae, acts, keep, latents)
    examples = []
    for j, lat in enumerate(latents):
        explain, act, rand = pick_examples(max_acts[:, lat], n_explain, n_activating, n_random, seed + lat)
        if len(rand) < 1:
            continue  # a latent that fires everywhere has no non-activating contexts to score against
        plain = lambda i: "".join(t for t, k in zip(tok_strs[i], keep[i].tolist()) if k)  # noqa: E731
        hl = [highlight([t for t, k in zip(tok_strs[i], keep[i].tolist()) if k],
                        per_tok[i, :, j][keep[i]].tolist()) for i in explain]
        examples.append(LatentExamples(lat, hl, [plain(i) for i in act], [plain(i) for i in rand]))
    if not examples:
        raise DataError("autointerp: every sampled latent fires in every held-out context; nothing to score against")
    return examples


def resolve_judge(ctx: Any, judge: Any, judge_params: dict | None) -> Judge:
    """``judge`` itself when it is a ``Judge``, else the context's judge (``ctx.get_judge``: the
    one it was given, or the registered judge named ``judge`` built with ``judge_params``)."""
    if isinstance(judge, Judge):
        return judge
    if not isinstance(judge, str) and not isinstance(getattr(ctx, "judge", None), Judge):
        raise ConfigError(f"autointerp: judge must be a registered judge name, got {judge!r}")
    return ctx.get_judge(judge, judge_params or {})


#: seconds the metric may spend per SAE (examples + judge) before it gives up: the default suite's
#: local judge needs under a minute per SAE on CPU (its records' ``seconds``); a rate-limited or
#: stalled endpoint must not hold a cell for longer than this
DEFAULT_BUDGET = 600.0


def check_budget_param(budget: Any) -> float | None:
    if budget is None:
        return None
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not (0 < budget < float("inf")):
        raise ConfigError(f"autointerp: budget = {budget!r} must be a positive number of seconds (or omitted)")
    return float(budget)


def autointerp_scores(ctx: Any, judge: Any = "local", judge_params: dict | None = None, n_latents: int = 4,
                      n_explain: int = 4, n_activating: int = 3, n_random: int = 3, ctx_len: int = 16,
                      n_contexts: int = 512, seed: int = 0, detection: str = "auto",
                      budget: float | None = DEFAULT_BUDGET) -> MetricResult:
    """Factory of the ``autointerp`` metric: scores ``{"score", "parse_failure_rate"}``, details
    the judge, the detection mode and each latent's explanation and score.

    ``judge`` names a registered judge plugin (``"local"`` by default, ``"openai_compatible"``
    with ``judge_params={"base_url", "model", "api_key_env"}``), built by the context
    (``ctx.get_judge``); a context given a ready ``Judge`` uses it (tests). ``budget``: wall-clock
    seconds for the whole metric on one SAE, counted from its start; the judge stops requesting and waiting when it is used up (it
    is not among the registered defaults, so the results' key is unchanged unless a config sets
    it). A judge that fails or runs out of budget raises ``JudgeError``, which the harness
    records as a skip with its one-line reason."""
    item = autointerp_many([ctx], judge, judge_params, n_latents, n_explain, n_activating, n_random, ctx_len,
                           n_contexts, seed, detection, budget)[0]
    if isinstance(item, BaseException):
        raise item
    return item


def autointerp_many(ctxs: list[Any], judge: Any = "local", judge_params: dict | None = None, n_latents: int = 4,
                    n_explain: int = 4, n_activating: int = 3, n_random: int = 3, ctx_len: int = 16,
                    n_contexts: int = 512, seed: int = 0, detection: str = "auto",
                    budget: float | None = DEFAULT_BUDGET) -> list[Any]:
    """The ``autointerp`` metric of several SAEs of one set (the harness's cohort call,
    ``MetricSpec.batch_factory``): each SAE's latents and examples as alone, every explanation
    requested in one judge call (``score_latents_many``). One item per context: its
    ``MetricResult`` or the exception scoring it raised. ``budget`` is per SAE, pooled: the
    joint call may take ``budget`` times the number of SAEs scored. The contexts must share a
    judge (the first context's is used)."""
    seconds = check_budget_param(budget)
    out: list[Any] = [None] * len(ctxs)
    j = resolve_judge(ctxs[0], judge, judge_params)
    mode = detection_mode(j, detection)
    groups: dict[int, list[LatentExamples]] = {}
    with j.budget(None if seconds is None else seconds * len(ctxs), what="autointerp"):
        for i, ctx in enumerate(ctxs):
            try:
                lm = ctx.lm_handle()
                groups[i] = build_examples(lm.sae_in_model_space(ctx.sae), lm, n_latents, n_explain, n_activating,
                                           n_random, ctx_len, n_contexts, seed, cache=ctx.cache)
            except Exception as exc:  # noqa: BLE001 - this SAE's error (e.g. no live latent); the others go on
                out[i] = exc
        if groups:
            try:
                scored = score_latents_many(j, list(groups.values()), seed=seed, detection=mode)
            except Exception as exc:  # noqa: BLE001 - the judge failed: every SAE waiting for it records it
                for i in groups:
                    out[i] = exc
            else:
                for i, results in zip(groups, scored):
                    out[i] = _autointerp_result(j, mode, results)
    return out


def _autointerp_result(j: Judge, mode: str, results: list[LatentResult]) -> Any:
    """One SAE's ``MetricResult`` from its latents' results, or the ``JudgeError`` when no latent
    got a parseable answer (its score would be chance by construction)."""
    from saebench_sanity.judges.base import JudgeError, redact

    if all(r.parse_failed for r in results):
        return JudgeError(f"autointerp: judge {j.identity} gave no parseable answer for any of {len(results)} latents "
                          f"(e.g. {redact(results[0].explanation[:60])!r}); its score would be chance by construction, "
                          f"use a stronger judge (openai_compatible)", transient=False)
    details = {
        "judge": j.identity, "detection": mode,
        "latents": [{"latent": r.latent, "explanation": r.explanation, "score": r.score, "parse_failed": r.parse_failed}
                    for r in results],
    }
    return MetricResult({"score": sum(r.score for r in results) / len(results),
                         "parse_failure_rate": sum(r.parse_failed for r in results) / len(results)}, details)
