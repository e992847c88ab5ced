"""Errors a user can act on. Each carries one line that names the thing and the fix.

The CLI prints `str(err)` and exits 2 for these; anything else is a bug and gets a traceback
only under `--debug`.
"""


class SaebenchError(Exception):
    """Bad input or a broken environment: one line naming what is wrong and how to fix it."""

    exit_code = 2


class ConfigError(SaebenchError):
    """A run configuration field is missing, malformed or out of range."""


class UnknownNameError(SaebenchError):
    """A set / architecture / mode / metric / judge name that no plugin registered."""


class PluginError(SaebenchError):
    """A plugin failed to import, registered a clashing name, or broke the hook contract."""


class DataError(SaebenchError):
    """Activations are unusable: NaN/inf, wrong shape, d_in mismatch, corrupted shard."""


class ModeInvariantError(RuntimeError):
    """A training mode's invariant broke (a frozen tensor moved or trains, a soft-frozen row left
    its cone): the cell's result would be wrong, so it is recorded as failed. Not bad input: a bug
    in the mode or the engine (a plugin mode's check raising it names that plugin)."""
