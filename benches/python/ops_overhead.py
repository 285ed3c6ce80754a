"""What operations cost (issue 32): the cookbook and a Flight SQL stream
through two `bluelamp serve` processes over the same demo force, one built
before the operations layer (no statement registry, limits or metrics) and
one after it, with its metrics endpoint served and scraped.

    BLUELAMP_BIN_BEFORE=/path/to/old/bluelamp BLUELAMP_BIN=target/release/bluelamp \\
      tests/.venv/bin/python benches/python/ops_overhead.py

With BLUELAMP_BENCH_TELEMETRY=1 it measures traces and metrics on against
off instead: both servers run BLUELAMP_BIN, the "after" one with its metrics
endpoint scraped every round and `[telemetry] otlp_endpoint` sending every
statement's spans to `otlp-sink` (BLUELAMP_OTLP_SINK, default
target/release/otlp-sink: `cargo build --release -p bluelamp-benches --bin
otlp-sink`), which counts what it receives.

    BLUELAMP_BENCH_TELEMETRY=1 BLUELAMP_BIN=target/release/bluelamp \
      tests/.venv/bin/python benches/python/ops_overhead.py

Rounds alternate the two servers (which goes first swaps every round), so
both see the same moments of the machine; round 0 is a warm-up. Prints
medians, the ratio after/before of the medians, and the median of each
round's own ratio. Environment: BLUELAMP_BENCH_RUNS (timed rounds, default
7), BLUELAMP_BENCH_SCALE (demo scale, default 1).
"""

import os
import statistics
import subprocess
import sys
import time
import urllib.request

import adbc_driver_flightsql.dbapi as flight_sql

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import start_server  # noqa: E402

TELEMETRY = os.environ.get("BLUELAMP_BENCH_TELEMETRY") == "1"
AFTER = os.environ.get("BLUELAMP_BIN", "target/release/bluelamp")
BEFORE = AFTER if TELEMETRY else os.environ["BLUELAMP_BIN_BEFORE"]
SINK = os.environ.get("BLUELAMP_OTLP_SINK", "target/release/otlp-sink")
RUNS = int(os.environ.get("BLUELAMP_BENCH_RUNS", "7"))
SCALE = os.environ.get("BLUELAMP_BENCH_SCALE", "1")
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
STREAM = "SELECT * FROM anpr.reads"


def cookbook():
    folder = os.path.join(ROOT, "queries")
    return [
        open(os.path.join(folder, name)).read()
        for name in sorted(os.listdir(folder))
        if name.endswith(".sql")
    ]


def start_demo():
    """The demo force's systems (and its own endpoint, unused); returns the
    process and its configuration file."""
    demo = subprocess.Popen(
        [AFTER, "demo", "--scale", SCALE, "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = demo.stdout.readline()
    if not line.startswith("ready "):
        demo.kill()
        sys.exit(f"bluelamp demo did not start: {line!r}")
    fields = dict(part.split("=", 1) for part in line.split()[1:] if "=" in part)
    return demo, fields["config"]


def run_all(conn, statements):
    rows = 0
    with conn.cursor() as cur:
        for sql in statements:
            cur.execute(sql)
            table = cur.fetch_arrow_table()
            rows += table.num_rows
    return rows


def start_sink():
    """The OTLP receiver; returns the process and its endpoint."""
    sink = subprocess.Popen([SINK], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = sink.stdout.readline()
    if "listening on" not in line:
        sink.kill()
        sys.exit(f"otlp-sink did not start: {line!r}")
    return sink, line.split()[-1]


def traced_config(config, endpoint):
    """A copy of the demo's configuration beside it, sending traces to `endpoint`."""
    traced = config + ".traced.toml"
    with open(config) as f, open(traced, "w") as out:
        out.write(f.read())
        out.write(f'\n[telemetry]\notlp_endpoint = "{endpoint}"\n')
    return traced


def main():
    demo, config = start_demo()
    servers = []
    sink = None
    after_config = config
    if TELEMETRY:
        sink, endpoint = start_sink()
        after_config = traced_config(config, endpoint)
    try:
        before, before_uri = start_server(BEFORE, config)
        servers.append(before)
        after, after_uri = start_server(AFTER, after_config, ["--metrics-listen", "127.0.0.1:0"])
        servers.append(after)
        metrics_line = ""
        while "Metrics on" not in metrics_line:
            metrics_line = after.stdout.readline()
            if not metrics_line:
                sys.exit("the metrics endpoint did not start")
        metrics_url = metrics_line.split()[2]
        login = {"username": "analyst", "password": "demo"}
        conns = {
            "before": flight_sql.connect(before_uri, db_kwargs=login, autocommit=True),
            "after": flight_sql.connect(after_uri, db_kwargs=login, autocommit=True),
        }
        # The demo's analyst may not see every column (the demo's policy):
        # the cookbook queries it may run are timed.
        allowed = []
        for sql in cookbook():
            try:
                run_all(conns["before"], [sql])
                run_all(conns["after"], [sql])
                allowed.append(sql)
            except flight_sql.Error as e:
                print(f"skipped (refused for the demo's analyst): {sql.splitlines()[0]}: {str(e)[:100]}")
        workloads = {
            f"cookbook ({len(allowed)} queries)": allowed,
            "Flight stream (" + STREAM + ")": [STREAM],
        }
        times = {(w, s): [] for w in workloads for s in conns}
        rows = {}
        for round_ in range(RUNS + 1):
            order = ["before", "after"] if round_ % 2 == 0 else ["after", "before"]
            for workload, statements in workloads.items():
                for side in order:
                    started = time.perf_counter()
                    n = run_all(conns[side], statements)
                    elapsed = time.perf_counter() - started
                    rows.setdefault((workload, side), n)
                    if round_ > 0:
                        times[(workload, side)].append(elapsed)
            # The "after" server is scraped as Prometheus would, every round.
            urllib.request.urlopen(metrics_url).read()
        for workload in workloads:
            if rows[(workload, "before")] != rows[(workload, "after")]:
                print(f"{workload}: row counts differ: {rows[(workload, 'before')]} vs {rows[(workload, 'after')]}")
        mode = "traces and metrics off (before) vs on (after)" if TELEMETRY else "before vs after"
        print(f"demo scale {SCALE}, {RUNS} timed rounds (after a warm-up), medians; {mode}")
        print("| workload | before s | after s | after/before | paired median ratio |")
        print("|---|---|---|---|---|")
        for workload in workloads:
            b, a = times[(workload, "before")], times[(workload, "after")]
            paired = statistics.median(x / y for x, y in zip(a, b))
            print(
                f"| {workload} | {statistics.median(b):.3f} | {statistics.median(a):.3f} | "
                f"{statistics.median(a) / statistics.median(b):.3f} | {paired:.3f} |"
            )
        for conn in conns.values():
            conn.close()
    finally:
        for process in (*servers, demo):
            process.terminate()
            process.wait()
        if sink is not None:
            # Its count says the traced server's spans arrived.
            out, _ = sink.communicate(timeout=30)
            print(f"otlp-sink: {out.strip()}")


if __name__ == "__main__":
    main()
