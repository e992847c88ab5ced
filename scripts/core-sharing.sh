#!/usr/bin/env bash
# What the second worker of `--jobs 2` costs the first on this machine, and what float64 costs
# against float32: one cohort (scripts/configs/cohort-synth-zipf-topk.toml: the default suite's
# synth-zipf TopK settings, trained in float32, the config's precision) at one thread per
# process, as the suite's workers run,
#   1. alone (the machine otherwise idle; nothing else should run),
#   2. twice at the same time, two processes on the two cores (as `saebench run --jobs 2` runs),
#   3. alone in float64 (`--dtype float64`, the precision the default suite trains synthetic sets in).
# Prints, per run, the wall and user seconds and the longest member's `training.seconds` (the
# trained SAE at the 16,000-step maximum). If the two-process member is much slower than the
# lone one, the cores share what the SAE math needs (an SMT pair, memory bandwidth or a host's
# other tenants): a suite on 2 workers then gains less than 2x over one.
#   bash scripts/core-sharing.sh [CONFIG]
# Writes only under saebench-runs/core-sharing/.
set -euo pipefail
cd "$(dirname "$0")/.."
config="${1:-scripts/configs/cohort-synth-zipf-topk.toml}"
root=saebench-runs/core-sharing
rm -rf "$root"
mkdir -p "$root"

train() {  # train NAME [saebench run options...]: one cohort into $root/NAME at one thread
  local name="$1"; shift
  /usr/bin/time -f "$name wall=%e s user=%U s" -o "$root/$name.time" \
    python -m saebench_sanity.cli run --config "$config" --jobs 1 --threads 1 --out "$root/$name" --no-plots --quiet "$@"
}

longest() {  # longest NAME: the largest training.seconds among NAME's records
  python - "$root/$1" <<'PY'
import json, sys
from pathlib import Path
seconds = [json.loads(p.read_text(encoding="utf-8")).get("training", {}).get("seconds") or 0.0
           for p in Path(sys.argv[1], "results").glob("*.json")]
print(f"{max(seconds):.1f}")
PY
}

train alone
train pair-a & a=$!
train pair-b & b=$!
wait "$a" "$b"
train alone-float64 --dtype float64
for name in alone pair-a pair-b alone-float64; do
  echo "$(cat "$root/$name.time")  longest member training.seconds=$(longest "$name")"
done
