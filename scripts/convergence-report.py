"""Per-cell UNDERTRAINED figures of a run folder, with a bootstrap interval of each estimate.

    python scripts/convergence-report.py saebench-runs/default [--modes trained] [--draws 400]

For every trained cell of the run (its ``run.json`` cell keys, read from the checkpoints' stored
loss curves) it prints the rule's verdict and ``rel_improvement`` (``training.convergence``,
exactly what the leaderboard uses) and a 5-95% bootstrap interval: the window's curve points
resampled with replacement ``--draws`` times (seeded) and the same robust fit applied to each
draw. This reproduces the README's real-data convergence figures from the run folders that
``scripts/regenerate-leaderboards.sh`` leaves behind (the committed records hold no loss curves).
"""

from __future__ import annotations

import argparse
import random

from saebench_sanity.config import TrainingConfig
from saebench_sanity.harness.store import ResultStore
from saebench_sanity.training.convergence import assess, assess_training


def window_points(curve: list[tuple[int, float]], training: TrainingConfig) -> list[tuple[float, float]]:
    """The curve points ``assess_training`` fits (before spike removal)."""
    end = training.steps - training.lr_decay_steps if training.lr_decay_steps > 0 else training.steps
    pts = [(float(s), float(v)) for s, v in curve if s <= end]
    start = pts[-1][0] * (1 - training.convergence_window)
    return [p for p in pts if p[0] >= start]


def bootstrap(window: list[tuple[float, float]], training: TrainingConfig, draws: int, seed: int = 0) -> tuple[float, float]:
    rng = random.Random(seed)
    rels = sorted(assess(sorted(rng.choice(window) for _ in window), 1.0, training.convergence_rel_tol)[1]["rel_improvement"]
                  for _ in range(draws))
    return rels[int(0.05 * draws)], rels[int(0.95 * draws) - 1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--modes", default=None, help="comma-separated modes (default: every mode that trains)")
    ap.add_argument("--draws", type=int, default=400)
    args = ap.parse_args()
    store = ResultStore(args.run_dir)
    modes = set(args.modes.split(",")) if args.modes else None
    for key in (store.load_run() or {}).get("cell_keys", []):
        if not store.has_checkpoint(key):
            continue
        info = store.load_train_info(key)
        cell = info["cell"]
        if int(info.get("steps") or 0) == 0 or (modes and cell["mode"] not in modes):
            continue
        training = TrainingConfig(**cell["training"])
        curve = [(int(s), float(v)) for s, v in info["loss_curve"]]
        converged, conv = assess_training(curve, training)
        lo, hi = bootstrap(window_points(curve, training), training, args.draws)
        print(f"{cell['set']}/{cell['arch']}/{cell['mode']}/s{cell['seed']}: "
              f"{'converged' if converged else 'UNDERTRAINED'} rel_improvement {conv['rel_improvement']:.4f} "
              f"(bootstrap 5-95%: {lo:.4f} .. {hi:.4f}; {int(conv.get('outliers', 0))} outlier points)")


if __name__ == "__main__":
    main()
