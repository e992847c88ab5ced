"""Built-in metrics: core (reconstruction, ground truth), model-based (loss recovered, KL) and
interpretability (probing, AutoInterp, RAVEL), each list in its own module."""

from saebench_sanity.hookspecs import hookimpl


def _all_metrics() -> list:
    from saebench_sanity.builtin import metrics_core, metrics_interp, metrics_model

    return [*metrics_core.METRICS, *metrics_model.METRICS, *metrics_interp.METRICS]


@hookimpl
def saebench_register_metrics(register):
    for spec in _all_metrics():
        register(spec)
