"""saebench-sanity: does this sparse autoencoder beat a random baseline?

The public plugin API is flat: everything a plugin needs imports from here, e.g.::

    from saebench_sanity import hookimpl, ArchitectureSpec, TrainingModeSpec, MetricSpec, ScoreInfo

Importing this package is cheap on purpose: the names below are resolved lazily (PEP 562
``__getattr__``) from the modules that define them, and torch, sae-lens and transformers are
imported only by the code that needs them, so `saebench --help` and `saebench list` start fast.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

from saebench_sanity.hookspecs import HOOKSPEC_VERSION, hookimpl

__version__ = "0.1.0"

#: public name -> module that defines it (the one place the flat API is declared)
_LAZY = {
    # specs: one per plugin kind (see hookspecs.py for the hooks that register them)
    "Spec": "saebench_sanity.spec",
    "ActivationSetSpec": "saebench_sanity.activations.base",
    "ActivationSet": "saebench_sanity.activations.base",
    "GroundTruth": "saebench_sanity.activations.base",
    "tensor_hash": "saebench_sanity.activations.base",
    "ArchitectureSpec": "saebench_sanity.architectures.base",
    "ROLES": "saebench_sanity.architectures.base",
    "TrainingModeSpec": "saebench_sanity.training.base",
    "TrainingMode": "saebench_sanity.training.base",
    "RandomDirectionsBaseline": "saebench_sanity.training.modes",
    "MetricSpec": "saebench_sanity.metrics.base",
    "MetricContext": "saebench_sanity.metrics.base",
    "MetricResult": "saebench_sanity.metrics.base",
    "NotApplicable": "saebench_sanity.metrics.base",
    "ScoreInfo": "saebench_sanity.metrics.base",
    "JudgeSpec": "saebench_sanity.judges.base",
    "Judge": "saebench_sanity.judges.base",
    "ProbingTaskSpec": "saebench_sanity.probing_tasks.base",
    "ProbingTask": "saebench_sanity.probing_tasks.base",
    "make_task": "saebench_sanity.probing_tasks.base",
    # errors a plugin raises or a caller catches
    "SaebenchError": "saebench_sanity.errors",
    "ConfigError": "saebench_sanity.errors",
    "DataError": "saebench_sanity.errors",
    "PluginError": "saebench_sanity.errors",
    "UnknownNameError": "saebench_sanity.errors",
    # configuration and the registry, for notebooks and tests
    "RunConfig": "saebench_sanity.config",
    "TrainingConfig": "saebench_sanity.config",
    "get_registry": "saebench_sanity.registry",
}

__all__ = [
    "HOOKSPEC_VERSION", "hookimpl", "__version__",
    "Spec", "ActivationSetSpec", "ActivationSet", "GroundTruth", "tensor_hash", "ArchitectureSpec", "ROLES",
    "TrainingModeSpec", "TrainingMode", "RandomDirectionsBaseline",
    "MetricSpec", "MetricContext", "MetricResult", "NotApplicable", "ScoreInfo", "JudgeSpec", "Judge",
    "ProbingTaskSpec", "ProbingTask", "make_task",
    "SaebenchError", "ConfigError", "DataError", "PluginError", "UnknownNameError",
    "RunConfig", "TrainingConfig", "get_registry",
]  # == the three eager names + _LAZY (tests/test_config_validation.py checks)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'saebench_sanity' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # the next access skips this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


if TYPE_CHECKING:  # static checkers and IDEs see the real names
    from saebench_sanity.activations.base import ActivationSet, ActivationSetSpec, GroundTruth, tensor_hash
    from saebench_sanity.architectures.base import ROLES, ArchitectureSpec
    from saebench_sanity.config import RunConfig, TrainingConfig
    from saebench_sanity.errors import ConfigError, DataError, PluginError, SaebenchError, UnknownNameError
    from saebench_sanity.judges.base import Judge, JudgeSpec
    from saebench_sanity.metrics.base import MetricContext, MetricResult, MetricSpec, NotApplicable, ScoreInfo
    from saebench_sanity.probing_tasks.base import ProbingTask, ProbingTaskSpec, make_task
    from saebench_sanity.registry import get_registry
    from saebench_sanity.spec import Spec
    from saebench_sanity.training.base import TrainingMode, TrainingModeSpec
    from saebench_sanity.training.modes import RandomDirectionsBaseline
