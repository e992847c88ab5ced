"""AutoInterp detection scoring: oracle judge 1.0, random judge ~0.5, parsing, example picking,
and the pipeline on a tiny random Llama with a real SAE-like encoder."""

from __future__ import annotations

import random
import re

import pytest
import torch

from saebench_sanity.errors import DataError
from saebench_sanity.judges.base import CallableJudge, JudgeError
from saebench_sanity.metrics import autointerp as A


def _examples(n_latents=40):
    """Latent i 'fires' on texts containing the word w{i}; non-activating texts never contain it."""
    out = []
    for i in range(n_latents):
        out.append(A.LatentExamples(
            latent=i,
            explain=[f"the <<w{i}>> appears here {k}" for k in range(3)],
            activating=[f"some text with w{i} number {k}" for k in range(5)],
            non_activating=[f"unrelated text number {k}" for k in range(5)],
        ))
    return out


def _oracle(messages, max_tokens):
    user = messages[-1]["content"]
    if "Explanation of the feature" in user:
        return "the word " + re.search(r"<<(w\d+)>>", user).group(1)
    word = re.search(r"Explanation: the word (w\d+)", user).group(1)
    hits = [n for n, text in re.findall(r"^(\d+)\. (.*)$", user, re.M) if re.search(rf"\b{word}\b", text)]
    return ", ".join(hits) or "None"


def test_autointerp_oracle_judge_scores_one():
    res = A.score_latents(CallableJudge(_oracle), _examples())
    assert all(r.score == 1.0 and not r.parse_failed for r in res)
    assert res[0].explanation == "the word w0"


def test_autointerp_random_judge_scores_about_half():
    rng = random.Random(0)

    def coin(messages, max_tokens):
        n = len(re.findall(r"^\d+\. ", messages[-1]["content"], re.M))
        return ", ".join(str(i) for i in range(1, n + 1) if rng.random() < 0.5) or "None"

    res = A.score_latents(CallableJudge(coin), _examples(200))
    mean = sum(r.score for r in res) / len(res)
    assert 0.44 < mean < 0.56


def test_autointerp_yes_to_all_and_unparseable_replies_score_chance():
    assert A.score_latents(CallableJudge(lambda m, k: "1,2,3,4,5,6,7,8,9,10"), _examples(3))[0].score == 0.5
    res = A.score_latents(CallableJudge(lambda m, k: "I cannot tell."), _examples(3))
    assert all(r.score == 0.5 and r.parse_failed for r in res)


def test_autointerp_balanced_accuracy_matches_hand_computation():
    # 3 of 4 activating found, 1 of 4 non-activating wrongly chosen: (0.75 + 0.75) / 2
    pred = [True, True, True, False, True, False, False, False]
    act = [True] * 4 + [False] * 4
    assert A.balanced_accuracy(pred, act) == pytest.approx(0.75)
    with pytest.raises(DataError):
        A.balanced_accuracy([True], [True])


def test_autointerp_parse_and_highlight():
    assert A.parse_selection("Texts 2, 5 and 11 match", 10) == {2, 5}
    assert A.parse_selection("None of them", 10) == set()
    assert A.parse_selection("unclear", 10) is None
    assert A.highlight(["a", " b", " c", " d"], [0, 1.0, 2.0, 0]) == "a<< b c>> d"


def test_autointerp_pick_examples_uses_strongest_for_explaining_and_silent_for_random():
    latent_max = torch.tensor([0.0, 5.0, 1.0, 0.0, 3.0, 0.5, 0.0, 2.0])
    explain, act, rand = A.pick_examples(latent_max, 2, 2, 2, seed=0)
    assert explain == [1, 4]
    assert set(act) <= {7, 2, 5} and len(act) == 2
    assert set(rand) <= {0, 3, 6} and len(rand) == 2
    assert A.select_live_latents(torch.tensor([[0.0, 1.0, 2.0], [0.0, 1.0, 0.0]]), 5, 2, 0) == [1]
    assert A.select_live_latents(torch.tensor([[0.0, 1.0, 2.0], [0.0, 1.0, 0.0]]), 5, 1, 0, min_silent=1) == [2]
    with pytest.raises(DataError, match="no latent fires"):
        A.select_live_latents(torch.zeros(4, 3), 5, 1, 0)


class _RandomSAE(torch.nn.Module):
    def __init__(self, d_in, d_sae, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.W = torch.randn(d_in, d_sae, generator=g)
        self.b = -0.5 * torch.ones(d_sae)

    def encode(self, x):
        x = x / x.norm(dim=-1, keepdim=True).clamp_min(1e-6)
        return torch.relu(x @ self.W + self.b)


@pytest.fixture(scope="module")
def tiny_lm():
    from saebench_sanity.judges.local import tiny_random_lm
    from saebench_sanity.metrics.probing import LMHandle

    torch.set_num_threads(1)
    model, tok = tiny_random_lm(seed=0, d_model=16)
    return LMHandle(model, tok, "resid_post.1", identity="tiny-ai")


def test_autointerp_pipeline_on_a_tiny_model_explains_from_highlights_and_scores(tiny_lm):
    from saebench_sanity.metrics.base import MetricContext

    calls = []

    def judge(messages, max_tokens):
        calls.append(messages[-1]["content"])
        return "a feature" if "Explanation of the feature" in messages[-1]["content"] else "1, 2"

    ctx = MetricContext(_RandomSAE(16, 32), None, torch.zeros(1, 16), lm=tiny_lm,
                        judge=CallableJudge(judge, model="fixed"))
    out = A.autointerp_scores(ctx, n_latents=3, n_explain=3, n_activating=2, n_random=2,
                                          ctx_len=12, n_contexts=64)
    assert set(out) == {"score", "parse_failure_rate"} and 0.0 <= out["score"] <= 1.0
    assert out["parse_failure_rate"] == 0.0
    details = out.details
    assert details["judge"] == "callable:fixed" and len(details["latents"]) == 3
    assert all(lat["explanation"] == "a feature" for lat in details["latents"])
    assert out["score"] == pytest.approx(sum(lat["score"] for lat in details["latents"]) / 3)
    # 2 activating + 2 silent texts, the judge always names 2 of them: balanced accuracy 0, 0.5 or 1
    assert all(lat["score"] in (0.0, 0.5, 1.0) for lat in details["latents"])
    explain_prompts = [c for c in calls if "Explanation of the feature" in c]
    assert len(explain_prompts) == 3 and all("<<" in p for p in explain_prompts)


def test_autointerp_dead_sae_is_a_recorded_skip_and_judge_failure_propagates(tiny_lm):
    from saebench_sanity.metrics.base import MetricContext

    class Dead:
        def encode(self, x):
            return torch.zeros(x.shape[0], 8)

    ctx = MetricContext(Dead(), None, torch.zeros(1, 16), lm=tiny_lm, judge=CallableJudge(lambda m, k: "1"))
    with pytest.raises(DataError, match="no latent fires"):
        A.autointerp_scores(ctx, n_contexts=32, ctx_len=12)

    def down(messages, max_tokens):
        raise JudgeError("judge x at http://127.0.0.1:1/v1 failed after 3 attempts (last: cannot connect)")

    ctx = MetricContext(_RandomSAE(16, 32), None, torch.zeros(1, 16), lm=tiny_lm, judge=CallableJudge(down))
    with pytest.raises(JudgeError, match="failed after 3 attempts"):
        A.autointerp_scores(ctx, n_latents=2, n_explain=2, n_activating=1, n_random=1, ctx_len=12, n_contexts=32)


def test_autointerp_judge_that_never_answers_parseably_is_a_recorded_skip(tiny_lm):
    from saebench_sanity.metrics.base import MetricContext

    ctx = MetricContext(_RandomSAE(16, 32), None, torch.zeros(1, 16), lm=tiny_lm,
                        judge=CallableJudge(lambda m, k: "I am not sure what you mean.", model="weak"))
    with pytest.raises(JudgeError, match="no parseable answer for any of 2 latents"):
        A.autointerp_scores(ctx, n_latents=2, n_explain=2, n_activating=1, n_random=1, ctx_len=12, n_contexts=32)


def _yes_no_oracle(messages):
    user = messages[-1]["content"]
    word = re.search(r"Feature: the word (w\d+)", user).group(1)
    return 3.0 if re.search(rf"Text: .*\b{word}\b", user) else -1.0


def test_autointerp_yes_no_oracle_scores_one_and_a_constant_judge_about_half():
    oracle = CallableJudge(_oracle, yes_no=_yes_no_oracle)
    res = A.score_latents(oracle, _examples())
    assert all(r.score == 1.0 and not r.parse_failed for r in res)
    # a judge that says "Yes" to everything with the same confidence: ranking ties break at random
    flat = CallableJudge(_oracle, yes_no=lambda m: 2.0)
    res = A.score_latents(flat, _examples(200))
    assert 0.44 < sum(r.score for r in res) / len(res) < 0.56
    # inverted judge: always picks the non-activating ones
    inverted = CallableJudge(_oracle, yes_no=lambda m: -_yes_no_oracle(m))
    assert all(r.score == 0.0 for r in A.score_latents(inverted, _examples(5)))


def test_autointerp_detection_mode_follows_the_judge_and_rejects_impossible_choices():
    from saebench_sanity.errors import ConfigError

    assert A.detection_mode(CallableJudge(_oracle)) == "list"
    assert A.detection_mode(CallableJudge(_oracle, yes_no=_yes_no_oracle)) == "yes_no"
    assert A.detection_mode(CallableJudge(_oracle, yes_no=_yes_no_oracle), "list") == "list"
    with pytest.raises(ConfigError, match="cannot score yes/no"):
        A.detection_mode(CallableJudge(_oracle), "yes_no")
    with pytest.raises(ConfigError, match="detection must be one of"):
        A.detection_mode(CallableJudge(_oracle), "vote")


def test_top_k_pick_hand_cases():
    assert A.top_k_pick([0.1, 5.0, -2.0, 3.0], 2, seed=0) == [False, True, False, True]
    assert sum(A.top_k_pick([1.0] * 6, 3, seed=4)) == 3


def test_local_judge_yes_no_logodds_do_not_depend_on_padding_or_batching(tiny_lm):
    from saebench_sanity.judges.local import LocalJudge, chat_ids, yes_no_logodds

    model, tok = tiny_lm.model, tiny_lm.tokenizer
    prompts = [A.detect_one_messages("the word for", t) for t in ("a b", "for the long text " * 6, "x")]
    together = yes_no_logodds(model, tok, prompts)
    alone = [yes_no_logodds(model, tok, [p])[0] for p in prompts]
    assert together == pytest.approx(alone, abs=1e-4)
    # independent computation: full forward of the unpadded prompt, softmax at the last position
    ids = torch.tensor([chat_ids(tok, prompts[1])])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0, -1].double(), -1)
    from saebench_sanity.judges.local import answer_token_ids

    y_all, n_all = answer_token_ids(tok, ("Yes", "yes")), answer_token_ids(tok, ("No", "no"))
    yes = torch.logsumexp(logp[[t for t in y_all if t not in n_all]], 0)
    no = torch.logsumexp(logp[[t for t in n_all if t not in y_all]], 0)
    assert together[1] == pytest.approx(float(yes - no), abs=1e-4)
    judge = LocalJudge(loaded=(model, tok))
    assert judge.scores_yes_no and judge.yes_logodds(prompts) == pytest.approx(together, abs=1e-6)
    # batched generation gives one reply per prompt
    assert len(judge.complete_many([A.explain_messages(["a <<b>>"]), A.explain_messages(["c <<d>> e f g h"])], 3)) == 2


def test_a_cohort_scored_in_one_call_gets_each_saes_own_result(tiny_lm):
    """``autointerp_many`` (the harness's cohort call) gives each SAE what ``autointerp_scores``
    gives it alone: with a deterministic judge, the same explanations and scores, in list and in
    yes/no detection; the explanations of every SAE go to the judge in one call; a dead SAE gets
    its own DataError item while the others are scored."""
    from saebench_sanity.metrics.base import MetricContext

    class Dead:
        def encode(self, x):
            return torch.zeros(x.shape[0], 8)

    def explain_by_highlights(messages, max_tokens):
        user = messages[-1]["content"]
        if "Explanation of the feature" in user:  # depends on the SAE's examples: SAEs differ
            return f"marks {user.count('<<')} {re.findall(r'<<([^>]*)>>', user)[:1]}"
        return "1, 3" if len(user) % 2 else "2"

    def yes_no(messages):
        user = messages[-1]["content"]
        return float(len(user) % 7) - 3.0

    kw = dict(n_latents=3, n_explain=2, n_activating=2, n_random=2, ctx_len=12, n_contexts=64)
    for judge_kw in ({}, {"yes_no": yes_no}):
        batches = []

        class Counting(CallableJudge):
            def complete_many(self, prompts, max_tokens=64):
                batches.append(len(prompts))
                return super().complete_many(prompts, max_tokens)

        judge = Counting(explain_by_highlights, model="det", **judge_kw)
        saes = [_RandomSAE(16, 32, seed=s) for s in range(3)]
        ctxs = [MetricContext(sae, None, torch.zeros(1, 16), lm=tiny_lm, judge=judge) for sae in saes]
        ctxs.insert(2, MetricContext(Dead(), None, torch.zeros(1, 16), lm=tiny_lm, judge=judge))
        together = A.autointerp_many(ctxs, **kw)
        assert batches[0] == 9  # the three live SAEs' explanations, one call
        assert isinstance(together[2], DataError) and "no latent fires" in str(together[2])
        for ctx, got in zip([ctxs[0], ctxs[1], ctxs[3]], [together[0], together[1], together[3]]):
            alone = A.autointerp_scores(ctx, **kw)
            assert got.details == alone.details and dict(got) == dict(alone)
        assert len({str(r.details["latents"]) for r in (together[0], together[1], together[3])}) == 3
