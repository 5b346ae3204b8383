#!/usr/bin/env bash
# Installs what `npm run bench` compares against, only when missing:
#   - redis-server (Debian package), the store behind moq-api;
#   - moq-api (crates.io), built into $MOQ_BENCH_BIN_ROOT (outside the repo,
#     reused between CI runs: the build is skipped when the binary exists).
# Safe to run repeatedly. Prints the paths it settled on.
set -euo pipefail

MOQ_API_VERSION="${MOQ_API_VERSION:-0.2.15}"
ROOT_DIR="${MOQ_BENCH_BIN_ROOT:-$HOME/.cache/moq-worker/cargo-bin}"
MOQ_API_BIN="$ROOT_DIR/bin/moq-api"

if ! command -v redis-server >/dev/null 2>&1; then
  echo "bench-deps: installing redis-server (apt)" >&2
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  # Wait for a dpkg/apt lock another process holds rather than failing.
  $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends redis-server >/dev/null
  # The package starts a system service on Debian; the bench runs its own instance.
  if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl disable --now redis-server >/dev/null 2>&1 || true; fi
fi

installed_version() { "$MOQ_API_BIN" --version 2>/dev/null | awk '{print $2}'; }

if [ ! -x "$MOQ_API_BIN" ] || [ "$(installed_version)" != "$MOQ_API_VERSION" ]; then
  echo "bench-deps: building moq-api $MOQ_API_VERSION into $ROOT_DIR (cargo install; a few minutes)" >&2
  # Its own target dir: does not contend for the lock on the edge build's CARGO_TARGET_DIR,
  # and keeps intermediate artifacts so a version bump rebuilds incrementally.
  CARGO_TARGET_DIR="${MOQ_BENCH_CARGO_TARGET:-$HOME/.cache/moq-worker/bench-target}" \
    cargo install moq-api --version "=$MOQ_API_VERSION" --locked --root "$ROOT_DIR" --quiet
fi

echo "redis-server: $(command -v redis-server) ($(redis-server --version | awk '{print $3}'))"
echo "moq-api: $MOQ_API_BIN ($("$MOQ_API_BIN" --version))"
