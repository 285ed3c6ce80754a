#!/usr/bin/env bash
# Installs pgjdbc, the PostgreSQL JDBC driver that DBeaver, Metabase and
# Tableau bundle, from Debian's package libpostgresql-jdbc-java (it puts
# /usr/share/java/postgresql.jar in place). The Java tests run with the
# machine's JDK (17 or later), as a single-file program: nothing to build.
set -euo pipefail
jar=/usr/share/java/postgresql.jar
if ! command -v java >/dev/null 2>&1; then
  echo "tests/java/setup.sh: java not found; the pgjdbc tests need a JDK 17 or later" >&2
  exit 1
fi
if [ -f "$jar" ]; then
  exit 0
fi
echo "installing pgjdbc (Debian's libpostgresql-jdbc-java)"
sudo=""
if [ "$(id -u)" != 0 ]; then
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
if ! $sudo apt-get install -y --no-install-recommends libpostgresql-jdbc-java >/dev/null; then
  $sudo apt-get update >/dev/null
  $sudo apt-get install -y --no-install-recommends libpostgresql-jdbc-java >/dev/null
fi
test -f "$jar"
