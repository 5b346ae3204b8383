#!/usr/bin/env bash
# Everything for the relay edge: formatting and lint (cargo fmt --check,
# clippy with warnings as errors), the crate's tests (unit tests, and the
# WorkerCoordinator cases against a `wrangler dev` they start themselves),
# then the two-relay end-to-end test. Used by `npm run test:edge`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Outside the clone, so reruns (and fresh clones) build incrementally.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/moq-worker/target}"
export WRANGLER_SEND_METRICS=false

t0=$(date +%s)
(cd "$ROOT/edge" && cargo fmt --check)
(cd "$ROOT/edge" && timeout 1800 cargo clippy --all-targets --quiet -- -D warnings)
tl=$(date +%s)
echo "[edge-test] fmt + clippy: $((tl - t0))s"
(cd "$ROOT/edge" && timeout 1800 cargo build --all-targets --quiet)
t1=$(date +%s)
echo "[edge-test] build: $((t1 - tl))s"
(cd "$ROOT/edge" && timeout 600 cargo test --quiet)
t2=$(date +%s)
echo "[edge-test] cargo test: $((t2 - t1))s"
timeout 300 "$ROOT/test/e2e/edge.sh"
t3=$(date +%s)
echo "[edge-test] e2e: $((t3 - t2))s; total $((t3 - t0))s"
