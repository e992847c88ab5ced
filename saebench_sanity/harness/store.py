"""The results store moved to :mod:`saebench_sanity.results` (imported by both the harness, which
writes, and the leaderboard, which reads). This name stays for older imports: it *is* that module
(same object, so attributes and monkeypatches are shared)."""

import sys
from typing import TYPE_CHECKING

from saebench_sanity import results as _results

if TYPE_CHECKING:  # what type checkers see: the same names (the alias below is invisible to them)
    from saebench_sanity.results import *  # noqa: F403

sys.modules[__name__] = _results
