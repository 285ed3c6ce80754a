#!/usr/bin/env bash
# Federated TPC-H SF1, Bluelamp against DuckDB (see benches/tpch/run.py).
# Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust auth) and Python 3.
set -euo pipefail
cd "$(dirname "$0")/../.."
tests/python/setup.sh benches/tpch/requirements.txt
cargo build --release --workspace --bins
BLUELAMP_BIN="${BLUELAMP_BIN:-$(pwd)/target/release/bluelamp}" \
  "${BLUELAMP_VENV:-tests/.venv}/bin/python" benches/tpch/run.py "$@"
