"""The PostgreSQL protocol through real Python clients: psycopg 3 (binary
results), asyncpg (the binary protocol throughout), and SQLAlchemy with
pandas' read_sql.

Run by tests/tests/postgres_clients.rs, which starts Bluelamp over a folder
of 300 incidents (grades A, B, C in turn; every fourth closed) and passes
where to connect in the environment:

    BLUELAMP_PG_PORT       a server without TLS
    BLUELAMP_PG_TLS_PORT   a server that accepts only TLS
    BLUELAMP_PG_USER       user name (password "demo")
"""

import asyncio
import datetime as dt
import decimal
import os
import threading
import time

import asyncpg
import pandas as pd
import psycopg
import pytest
import sqlalchemy

PORT = int(os.environ["BLUELAMP_PG_PORT"])
TLS_PORT = int(os.environ["BLUELAMP_PG_TLS_PORT"])
USER = os.environ["BLUELAMP_PG_USER"]
PASSWORD = "demo"
LONG_QUERY = "SELECT max(value % 7) FROM range(100000000000)"

# One value of every type Bluelamp sends, and what a client must read.
TYPES_SQL = """
SELECT true AS b,
       CAST(-7 AS SMALLINT) AS i2,
       CAST(123456 AS INT) AS i4,
       CAST(-9007199254740993 AS BIGINT) AS i8,
       CAST(1.5 AS REAL) AS f4,
       CAST(-0.1 AS DOUBLE) AS f8,
       CAST(-12345.678 AS DECIMAL(12,3)) AS num,
       'café' AS t,
       X'00ff10' AS by,
       DATE '2024-02-29' AS d,
       TIME '13:14:15.5' AS tm,
       TIMESTAMP '2024-01-02 03:04:05.123456' AS ts,
       arrow_cast(TIMESTAMP '2024-06-01 12:00:00', 'Timestamp(Microsecond, Some("UTC"))') AS tstz,
       INTERVAL '1 day 2 hours' AS iv,
       make_array(1, 2) AS l,
       CAST(NULL AS INT) AS n
"""
EXPECTED = {
    "b": True,
    "i2": -7,
    "i4": 123456,
    "i8": -9007199254740993,
    "f4": 1.5,
    "f8": -0.1,
    "num": decimal.Decimal("-12345.678"),
    "t": "café",
    "by": b"\x00\xff\x10",
    "d": dt.date(2024, 2, 29),
    "tm": dt.time(13, 14, 15, 500000),
    "ts": dt.datetime(2024, 1, 2, 3, 4, 5, 123456),
    "tstz": dt.datetime(2024, 6, 1, 12, 0, tzinfo=dt.timezone.utc),
    "iv": dt.timedelta(days=1, hours=2),
    "l": [1, 2],
    "n": None,
}


def conninfo(port=PORT, user=USER, password=PASSWORD, sslmode="disable"):
    return (
        f"host=127.0.0.1 port={port} user={user} password={password} "
        f"dbname=bluelamp sslmode={sslmode} connect_timeout=10"
    )


# ---- psycopg 3 ----


def test_psycopg_parameters_and_every_type_in_binary():
    with psycopg.connect(conninfo(), autocommit=True) as conn:
        cur = conn.cursor(binary=True)
        cur.execute(
            "SELECT count(*) FROM cad.incidents WHERE grade = %s AND closed = %s",
            ["A", True],
        )
        assert cur.fetchone() == (25,)
        cur.execute(TYPES_SQL)
        row = cur.fetchone()
        names = [c.name for c in cur.description]
        assert dict(zip(names, row)) == EXPECTED
        # Text results read the same.
        text = conn.cursor(binary=False)
        text.execute(TYPES_SQL)
        assert dict(zip(names, text.fetchone())) == EXPECTED


def test_psycopg_server_side_cursor_streams_in_chunks():
    # A named cursor: DECLARE ... CURSOR, then FETCH FORWARD n, in a transaction.
    with psycopg.connect(conninfo()) as conn:
        with conn.cursor(name="incidents", binary=True) as cur:
            cur.itersize = 64
            cur.execute(
                "SELECT urn, closed FROM cad.incidents WHERE grade = %s ORDER BY urn",
                ["A"],
            )
            first = cur.fetchmany(10)
            assert [r[0] for r in first] == [f"XY-{i:05}" for i in range(0, 30, 3)]
            assert first[0] == ("XY-00000", True)
            open_cursors = conn.execute("SELECT name, is_binary FROM pg_cursors").fetchall()
            # Declared without BINARY: psycopg asks for binary rows in each FETCH.
            assert open_cursors == [("incidents", False)]
            rest = list(cur)
            assert len(rest) == 90
            assert rest[-1] == ("XY-00297", False)
    # A cursor outside a transaction block needs WITH HOLD.
    with psycopg.connect(conninfo(), autocommit=True) as conn:
        with pytest.raises(psycopg.Error) as e:
            conn.execute('DECLARE "c" CURSOR FOR SELECT 1')
        assert e.value.sqlstate == "25P01"
        conn.execute('DECLARE "c" CURSOR WITH HOLD FOR SELECT urn FROM cad.incidents ORDER BY urn')
        assert conn.execute('FETCH 2 FROM "c"').fetchall() == [("XY-00000",), ("XY-00001",)]
        conn.execute('CLOSE "c"')
        with pytest.raises(psycopg.Error) as e:
            conn.execute('FETCH 2 FROM "c"')
        assert e.value.sqlstate == "34000"


def test_psycopg_errors_carry_sqlstates():
    with psycopg.connect(conninfo(), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.SyntaxError) as e:
            conn.execute("SELEC 1")
        assert e.value.sqlstate == "42601"
        with pytest.raises(psycopg.errors.UndefinedTable) as e:
            conn.execute("SELECT * FROM cad.nope")
        assert e.value.sqlstate == "42P01"
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_psycopg_wrong_password():
    with pytest.raises(psycopg.OperationalError) as e:
        psycopg.connect(conninfo(password="wrong"))
    assert "password authentication failed" in str(e.value)


def test_psycopg_cancel():
    with psycopg.connect(conninfo(), autocommit=True) as conn:
        timer = threading.Timer(0.7, conn.cancel)
        timer.start()
        started = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled) as e:
            conn.execute(LONG_QUERY)
        assert e.value.sqlstate == "57014"
        assert time.monotonic() - started < 30
        assert conn.execute("SELECT 2").fetchone() == (2,)


def test_psycopg_tls_required():
    with psycopg.connect(conninfo(port=TLS_PORT, sslmode="require")) as conn:
        assert conn.info.pgconn.ssl_in_use
        assert conn.execute("SELECT 3").fetchone() == (3,)
    with pytest.raises(psycopg.OperationalError) as e:
        psycopg.connect(conninfo(port=TLS_PORT, sslmode="disable"))
    assert "accepts only TLS connections" in str(e.value)


# ---- asyncpg ----


async def asyncpg_connect(port=PORT, password=PASSWORD, ssl=False):
    return await asyncpg.connect(
        host="127.0.0.1",
        port=port,
        user=USER,
        password=password,
        database="bluelamp",
        ssl=ssl,
        timeout=10,
    )


def test_asyncpg_parameters_types_errors_and_cancel():
    async def run():
        conn = await asyncpg_connect()
        try:
            n = await conn.fetchval(
                "SELECT count(*) FROM cad.incidents WHERE grade = $1 AND closed = $2",
                "B",
                True,
            )
            assert n == 25
            row = await conn.fetchrow(TYPES_SQL)
            got = dict(row)
            # asyncpg reads json as text.
            assert got.pop("l") == "[1,2]"
            expected = dict(EXPECTED)
            expected.pop("l")
            assert got == expected
            with pytest.raises(asyncpg.PostgresSyntaxError) as e:
                await conn.fetch("SELEC 1")
            assert e.value.sqlstate == "42601"
            with pytest.raises(asyncpg.UndefinedTableError):
                await conn.fetch("SELECT * FROM cad.nope")
            # A timeout makes asyncpg send a CancelRequest; the statement
            # ends and the connection is usable at once.
            started = time.monotonic()
            with pytest.raises(asyncio.TimeoutError):
                await conn.fetch(LONG_QUERY, timeout=0.7)
            assert time.monotonic() - started < 30
            assert await conn.fetchval("SELECT 4") == 4
        finally:
            await conn.close()
        with pytest.raises(asyncpg.InvalidPasswordError) as e:
            await asyncpg_connect(password="wrong")
        assert e.value.sqlstate == "28P01"
        conn = await asyncpg_connect(port=TLS_PORT, ssl="require")
        assert await conn.fetchval("SELECT 5") == 5
        await conn.close()

    asyncio.run(run())


# ---- SQLAlchemy and pandas ----


def test_sqlalchemy_inspects_and_pandas_reads():
    engine = sqlalchemy.create_engine(
        f"postgresql+psycopg://{USER}:{PASSWORD}@127.0.0.1:{PORT}/bluelamp"
    )
    try:
        inspector = sqlalchemy.inspect(engine)
        assert "cad" in inspector.get_schema_names()
        assert inspector.get_table_names(schema="cad") == ["incidents"]
        columns = {c["name"]: str(c["type"]) for c in inspector.get_columns("incidents", schema="cad")}
        assert columns == {
            "urn": "TEXT",
            "grade": "TEXT",
            "station": "TEXT",
            "closed": "BOOLEAN",
        }
        # Streamed results (a server-side cursor) read a chunk at a time.
        with engine.connect().execution_options(stream_results=True) as conn:
            chunks = list(
                pd.read_sql("SELECT urn FROM cad.incidents ORDER BY urn", conn, chunksize=128)
            )
        assert [len(c) for c in chunks] == [128, 128, 44]
        assert chunks[2]["urn"].iloc[-1] == "XY-00299"
        frame = pd.read_sql(
            sqlalchemy.text(
                "SELECT grade, count(*) AS n FROM cad.incidents "
                "WHERE closed = :closed GROUP BY grade ORDER BY grade"
            ),
            engine,
            params={"closed": False},
        )
        assert frame.to_dict("records") == [
            {"grade": "A", "n": 75},
            {"grade": "B", "n": 75},
            {"grade": "C", "n": 75},
        ]
        # Every type, through pandas (numeric kept exact as Decimal).
        frame = pd.read_sql(TYPES_SQL, engine, coerce_float=False)
        got = frame.to_dict("records")[0]
        assert got["i8"] == EXPECTED["i8"] and got["num"] == EXPECTED["num"]
        assert got["ts"] == pd.Timestamp(EXPECTED["ts"])
        assert got["tstz"] == pd.Timestamp(EXPECTED["tstz"])
        assert got["by"] == EXPECTED["by"] and got["l"] == EXPECTED["l"]
        assert pd.isna(got["n"])
        # Errors keep their SQLSTATE through SQLAlchemy.
        with engine.connect() as conn:
            with pytest.raises(sqlalchemy.exc.ProgrammingError) as e:
                conn.execute(sqlalchemy.text("SELECT * FROM cad.nope"))
            assert e.value.orig.sqlstate == "42P01"
    finally:
        engine.dispose()
    wrong = sqlalchemy.create_engine(
        f"postgresql+psycopg://{USER}:wrong@127.0.0.1:{PORT}/bluelamp"
    )
    with pytest.raises(sqlalchemy.exc.OperationalError) as e:
        wrong.connect()
    assert "password authentication failed" in str(e.value)
    tls = sqlalchemy.create_engine(
        f"postgresql+psycopg://{USER}:{PASSWORD}@127.0.0.1:{TLS_PORT}/bluelamp",
        connect_args={"sslmode": "require"},
    )
    try:
        assert pd.read_sql("SELECT count(*) AS n FROM cad.incidents", tls)["n"][0] == 300
    finally:
        tls.dispose()
