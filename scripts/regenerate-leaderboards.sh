#!/usr/bin/env bash
# Re-run an embedded suite and regenerate its committed leaderboards from the recorded results.
#   bash scripts/regenerate-leaderboards.sh [default [FAMILY]|quick|real-resid24]
# `default real` (or `default synthetic`) runs only that family's sets of the default suite
# (`saebench run --sets`; the cells are the same as in the whole suite) and renders its board.
# The per-cell result records (no checkpoints) are copied to leaderboards/results/<leaderboard>/
# so that `saebench leaderboard --check` (run by CI) can recompute the tables from them. The
# default suite covers two set families and writes two leaderboards, synthetic and real.
set -euo pipefail
cd "$(dirname "$0")/.."
suite="${1:-default}"
case "$suite" in
  default) runs=saebench-runs/default; flag=(); families=(synthetic real)
           if [ -n "${2:-}" ]; then
             families=("$2")
             sets=$(python -c "import sys; from saebench_sanity.config import embedded; from saebench_sanity.harness.run import sets_of_family; from saebench_sanity.registry import get_registry; fam = set(sets_of_family(get_registry(), sys.argv[1])); print(','.join(s for s in embedded('default').sets if s in fam))" "$2")
             [ -n "$sets" ] || { echo "error: the default suite has no set of family '$2'; use synthetic or real" >&2; exit 2; }
             flag=(--sets "$sets")
           fi ;;
  quick)   runs=saebench-runs/quick;   flag=(--quick); families=() ;;
  real-resid24) runs="saebench-runs/$suite"; flag=(--suite "$suite"); families=() ;;
  *) echo "error: unknown suite '$suite'; use default, quick or real-resid24" >&2; exit 2 ;;
esac
saebench activations build  # the real sets' stores (no-op when built; see README)
saebench run "${flag[@]}" --jobs 2 --out "$runs" --no-plots
if [ ${#families[@]} -eq 0 ]; then
  rm -rf "leaderboards/results/$suite"
  mkdir -p "leaderboards/results/$suite"
  cp "$runs/run.json" "leaderboards/results/$suite/"
  cp -r "$runs/results" "leaderboards/results/$suite/results"
  saebench leaderboard --results "leaderboards/results/$suite" --out leaderboards --name "$suite"
  exit 0
fi
for family in "${families[@]}"; do
  rm -rf "leaderboards/results/$family"
  mkdir -p "leaderboards/results/$family/results"
  cp "$runs/run.json" "leaderboards/results/$family/"
done
python - "$runs" "${families[@]}" <<'PY'
import json, shutil, sys
from pathlib import Path
from saebench_sanity.registry import get_registry

registry = get_registry()
wanted = set(sys.argv[2:])
for path in sorted(Path(sys.argv[1], "results").glob("*.json")):
    cell = json.loads(path.read_text(encoding="utf-8")).get("cell") or {}
    family = registry.get("activation_set", cell["set"]).family
    if family in wanted:
        shutil.copy2(path, Path("leaderboards/results", family, "results", path.name))
PY
for family in "${families[@]}"; do
  saebench leaderboard --results "leaderboards/results/$family" --out leaderboards --family "$family"
done
