"""Entry-point module: registers the ``data_directions`` training mode (no heavy imports)."""

from saebench_sanity import TrainingModeSpec, hookimpl

SAEBENCH_HOOKSPEC_VERSION = "1.0"


@hookimpl
def saebench_register_training_modes(register):
    register(TrainingModeSpec(
        name="data_directions",
        description="decoder rows = random centred activation samples (unit norm), frozen; encoder, biases, thresholds train",
        factory="saebench_data_directions.mode:DataDirections",
        params={"train_biases": True, "fit_scale": True},
        is_baseline=True,
    ))
