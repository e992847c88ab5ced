"""Entry-point module: registers this package's items. Imports nothing heavy (factories are
"module:attr" references resolved on first use)."""

from saebench_sanity import ActivationSetSpec, MetricSpec, ScoreInfo, hookimpl

SAEBENCH_HOOKSPEC_VERSION = "1.0"


@hookimpl
def saebench_register_activation_sets(register):
    register(ActivationSetSpec(
        name="synth-orthogonal",
        description="sparse codes over an orthonormal basis (no superposition): every SAE should recover all features",
        factory="saebench_orthogonal.data:OrthogonalSet",
        params={"d_in": 16, "p_fire": 0.2, "n_eval": 4096, "seed": 0},
        family="synthetic",
        d_in=16,
        training={"steps": 400, "batch_size": 256, "lr": 3e-3, "d_sae": 32, "target_l0": 4},
    ))


@hookimpl
def saebench_register_metrics(register):
    register(MetricSpec(
        name="reconstruction_cosine",
        description="mean cosine similarity between input and reconstruction",
        factory="saebench_orthogonal.metric:reconstruction_cosine_metric",
        scores={"reconstruction_cosine": ScoreInfo(direction="higher", chance=0.0,
                                                   definition="mean_i cos(x_i, x_hat_i); 0 for a zero reconstruction")},
    ))
