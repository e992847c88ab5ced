#!/usr/bin/env bash
# Re-run an embedded suite and regenerate its committed leaderboard from the recorded results.
#   bash scripts/regenerate-leaderboards.sh [default|quick]
# The per-cell result records (no checkpoints) are copied to leaderboards/results/<name>/ so that
# `saebench leaderboard --check` (run by CI) can recompute the tables from them.
set -euo pipefail
cd "$(dirname "$0")/.."
suite="${1:-default}"
case "$suite" in
  default) name=synthetic; runs=saebench-runs/default; flag=() ;;
  quick)   name=quick;     runs=saebench-runs/quick;   flag=(--quick) ;;
  *) echo "error: unknown suite '$suite'; use default or quick" >&2; exit 2 ;;
esac
saebench run "${flag[@]}" --jobs 2 --out "$runs" --no-plots
rm -rf "leaderboards/results/$name"
mkdir -p "leaderboards/results/$name"
cp "$runs/run.json" "leaderboards/results/$name/"
cp -r "$runs/results" "leaderboards/results/$name/results"
saebench leaderboard --results "leaderboards/results/$name" --out leaderboards --name "$name"
