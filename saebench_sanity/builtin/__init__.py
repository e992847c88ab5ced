"""The built-in plugin. It is registered exactly like a third-party plugin, through the same
hooks, so everything here is also a worked example of the contract.

Each submodule registers one kind and imports nothing heavy: factories are ``"module:attr"``
references resolved on first use.
"""

from saebench_sanity.builtin.architectures import saebench_register_architectures
from saebench_sanity.builtin.executors import saebench_register_executors
from saebench_sanity.builtin.interp import saebench_register_judges
from saebench_sanity.builtin.interp import saebench_register_probing_tasks
from saebench_sanity.builtin.metrics import saebench_register_metrics
from saebench_sanity.builtin.modes import saebench_register_training_modes
from saebench_sanity.builtin.sets import saebench_register_activation_sets

SAEBENCH_HOOKSPEC_VERSION = "1.0"

__all__ = [
    "saebench_register_activation_sets",
    "saebench_register_architectures",
    "saebench_register_metrics",
    "saebench_register_training_modes",
]
