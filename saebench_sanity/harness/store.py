"""The results store moved to :mod:`saebench_sanity.results` (imported by both the harness, which
writes, and the leaderboard, which reads). This name stays for older imports: it *is* that module
(same object, so attributes and monkeypatches are shared)."""

import sys

from saebench_sanity import results as _results

sys.modules[__name__] = _results
