#!/usr/bin/env bash
# What torch threads cost on a busy machine: one cohort (scripts/configs/cohort-synth-zipf-topk.toml,
# ~75 s of one idle core) trained at --threads 1 and at --threads 2 while two busy-loop processes
# hold both cores of a 2-core machine, as when a second run shares it. Prints wall and user seconds
# of each; the reason for the warning `saebench run` gives (executors/base.py, oversubscription).
#   bash scripts/busy-threads.sh [CONFIG]
# Writes only under saebench-runs/busy-threads/.
set -euo pipefail
cd "$(dirname "$0")/.."
config="${1:-scripts/configs/cohort-synth-zipf-topk.toml}"
python -c 'while True: pass' & b1=$!
python -c 'while True: pass' & b2=$!
trap 'kill $b1 $b2 2>/dev/null || true' EXIT
for t in 1 2; do
  out="saebench-runs/busy-threads/threads-$t"
  rm -rf "$out"
  /usr/bin/time -f "threads=$t wall=%e s user=%U s" \
    python -m saebench_sanity.cli run --config "$config" --jobs 1 --threads "$t" --out "$out" --no-plots --quiet
done
