#!/usr/bin/env bash
# Installs what `npm run test:ops` needs beyond npm packages, only when missing:
# Debian's chromium (and a font for legible screenshots), which the dashboard
# test drives through playwright-core (playwright's own browser downloads are
# not used). Safe to run repeatedly.
set -euo pipefail

if [ ! -x /usr/bin/chromium ]; then
  echo "ci-deps: installing chromium (apt)" >&2
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  # Wait for a dpkg/apt lock another process holds rather than failing.
  $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null
fi
/usr/bin/chromium --version 2>/dev/null | head -n1 >&2 || true
