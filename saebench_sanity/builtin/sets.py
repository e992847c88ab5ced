"""Built-in activation sets: synthetic ground truth (synthetic_sets.py) and harvested real sets
(real_sets.py), and the user-defined real sets declared in the store root
(``activations.real.user_set_specs``), registered through the one hook this plugin implements for
the kind."""

from saebench_sanity.hookspecs import hookimpl


def _all_sets() -> list:
    from saebench_sanity.activations.real import user_set_specs
    from saebench_sanity.builtin import real_sets, synthetic_sets

    builtin = [*synthetic_sets.SETS, *real_sets.SETS]
    taken = {s.name for s in builtin}
    # user-defined real sets declared earlier (a [sets.NAME] table or `saebench activations build
    # --model`): known by name in every process, pool workers included
    return builtin + [s for s in user_set_specs() if s.name not in taken]


@hookimpl
def saebench_register_activation_sets(register):
    for spec in _all_sets():
        register(spec)
