"""saebench-sanity: does this sparse autoencoder beat a random baseline?

Importing this package is cheap on purpose: torch, sae-lens and transformers are imported lazily
by the modules that need them, so `saebench --help` and `saebench list` start fast.
"""

from saebench_sanity.hookspecs import HOOKSPEC_VERSION, hookimpl

__version__ = "0.1.0"

__all__ = ["HOOKSPEC_VERSION", "hookimpl", "__version__"]
