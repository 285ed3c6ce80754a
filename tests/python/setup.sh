#!/usr/bin/env bash
# Creates the project-local virtualenv the real-client tests use
# (tests/.venv, or $BLUELAMP_VENV) and installs tests/python/requirements.txt,
# plus any further requirements files named as arguments (the benchmarks add
# benches/python/requirements.txt). Re-running is cheap: a file's packages are
# only installed when it changes.
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
for file in "$requirements" "$@"; do
  stamp="$venv/.requirements-$(realpath --relative-to="$root" "$file" | tr '/' '_')"
  if ! cmp -s "$file" "$stamp"; then
    echo "installing Python packages from $file"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$file"
    cp "$file" "$stamp"
  fi
done
