"""Built-in activation sets: synthetic ground truth (synthetic_sets.py) and harvested real sets
(real_sets.py), registered through the one hook this plugin implements for the kind."""

from saebench_sanity.hookspecs import hookimpl


def _all_sets() -> list:
    from saebench_sanity.builtin import real_sets, synthetic_sets

    return [*synthetic_sets.SETS, *real_sets.SETS]


@hookimpl
def saebench_register_activation_sets(register):
    for spec in _all_sets():
        register(spec)
