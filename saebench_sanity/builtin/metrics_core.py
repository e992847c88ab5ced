"""Core metrics: reconstruction / sparsity (every set) and ground-truth recovery (synthetic sets).

Factories live in ``saebench_sanity.metrics.core_adapters``; the pure functions they call, with
their definitions, in ``saebench_sanity.metrics.reconstruction`` and ``...ground_truth``.
"""

from saebench_sanity.metrics.base import MetricSpec, ScoreInfo

METRICS = [
    MetricSpec(
        name="reconstruction",
        description="explained variance, MSE, L0, dead latents and shrinkage on the held-out activations",
        factory="saebench_sanity.metrics.core_adapters:reconstruction_scores",
        scores={
            "explained_variance": ScoreInfo(
                direction="higher", chance=0.0, headline="explained variance", improves_with_training=True, best=1.0,
                definition="1 - E||x - x_hat||^2 / E||x - E[x]||^2 (SAELens, study); predicting the mean scores 0"),
            "explained_variance_saebench": ScoreInfo(
                direction="higher", chance=None, improves_with_training=True,
                definition="SAEBench core v0.6 formula: 1 - E||x - x_hat||^2 / (E||x||^2 - (E||x||^2/d)^2)"),
            "mse": ScoreInfo(
                direction="lower", chance=None, improves_with_training=True, best=0.0,
                definition="mean over samples of ||x - x_hat||^2 (SAELens)"),
            "l0": ScoreInfo(
                direction=None, chance=None,
                definition="mean number of nonzero latents per sample"),
            "dead_fraction": ScoreInfo(
                direction="lower", chance=None, best=0.0,
                definition="fraction of latents that never fire on the held-out set"),
            "shrinkage": ScoreInfo(
                direction=None, chance=None,
                definition="mean ||x_hat|| / ||x|| (SAELens synthetic ShrinkageCalculator); 1 = no shrinkage"),
        },
    ),
    MetricSpec(
        name="reconstruction_bulk",
        description="explained variance without massive-activation outliers (held-out samples with norm > max_norm_ratio x median)",
        factory="saebench_sanity.metrics.core_adapters:reconstruction_bulk_scores",
        params={"max_norm_ratio": 10.0},
        scores={
            "explained_variance": ScoreInfo(
                # outranks reconstruction's EV: the same number where no sample is left out, and
                # what the SAE learns where a handful of massive-activation tokens carry the variance
                direction="higher", chance=0.0, headline="explained variance", headline_priority=1,
                improves_with_training=True, best=1.0,
                definition="textbook EV (as reconstruction.explained_variance) over the held-out samples whose norm is "
                           "<= max_norm_ratio x the median norm; not in the study (its EV counts every token) but what "
                           "its EV measures where a handful of tokens carry most of the variance"),
            "outlier_fraction": ScoreInfo(
                direction=None, chance=None,
                definition="fraction of held-out samples left out (norm > max_norm_ratio x median)"),
            "outlier_variance_share": ScoreInfo(
                direction=None, chance=None,
                definition="share of the held-out set's total variance carried by the left-out samples"),
        },
    ),
    MetricSpec(
        name="ground_truth",
        description="recovery of the true features by decoder rows (study: cosine >= 0.8), MCC",
        factory="saebench_sanity.metrics.core_adapters:ground_truth_scores",
        needs=frozenset({"ground_truth"}),
        params={"cos_threshold": 0.8},
        scores={
            "recovery": ScoreInfo(
                direction="higher", chance=0.0, headline="recovery", improves_with_training=True, best=1.0,
                definition="fraction of true features with max_j cos(f_i, W_dec_j) >= cos_threshold (study); "
                           "random-dictionary chance 1-(1-q)^d_sae, q = 0.5*I_{1-t^2}((d-1)/2, 1/2): "
                           "<2e-5 for the built-in sets"),
            "mcc": ScoreInfo(
                direction="higher", chance=None, headline="MCC", improves_with_training=True, best=1.0,
                definition="mean |cos| over a Hungarian one-to-one matching of features and decoder rows "
                           "(sae_lens.synthetic.mean_correlation_coefficient)"),
            "mean_max_cos": ScoreInfo(
                direction="higher", chance=None, improves_with_training=True, best=1.0,
                definition="mean over true features of max_j cos(f_i, W_dec_j)"),
            "n_recovered": ScoreInfo(
                direction=None, chance=None,
                definition="number of true features recovered at cos_threshold"),
        },
    ),
]
