#!/usr/bin/env bash
# Makes sure the database servers the tests use are running, starting them with
# the machine's own service commands when they are installed but stopped.
# Never fails: tests report a missing server themselves (and fail under CI=true).
set -u

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  for _ in $(seq 1 30); do port_open "$1" && return 0; sleep 1; done
  return 1
}

if ! port_open 5432; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    echo "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    wait_port 5432 || echo "PostgreSQL did not start"
  else
    echo "PostgreSQL is not running on 127.0.0.1:5432 and is not installed here"
  fi
fi

if ! port_open 3306; then
  if command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ]; then
    echo "starting MariaDB"
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || true
    wait_port 3306 || echo "MariaDB did not start"
  else
    echo "MariaDB is not running on 127.0.0.1:3306 and is not installed here"
  fi
fi
exit 0
