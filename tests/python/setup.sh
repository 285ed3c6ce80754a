#!/usr/bin/env bash
# Creates the project-local virtualenv the real-client tests use
# (tests/.venv, or $BLUELAMP_VENV) and installs tests/python/requirements.txt.
# Re-running is cheap: packages are only installed when the requirements change.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="${BLUELAMP_VENV:-$root/tests/.venv}"
requirements="$root/tests/python/requirements.txt"
python="${PYTHON:-python3}"

if ! command -v "$python" >/dev/null 2>&1; then
  echo "tests/python/setup.sh: $python not found; the ADBC client tests need Python 3" >&2
  exit 1
fi
if [ ! -x "$venv/bin/python" ]; then
  echo "creating the test virtualenv in $venv"
  "$python" -m venv "$venv"
fi
stamp="$venv/.requirements"
if ! cmp -s "$requirements" "$stamp"; then
  echo "installing the Python test clients (tests/python/requirements.txt)"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
  cp "$requirements" "$stamp"
fi
