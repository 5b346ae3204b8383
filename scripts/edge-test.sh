#!/usr/bin/env bash
# Everything for the relay edge: formatting and lint (cargo fmt --check,
# clippy with warnings as errors, for both builds: draft-18 = moq-relay-ietf
# 0.8, the default, and draft-16 = 0.7), the crate's tests (unit tests of
# both builds, and the WorkerCoordinator cases against a `wrangler dev` they
# start themselves), then the two-relay end-to-end test. Used by
# `npm run test:edge`; the network suites of both builds run in test:network.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Outside the clone, so reruns (and fresh clones) build incrementally.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/moq-worker/target}"
export WRANGLER_SEND_METRICS=false

t0=$(date +%s)
(cd "$ROOT/edge" && cargo fmt --check)
DRAFT16=(--no-default-features --features draft-16)
(cd "$ROOT/edge" && timeout 1800 cargo clippy --all-targets --quiet -- -D warnings)
(cd "$ROOT/edge" && timeout 1800 cargo clippy --all-targets --quiet "${DRAFT16[@]}" -- -D warnings)
tl=$(date +%s)
echo "[edge-test] fmt + clippy: $((tl - t0))s"
(cd "$ROOT/edge" && timeout 1800 cargo build --all-targets --quiet)
t1=$(date +%s)
echo "[edge-test] build: $((t1 - tl))s"
(cd "$ROOT/edge" && timeout 600 cargo test --quiet)
# The draft-16 build's unit tests; the WorkerCoordinator cases do not depend on the relay's draft.
(cd "$ROOT/edge" && timeout 600 cargo test --quiet "${DRAFT16[@]}" --lib --bins)
t2=$(date +%s)
echo "[edge-test] cargo test: $((t2 - t1))s"
timeout 300 "$ROOT/test/e2e/edge.sh"
t3=$(date +%s)
echo "[edge-test] e2e: $((t3 - t2))s; total $((t3 - t0))s"
