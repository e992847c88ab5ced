#!/usr/bin/env bash
# Regenerate some sets of the default suite the way another machine would, and compare the
# verdicts with the committed board.
#   bash scripts/other-machine-verdicts.sh SETS [FAMILY]     e.g. synth-easy,study-constant-mini synthetic
# "Another machine" is emulated on this one: torch's and MKL's CPU kernels are capped at SSE4.2
# (ATEN_CPU_CAPABILITY=default, MKL_ENABLE_INSTRUCTIONS=SSE4_2), which changes the rounding of
# almost every float operation (docs/real-activations.md measures it on activations), and the data
# are generated afresh into their own cache (SAEBENCH_CACHE) under those kernels. Cells keep their
# identity, so each row of the new board is matched with the committed one; the last lines list
# how many verdicts stayed and which changed (scripts/verdict-changes.py). Real sets need their
# store built under the same caps first (saebench activations build, same environment).
set -euo pipefail
cd "$(dirname "$0")/.."
sets="${1:?usage: bash scripts/other-machine-verdicts.sh SETS [FAMILY]}"
family="${2:-synthetic}"
out=saebench-runs/other-machine
export ATEN_CPU_CAPABILITY=default MKL_ENABLE_INSTRUCTIONS=SSE4_2 SAEBENCH_CACHE="$PWD/$out/cache"
saebench run --sets "$sets" --jobs 2 --out "$out" --no-plots --leaderboards "$out/leaderboards"
saebench leaderboard --results "$out" --out "$out/leaderboards" --family "$family" --no-plots
python scripts/verdict-changes.py "leaderboards/$family.json" "$out/leaderboards/$family.json"
