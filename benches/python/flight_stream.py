"""Streams a query's result through the ADBC Flight SQL driver and reports the
rate: one warm-up run, then --runs timed runs, each reading record batches as
they arrive (nothing is kept). Prints one JSON line: {"rows": N, "seconds": [...]}.
Used by benches/benches/flight_stream.rs."""

import argparse
import json
import time

import adbc_driver_flightsql.dbapi as flight_sql


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--uri", required=True)
    parser.add_argument("--query", required=True)
    parser.add_argument("--user")
    parser.add_argument("--password")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    kwargs = {}
    if args.user:
        kwargs = {"username": args.user, "password": args.password}
    seconds = []
    rows = 0
    with flight_sql.connect(args.uri, db_kwargs=kwargs, autocommit=True) as conn:
        for run in range(args.runs + 1):
            with conn.cursor() as cur:
                started = time.perf_counter()
                cur.execute(args.query)
                reader = cur.fetch_record_batch()
                rows = 0
                for batch in reader:
                    rows += batch.num_rows
                elapsed = time.perf_counter() - started
            if run > 0:
                seconds.append(elapsed)
    print(json.dumps({"rows": rows, "seconds": seconds}))


if __name__ == "__main__":
    main()
