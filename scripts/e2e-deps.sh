#!/usr/bin/env bash
# Installs the third-party MoQ clients the network e2e tests and the demo
# drive, only when missing:
#   - moq-clock-ietf (crates.io), a clock publisher/subscriber nobody on this
#     project wrote, once per MoQT draft the edge builds for (the drafts do
#     not interoperate): 0.6.25 speaks draft-18 (moq-relay-ietf 0.8, the
#     edge's default build), 0.6.24 draft-16 (0.7, the edge's draft-16 build).
#   - faketime (Debian package): two moq-clock publishers of one namespace send the same
#     payload (the current time); running one under a shifted clock tells them apart.
# Each version is built into $MOQ_E2E_BIN_ROOT/moq-clock-<version> (outside the
# repo, reused between runs). Safe to run repeatedly. Prints the paths it settled on.
set -euo pipefail

ROOT_DIR="${MOQ_E2E_BIN_ROOT:-$HOME/.cache/moq-worker/cargo-bin}"
# draft:version pairs; test/e2e/network/harness.mjs reads the same layout.
CLOCKS="${MOQ_CLOCK_VERSIONS:-draft-18:0.6.25 draft-16:0.6.24}"

if ! command -v faketime >/dev/null 2>&1; then
  echo "e2e-deps: installing faketime (apt)" >&2
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  # Wait for a dpkg/apt lock another process holds rather than failing.
  $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends faketime >/dev/null
fi

echo "faketime: $(command -v faketime)"
for pair in $CLOCKS; do
  draft="${pair%%:*}"
  version="${pair#*:}"
  root="$ROOT_DIR/moq-clock-$version"
  bin="$root/bin/moq-clock-ietf"
  if [ ! -x "$bin" ]; then
    echo "e2e-deps: building moq-clock-ietf $version ($draft) into $root (cargo install; several minutes)" >&2
    # Its own target dir: does not contend for the lock on the edge build's CARGO_TARGET_DIR.
    CARGO_TARGET_DIR="${MOQ_E2E_CARGO_TARGET:-$HOME/.cache/moq-worker/e2e-target}" \
      cargo install moq-clock-ietf --version "=$version" --locked --root "$root" --quiet --force
  fi
  echo "moq-clock-ietf ($draft): $bin ($version)"
done
