"""The Flight SQL endpoint through a real client: the ADBC Flight SQL driver
(the Go driver BI tools and notebooks use) and pyarrow.

Run by tests/tests/adbc.rs, which starts the demo force and the endpoint and
passes where to connect in the environment:

    BLUELAMP_FLIGHT_URI       grpc://127.0.0.1:PORT
    BLUELAMP_FLIGHT_USER      user name
    BLUELAMP_FLIGHT_PASSWORD  password
    BLUELAMP_EXPECT_JOIN      JSON: {"day_crimes": N, "urn": "...", "urn_crimes": [...]}
"""

import json
import os
import threading
import time

import adbc_driver_flightsql.dbapi as flight_sql
import adbc_driver_manager
import pyarrow as pa
import pytest

URI = os.environ["BLUELAMP_FLIGHT_URI"]
USER = os.environ["BLUELAMP_FLIGHT_USER"]
PASSWORD = os.environ["BLUELAMP_FLIGHT_PASSWORD"]
EXPECT = json.loads(os.environ["BLUELAMP_EXPECT_JOIN"])

DAY_JOIN = """
SELECT i.urn, i.grade, c.crime_reference, c.offence
FROM cad.incidents i JOIN rms.crimes c ON c.incident_urn = i.urn
WHERE i.opened_at >= TIMESTAMP '2026-10-07T00:00:00Z'
  AND i.opened_at <  TIMESTAMP '2026-10-08T00:00:00Z'
ORDER BY c.crime_reference
"""


def connect(user=USER, password=PASSWORD):
    return flight_sql.connect(
        URI, db_kwargs={"username": user, "password": password}, autocommit=True
    )


@pytest.fixture(scope="module")
def conn():
    with connect() as c:
        yield c


def test_cross_source_join_as_arrow_table(conn):
    with conn.cursor() as cur:
        cur.execute(DAY_JOIN)
        table = cur.fetch_arrow_table()
    assert isinstance(table, pa.Table)
    assert table.num_rows == EXPECT["day_crimes"]
    assert table.column_names == ["urn", "grade", "crime_reference", "offence"]
    assert table.schema.field("urn").type == pa.string()
    refs = table.column("crime_reference").to_pylist()
    assert refs == sorted(refs)


def test_get_objects_at_every_depth(conn):
    catalogs = conn.adbc_get_objects(depth="catalogs").read_all().to_pylist()
    assert [c["catalog_name"] for c in catalogs] == ["bluelamp"]

    schemas = conn.adbc_get_objects(depth="db_schemas").read_all().to_pylist()
    names = {s["db_schema_name"] for c in schemas for s in c["catalog_db_schemas"]}
    assert {"cad", "rms", "stops", "custody", "anpr", "information_schema"} <= names

    tables = conn.adbc_get_objects(
        depth="tables", db_schema_filter="cad"
    ).read_all().to_pylist()
    cad = [s for c in tables for s in c["catalog_db_schemas"]]
    assert [s["db_schema_name"] for s in cad] == ["cad"]
    table_names = {t["table_name"] for t in cad[0]["db_schema_tables"]}
    assert {"incidents", "incident_log", "incident_assignments"} <= table_names
    assert all(t["table_type"] == "BASE TABLE" for t in cad[0]["db_schema_tables"])

    columns = conn.adbc_get_objects(
        depth="columns", db_schema_filter="rms", table_name_filter="crimes"
    ).read_all().to_pylist()
    crimes = [t for c in columns for s in c["catalog_db_schemas"] for t in s["db_schema_tables"]]
    assert [t["table_name"] for t in crimes] == ["crimes"]
    cols = [col["column_name"] for col in crimes[0]["table_columns"]]
    assert cols[:2] == ["crime_reference", "incident_urn"]
    positions = [col["ordinal_position"] for col in crimes[0]["table_columns"]]
    assert positions == list(range(1, len(cols) + 1))

    everything = conn.adbc_get_objects(depth="all").read_all()
    assert everything.num_rows == 1


def test_get_table_schema(conn):
    schema = conn.adbc_get_table_schema(
        "incidents", catalog_filter="bluelamp", db_schema_filter="cad"
    )
    assert schema.field("urn").type == pa.string()
    assert pa.types.is_timestamp(schema.field("opened_at").type)
    assert schema.field("opened_at").type.tz == "UTC"
    with pytest.raises(adbc_driver_manager.Error):
        conn.adbc_get_table_schema("no_such_table", db_schema_filter="cad")


def test_get_table_types(conn):
    types = conn.adbc_get_table_types()
    assert set(types) == {"BASE TABLE", "LOCAL TEMPORARY", "VIEW"}


def test_prepared_statement_with_parameters(conn):
    with conn.cursor() as cur:
        sql = (
            "SELECT crime_reference FROM rms.crimes "
            "WHERE incident_urn = $1 ORDER BY crime_reference"
        )
        cur.execute(sql, parameters=(EXPECT["urn"],))
        got = [r[0] for r in cur.fetchall()]
        assert got == EXPECT["urn_crimes"]
        # The same statement again with another value.
        cur.execute(sql, parameters=("CAD-00000000-00000",))
        assert cur.fetchall() == []


def test_insert_through_execute_update(conn):
    with conn.cursor() as cur:
        stmt = cur.adbc_statement
        stmt.set_sql_query("CREATE TABLE followups (urn VARCHAR, note VARCHAR)")
        stmt.execute_update()
        stmt.set_sql_query(
            "INSERT INTO followups SELECT urn, 'check CCTV' FROM cad.incidents "
            "WHERE opened_at >= TIMESTAMP '2026-10-07T00:00:00Z' "
            "AND opened_at < TIMESTAMP '2026-10-07T06:00:00Z'"
        )
        inserted = stmt.execute_update()
        assert inserted > 0
        cur.execute("SELECT count(*) AS n FROM followups")
        assert cur.fetchone()[0] == inserted


def test_bad_sql_message_reaches_the_client(conn):
    with conn.cursor() as cur:
        with pytest.raises(adbc_driver_manager.Error) as info:
            cur.execute("SELEC urn FROM cad.incidents")
    message = str(info.value)
    assert "SELEC" in message
    assert "InvalidArgument" in message or "INVALID_ARGUMENT" in message


def test_unknown_table_is_not_found(conn):
    with conn.cursor() as cur:
        with pytest.raises(adbc_driver_manager.Error) as info:
            cur.execute("SELECT * FROM cad.no_such_table")
    message = str(info.value)
    assert "NotFound" in message or "NOT_FOUND" in message, message


def test_wrong_password_is_refused():
    with pytest.raises(adbc_driver_manager.Error) as info:
        with connect(password="not-the-password") as c:
            with c.cursor() as cur:
                cur.execute("SELECT 1")
                cur.fetchall()
    message = str(info.value)
    assert "Unauthenticated" in message or "UNAUTHENTICATED" in message, message
    assert "not-the-password" not in message


def test_cancel_a_long_query(conn):
    outcome = {}

    with conn.cursor() as cur:

        def run():
            started = time.monotonic()
            try:
                cur.execute("SELECT sum(value) FROM range(0, 100000000000)")
                outcome["rows"] = cur.fetchall()
            except Exception as e:  # noqa: BLE001 - the error is the point
                outcome["error"] = e
            outcome["seconds"] = time.monotonic() - started

        worker = threading.Thread(target=run)
        worker.start()
        time.sleep(1.0)
        cur.adbc_cancel()
        worker.join(timeout=30)
        assert not worker.is_alive(), "the query was not cancelled"
    assert "error" in outcome, outcome
    assert "cancel" in str(outcome["error"]).lower(), outcome["error"]
    # The server is still healthy after a cancellation.
    with conn.cursor() as cur:
        cur.execute("SELECT 1 AS one")
        assert cur.fetchall() == [(1,)]


def test_deposit_and_its_outcome_over_flight_sql(conn):
    with conn.cursor() as cur:
        stmt = cur.adbc_statement
        stmt.set_sql_query(
            "INSERT INTO rms.crimes (incident_urn, offence_code, offence, recorded_at, status) "
            "SELECT 'CAD-20261230-00001', '049/00', 'Other theft', "
            "TIMESTAMP '2026-12-30T10:00:00Z', 'under investigation'"
        )
        assert stmt.execute_update() == 1
        cur.execute(
            "SELECT outcome, http_status, identifier FROM bluelamp.deposits "
            "WHERE target = 'rms.crimes' ORDER BY statement DESC, row LIMIT 1"
        )
        outcome, status, identifier = cur.fetchone()
    assert (outcome, status) == ("stored", 201)
    assert identifier.startswith("CRN/26/")
    with conn.cursor() as cur:
        cur.execute(
            "SELECT crime_reference FROM rms.crimes WHERE incident_urn = 'CAD-20261230-00001'"
        )
        assert cur.fetchall() == [(identifier,)]
