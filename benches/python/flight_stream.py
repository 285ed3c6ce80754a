"""Streams a query's result from a Flight SQL endpoint and reports the rate:
one warm-up run, then --runs timed runs, each reading record batches as they
arrive (nothing is kept). Prints one JSON line:
{"rows": N, "seconds": [...], "cpu_seconds": [...]}, where cpu_seconds is
this process's CPU time (all threads, user and system) per timed run.
Used by benches/benches/flight_stream.rs.

Two clients:
  --client pyarrow  pyarrow's own Flight client (Arrow C++): GetFlightInfo
                    with a Flight SQL CommandStatementQuery, then DoGet on
                    every endpoint, endpoints read side by side.
  --client adbc     the ADBC Flight SQL driver (Go), fetch_record_batch().
"""

import argparse
import concurrent.futures
import json
import time


def varint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field(number, payload):
    """A length-delimited protobuf field."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def statement_query(sql):
    """google.protobuf.Any wrapping arrow.flight.protocol.sql.CommandStatementQuery."""
    command = field(1, sql.encode())
    type_url = b"type.googleapis.com/arrow.flight.protocol.sql.CommandStatementQuery"
    return field(1, type_url) + field(2, command)


def pyarrow_runs(args):
    import pyarrow.flight as flight

    client = flight.FlightClient(args.uri)
    headers = []
    if args.user:
        headers = [client.authenticate_basic_token(args.user, args.password)]
    options = flight.FlightCallOptions(headers=headers)
    descriptor = flight.FlightDescriptor.for_command(statement_query(args.query))

    def drain(endpoint):
        reader = client.do_get(endpoint.ticket, options)
        rows = 0
        while True:
            try:
                chunk = reader.read_chunk()
            except StopIteration:
                return rows
            rows += chunk.data.num_rows

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=8)

    def once():
        info = client.get_flight_info(descriptor, options)
        if len(info.endpoints) == 1:
            return drain(info.endpoints[0])
        return sum(pool.map(drain, info.endpoints))

    return once


def adbc_runs(args):
    import adbc_driver_flightsql.dbapi as flight_sql

    kwargs = {}
    if args.user:
        kwargs = {"username": args.user, "password": args.password}
    conn = flight_sql.connect(args.uri, db_kwargs=kwargs, autocommit=True)

    def once():
        with conn.cursor() as cur:
            cur.execute(args.query)
            rows = 0
            for batch in cur.fetch_record_batch():
                rows += batch.num_rows
            return rows

    return once


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--uri", required=True)
    parser.add_argument("--query", required=True)
    parser.add_argument("--user")
    parser.add_argument("--password")
    parser.add_argument("--client", choices=["pyarrow", "adbc"], default="pyarrow")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    once = pyarrow_runs(args) if args.client == "pyarrow" else adbc_runs(args)
    seconds = []
    cpu_seconds = []
    rows = 0
    for run in range(args.runs + 1):
        started = time.perf_counter()
        cpu_started = time.process_time()
        rows = once()
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        if run > 0:
            seconds.append(elapsed)
            cpu_seconds.append(cpu)
    print(json.dumps({"rows": rows, "seconds": seconds, "cpu_seconds": cpu_seconds}))


if __name__ == "__main__":
    main()
