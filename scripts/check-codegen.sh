#!/usr/bin/env bash
# Fails when src/gen is not what `npm run generate` makes from schema/.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
npx buf generate -o "$tmp"
node scripts/gen-dashboard-format.mjs "$tmp"
if ! diff -ru src/gen "$tmp/src/gen"; then
  echo "src/gen is stale: run 'npm run generate' and commit the result" >&2
  exit 1
fi
echo "generated code is current"
