"""Built-in training modes: the trained SAE, the study's random baselines, and reference points."""

from saebench_sanity.hookspecs import hookimpl
from saebench_sanity.training.base import TrainingModeSpec

MODES = [
    TrainingModeSpec(
        name="trained",
        description="every tensor trains (the SAE under test)",
        factory="saebench_sanity.training.modes:Trained",
    ),
    TrainingModeSpec(
        name="frozen_decoder",
        description="decoder directions random (unit norm, iso|cov) and frozen; encoder, biases, thresholds train",
        factory="saebench_sanity.training.modes:FrozenDecoder",
        params={"init": "cov", "train_biases": True, "fit_scale": True},
        is_baseline=True,
    ),
    TrainingModeSpec(
        name="soft_frozen_decoder",
        description="decoder trains but each row stays at cosine >= min_cos with its random init (projection after every step)",
        factory="saebench_sanity.training.modes:SoftFrozenDecoder",
        params={"init": "iso", "min_cos": 0.8, "train_biases": True, "fit_scale": True},
        is_baseline=True,
    ),
    TrainingModeSpec(
        name="frozen_encoder",
        description="encoder directions random (unit norm, iso|cov) and frozen; thresholds, biases and decoder train",
        factory="saebench_sanity.training.modes:FrozenEncoder",
        params={"init": "iso", "train_biases": True, "fit_scale": True},
        is_baseline=True,
    ),
    TrainingModeSpec(
        name="untrained",
        description="random init (unit norm, tied W_enc = W_dec.T, b_dec = sample mean), no optimizer steps (a floor, never decides a verdict)",
        factory="saebench_sanity.training.modes:Untrained",
        params={"init": "iso", "b_dec_init": "mean", "fit_scale": True},
        trains=False,
    ),
]


@hookimpl
def saebench_register_training_modes(register):
    for spec in MODES:
        register(spec)
