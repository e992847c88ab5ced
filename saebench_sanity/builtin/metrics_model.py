"""Model-based metrics: loss recovered and KL divergence with the SAE spliced into the model,
against SAEBench's zero-ablation reference and against mean ablation (both reported).

Factory and definitions in ``saebench_sanity.metrics.loss_recovered``; they need the set's
language model (``NEED_MODEL``: real sets provide it, synthetic sets do not and are skipped).
"""

from saebench_sanity.activations.base import NEED_MODEL
from saebench_sanity.metrics.base import MetricSpec, ScoreInfo

METRICS = [
    MetricSpec(
        name="loss_recovered",
        description="next-token CE and KL on 16 held-out contexts with the SAE reconstruction spliced in at the set's hook point, against zero ablation (SAEBench) and mean ablation",
        factory="saebench_sanity.metrics.loss_recovered:loss_recovered_scores",
        batch_factory="saebench_sanity.metrics.loss_recovered:loss_recovered_many",
        scores={
            "loss_recovered": ScoreInfo(
                direction="higher", chance=0.0, headline="loss recovered",
                definition="zero-ablation reference, SAEBench core ce_loss_score: (CE_zero_ablation - CE_sae) / (CE_zero_ablation - CE_clean)"),
            "loss_recovered_mean_ablation": ScoreInfo(
                direction="higher", chance=0.0,
                definition="mean-ablation reference (not SAEBench): (CE_mean_ablation - CE_sae) / (CE_mean_ablation - CE_clean); "
                           "mean ablation puts the training split's mean activation at every position the SAE replaces, "
                           "so an SAE that outputs that constant scores 0"),
            "kl_div": ScoreInfo(
                direction="lower", chance=None, best=0.0,
                definition="mean over positions of KL(p_clean || p_sae), next-token distributions (SAEBench kl_div_with_sae)"),
            "kl_div_score": ScoreInfo(
                direction="higher", chance=0.0, best=1.0,
                definition="zero-ablation reference, SAEBench core kl_div_score: (KL_zero_ablation - KL_sae) / KL_zero_ablation"),
            "kl_div_score_mean_ablation": ScoreInfo(
                direction="higher", chance=0.0, best=1.0,
                definition="mean-ablation reference (not SAEBench): (KL_mean_ablation - KL_sae) / KL_mean_ablation"),
            "ce_clean": ScoreInfo(direction=None, definition="mean next-token CE (nats) of the unmodified model"),
            "ce_sae": ScoreInfo(direction=None, definition="mean next-token CE (nats) with the SAE reconstruction spliced in"),
            "ce_zero": ScoreInfo(direction=None, definition="mean next-token CE (nats) with the hook point zero-ablated (every position)"),
            "ce_mean_ablation": ScoreInfo(
                direction=None, definition="mean next-token CE (nats) with the training split's mean activation at the non-special positions"),
        },
        needs=frozenset({NEED_MODEL}),
        params={"n_contexts": 16, "batch_size": 4},
    ),
]
