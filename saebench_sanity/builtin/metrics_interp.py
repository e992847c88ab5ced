"""Interpretability metrics of the study (SAEBench definitions): sparse probing, AutoInterp
detection, RAVEL-style causal editing. All need a language model (a real, harvested set);
factories live in ``saebench_sanity.metrics.{probing,autointerp,ravel}``.

Defaults are sized for 2 CPU cores and the embedded SmolLM2-135M (see each module's docstring
for the measured cost); every parameter can be overridden from the run config.
"""

from saebench_sanity.metrics.base import MetricSpec, ScoreInfo

_PROBE = ("SAEBench sparse probing: latents mean-pooled over tokens, top-{k} by |mean_pos - mean_neg| on train, "
          "L2 logistic regression, test accuracy; one-vs-rest with balanced negatives, averaged over classes and tasks")

METRICS = [
    MetricSpec(
        name="sparse_probing",
        description="top-k latent logistic probes on 4 offline labelled text tasks (code/language/doc topic/continent)",
        factory="saebench_sanity.metrics.probing:sparse_probing_scores",
        needs=frozenset({"model"}),
        params={"tasks": ["code_language", "name_language", "doc_topic", "city_continent"],
                "k_values": [1, 2, 5], "ctx_len": 48, "seed": 0},
        scores={
            "top1": ScoreInfo(direction="higher", chance=0.5, best=1.0, headline="sparse probing top-1", definition=_PROBE.format(k=1)),
            "top2": ScoreInfo(direction="higher", chance=0.5, best=1.0, definition=_PROBE.format(k=2)),
            "top5": ScoreInfo(direction="higher", chance=0.5, best=1.0, definition=_PROBE.format(k=5)),
            "full_probe": ScoreInfo(direction=None, chance=0.5,
                                    definition="reference: the same probe on all dims of the raw mean-pooled model activations (SAEBench llm_test_accuracy); same for every SAE"),
        },
    ),
    MetricSpec(
        name="autointerp",
        description="AutoInterp detection: an explainer describes each sampled live latent from its top contexts, a judge "
                    "picks which of a shuffled mix of activating and non-activating contexts match; balanced accuracy",
        factory="saebench_sanity.metrics.autointerp:autointerp_scores",
        batch_factory="saebench_sanity.metrics.autointerp:autointerp_many",
        needs=frozenset({"model"}),
        params={"judge": "local", "judge_params": {"model": "default"}, "n_latents": 4, "n_explain": 4, "n_activating": 3,
                "n_random": 3, "ctx_len": 16, "n_contexts": 512, "seed": 0, "detection": "auto"},
        scores={
            "score": ScoreInfo(direction="higher", chance=0.5, best=1.0, headline="AutoInterp",
                               definition="SAEBench/delphi detection: mean over sampled live latents of the judge's balanced accuracy "
                                          "on activating vs non-activating held-out contexts; the judge (params.judge) is part of the result identity"),
            "parse_failure_rate": ScoreInfo(direction=None, chance=None,
                                            definition="fraction of judge replies with no parseable answer (counted as 'no match', i.e. chance)"),
        },
    ),
    MetricSpec(
        name="ravel",
        description="RAVEL-style causal editing on cities (country, continent): patch one attribute's latents from a source city; "
                    "cause = answer moves to the source's, isolation = the other attribute stays",
        factory="saebench_sanity.metrics.ravel:ravel_scores",
        needs=frozenset({"model"}),
        params={"n_per_country": 4, "n_latents": 32, "n_pairs": 16, "seed": 0, "min_entities": 4},
        scores={
            "cause": ScoreInfo(direction="higher", chance=0.0, best=1.0,
                               definition="SAEBench RAVEL cause: fraction of edits whose target-attribute answer becomes the source entity's"),
            "isolation": ScoreInfo(direction="higher", chance=1.0, best=1.0,
                                   definition="SAEBench RAVEL isolation: fraction of edits that leave the other attribute's answer unchanged "
                                              "(a no-op edit scores 1.0)"),
            "score": ScoreInfo(direction="higher", chance=0.5, best=1.0, headline="RAVEL",
                               definition="mean of cause and isolation (study); floor 0.5 = an SAE whose edits do nothing "
                                          "(study: a collapsed baseline scores 0.485)"),
        },
    ),
]
