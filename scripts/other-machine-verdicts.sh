#!/usr/bin/env bash
# Regenerate some sets of the default suite the way another machine would, and compare the
# verdicts with the committed board, or, given a dtype, with a native run in that dtype.
#   bash scripts/other-machine-verdicts.sh SETS [FAMILY]          e.g. synth-easy,study-constant-mini synthetic
#   bash scripts/other-machine-verdicts.sh SETS FAMILY DTYPE      e.g. study-variable-mini synthetic float64
# "Another machine" is emulated on this one: torch's and MKL's CPU kernels are capped at SSE4.2
# (ATEN_CPU_CAPABILITY=default, MKL_ENABLE_INSTRUCTIONS=SSE4_2), which changes the rounding of
# almost every float operation (docs/real-activations.md measures it on activations), and the data
# are generated afresh into their own cache (SAEBENCH_CACHE) under those kernels. Cells keep their
# identity, so each row of the new board is matched with the committed one; the last lines list
# how many verdicts stayed and which changed (scripts/verdict-changes.py). With DTYPE (the
# committed synthetic board trains in float64, the real boards in float32; `--dtype` makes every
# set train in DTYPE) the sets are trained twice in that dtype, natively and under the caps, and
# the two boards are compared. Real sets need their store built under the same caps first
# (saebench activations build, same environment), or, with SHARED_STORE=1, the store this machine
# built: its cache (stores, model and judge files; $SAEBENCH_CACHE or ~/.cache/saebench-sanity) is
# copied into the run's cache first, as when the store travels with the board, and everything else
# (training, every metric's model passes) runs under the caps:
#   SHARED_STORE=1 bash scripts/other-machine-verdicts.sh smollm2-135m-resid12 real
# With SUITE=NAME the sets are those of an embedded suite other than the default (`saebench run
# --suite NAME`) and the board compared is the committed leaderboards/NAME.json:
#   SUITE=real-resid24 SHARED_STORE=1 bash scripts/other-machine-verdicts.sh smollm2-135m-resid24 real
# Writes only under saebench-runs/.
set -euo pipefail
cd "$(dirname "$0")/.."
sets="${1:?usage: bash scripts/other-machine-verdicts.sh SETS [FAMILY [DTYPE]]}"
family="${2:-synthetic}"
dtype="${3:-}"
board="${SUITE:-$family}"  # the committed board's file stem
suite=(${SUITE:+--suite "$SUITE"})
caps=(ATEN_CPU_CAPABILITY=default MKL_ENABLE_INSTRUCTIONS=SSE4_2)

regenerate() {  # regenerate OUT [ENV...]: run the sets into OUT (its own cache) and build the family's board
  local out="$1"; shift
  if [[ -n "${SHARED_STORE:-}" && ! -d "$out/cache" ]]; then
    mkdir -p "$out" && cp -r "${SAEBENCH_CACHE:-$HOME/.cache/saebench-sanity}" "$out/cache"
  fi
  env "$@" SAEBENCH_CACHE="$PWD/$out/cache" saebench run "${suite[@]}" --sets "$sets" --jobs 2 --out "$out" --no-plots \
    --leaderboards "$out/leaderboards" ${dtype:+--dtype "$dtype"}
  saebench leaderboard --results "$out" --out "$out/leaderboards" --family "$family" --name "$board" --no-plots
}

if [[ -z "$dtype" ]]; then
  out=saebench-runs/other-machine
  regenerate "$out" "${caps[@]}"
  python scripts/verdict-changes.py "leaderboards/$board.json" "$out/leaderboards/$board.json"
else
  out="saebench-runs/other-machine-$dtype"
  regenerate "$out/native"
  regenerate "$out/emulated" "${caps[@]}"
  python scripts/verdict-changes.py "$out/native/leaderboards/$board.json" "$out/emulated/leaderboards/$board.json"
fi
