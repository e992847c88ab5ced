"""The convergence check run at every curve point (``ConvergenceControl._level``): the windowed
check against the previous whole-curve one (tests/_previous_paths.py), same run, one process.

Replays the curves of the ``N`` longest committed synthetic records (loss, MSE and recovery,
``leaderboards/results/synthetic``) point by point through both, as training calls them; the
answers must agree at every point. ``ms_per_check`` of each and their ratio are in
``extra_info`` and printed.

Run (skipped by default through ``--benchmark-skip``)::

    python -m pytest benchmarks/test_bench_convergence_check.py -o addopts="" --benchmark-only --benchmark-enable -s
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("pytest_benchmark")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the previous path lives with the tests
from _previous_paths import WholeCurvesControl  # noqa: E402

N = 6


def _longest_series(n: int) -> list[dict]:
    out = []
    for f in (ROOT / "leaderboards" / "results" / "synthetic" / "results").glob("*.json"):
        conv = (json.loads(f.read_text()).get("training") or {}).get("convergence") or {}
        if conv.get("series", {}).get("loss"):
            out.append(conv["series"])
    return sorted(out, key=lambda s: -len(s["loss"]))[:n]


def test_bench_convergence_check(benchmark):
    from saebench_sanity.config import TrainingConfig
    from saebench_sanity.training.convergence import JUDGED, ConvergenceControl, unpack_curve

    cases = []
    for series in _longest_series(N):
        curves = {k: dict(unpack_curve(v)) for k, v in series.items() if k in JUDGED}
        cases.append((curves, TrainingConfig(max_steps=max(curves["loss"]), curve_every=10)))
    seconds = {"windowed": 0.0, "whole": 0.0}
    answers: dict[str, list[bool]] = {"windowed": [], "whole": []}

    def replay(name: str, cls: type) -> None:
        for curves, training in cases:
            control = cls(training)
            control.curves = {k: [] for k in curves}
            for step in sorted(curves["loss"]):
                for k, c in curves.items():
                    if step in c:
                        control.curves[k].append((step, c[step]))
                t0 = time.perf_counter()
                answers[name].append(control._level(step))
                seconds[name] += time.perf_counter() - t0

    def once() -> None:
        replay("windowed", ConvergenceControl)
        replay("whole", WholeCurvesControl)

    benchmark.pedantic(once, rounds=1, iterations=1)
    assert answers["windowed"] == answers["whole"]
    n = len(answers["whole"])
    w, h = seconds["windowed"] / n * 1e3, seconds["whole"] / n * 1e3
    benchmark.extra_info.update({"checks": n, "windowed_ms": round(w, 3), "whole_ms": round(h, 3),
                                 "speedup": round(h / w, 2)})
    print(f"\n{n} checks over the {N} longest committed synthetic curves: whole curves {h:.3f} ms, "
          f"windows {w:.3f} ms a check ({h / w:.1f}x)")
