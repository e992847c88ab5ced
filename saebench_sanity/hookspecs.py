"""The plugin contract: one hookspec per plugin kind.

Pattern after Simon Willison's `llm`: every hook receives a ``register`` callback instead of
returning a list, so one plugin can register many items. The built-ins are a plugin like any
other (``saebench_sanity.builtin``); third-party packages declare an entry point in the group
``saebench_sanity``::

    [project.entry-points.saebench_sanity]
    my_plugin = "my_package.plugin"

and implement any subset of these hooks with ``@saebench_sanity.hookimpl``.

Each ``register(spec)`` call takes one spec object of the kind's class (see the ``*.base``
modules); specs carry cheap metadata plus a lazily imported factory, so listing plugins never
imports torch or sae-lens.

A plugin may declare ``SAEBENCH_HOOKSPEC_VERSION = "<major>.<minor>"`` at module level; the
registry refuses a plugin whose major version differs from :data:`HOOKSPEC_VERSION`.
"""

from __future__ import annotations

import pluggy

PROJECT_NAME = "saebench_sanity"
ENTRY_POINT_GROUP = "saebench_sanity"

#: Version of this contract. Major bumps break plugins; minor bumps only add hooks or fields.
HOOKSPEC_VERSION = "1.0"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def saebench_register_activation_sets(register):
    """Register activation sets.

    ``register(ActivationSetSpec(...))`` once per set (``saebench_sanity.activations.base``).
    A set's name must always mean the same data: the spec's factory builds an ``ActivationSet``
    whose manifest (every generator parameter, seed, probe-batch hash) is part of every cache key.
    """


@hookspec
def saebench_register_architectures(register):
    """Register SAE architectures.

    ``register(ArchitectureSpec(...))`` (``saebench_sanity.architectures.base``). ``build``
    returns a sae-lens ``TrainingSAE`` so every trained SAE saves/loads in SAELens format.
    """


@hookspec
def saebench_register_training_modes(register):
    """Register training modes: the trained SAE and its random baselines.

    ``register(TrainingModeSpec(...))`` (``saebench_sanity.training.base``). A mode says which
    tensors train, how frozen directions are initialised, and what runs after every optimizer step.
    """


@hookspec
def saebench_register_metrics(register):
    """Register metrics.

    ``register(MetricSpec(...))`` (``saebench_sanity.metrics.base``). A metric declares what it
    needs (ground truth, a language model, labels, a judge) and the scores it yields, each with a
    direction (higher/lower is better) and a chance level or floor.
    """


@hookspec
def saebench_register_judges(register):
    """Register AutoInterp explainers/judges. ``register(JudgeSpec(...))``."""


@hookspec
def saebench_register_probing_tasks(register):
    """Register labelled text tasks for sparse probing. ``register(ProbingTaskSpec(...))``."""


@hookspec
def saebench_register_executors(register):
    """Register executors: what runs the cohorts of a plan.

    ``register(ExecutorSpec(...))`` (``saebench_sanity.executors.base``). ``factory(**options)``
    returns an ``Executor`` whose ``run(plan, store, registry, force=, reporter=, device=)`` runs
    every cohort and leaves the calling process the only writer of the results store
    (``saebench_sanity.executors.remote`` is the protocol the built-in ``local`` pool and ``ray``
    use). Selected with ``saebench run --executor NAME``.
    """
