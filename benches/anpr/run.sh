#!/usr/bin/env bash
# ANPR aggregations at demo scale 100, one process against a local cluster
# (see benches/anpr/run.py). Needs Python 3 and about 16 GiB of memory to
# generate the force.
set -euo pipefail
cd "$(dirname "$0")/../.."
tests/python/setup.sh benches/anpr/requirements.txt
cargo build --release --workspace --bins
BLUELAMP_BIN="${BLUELAMP_BIN:-$(pwd)/target/release/bluelamp}" \
  "${BLUELAMP_VENV:-tests/.venv}/bin/python" benches/anpr/run.py "$@"
