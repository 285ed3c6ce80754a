"""Reads a query's whole result with psycopg 3 in binary, one timed read per
request, for benches/benches/postgres_stream.rs, which alternates reads of
PostgreSQL and Bluelamp so that they share the machine's moments.

Reads requests from stdin, one JSON object per line:
  {"conninfo": "...", "query": "...", "check": true|false}
and answers each with one JSON line on stdout:
  {"rows": N, "seconds": S, "cpu_seconds": C, "sums": [...]}
where S is the wall time from sending the query to holding every row as
Python values, C this process's CPU time for it, and "sums" (with
"check") an order-independent digest of the rows: the count, and sums of
id, value, len(grade), seen_at in seconds and flagged; or {"error": "..."}.
A connection per conninfo is made on its first request and kept.
"""

import json
import sys
import time

import psycopg

connections = {}


def read(request):
    conninfo = request["conninfo"]
    if conninfo not in connections:
        connections[conninfo] = psycopg.connect(conninfo, autocommit=True)
    conn = connections[conninfo]
    started = time.perf_counter()
    cpu = time.process_time()
    with conn.cursor(binary=True) as cur:
        cur.execute(request["query"])
        rows = cur.fetchall()
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu
    answer = {"rows": len(rows), "seconds": seconds, "cpu_seconds": cpu_seconds}
    if request.get("check"):
        answer["sums"] = [
            len(rows),
            sum(r[0] for r in rows),
            round(sum(r[1] for r in rows), 3),
            sum(len(r[2]) for r in rows),
            sum(int(r[3].timestamp()) for r in rows),
            sum(1 for r in rows if r[4]),
        ]
    return answer


for line in sys.stdin:
    try:
        answer = read(json.loads(line))
    except Exception as e:  # reported to the bench, which stops
        answer = {"error": f"{type(e).__name__}: {e}"}
    print(json.dumps(answer), flush=True)
