#!/usr/bin/env bash
# Installs the third-party MoQ client the network e2e tests drive, only when missing:
#   - moq-clock-ietf (crates.io), a clock publisher/subscriber nobody on this project
#     wrote. 0.6.24 is the last release on moq-transport 0.16, the wire version
#     moq-relay-ietf 0.7.31 (our edge) speaks; 0.6.25 moved on and cannot talk to it.
#   - faketime (Debian package): two moq-clock publishers of one namespace send the same
#     payload (the current time); running one under a shifted clock tells them apart.
# Built into $MOQ_E2E_BIN_ROOT (outside the repo, reused between runs). Safe to run
# repeatedly. Prints the path it settled on.
set -euo pipefail

MOQ_CLOCK_VERSION="${MOQ_CLOCK_VERSION:-0.6.24}"
ROOT_DIR="${MOQ_E2E_BIN_ROOT:-$HOME/.cache/moq-worker/cargo-bin}"
MOQ_CLOCK_BIN="$ROOT_DIR/bin/moq-clock-ietf"
# cargo install records what it built here; the binary has no --version of its own to ask.
STAMP="$ROOT_DIR/.moq-clock-ietf.version"

if ! command -v faketime >/dev/null 2>&1; then
  echo "e2e-deps: installing faketime (apt)" >&2
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  # Wait for a dpkg/apt lock another process holds rather than failing.
  $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends faketime >/dev/null
fi

if [ ! -x "$MOQ_CLOCK_BIN" ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$MOQ_CLOCK_VERSION" ]; then
  echo "e2e-deps: building moq-clock-ietf $MOQ_CLOCK_VERSION into $ROOT_DIR (cargo install; several minutes)" >&2
  # Its own target dir: does not contend for the lock on the edge build's CARGO_TARGET_DIR.
  CARGO_TARGET_DIR="${MOQ_E2E_CARGO_TARGET:-$HOME/.cache/moq-worker/e2e-target}" \
    cargo install moq-clock-ietf --version "=$MOQ_CLOCK_VERSION" --locked --root "$ROOT_DIR" --quiet --force
  echo "$MOQ_CLOCK_VERSION" > "$STAMP"
fi

echo "faketime: $(command -v faketime)"
echo "moq-clock-ietf: $MOQ_CLOCK_BIN ($MOQ_CLOCK_VERSION)"
