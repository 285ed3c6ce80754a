#!/usr/bin/env bash
# Installs the Node.js clients the real-client tests use (node-postgres, from
# tests/node/package-lock.json) into tests/node/node_modules. Re-running is
# cheap: packages are only installed when the lock file changes.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if ! command -v npm >/dev/null 2>&1; then
  echo "tests/node/setup.sh: npm not found; the node-postgres tests need Node.js 18 or later" >&2
  exit 1
fi
stamp="$here/node_modules/.installed-lock"
if ! cmp -s "$here/package-lock.json" "$stamp"; then
  echo "installing Node.js packages from tests/node/package-lock.json"
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
  cp "$here/package-lock.json" "$stamp"
fi
