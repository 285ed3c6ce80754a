"""Streams a query's result from a Flight SQL endpoint, one timed read per
request, for benches/benches/flight_stream.rs, which alternates reads of
several endpoints and clients so that they share the machine's moments.

Reads requests from stdin, one JSON object per line:
  {"client": "pyarrow" | "adbc", "uri": ..., "query": ..., "user": ...,
   "password": ...}  (user and password optional)
and answers each with one JSON line on stdout:
  {"rows": N, "seconds": S, "cpu_seconds": C}
where C is this process's CPU time (all threads, user and system) for that
read; or {"error": "..."} if the read failed. Connections are made on a
client's first request to an endpoint and kept; each read streams record
batches as they arrive and keeps none.

Two clients:
  pyarrow  pyarrow's own Flight client (Arrow C++): GetFlightInfo with a
           Flight SQL CommandStatementQuery, then DoGet on every endpoint,
           endpoints read side by side.
  adbc     the ADBC Flight SQL driver (Go), fetch_record_batch().
"""

import concurrent.futures
import json
import sys
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


def pyarrow_reader(request):
    import pyarrow.flight as flight

    client = flight.FlightClient(request["uri"])
    headers = []
    if request.get("user"):
        headers = [client.authenticate_basic_token(request["user"], request["password"])]
    options = flight.FlightCallOptions(headers=headers)
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=8)

    def drain(endpoint):
        reader = client.do_get(endpoint.ticket, options)
        rows = 0
        while True:
            try:
                chunk = reader.read_chunk()
            except StopIteration:
                return rows
            rows += chunk.data.num_rows

    def once(query):
        descriptor = flight.FlightDescriptor.for_command(statement_query(query))
        info = client.get_flight_info(descriptor, options)
        if len(info.endpoints) == 1:
            return drain(info.endpoints[0])
        return sum(pool.map(drain, info.endpoints))

    return once


def adbc_reader(request):
    import adbc_driver_flightsql.dbapi as flight_sql

    kwargs = {}
    if request.get("user"):
        kwargs = {"username": request["user"], "password": request["password"]}
    conn = flight_sql.connect(request["uri"], db_kwargs=kwargs, autocommit=True)

    def once(query):
        with conn.cursor() as cur:
            cur.execute(query)
            rows = 0
            for batch in cur.fetch_record_batch():
                rows += batch.num_rows
            return rows

    return once


READERS = {"pyarrow": pyarrow_reader, "adbc": adbc_reader}


def main():
    readers = {}
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            key = (request["client"], request["uri"])
            if key not in readers:
                readers[key] = READERS[request["client"]](request)
            started = time.perf_counter()
            cpu_started = time.process_time()
            rows = readers[key](request["query"])
            answer = {
                "rows": rows,
                "seconds": time.perf_counter() - started,
                "cpu_seconds": time.process_time() - cpu_started,
            }
        except Exception as e:  # reported to the bench, which stops
            answer = {"error": f"{type(e).__name__}: {e}"}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
