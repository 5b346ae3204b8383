#!/usr/bin/env bash
# Renders bench/results/latest.json to bench/results/scale.png (and relay-seen.png) with matplotlib,
# from a virtualenv under ~/.cache (created, with matplotlib from PyPI, on first use).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${MOQ_BENCH_VENV:-$HOME/.cache/moq-worker/bench-venv}"
if ! "$VENV/bin/python" -c "import matplotlib" >/dev/null 2>&1; then
  echo "bench-plot: creating $VENV with matplotlib" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet matplotlib
fi
exec "$VENV/bin/python" bench/plot.py "$@"
