"""Federated TPC-H at scale factor 1: Bluelamp against DuckDB, side by side.

lineitem and orders are Parquet files; the other six tables live in the
machine's PostgreSQL (database `bluelamp_tpch`, loaded once). Every one of
the 22 queries runs through Bluelamp (its Flight SQL endpoint, ADBC client)
and through DuckDB (postgres extension + Parquet), and the answers are
compared value by value (numbers within a relative 1e-6). Prints per-query
times and the total ratio.

    benches/tpch/run.sh          # builds bluelamp (release) and runs this

Environment: BLUELAMP_BIN (the bluelamp binary), BLUELAMP_TPCH_DIR (data,
default ~/.cache/bluelamp/bench/tpch-sf1), BLUELAMP_TEST_PG_HOST/PORT.
BLUELAMP_BENCH_POLICIES=1 also runs every query on a second Bluelamp server
with access policy and an audit trail (a grant on every table, a row filter
pushed to PostgreSQL, markings, a durable audit record per statement), in
turn with the first, and reports what governance costs.
BLUELAMP_BENCH_CLUSTER=1 also runs every query on a Bluelamp server whose
plans run on a local Ballista cluster (`bluelamp scheduler` and two `bluelamp
executor`s, one task each, as separate processes), checks its answers against
DuckDB's, and reports the cluster's time against one process's, with each
process's peak memory.
"""

import decimal
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import adbc_driver_flightsql.dbapi as flight_sql
import duckdb
import duckdb_extension_postgres
import duckdb_extension_tpch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from cluster import describe_peaks, peak_kib, start_cluster, start_server  # noqa: E402

PG_HOST = os.environ.get("BLUELAMP_TEST_PG_HOST", "127.0.0.1")
PG_PORT = os.environ.get("BLUELAMP_TEST_PG_PORT", "5432")
DATABASE = "bluelamp_tpch"
PG_TABLES = ["customer", "nation", "part", "partsupp", "region", "supplier"]
FILE_TABLES = ["lineitem", "orders"]
# TPC-H's primary keys (specification, clause 1.4.2), declared in PostgreSQL
# as a database of record would have them.
PG_KEYS = {
    "customer": "c_custkey",
    "nation": "n_nationkey",
    "part": "p_partkey",
    "partsupp": "ps_partkey, ps_suppkey",
    "region": "r_regionkey",
    "supplier": "s_suppkey",
}
DATA = os.path.expanduser(
    os.environ.get("BLUELAMP_TPCH_DIR", "~/.cache/bluelamp/bench/tpch-sf1")
)
BIN = os.environ.get("BLUELAMP_BIN", "target/release/bluelamp")
RUNS = int(os.environ.get("BLUELAMP_BENCH_RUNS", "1"))
POLICIES = os.environ.get("BLUELAMP_BENCH_POLICIES") == "1"
CLUSTER = os.environ.get("BLUELAMP_BENCH_CLUSTER") == "1"

# What the governed server adds to its configuration: every table granted,
# a row filter every row passes (so its rewrite and pushdown are paid for),
# markings, and an audit trail.
GOVERNANCE = '''
[[policy.grant]]
roles = ["bench"]
tables = ["tpch.*", "pg.*"]

[[policy.row_filter]]
roles = ["bench"]
table = "pg.nation"
filter = "n_nationkey >= 0"

[[policy.marking]]
tables = ["pg.*"]
classification = "OFFICIAL-SENSITIVE"

[audit]
path = "{audit}"
'''


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def extension(module, internal):
    """DuckDB's extension file from its PyPI package, under its internal name."""
    folder = os.path.join(os.path.dirname(module.__file__), "extensions")
    for root, _, files in os.walk(folder):
        for name in files:
            if name.endswith(".duckdb_extension"):
                target = os.path.join(tempfile.gettempdir(), f"{internal}.duckdb_extension")
                shutil.copyfile(os.path.join(root, name), target)
                return target
    raise SystemExit(f"no extension file in {folder}")


def duck():
    con = duckdb.connect(config={"allow_unsigned_extensions": "true"})
    con.execute(f"LOAD '{extension(duckdb_extension_postgres, 'postgres_scanner')}'")
    con.execute(f"LOAD '{extension(duckdb_extension_tpch, 'tpch')}'")
    return con


def generate():
    if all(os.path.exists(os.path.join(DATA, f"{t}.parquet")) for t in PG_TABLES + FILE_TABLES):
        return
    os.makedirs(DATA, exist_ok=True)
    log(f"generating TPC-H SF1 in {DATA}")
    venv_bin = os.path.dirname(sys.executable)
    subprocess.run(
        [os.path.join(venv_bin, "tpchgen-cli"), "parquet", "-s", "1", f"--output-dir={DATA}"],
        check=True,
    )


def psql(sql, database="postgres"):
    subprocess.run(
        ["psql", "-h", PG_HOST, "-p", PG_PORT, "-U", "postgres", "-d", database, "-q", "-c", sql],
        check=True,
        capture_output=True,
    )


def load_postgres(con):
    marker = os.path.join(DATA, ".loaded-into-postgres")
    try:
        psql(f"CREATE DATABASE {DATABASE}")
    except subprocess.CalledProcessError:
        pass  # it exists
    con.execute(
        f"ATTACH 'host={PG_HOST} port={PG_PORT} user=postgres dbname={DATABASE}' AS pg (TYPE postgres)"
    )
    if not os.path.exists(marker):
        for table in PG_TABLES:
            log(f"loading {table} into PostgreSQL")
            con.execute(f"DROP TABLE IF EXISTS pg.{table}")
            con.execute(
                f"CREATE TABLE pg.{table} AS SELECT * FROM read_parquet('{DATA}/{table}.parquet')"
            )
        open(marker, "w").close()
    for table, key in PG_KEYS.items():
        psql(
            f"DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = "
            f"'{table}'::regclass AND contype = 'p') THEN ALTER TABLE {table} ADD PRIMARY KEY "
            f"({key}); END IF; END $$",
            DATABASE,
        )
    psql("ANALYZE", DATABASE)


def duck_views(con):
    for table in PG_TABLES:
        con.execute(f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM pg.{table}")
    for table in FILE_TABLES:
        con.execute(
            f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM read_parquet('{DATA}/{table}.parquet')"
        )


def start_bluelamp(work, governed=False, cluster=False):
    files = os.path.join(work, "files")
    os.makedirs(files)
    for table in FILE_TABLES:
        os.symlink(os.path.join(DATA, f"{table}.parquet"), os.path.join(files, f"{table}.parquet"))
    password_hash = subprocess.run(
        [BIN, "hash-password"], input="bench\n", capture_output=True, text=True, check=True
    ).stdout.strip()
    config = os.path.join(work, "bluelamp.toml")
    cluster_processes = []
    with open(config, "w") as f:
        f.write(
            f'[[source]]\nname = "tpch"\nkind = "files"\nlocation = "{files}"\n\n'
            f'[[source]]\nname = "pg"\nkind = "postgres"\nhost = "{PG_HOST}"\nport = {PG_PORT}\n'
            f'user = "postgres"\ndatabase = "{DATABASE}"\nsslmode = "disable"\n\n'
            f'[[user]]\nname = "bench"\npassword_hash = "{password_hash}"\n'
            f'roles = ["bench"]\nclearance = "OFFICIAL-SENSITIVE"\n'
        )
        if governed:
            f.write(GOVERNANCE.format(audit=os.path.join(work, "audit.jsonl")))
    if cluster:
        # The executors read the same file; then the front end names them.
        cluster_processes, engine = start_cluster(BIN, work, config)
        with open(config) as f:
            text = f.read()
        with open(config, "w") as f:
            f.write(f"[engine]\n{engine}\n{text}")
    server, uri = start_server(BIN, config)
    conn = flight_sql.connect(uri, db_kwargs={"username": "bench", "password": "bench"}, autocommit=True)
    with conn.cursor() as cur:
        for table in PG_TABLES:
            cur.adbc_statement.set_sql_query(f"CREATE VIEW {table} AS SELECT * FROM pg.{table}")
            cur.adbc_statement.execute_update()
        for table in FILE_TABLES:
            cur.adbc_statement.set_sql_query(f"CREATE VIEW {table} AS SELECT * FROM tpch.{table}")
            cur.adbc_statement.execute_update()
    if cluster:
        return server, conn, cluster_processes
    return server, conn


def normal(value):
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, datetime.datetime):
        return value.replace(tzinfo=None).isoformat()
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, str):
        return value.rstrip()
    return value


def same(a, b):
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return abs(a - b) <= 1e-6 * max(1.0, abs(a), abs(b))
    return a == b


def rows_of(table):
    """An Arrow table's rows as tuples, in order."""
    columns = [column.to_pylist() for column in table.columns]
    return list(zip(*columns)) if columns else []


def compare(got, want):
    """None if equal, else the first difference."""
    if len(got) != len(want):
        return f"{len(got)} rows, DuckDB has {len(want)}"
    for i, (g, w) in enumerate(zip(got, want)):
        g = [normal(v) for v in g]
        w = [normal(v) for v in w]
        if len(g) != len(w) or not all(same(x, y) for x, y in zip(g, w)):
            return f"row {i + 1}: {g} vs DuckDB {w}"
    return None


def pushed(conn, sql):
    """What the plan sends to PostgreSQL, from EXPLAIN: one entry per SQL
    query the database receives, naming its tables and what else it does."""
    with conn.cursor() as cur:
        cur.execute("EXPLAIN " + sql)
        plan = "\n".join(str(row[1]) for row in cur.fetchall())
    parts = []
    for line in plan.splitlines():
        # The SQL after our repairs where they changed it, else as unparsed.
        found = re.search(r"rewritten_executor_sql=(.*)", line) or re.search(
            r"base_sql=(.*)", line
        )
        if not found:
            continue
        text = found.group(1).strip()
        tables = re.findall(r'(?:FROM|JOIN) "public"\."(\w+)"', text)
        does = [
            word
            for word, pattern in [
                ("filter", r"\bWHERE\b"),
                ("join", r"\bJOIN\b"),
                ("exists", r"\bEXISTS\b"),
                ("group by", r"\bGROUP BY\b"),
                ("order by", r"\bORDER BY\b"),
                ("limit", r"\bLIMIT\b"),
            ]
            if re.search(pattern, text)
        ]
        columns = text.split(" FROM ", 1)[0].count(",") + 1
        parts.append(f"{'+'.join(tables)} ({', '.join(does + [f'{columns} cols'])})")
    return "; ".join(parts) or "nothing"


def timed(run):
    best = None
    rows = None
    for _ in range(RUNS):
        started = time.perf_counter()
        rows = run()
        elapsed = time.perf_counter() - started
        best = elapsed if best is None else min(best, elapsed)
    return best, rows


def main():
    generate()
    con = duck()
    load_postgres(con)
    duck_views(con)
    queries = con.execute("SELECT query_nr, query FROM tpch_queries() ORDER BY 1").fetchall()
    work = tempfile.mkdtemp(prefix="bluelamp-tpch-")
    server, conn = start_bluelamp(work)
    governed = None
    if POLICIES:
        governed_work = os.path.join(work, "governed")
        os.makedirs(governed_work)
        governed = start_bluelamp(governed_work, governed=True)
    clustered = None
    if CLUSTER:
        cluster_work = os.path.join(work, "cluster")
        os.makedirs(cluster_work)
        clustered = start_bluelamp(cluster_work, cluster=True)
    cluster_times = []
    costs = []
    results = []
    try:
        for number, sql in queries:
            # Both engines hand the client an Arrow table: the time is the
            # engine's, not the Python client's turning values into objects
            # (ADBC's DB-API fetchall does that row by row in Python,
            # DuckDB's in C++: for Q16's 18,314 rows that alone differs by
            # 0.15 s). Rows for the comparison are made afterwards, untimed.
            def on_duckdb():
                return con.execute(sql).to_arrow_table()

            def on_bluelamp():
                with conn.cursor() as cur:
                    cur.execute(sql)
                    return cur.fetch_arrow_table()

            duck_seconds, want = timed(on_duckdb)
            want = rows_of(want)
            try:
                blue_seconds, got = timed(on_bluelamp)
                got = rows_of(got)
                problem = compare(got, want)
                pushdown = pushed(conn, sql)
            except Exception as e:  # noqa: BLE001 - reported per query
                blue_seconds, problem = None, f"error: {str(e).splitlines()[0][:200]}"
                pushdown = "-"
            if governed is not None and blue_seconds is not None:
                def on_governed():
                    with governed[1].cursor() as cur:
                        cur.execute(sql)
                        return cur.fetch_arrow_table()

                # In turn with the ungoverned server, best of RUNS each.
                off, on = [], []
                for _ in range(max(RUNS, 3)):
                    off.append(timed(on_bluelamp)[0])
                    seconds, got_on = timed(on_governed)
                    on.append(seconds)
                problem_on = compare(rows_of(got_on), want)
                costs.append((number, min(off), min(on), problem_on))
                log(f"Q{number:02d} policies off={min(off):.3f} on={min(on):.3f} {problem_on or 'same'}")
            if clustered is not None:
                def on_cluster():
                    with clustered[1].cursor() as cur:
                        cur.execute(sql)
                        return cur.fetch_arrow_table()

                # In turn with one process, best of RUNS each.
                alone, spread, problem_cluster = [], [], None
                try:
                    for _ in range(max(RUNS, 1)):
                        alone.append(timed(on_bluelamp)[0])
                        seconds, got_cluster = timed(on_cluster)
                        spread.append(seconds)
                    problem_cluster = compare(rows_of(got_cluster), want)
                    cluster_times.append((number, min(alone), min(spread), problem_cluster))
                except Exception as e:  # noqa: BLE001 - reported per query
                    cluster_times.append((number, None, None, f"error: {str(e).splitlines()[0][:200]}"))
                log(f"Q{number:02d} cluster {cluster_times[-1]}")
            results.append((number, blue_seconds, duck_seconds, problem, pushdown))
            log(f"Q{number:02d} bluelamp={blue_seconds} duckdb={duck_seconds:.3f} {problem or 'ok'}")
    finally:
        # Peak memory of each process, read while they are still running.
        peaks = {}
        if clustered is not None:
            peaks["front end (one process)"] = peak_kib(server.pid)
            peaks["front end (cluster)"] = peak_kib(clustered[0].pid)
            for i, process in enumerate(clustered[2]):
                peaks["scheduler" if i == 0 else f"executor {i}"] = peak_kib(process.pid)
        conn.close()
        server.terminate()
        server.wait()
        if governed is not None:
            governed[1].close()
            governed[0].terminate()
            governed[0].wait()
        if clustered is not None:
            clustered[1].close()
            for process in [clustered[0], *clustered[2]]:
                process.terminate()
                process.wait()
    correct = sum(1 for r in results if r[3] is None)
    print("| query | Bluelamp s | DuckDB s | ratio | answer | sent to PostgreSQL |")
    print("|---|---|---|---|---|---|")
    for number, blue, duckdb_s, problem, pushdown in results:
        ratio = f"{blue / duckdb_s:.2f}" if blue else "-"
        blue_text = f"{blue:.3f}" if blue else "-"
        print(
            f"| Q{number:02d} | {blue_text} | {duckdb_s:.3f} | {ratio} | {problem or 'same'} | {pushdown} |"
        )
    timed_ok = [r for r in results if r[1] is not None]
    blue_total = sum(r[1] for r in timed_ok)
    duck_total = sum(r[2] for r in timed_ok)
    print()
    print(f"correct: {correct}/22; total over the {len(timed_ok)} that ran: Bluelamp {blue_total:.2f} s, DuckDB {duck_total:.2f} s, ratio {blue_total / duck_total:.2f}")
    if costs:
        print()
        print("| query | policies off s | policies on s | ratio | answer with policies |")
        print("|---|---|---|---|---|")
        for number, off, on, problem in costs:
            print(f"| Q{number:02d} | {off:.3f} | {on:.3f} | {on / off:.3f} | {problem or 'same'} |")
        off_total = sum(c[1] for c in costs)
        on_total = sum(c[2] for c in costs)
        print()
        print(
            f"policies and audit: off {off_total:.2f} s, on {on_total:.2f} s over {len(costs)} queries: "
            f"{(on_total / off_total - 1) * 100:+.1f} % (target <= 5 %)"
        )
    if cluster_times:
        print()
        print("| query | one process s | cluster s | ratio | answer on the cluster |")
        print("|---|---|---|---|---|")
        for number, alone, spread, problem in cluster_times:
            ratio = f"{spread / alone:.2f}" if alone and spread else "-"
            print(
                f"| Q{number:02d} | {alone if alone is None else f'{alone:.3f}'} | "
                f"{spread if spread is None else f'{spread:.3f}'} | {ratio} | {problem or 'same'} |"
            )
        ran = [c for c in cluster_times if c[1] is not None]
        alone_total = sum(c[1] for c in ran)
        spread_total = sum(c[2] for c in ran)
        right = sum(1 for c in cluster_times if c[3] is None)
        print()
        print(
            f"cluster: {right}/22 answers the same as DuckDB's; over the {len(ran)} that ran, "
            f"one process {alone_total:.2f} s, cluster {spread_total:.2f} s, "
            f"ratio {spread_total / alone_total:.2f} (target <= 1.5)"
        )
        print("peak memory (VmHWM): " + describe_peaks(peaks))
    json.dump(
        [
            {"query": n, "bluelamp": b, "duckdb": d, "problem": p, "postgres": q}
            for n, b, d, p, q in results
        ],
        open(os.path.join(DATA, "last-run.json"), "w"),
        indent=1,
    )


if __name__ == "__main__":
    main()
