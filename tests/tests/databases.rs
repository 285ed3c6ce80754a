//! Against the machine's real PostgreSQL and MariaDB servers and a SQLite file:
//! type round-trips, pushdown proven from `EXPLAIN`, a four-way cross-source
//! join, hostile filter values, and clear failures. Each test makes its own
//! uniquely named database and drops it afterwards.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::path::Path;
use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use bluelamp_engine::{Engine, ErrorKind, Identity, QueryError};
use bluelamp_tests::fixtures::engine_from_text;
use bluelamp_tests::plans::output_rows;
use bluelamp_tests::services::{
    MariaDatabase, PgDatabase, mariadb_host, mariadb_port, pg_host, pg_port, service_missing,
};
use bluelamp_tests::slt::{rows, session_rows};
use datafusion::parquet::arrow::ArrowWriter;
use futures::TryStreamExt;

/// Hostile but legitimate text values: each must match exactly its own row.
const HOSTILE: &[&str] = &[
    "O'Brien; DROP TABLE people; --",
    "back\\slash",
    "trailing\\",
    "semi;colon",
    "Zoë Ångström – 日本語",
    "100% _wild_",
    "\"double\" quotes",
    "new\nline",
];

fn pg_source(name: &str, db: &str) -> String {
    format!(
        "[[source]]\nname = \"{name}\"\nkind = \"postgres\"\nhost = \"{}\"\nport = {}\nuser = \"postgres\"\ndatabase = \"{db}\"\nsslmode = \"disable\"\n\n",
        pg_host(),
        pg_port()
    )
}

fn mariadb_source(name: &str, db: &str) -> String {
    format!(
        "[[source]]\nname = \"{name}\"\nkind = \"mysql\"\nhost = \"{}\"\nport = {}\nuser = \"root\"\ndatabase = \"{db}\"\nsslmode = \"disabled\"\n\n",
        mariadb_host(),
        mariadb_port()
    )
}

fn sqlite_source(name: &str, path: &Path) -> String {
    format!(
        "[[source]]\nname = \"{name}\"\nkind = \"sqlite\"\npath = \"{}\"\n\n",
        path.display()
    )
}

async fn query(engine: &Engine, sql: &str) -> Result<(SchemaRef, Vec<RecordBatch>), QueryError> {
    let session = engine.session(Identity::new("test", "test"));
    let output = session.sql(sql).await?;
    let batches = output
        .stream
        .try_collect()
        .await
        .map_err(QueryError::from)?;
    Ok((output.schema, batches))
}

async fn query_rows(engine: &Engine, sql: &str) -> Vec<Vec<String>> {
    let (_, batches) = query(engine, sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows(&batches).unwrap()
}

async fn explain(engine: &Engine, sql: &str) -> String {
    query_rows(engine, &format!("EXPLAIN {sql}"))
        .await
        .into_iter()
        .map(|r| r.join(" "))
        .collect::<Vec<_>>()
        .join("\n")
}

fn sql_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Runs `setup` in the test database and starts an engine with it as source
/// `pg`; the directory returned holds the engine's config and must live as
/// long as it.
async fn pg_engine(db: &PgDatabase, setup: &str) -> (Engine, tempfile::TempDir) {
    db.client.batch_execute(setup).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let engine = engine_from_text(&pg_source("pg", &db.name), tmp.path())
        .await
        .unwrap();
    (engine, tmp)
}

async fn pg_or_skip() -> Option<PgDatabase> {
    match PgDatabase::create().await {
        Ok(db) => Some(db),
        Err(e) => {
            service_missing("PostgreSQL", &e);
            None
        }
    }
}

async fn mariadb_or_skip() -> Option<MariaDatabase> {
    match MariaDatabase::create().await {
        Ok(db) => Some(db),
        Err(e) => {
            service_missing("MariaDB", &e);
            None
        }
    }
}

#[tokio::test]
async fn postgres_types_round_trip() {
    let Some(db) = pg_or_skip().await else { return };
    let (engine, _tmp) = pg_engine(&db, "CREATE TABLE types (
                id int2, n int4, big int8, amount numeric(10,2), name text, code varchar(8),
                flag boolean, day date, at timestamp, at_tz timestamptz, ref uuid, doc json, docb jsonb,
                ratio double precision
            );
            INSERT INTO types VALUES
                (1, 2147483647, 9223372036854775807, 12345678.90, 'Zoë', 'AB', true, '2026-10-01',
                 '2026-10-01 12:34:56', '2026-10-01 12:34:56+01', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
                 '{\"k\": 1}', '{\"k\": [1, 2]}', 0.25),
                (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);").await;
    let (schema, batches) = query(&engine, "SELECT * FROM pg.types ORDER BY id")
        .await
        .unwrap();
    let types: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| f.data_type().to_string())
        .collect();
    assert_eq!(types[0], "Int16");
    assert_eq!(types[1], "Int32");
    assert_eq!(types[2], "Int64");
    assert_eq!(types[3], "Decimal128(10, 2)");
    assert_eq!(types[6], "Boolean");
    assert_eq!(types[7], "Date32");
    assert!(
        types[8].starts_with("Timestamp(") && !types[8].contains("UTC") && !types[8].contains("+"),
        "{}",
        types[8]
    );
    assert!(types[9].starts_with("Timestamp("), "{}", types[9]);
    assert_eq!(types[13], "Float64");
    let got = rows(&batches).unwrap();
    assert_eq!(
        got[0],
        vec![
            "1",
            "2147483647",
            "9223372036854775807",
            "12345678.90",
            "Zoë",
            "AB",
            "true",
            "2026-10-01",
            "2026-10-01T12:34:56",
            "2026-10-01T11:34:56Z",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "{\"k\": 1}",
            "{\"k\": [1, 2]}",
            "0.25",
        ]
    );
    assert_eq!(
        got[1][1..].iter().filter(|v| *v == "NULL").count(),
        13,
        "{:?}",
        got[1]
    );
}

#[tokio::test]
async fn mariadb_types_round_trip() {
    let Some(db) = mariadb_or_skip().await else {
        return;
    };
    db.execute(
        "CREATE TABLE types (
            id tinyint, n int, big bigint, amount decimal(10,2), name varchar(40), note text,
            flag boolean, day date, at datetime, stamp timestamp NULL, ref char(36), doc json, ratio double
        );
        INSERT INTO types VALUES
            (1, 2147483647, 9223372036854775807, 12345678.90, 'Zoë', 'long text', true, '2026-10-01',
             '2026-10-01 12:34:56', '2026-10-01 12:34:56', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
             '{\"k\": 1}', 0.25),
            (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);",
    )
    .await
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let engine = engine_from_text(&mariadb_source("maria", &db.name), tmp.path())
        .await
        .unwrap();
    let (schema, batches) = query(&engine, "SELECT * FROM maria.types ORDER BY id")
        .await
        .unwrap();
    let types: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| f.data_type().to_string())
        .collect();
    assert_eq!(types[1], "Int32");
    assert_eq!(types[2], "Int64");
    assert_eq!(types[3], "Decimal128(10, 2)");
    assert_eq!(types[7], "Date32");
    assert!(types[8].starts_with("Timestamp("), "{}", types[8]);
    let got = rows(&batches).unwrap();
    assert_eq!(got[0][0], "1");
    assert_eq!(got[0][1], "2147483647");
    assert_eq!(got[0][2], "9223372036854775807");
    assert_eq!(got[0][3], "12345678.90");
    assert_eq!(got[0][4], "Zoë");
    assert_eq!(got[0][5], "long text");
    assert!(got[0][6] == "1" || got[0][6] == "true", "{}", got[0][6]);
    assert_eq!(got[0][7], "2026-10-01");
    assert!(
        got[0][8].starts_with("2026-10-01T12:34:56"),
        "{}",
        got[0][8]
    );
    assert!(
        got[0][9].starts_with("2026-10-01T12:34:56"),
        "{}",
        got[0][9]
    );
    assert_eq!(got[0][10], "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
    assert!(got[0][11].contains("\"k\""), "{}", got[0][11]);
    assert_eq!(got[0][12], "0.25");
    assert_eq!(
        got[1][1..].iter().filter(|v| *v == "NULL").count(),
        12,
        "{:?}",
        got[1]
    );
}

#[tokio::test]
async fn sqlite_types_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("db.sqlite");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE TABLE types (id INTEGER, amount REAL, name TEXT, flag BOOLEAN, day DATE, at DATETIME);
         INSERT INTO types VALUES (1, 12.5, 'Zoë', 1, '2026-10-01', '2026-10-01 12:34:56');
         INSERT INTO types VALUES (2, NULL, NULL, NULL, NULL, NULL);",
    )
    .unwrap();
    drop(conn);
    let engine = engine_from_text(&sqlite_source("lite", &path), tmp.path())
        .await
        .unwrap();
    let got = query_rows(
        &engine,
        "SELECT id, amount, name, day FROM lite.types ORDER BY id",
    )
    .await;
    assert_eq!(got[0], vec!["1", "12.5", "Zoë", "2026-10-01"]);
    assert_eq!(got[1], vec!["2", "NULL", "NULL", "NULL"]);
}

#[tokio::test]
async fn pushdown_is_visible_in_explain() {
    let Some(pg) = pg_or_skip().await else { return };
    let Some(maria) = mariadb_or_skip().await else {
        return;
    };
    pg.client
        .batch_execute(
            "CREATE TABLE crimes (id int, beat text, offence text);
             CREATE TABLE beats (beat text, area text);
             INSERT INTO crimes SELECT g, 'B' || (g % 5), 'theft' FROM generate_series(1, 100) g;
             INSERT INTO beats VALUES ('B0', 'north'), ('B1', 'south');",
        )
        .await
        .unwrap();
    maria
        .execute("CREATE TABLE crimes (id int, beat varchar(8)); INSERT INTO crimes VALUES (1, 'B1'), (2, 'B2');")
        .await
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let lite = tmp.path().join("lite.sqlite");
    rusqlite::Connection::open(&lite)
        .unwrap()
        .execute_batch(
            "CREATE TABLE crimes (id INTEGER, beat TEXT); INSERT INTO crimes VALUES (1, 'B1');",
        )
        .unwrap();
    let config = format!(
        "{}{}{}",
        pg_source("pg", &pg.name),
        mariadb_source("maria", &maria.name),
        sqlite_source("lite", &lite)
    );
    let engine = engine_from_text(&config, tmp.path()).await.unwrap();

    let sql = "SELECT beat, count(*) AS n FROM pg.crimes WHERE id > 10 GROUP BY beat ORDER BY beat LIMIT 3";
    let plan = explain(&engine, sql).await;
    let remote = plan
        .lines()
        .find(|l| l.contains("sql="))
        .unwrap_or_else(|| panic!("{plan}"));
    assert!(remote.contains("WHERE"), "{remote}");
    assert!(remote.contains("GROUP BY"), "{remote}");
    assert!(remote.contains("LIMIT 3"), "{remote}");
    assert_eq!(
        query_rows(&engine, sql).await,
        vec![vec!["B0", "18"], vec!["B1", "18"], vec!["B2", "18"]]
    );

    // A join between two tables of the same source runs in that source.
    let join = "SELECT b.area, count(*) FROM pg.crimes c JOIN pg.beats b ON b.beat = c.beat GROUP BY b.area";
    let plan = explain(&engine, join).await;
    let remote = plan
        .lines()
        .find(|l| l.contains("sql="))
        .unwrap_or_else(|| panic!("{plan}"));
    assert!(remote.contains("JOIN"), "{remote}");

    // MariaDB groups text by its collation, so text keys are grouped here
    // (see `text_compares_by_bytes_in_every_database`); a number is grouped there.
    for (source, key, value) in [("maria", "id", "1"), ("lite", "beat", "B1")] {
        let sql = format!(
            "SELECT {key}, count(*) FROM {source}.crimes WHERE id = 1 GROUP BY {key} LIMIT 5"
        );
        let plan = explain(&engine, &sql).await;
        let remote = plan
            .lines()
            .find(|l| l.contains("sql="))
            .unwrap_or_else(|| panic!("{plan}"));
        assert!(
            remote.contains("WHERE") && remote.contains("GROUP BY") && remote.contains("LIMIT 5"),
            "{remote}"
        );
        assert_eq!(query_rows(&engine, &sql).await, vec![vec![value, "1"]]);
    }

    // A filter above a cross-source join still reaches each database.
    let cross = "SELECT p.id FROM pg.crimes p JOIN maria.crimes m ON m.id = p.id WHERE m.beat = 'B2' AND p.offence = 'theft'";
    let plan = explain(&engine, cross).await;
    let remote: Vec<&str> = plan.lines().filter(|l| l.contains("sql=")).collect();
    assert_eq!(remote.len(), 2, "{plan}");
    assert!(remote.iter().all(|l| l.contains("WHERE")), "{plan}");
    assert_eq!(query_rows(&engine, cross).await, vec![vec!["2"]]);
}

#[tokio::test]
async fn four_way_cross_source_join() {
    let Some(pg) = pg_or_skip().await else { return };
    let Some(maria) = mariadb_or_skip().await else {
        return;
    };
    // C&C incidents in PostgreSQL, RMS crimes in MariaDB, ANPR reads in Parquet,
    // custody in SQLite.
    pg.client
        .batch_execute(
            "CREATE TABLE incidents (urn text PRIMARY KEY, grade text);
             INSERT INTO incidents VALUES ('U1', 'I'), ('U2', 'S'), ('U3', 'E'), ('U4', 'I');",
        )
        .await
        .unwrap();
    maria
        .execute(
            "CREATE TABLE crimes (crime_reference varchar(20), incident_urn varchar(20), plate varchar(10));
             INSERT INTO crimes VALUES ('C1', 'U1', 'AB12CDE'), ('C2', 'U2', 'XY99ZZZ'), ('C3', 'U3', 'NO11PLT'), ('C4', 'U9', 'AB12CDE');",
        )
        .await
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("anpr")).unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("plate", DataType::Utf8, false),
        Field::new("read_id", DataType::Int64, false),
    ]));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(StringArray::from(vec![
                "AB12CDE", "AB12CDE", "XY99ZZZ", "QQ00QQQ",
            ])),
            Arc::new(Int64Array::from(vec![1, 2, 3, 4])),
        ],
    )
    .unwrap();
    let file = std::fs::File::create(tmp.path().join("anpr/reads.parquet")).unwrap();
    let mut writer = ArrowWriter::try_new(file, schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    let lite = tmp.path().join("custody.sqlite");
    rusqlite::Connection::open(&lite)
        .unwrap()
        .execute_batch(
            "CREATE TABLE custody (crime_reference TEXT, station TEXT);
             INSERT INTO custody VALUES ('C1', 'Central'), ('C2', 'Riverside'), ('C3', 'Northgate');",
        )
        .unwrap();
    let config = format!(
        "{}{}{}[[source]]\nname = \"anpr\"\nkind = \"files\"\nlocation = \"anpr\"\n",
        pg_source("cad", &pg.name),
        mariadb_source("rms", &maria.name),
        sqlite_source("custody", &lite),
    );
    let engine = engine_from_text(&config, tmp.path()).await.unwrap();
    let got = query_rows(
        &engine,
        "SELECT i.urn, i.grade, c.crime_reference, k.station, r.read_id
         FROM cad.incidents i
         JOIN rms.crimes c ON c.incident_urn = i.urn
         JOIN custody.custody k ON k.crime_reference = c.crime_reference
         JOIN anpr.reads r ON r.plate = c.plate
         ORDER BY r.read_id",
    )
    .await;
    assert_eq!(
        got,
        vec![
            vec!["U1", "I", "C1", "Central", "1"],
            vec!["U1", "I", "C1", "Central", "2"],
            vec!["U2", "S", "C2", "Riverside", "3"],
        ]
    );
}

#[tokio::test]
async fn hostile_filter_values_keep_their_meaning() {
    let Some(pg) = pg_or_skip().await else { return };
    let Some(maria) = mariadb_or_skip().await else {
        return;
    };
    pg.client
        .batch_execute("CREATE TABLE people (id int, name text)")
        .await
        .unwrap();
    maria
        .execute("CREATE TABLE people (id int, name varchar(100))")
        .await
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let lite = tmp.path().join("people.sqlite");
    let conn = rusqlite::Connection::open(&lite).unwrap();
    conn.execute_batch("CREATE TABLE people (id INTEGER, name TEXT)")
        .unwrap();
    for (i, value) in HOSTILE.iter().enumerate() {
        let id = i as i32 + 1;
        pg.client
            .execute("INSERT INTO people VALUES ($1, $2)", &[&id, value])
            .await
            .unwrap();
        conn.execute(
            "INSERT INTO people VALUES (?1, ?2)",
            rusqlite::params![id, value],
        )
        .unwrap();
    }
    // MariaDB setup goes through the server's own escaping rules.
    for (i, value) in HOSTILE.iter().enumerate() {
        let escaped = value
            .replace('\\', "\\\\")
            .replace('\'', "''")
            .replace('\n', "\\n");
        maria
            .execute(&format!(
                "INSERT INTO people VALUES ({}, '{escaped}')",
                i + 1
            ))
            .await
            .unwrap();
    }
    let stored = maria
        .query_strings("SELECT name FROM people ORDER BY id")
        .await
        .unwrap();
    assert_eq!(
        stored,
        HOSTILE
            .iter()
            .map(|s| Some(s.to_string()))
            .collect::<Vec<_>>()
    );
    drop(conn);

    let config = format!(
        "{}{}{}",
        pg_source("pg", &pg.name),
        mariadb_source("maria", &maria.name),
        sqlite_source("lite", &lite)
    );
    let engine = engine_from_text(&config, tmp.path()).await.unwrap();
    for source in ["pg", "maria", "lite"] {
        for (i, value) in HOSTILE.iter().enumerate() {
            let sql = format!(
                "SELECT id, name FROM {source}.people WHERE name = {}",
                sql_literal(value)
            );
            let (_, batches) = query(&engine, &sql)
                .await
                .unwrap_or_else(|e| panic!("{source}: {sql}: {e}"));
            let ids: Vec<i64> = batches
                .iter()
                .flat_map(|b| {
                    let col = arrow::compute::cast(b.column(0), &DataType::Int64).unwrap();
                    col.as_any()
                        .downcast_ref::<Int64Array>()
                        .unwrap()
                        .values()
                        .to_vec()
                })
                .collect();
            assert_eq!(
                ids,
                vec![i as i64 + 1],
                "{source}: value {value:?} matched {ids:?}"
            );
        }
        // IN lists with the same values, and nothing was dropped along the way.
        let list = HOSTILE
            .iter()
            .map(|v| sql_literal(v))
            .collect::<Vec<_>>()
            .join(", ");
        let count = query_rows(
            &engine,
            &format!("SELECT count(*) FROM {source}.people WHERE name IN ({list})"),
        )
        .await;
        assert_eq!(count, vec![vec![HOSTILE.len().to_string()]], "{source}");
        // Unaliased expressions computed inside the database keep their values.
        let flags = query_rows(
            &engine,
            &format!(
                "SELECT name = {}, id FROM {source}.people ORDER BY id LIMIT 2",
                sql_literal(HOSTILE[1])
            ),
        )
        .await;
        assert_eq!(
            flags,
            vec![vec!["false", "1"], vec!["true", "2"]],
            "{source}"
        );
    }
}

/// One table `recs`, made from the same `rows` in PostgreSQL, MariaDB and a
/// SQLite file (with each database's column types), and an engine reading
/// them as sources `pg`, `maria` and `lite`. Held together so the databases
/// live as long as the engine.
struct Everywhere {
    engine: Engine,
    _pg: PgDatabase,
    _maria: MariaDatabase,
    _dir: tempfile::TempDir,
}

/// [`Everywhere`], or `None` (said loudly) where a database server is missing.
async fn recs_everywhere(
    pg_columns: &str,
    maria_columns: &str,
    lite_columns: &str,
    rows: &str,
) -> Option<Everywhere> {
    let pg = pg_or_skip().await?;
    let maria = mariadb_or_skip().await?;
    pg.client
        .batch_execute(&format!(
            "CREATE TABLE recs ({pg_columns}); INSERT INTO recs VALUES {rows}"
        ))
        .await
        .unwrap();
    maria
        .execute(&format!("CREATE TABLE recs ({maria_columns})"))
        .await
        .unwrap();
    maria
        .execute(&format!("INSERT INTO recs VALUES {rows}"))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let lite = dir.path().join("recs.sqlite");
    rusqlite::Connection::open(&lite)
        .unwrap()
        .execute_batch(&format!(
            "CREATE TABLE recs ({lite_columns}); INSERT INTO recs VALUES {rows}"
        ))
        .unwrap();
    let config = format!(
        "{}{}{}",
        pg_source("pg", &pg.name),
        mariadb_source("maria", &maria.name),
        sqlite_source("lite", &lite)
    );
    let engine = engine_from_text(&config, dir.path()).await.unwrap();
    Some(Everywhere {
        engine,
        _pg: pg,
        _maria: maria,
        _dir: dir,
    })
}

/// Runs each query (`{s}` standing for the source) against `source` and
/// checks its rows.
async fn check_rows(engine: &Engine, source: &str, cases: &[(&str, &[&[&str]])]) {
    for (template, want) in cases {
        let sql = template.replace("{s}", source);
        let got = query_rows(engine, &sql).await;
        let want: Vec<Vec<String>> = want
            .iter()
            .map(|row| row.iter().map(|v| v.to_string()).collect())
            .collect();
        assert_eq!(got, want, "{source}: {sql}");
    }
}

/// Queries whose result drops the column they sort or limit by, or computes
/// over a limited read (`SELECT station ... ORDER BY seq DESC LIMIT 2`, what
/// a BI tool's preview sends): DataFusion's unparser writes them as an outer
/// SELECT over a derived table, and each database must be sent SQL whose
/// outer names are in scope there.
#[tokio::test]
async fn projections_over_sorts_and_limits_run_in_every_database() {
    let Some(dbs) = recs_everywhere(
        "id int, station text, seq int",
        "id int, station varchar(40), seq int",
        "id INTEGER, station TEXT, seq INTEGER",
        "(1, 'Riverside', 30), (2, 'Central', 10), (3, 'Northgate', 20), (4, NULL, 40)",
    )
    .await
    else {
        return;
    };
    let cases: &[(&str, &[&[&str]])] = &[
        (
            "SELECT station FROM {s}.recs ORDER BY seq DESC LIMIT 2",
            &[&["NULL"], &["Riverside"]],
        ),
        (
            "SELECT upper(station) AS up FROM {s}.recs WHERE id < 4 ORDER BY seq LIMIT 2",
            &[&["CENTRAL"], &["NORTHGATE"]],
        ),
        (
            "SELECT r.id, lower(r.station) AS low FROM {s}.recs r WHERE r.station LIKE '%e' ORDER BY r.id LIMIT 1",
            &[&["1", "riverside"]],
        ),
        (
            "SELECT id * 10 AS tens FROM (SELECT id, seq FROM {s}.recs ORDER BY seq LIMIT 3) AS firsts WHERE seq > 10 ORDER BY tens",
            &[&["10"], &["30"]],
        ),
        (
            "SELECT count(*) AS n, max(id) AS top FROM (SELECT id FROM {s}.recs ORDER BY id LIMIT 3)",
            &[&["3", "3"]],
        ),
    ];
    for source in ["pg", "maria", "lite"] {
        check_rows(&dbs.engine, source, cases).await;
        // It ran inside the database, as one query.
        let plan = explain(
            &dbs.engine,
            &format!("SELECT station FROM {source}.recs ORDER BY seq DESC LIMIT 2"),
        )
        .await;
        assert!(
            plan.contains("VirtualExecutionPlan") && !plan.contains("SortExec"),
            "{source}: {plan}"
        );
    }
}

/// NULLs sort where DataFusion sorts them (last going up, first going down,
/// or as the query says), whichever database sorts: MySQL and MariaDB cannot
/// be told, and by themselves put them the other way round.
#[tokio::test]
async fn nulls_sort_where_datafusion_sorts_them() {
    let Some(dbs) = recs_everywhere(
        "id int, station text",
        "id int, station varchar(40)",
        "id INTEGER, station TEXT",
        "(1, 'Riverside'), (2, 'Central'), (3, 'Northgate'), (4, NULL)",
    )
    .await
    else {
        return;
    };
    let cases: &[(&str, &[&[&str]])] = &[
        (
            "SELECT id FROM {s}.recs ORDER BY station LIMIT 1",
            &[&["2"]],
        ),
        (
            "SELECT id FROM {s}.recs ORDER BY station DESC LIMIT 1",
            &[&["4"]],
        ),
        (
            "SELECT id FROM {s}.recs ORDER BY station NULLS FIRST LIMIT 1",
            &[&["4"]],
        ),
        (
            "SELECT id FROM {s}.recs ORDER BY station DESC NULLS LAST LIMIT 1",
            &[&["1"]],
        ),
        (
            "SELECT upper(station) AS u FROM (SELECT DISTINCT station FROM {s}.recs) ORDER BY u LIMIT 2",
            &[&["CENTRAL"], &["NORTHGATE"]],
        ),
        (
            "SELECT id, rank() OVER (ORDER BY station) AS r FROM {s}.recs ORDER BY id",
            &[&["1", "3"], &["2", "1"], &["3", "2"], &["4", "4"]],
        ),
    ];
    for source in ["pg", "maria", "lite"] {
        check_rows(&dbs.engine, source, cases).await;
    }
}

/// Text compares and sorts by its bytes, as in DataFusion, whichever database
/// holds it: MariaDB's default collation ignores case, accents and trailing
/// spaces, and a SQLite column may be declared `COLLATE NOCASE`.
#[tokio::test]
async fn text_compares_by_bytes_in_every_database() {
    let Some(dbs) = recs_everywhere(
        "id int, station text",
        "id int, station varchar(40)",
        "id INTEGER, station TEXT COLLATE NOCASE",
        "(1, 'Central'), (2, 'central'), (3, 'Central '), (4, 'Zoë'), (5, 'zoe')",
    )
    .await
    else {
        return;
    };
    let compare: &[(&str, &[&[&str]])] = &[
        (
            "SELECT id FROM {s}.recs WHERE station = 'central' ORDER BY id",
            &[&["2"]],
        ),
        (
            "SELECT id FROM {s}.recs WHERE station IN ('Central', 'zoe') ORDER BY id",
            &[&["1"], &["5"]],
        ),
        (
            "SELECT id FROM {s}.recs WHERE station <> 'Central' ORDER BY id",
            &[&["2"], &["3"], &["4"], &["5"]],
        ),
        (
            "SELECT id FROM {s}.recs WHERE station LIKE 'Cent%' ORDER BY id",
            &[&["1"], &["3"]],
        ),
        (
            "SELECT id FROM {s}.recs WHERE station > 'Z' ORDER BY id",
            &[&["2"], &["4"], &["5"]],
        ),
        (
            "SELECT id FROM {s}.recs ORDER BY station LIMIT 3",
            &[&["1"], &["3"], &["4"]],
        ),
        // A comparison that is itself a column keeps its name.
        (
            "SELECT id, station = 'Central' FROM {s}.recs WHERE id < 3 ORDER BY id",
            &[&["1", "true"], &["2", "false"]],
        ),
        (
            "SELECT a.id, b.id AS other FROM {s}.recs a JOIN {s}.recs b ON a.station = b.station ORDER BY a.id",
            &[
                &["1", "1"],
                &["2", "2"],
                &["3", "3"],
                &["4", "4"],
                &["5", "5"],
            ],
        ),
    ];
    // Grouping a NOCASE column in SQLite still merges case (see README).
    let group: &[(&str, &[&[&str]])] = &[
        (
            "SELECT station = 'Central' AS c, count(*) AS n FROM {s}.recs GROUP BY station = 'Central' ORDER BY c",
            &[&["false", "4"], &["true", "1"]],
        ),
        (
            "SELECT count(DISTINCT station) AS n, max(station) AS top FROM {s}.recs",
            &[&["5", "zoe"]],
        ),
        (
            "SELECT station, count(*) AS n FROM {s}.recs GROUP BY station ORDER BY station",
            &[
                &["Central", "1"],
                &["Central ", "1"],
                &["Zoë", "1"],
                &["central", "1"],
                &["zoe", "1"],
            ],
        ),
    ];
    for source in ["pg", "maria", "lite"] {
        check_rows(&dbs.engine, source, compare).await;
    }
    for source in ["pg", "maria"] {
        check_rows(&dbs.engine, source, group).await;
    }
}

/// Functions a database lacks, or has under the same name with another
/// meaning, run in DataFusion over what the database returns; the rest of the
/// query still runs in the database.
#[tokio::test]
async fn functions_a_database_lacks_run_in_datafusion() {
    let Some(dbs) = recs_everywhere(
        "id int, station text, seq int, day date",
        "id int, station varchar(40), seq int, day date",
        "id INTEGER, station TEXT, seq INTEGER, day TEXT",
        "(1, 'Riverside', 30, '2026-10-01'), (2, 'Central', 10, '2026-10-02'), \
         (3, 'Zoë', 20, '2026-11-03'), (4, NULL, 40, '2026-11-04')",
    )
    .await
    else {
        return;
    };
    let cases: &[(&str, &[&[&str]])] = &[
        // Over a sort and limit the database still does.
        (
            "SELECT nvl(station, 'none') AS s FROM {s}.recs ORDER BY seq DESC LIMIT 1",
            &[&["none"]],
        ),
        // A filter the database lacks, beside one it keeps.
        (
            "SELECT id FROM {s}.recs WHERE id > 1 AND nvl(station, 'x') = 'x' ORDER BY id",
            &[&["4"]],
        ),
        (
            "SELECT count(*) AS n FROM {s}.recs WHERE arrow_typeof(id) LIKE 'Int%'",
            &[&["4"]],
        ),
        (
            "SELECT CAST(median(seq) AS INT) AS m FROM {s}.recs",
            &[&["25"]],
        ),
        // DataFusion's aggregate first_value; PostgreSQL's is a window function.
        (
            "SELECT first_value(station ORDER BY seq) AS f FROM {s}.recs",
            &[&["Central"]],
        ),
        // SQLite's own upper() would leave the ë.
        (
            "SELECT upper(station) AS up FROM {s}.recs WHERE id = 3",
            &[&["ZOË"]],
        ),
        (
            "SELECT station, rank() OVER (ORDER BY seq) AS r FROM {s}.recs WHERE id < 3 ORDER BY r",
            &[&["Central", "1"], &["Riverside", "2"]],
        ),
    ];
    for source in ["pg", "maria", "lite"] {
        check_rows(&dbs.engine, source, cases).await;
        let plan = explain(
            &dbs.engine,
            &format!("SELECT nvl(station, 'none') AS s FROM {source}.recs WHERE seq > 15"),
        )
        .await;
        let sent: Vec<&str> = plan
            .lines()
            .filter(|l| l.contains("VirtualExecutionPlan"))
            .collect();
        assert!(
            !sent.is_empty() && sent.iter().all(|l| !l.contains("nvl") && l.contains("15")),
            "{source}: {plan}"
        );
    }
    // PostgreSQL's to_char takes other patterns: it would answer "%6-%m".
    let to_char: &[(&str, &[&[&str]])] = &[(
        "SELECT to_char(day, '%Y-%m') AS m FROM {s}.recs WHERE id = 1",
        &[&["2026-10"]],
    )];
    for source in ["pg", "maria"] {
        check_rows(&dbs.engine, source, to_char).await;
    }
}

#[tokio::test]
async fn failures_name_the_source() {
    let tmp = tempfile::tempdir().unwrap();
    // A source that is down does not stop the others.
    let lite = tmp.path().join("ok.sqlite");
    rusqlite::Connection::open(&lite)
        .unwrap()
        .execute_batch("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1);")
        .unwrap();
    let config = format!(
        "[engine]\nconnect_timeout = \"3s\"\n\n[[source]]\nname = \"down\"\nkind = \"postgres\"\nhost = \"127.0.0.1\"\nport = 1\nuser = \"postgres\"\ndatabase = \"x\"\nsslmode = \"disable\"\n\n{}",
        sqlite_source("ok", &lite)
    );
    let engine = engine_from_text(&config, tmp.path()).await.unwrap();
    assert_eq!(
        query_rows(&engine, "SELECT x FROM ok.t").await,
        vec![vec!["1"]]
    );
    let err = query(&engine, "SELECT * FROM down.anything")
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unavailable);
    assert!(
        err.message
            .starts_with("source 'down' (postgres): unavailable"),
        "{}",
        err.message
    );
    let status = query_rows(
        &engine,
        "SELECT name, status FROM bluelamp.sources ORDER BY name",
    )
    .await;
    assert_eq!(status, vec![vec!["down", "down"], vec!["ok", "up"]]);

    // A missing table names the source and lists what it has.
    let err = query(&engine, "SELECT * FROM ok.nosuch").await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);
    assert!(
        err.message
            .contains("source 'ok' (sqlite) has no table 'nosuch'; its tables are: t"),
        "{}",
        err.message
    );

    // A missing SQLite file is an error, not a new empty database.
    let engine = engine_from_text(
        &sqlite_source("gone", &tmp.path().join("missing.sqlite")),
        tmp.path(),
    )
    .await
    .unwrap();
    let status = engine.sources();
    assert!(
        status[0]
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("does not exist"),
        "{status:?}"
    );
    assert!(!tmp.path().join("missing.sqlite").exists());
}

#[tokio::test]
async fn wrong_password_and_database_are_clear_and_secret_free() {
    let Some(maria) = mariadb_or_skip().await else {
        return;
    };
    let user = format!("bl_{}", &maria.name[maria.name.len() - 12..]);
    maria
        .execute(&format!("CREATE USER '{user}'@'%' IDENTIFIED BY 'right-pass'; GRANT ALL ON {}.* TO '{user}'@'%'", maria.name))
        .await
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let var = "BLUELAMP_TEST_WRONG_PASSWORD";
    // SAFETY: a variable only this test reads, set before any thread reads it.
    #[allow(unsafe_code, reason = "edition 2024 marks set_var unsafe; test-only")]
    unsafe {
        std::env::set_var(var, "Wr0ng-Secret-Value");
    }
    let config = format!(
        "[[source]]\nname = \"rms\"\nkind = \"mysql\"\nhost = \"{}\"\nport = {}\nuser = \"{user}\"\npassword = \"${{{var}}}\"\ndatabase = \"{}\"\nsslmode = \"disabled\"\n",
        mariadb_host(),
        mariadb_port(),
        maria.name
    );
    let engine = engine_from_text(&config, tmp.path()).await.unwrap();
    let error = engine.sources()[0].last_error.clone().unwrap_or_default();
    assert!(error.to_lowercase().contains("password"), "{error}");
    assert!(!error.contains("Wr0ng-Secret-Value"), "{error}");
    let err = query(&engine, "SELECT * FROM rms.people")
        .await
        .unwrap_err();
    assert!(
        err.message.starts_with("source 'rms' (mysql)"),
        "{}",
        err.message
    );
    assert!(
        !err.message.contains("Wr0ng-Secret-Value"),
        "{}",
        err.message
    );
    let _ = maria.execute(&format!("DROP USER '{user}'@'%'")).await;

    let Some(_pg) = pg_or_skip().await else {
        return;
    };
    let engine = engine_from_text(&pg_source("pg", "bluelamp_no_such_database"), tmp.path())
        .await
        .unwrap();
    let error = engine.sources()[0].last_error.clone().unwrap_or_default();
    assert!(
        error.contains("bluelamp_no_such_database") || error.contains("does not exist"),
        "{error}"
    );
}

/// `INSERT` through Bluelamp into `src.notes`, then the rows read back, both
/// through Bluelamp and as the database counts them.
async fn insert_round_trip(engine: &Engine, source: &str) -> Vec<Vec<String>> {
    let values: Vec<String> = HOSTILE
        .iter()
        .enumerate()
        .map(|(i, text)| {
            format!(
                "({}, {}, {}, {}, DATE '2026-10-0{}')",
                i + 1,
                (i as f64) + 0.25,
                sql_literal(text),
                if i % 2 == 0 { "true" } else { "false" },
                i % 9 + 1
            )
        })
        .collect();
    let inserted = query_rows(
        engine,
        &format!(
            "INSERT INTO {source}.notes (id, amount, note, flag, day) VALUES {}, (99, NULL, NULL, NULL, NULL)",
            values.join(", ")
        ),
    )
    .await;
    assert_eq!(inserted, [[(HOSTILE.len() + 1).to_string()]], "{source}");
    // Each hostile value finds exactly its own row again.
    for (i, text) in HOSTILE.iter().enumerate() {
        let got = query_rows(
            engine,
            &format!(
                "SELECT id FROM {source}.notes WHERE note = {}",
                sql_literal(text)
            ),
        )
        .await;
        assert_eq!(got, [[(i + 1).to_string()]], "{source}: {text:?}");
    }
    query_rows(
        engine,
        &format!("SELECT id, amount, note, flag, day FROM {source}.notes ORDER BY id"),
    )
    .await
}

fn check_inserted(source: &str, got: &[Vec<String>]) {
    assert_eq!(got.len(), HOSTILE.len() + 1, "{source}");
    for (i, text) in HOSTILE.iter().enumerate() {
        let row = &got[i];
        assert_eq!(row[0], (i + 1).to_string(), "{source}");
        assert!(row[1].starts_with(&format!("{i}.25")), "{source}: {row:?}");
        assert_eq!(row[2], *text, "{source}");
        assert_eq!(
            row[3],
            if i % 2 == 0 { "true" } else { "false" },
            "{source}"
        );
        assert_eq!(row[4], format!("2026-10-0{}", i % 9 + 1), "{source}");
    }
    assert_eq!(
        got[HOSTILE.len()][1..],
        ["NULL", "NULL", "NULL", "NULL"],
        "{source}"
    );
}

#[tokio::test]
async fn inserts_round_trip_into_postgres() {
    let Some(db) = pg_or_skip().await else { return };
    let (engine, _tmp) = pg_engine(
        &db,
        "CREATE TABLE notes (id int8, amount numeric(10,2), note text, flag boolean, day date)",
    )
    .await;
    let got = insert_round_trip(&engine, "pg").await;
    check_inserted("pg", &got);
    let n: i64 = db
        .client
        .query_one("SELECT count(*) FROM notes", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n as usize, HOSTILE.len() + 1);
}

#[tokio::test]
async fn inserts_round_trip_into_mariadb() {
    let Some(db) = mariadb_or_skip().await else {
        return;
    };
    db.execute(
        "CREATE TABLE notes (id BIGINT, amount DECIMAL(10,2), note TEXT, flag BOOLEAN, day DATE)",
    )
    .await
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let engine = engine_from_text(&mariadb_source("maria", &db.name), tmp.path())
        .await
        .unwrap();
    let got = insert_round_trip(&engine, "maria").await;
    assert_eq!(got.len(), HOSTILE.len() + 1);
    for (i, text) in HOSTILE.iter().enumerate() {
        assert_eq!(got[i][2], *text, "maria");
        // MariaDB's BOOLEAN is TINYINT(1): read back as 1/0.
        assert!(["1", "0", "true", "false"].contains(&got[i][3].as_str()));
    }
}

#[tokio::test]
async fn inserts_round_trip_into_sqlite() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("db.sqlite");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE TABLE notes (id INTEGER, amount REAL, note TEXT, flag BOOLEAN, day DATE);",
    )
    .unwrap();
    drop(conn);
    let engine = engine_from_text(&sqlite_source("lite", &path), tmp.path())
        .await
        .unwrap();
    let got = insert_round_trip(&engine, "lite").await;
    assert_eq!(got.len(), HOSTILE.len() + 1);
    for (i, text) in HOSTILE.iter().enumerate() {
        assert_eq!(got[i][2], *text, "lite");
    }
    let conn = rusqlite::Connection::open(&path).unwrap();
    let n: i64 = conn
        .query_row("SELECT count(*) FROM notes", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n as usize, HOSTILE.len() + 1);
}

/// Reads `source`'s keys: `stations` has a two-column primary key (declared
/// in the other order than its columns) and a unique code, `units` none.
/// A join on the unique code, written around a local table, runs in the
/// database as one query; an insert into the keyed table still goes through.
async fn check_keys(engine: &Engine, source: &str) {
    let session = engine.session(Identity::new("test", "test"));
    assert_eq!(
        session.primary_key(source, "stations").await.unwrap(),
        vec!["num", "district"],
        "{source}"
    );
    assert!(
        session
            .primary_key(source, "units")
            .await
            .unwrap()
            .is_empty(),
        "{source}"
    );

    session_rows(
        &session,
        "CREATE TABLE picked AS SELECT * FROM (VALUES ('U1'), ('U2'), ('U3')) AS t(callsign)",
    )
    .await;
    let joined = format!(
        "SELECT s.name, count(*) FROM {source}.units u, picked p, {source}.stations s \
         WHERE p.callsign = u.callsign AND u.station_code = s.code GROUP BY s.name ORDER BY s.name"
    );
    let remote: Vec<String> = session_rows(&session, &format!("EXPLAIN {joined}"))
        .await
        .concat()
        .iter()
        .flat_map(|cell| cell.lines())
        .filter(|line| line.contains("sql="))
        .map(str::to_string)
        .collect();
    assert_eq!(remote.len(), 1, "{source}: {remote:#?}");
    assert!(
        remote[0].contains("units") && remote[0].contains("stations"),
        "{source}: {remote:#?}"
    );
    assert_eq!(
        session_rows(&session, &joined).await,
        vec![
            vec!["first".to_string(), "2".to_string()],
            vec!["second".to_string(), "1".to_string()],
        ],
        "{source}"
    );

    session_rows(
        &session,
        &format!("INSERT INTO {source}.stations VALUES (9, 1, 'S9', 'new')"),
    )
    .await;
    assert_eq!(
        session_rows(
            &session,
            &format!("SELECT name FROM {source}.stations WHERE num = 1 AND district = 9"),
        )
        .await,
        vec![vec!["new".to_string()]],
        "{source}"
    );
}

const KEYED_TABLES: &str = "CREATE TABLE stations (district int, num int, code varchar(10) UNIQUE, name varchar(40), PRIMARY KEY (num, district));
     INSERT INTO stations VALUES (1, 1, 'S1', 'first'), (1, 2, 'S2', 'second');
     CREATE TABLE units (callsign varchar(10), station_code varchar(10));
     INSERT INTO units VALUES ('U1', 'S1'), ('U2', 'S1'), ('U3', 'S2'), ('U4', 'S2');";

/// MariaDB's primary keys reach `GetPrimaryKeys` (and the join planner).
#[tokio::test]
async fn mariadb_keys_are_read() {
    let Some(db) = mariadb_or_skip().await else {
        return;
    };
    db.execute(KEYED_TABLES).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let engine = engine_from_text(&mariadb_source("maria", &db.name), tmp.path())
        .await
        .unwrap();
    check_keys(&engine, "maria").await;
}

/// SQLite's primary keys reach `GetPrimaryKeys` (and the join planner).
#[tokio::test]
async fn sqlite_keys_are_read() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("db.sqlite");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(KEYED_TABLES).unwrap();
    drop(conn);
    let engine = engine_from_text(&sqlite_source("lite", &path), tmp.path())
        .await
        .unwrap();
    check_keys(&engine, "lite").await;
}

/// A correlated scalar subquery (TPC-H Q2's shape) runs inside PostgreSQL:
/// DataFusion's decorrelation groups by a constant and names the aggregate
/// its own way, which PostgreSQL refuses unless the SQL is repaired.
#[tokio::test]
async fn correlated_subqueries_run_inside_postgres() {
    let Some(db) = pg_or_skip().await else { return };
    let (engine, _tmp) = pg_engine(&db, "CREATE TABLE offers (part int, supplier text, cost numeric(10,2));
             INSERT INTO offers VALUES (1, 'a', 5.00), (1, 'b', 3.50), (2, 'a', 7.25), (2, 'c', 7.25), (3, 'b', 1.00);
             CREATE TABLE quotes (part int, cost numeric(10,2));
             INSERT INTO quotes VALUES (1, 3.50), (1, 9.00), (2, 7.25), (3, 0.50);").await;
    let sql = "SELECT o.part, o.supplier, o.cost FROM pg.offers o \
               WHERE o.cost = (SELECT min(q.cost) FROM pg.quotes q WHERE q.part = o.part) \
               ORDER BY o.part, o.supplier";
    let got = query_rows(&engine, sql).await;
    assert_eq!(
        got,
        [["1", "b", "3.50"], ["2", "a", "7.25"], ["2", "c", "7.25"]]
    );
    // All of it went to PostgreSQL as one statement.
    let plan = explain(&engine, sql).await;
    assert!(plan.contains("min(q.cost)"), "{plan}");
}

/// `NOT IN`, `NOT EXISTS`/`IN` subqueries with their own filters and aliased
/// tables all run inside PostgreSQL and keep SQL's meaning, NULLs included.
#[tokio::test]
async fn subquery_shapes_keep_their_meaning_inside_postgres() {
    let Some(db) = pg_or_skip().await else { return };
    let (engine, _tmp) = pg_engine(
        &db,
        "CREATE TABLE a (x int, tag text);
             INSERT INTO a VALUES (1, 'one'), (2, 'two'), (3, 'three'), (NULL, 'none');
             CREATE TABLE b (y int, keep boolean);
             INSERT INTO b VALUES (1, true), (3, false);
             CREATE TABLE c (y int);
             INSERT INTO c VALUES (1), (NULL);",
    )
    .await;
    // Each answer is PostgreSQL's own for the same statement.
    let cases: &[(&str, &[&[&str]])] = &[
        // A NULL in the subquery: NOT IN keeps nothing.
        (
            "SELECT x FROM pg.a WHERE x NOT IN (SELECT y FROM pg.c) ORDER BY x",
            &[],
        ),
        // No NULL among the y's, but a NULL x: that row is not kept.
        (
            "SELECT x FROM pg.a WHERE x NOT IN (SELECT y FROM pg.b) ORDER BY x",
            &[&["2"]],
        ),
        // The subquery's own filter counts.
        (
            "SELECT x FROM pg.a WHERE x NOT IN (SELECT y FROM pg.b WHERE keep) ORDER BY x",
            &[&["2"], &["3"]],
        ),
        (
            "SELECT x FROM pg.a WHERE x IN (SELECT y FROM pg.b WHERE NOT keep) ORDER BY x",
            &[&["3"]],
        ),
        (
            "SELECT x FROM pg.a WHERE NOT EXISTS (SELECT 1 FROM pg.b WHERE b.y = a.x AND b.keep) ORDER BY x NULLS LAST",
            &[&["2"], &["3"], &["NULL"]],
        ),
        // A filter on an aliased table.
        (
            "SELECT t.tag FROM pg.a t WHERE t.tag = 'two' OR t.tag = 'three' ORDER BY t.tag",
            &[&["three"], &["two"]],
        ),
    ];
    for (sql, want) in cases {
        let got = query_rows(&engine, sql).await;
        let want: Vec<Vec<String>> = want
            .iter()
            .map(|row| row.iter().map(|v| v.to_string()).collect())
            .collect();
        assert_eq!(got, want, "{sql}");
        let plan = explain(&engine, sql).await;
        assert!(plan.contains("VirtualExecutionPlan"), "{sql}: {plan}");
    }
}

/// `NOT IN` keeps its meaning inside MariaDB too, NULLs included.
#[tokio::test]
async fn not_in_keeps_its_meaning_inside_mariadb() {
    let Some(db) = mariadb_or_skip().await else {
        return;
    };
    for sql in [
        "CREATE TABLE a (x int)",
        "INSERT INTO a VALUES (1), (2), (NULL)",
        "CREATE TABLE b (y int, keep boolean)",
        "INSERT INTO b VALUES (1, true), (3, false)",
        "CREATE TABLE c (y int)",
        "INSERT INTO c VALUES (1), (NULL)",
    ] {
        db.execute(sql).await.unwrap();
    }
    let tmp = tempfile::tempdir().unwrap();
    let engine = engine_from_text(&mariadb_source("maria", &db.name), tmp.path())
        .await
        .unwrap();
    let cases: &[(&str, &[&str])] = &[
        (
            "SELECT x FROM maria.a WHERE x NOT IN (SELECT y FROM maria.c) ORDER BY x",
            &[],
        ),
        (
            "SELECT x FROM maria.a WHERE x NOT IN (SELECT y FROM maria.b) ORDER BY x",
            &["2"],
        ),
        (
            "SELECT x FROM maria.a WHERE x NOT IN (SELECT y FROM maria.b WHERE keep = 0) ORDER BY x",
            &["1", "2"],
        ),
    ];
    for (sql, want) in cases {
        let got: Vec<String> = query_rows(&engine, sql)
            .await
            .into_iter()
            .map(|mut row| row.remove(0))
            .collect();
        assert_eq!(got, *want, "{sql}");
    }
}

/// Federated PostgreSQL scans carry PostgreSQL's own row estimate (so joins
/// with them are planned knowing their size), for plain scans, filtered
/// scans under a renamed source, and sub-plans joining two tables.
#[tokio::test]
async fn postgres_estimates_reach_the_join_planner() {
    let Some(db) = pg_or_skip().await else { return };
    let (engine, _tmp) = pg_engine(
        &db,
        "CREATE TABLE stations (id int PRIMARY KEY, name text);
         INSERT INTO stations SELECT i, 'station ' || i FROM generate_series(1, 40) AS i;
         CREATE TABLE calls (id int, station int, priority int);
         INSERT INTO calls SELECT i, i % 40 + 1, i % 5 FROM generate_series(1, 20000) AS i;
         ANALYZE stations; ANALYZE calls;",
    )
    .await;
    let session = engine.session(Identity::new("test", "test"));
    let run = |sql: &'static str| {
        let session = &session;
        async move { session_rows(session, sql).await }
    };
    run("SET datafusion.explain.show_statistics = true").await;
    let rows_estimated = |plan: &[Vec<String>]| -> Vec<String> {
        plan.iter()
            .flat_map(|r| r.iter())
            .flat_map(|cell| cell.lines())
            .filter(|line| {
                line.contains("VirtualExecutionPlan") || line.contains("SchemaCastScanExec")
            })
            .filter_map(|line| {
                let start = line.find("Rows=")?;
                Some(line[start..].split([',', ']']).next()?.to_string())
            })
            .collect()
    };
    let plain = run("EXPLAIN SELECT id, name FROM pg.stations").await;
    assert!(
        rows_estimated(&plain)
            .iter()
            .any(|r| r == "Rows=Inexact(40)"),
        "{plain:?}"
    );
    let filtered = run("EXPLAIN SELECT id FROM pg.calls WHERE priority = 0").await;
    let estimates = rows_estimated(&filtered);
    let n: usize = estimates
        .iter()
        .find_map(|r| {
            r.strip_prefix("Rows=Inexact(")?
                .strip_suffix(')')?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no estimate: {filtered:?}"));
    assert!(
        (3000..=5000).contains(&n),
        "{n} rows estimated for 4000: {filtered:?}"
    );
    let joined = run(
        "EXPLAIN SELECT s.name, count(*) FROM pg.calls c JOIN pg.stations s ON c.station = s.id \
         WHERE s.id <= 4 GROUP BY s.name",
    )
    .await;
    assert!(
        rows_estimated(&joined)
            .iter()
            .any(|r| r.starts_with("Rows=Inexact(")),
        "{joined:?}"
    );
    // The estimate only guides planning: the answers are PostgreSQL's.
    let counted = run(
        "SELECT count(*) FROM pg.calls c JOIN pg.stations s ON c.station = s.id WHERE s.id <= 4",
    )
    .await;
    assert_eq!(counted, vec![vec!["2000".to_string()]]);
}

/// A join's keys reach PostgreSQL: joined with a few local rows, a
/// PostgreSQL table returns only the rows with those keys (EXPLAIN ANALYZE
/// counts what the scan received), and the answer is the same as without.
#[tokio::test]
async fn postgres_scans_receive_the_join_keys() {
    let Some(db) = pg_or_skip().await else { return };
    let (engine, _tmp) = pg_engine(
        &db,
        "CREATE TABLE calls (id int, station int, unit text);
         INSERT INTO calls SELECT i, i % 40 + 1, 'unit ' || (i % 7) FROM generate_series(1, 20000) AS i;
         ANALYZE calls;",
    )
    .await;
    let session = engine.session(Identity::new("test", "test"));
    let run = |sql: String| {
        let session = &session;
        async move { session_rows(session, &sql).await }
    };
    run("CREATE TABLE picked (id int, unit text) AS VALUES (3, 'unit 2'), (7, 'unit 5')".into())
        .await;
    run("CREATE TABLE nobody (id int) AS SELECT 1 WHERE false".into()).await;
    // Rows the PostgreSQL scan delivered, from EXPLAIN ANALYZE.
    let received = |plan: Vec<Vec<String>>| -> usize {
        let text = plan.concat().join("\n");
        output_rows(&text, "SchemaCastScanExec")
            .unwrap_or_else(|| panic!("no database scan row count: {text}"))
    };
    for (join, expected_rows, expected_count) in [
        // Integer keys: stations 3 and 7 have 500 calls each.
        ("c.station = p.id", 1000, "1000"),
        // Text keys, and two keys at once.
        ("c.unit = p.unit", 5714, "5714"),
        // Two keys at once: each column's values (stations 3 and 7, units
        // 2 and 5), though only the pairs (3, 2) and (7, 5) join.
        ("c.station = p.id AND c.unit = p.unit", 287, "143"),
    ] {
        let query = format!("SELECT count(*) FROM pg.calls c JOIN picked p ON {join}");
        let plan = run(format!("EXPLAIN ANALYZE {query}")).await;
        let got = received(plan);
        // (EXPLAIN rounds counts over 1000 to three digits.)
        assert!(
            got <= expected_rows + expected_rows / 100,
            "{join}: PostgreSQL returned {got} rows, the join needs {expected_rows}"
        );
        assert_eq!(
            run(query).await,
            vec![vec![expected_count.to_string()]],
            "{join}"
        );
    }
    // The other side is empty: nothing is read.
    let plan =
        run("EXPLAIN ANALYZE SELECT count(*) FROM pg.calls c JOIN nobody n ON c.id = n.id".into())
            .await;
    assert_eq!(received(plan), 0);
}

/// Results whose columns are all of the types Bluelamp decodes itself are
/// read with a binary COPY: values at the edges of each type, nulls, and
/// enough rows for several batches arrive as PostgreSQL has them.
#[tokio::test]
async fn postgres_binary_copy_reads_every_decoded_type() {
    let Some(db) = pg_or_skip().await else { return };
    let (engine, _tmp) = pg_engine(&db, "CREATE TABLE edges (
                id int4, small int2, big int8, real4 real, ratio float8, amount numeric(12,2),
                wide numeric(30,6), name text, code varchar(8), fixed char(4), flag boolean,
                day date, at timestamp, at_tz timestamptz
            );
            INSERT INTO edges VALUES
                (1, -32768, -9223372036854775808, 1.5, -0.125, -1234567890.05,
                 123456789012345678.000001, 'Zoë ''quoted''', 'AB', 'x', false,
                 '1969-07-20', '1999-12-31 23:59:59.999999', '1970-01-01 00:00:00+00'),
                (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
                (3, 32767, 9223372036854775807, -0.5, 1e300, 0.01, -0.000001, '', '', 'abcd', true,
                 '2100-02-28', '2026-10-01 12:34:56', '2026-10-01 12:34:56+01');
            CREATE TABLE many AS SELECT i AS id, (i * 0.01)::numeric(12,2) AS amount, 'row ' || i AS name
                FROM generate_series(1, 50000) AS i;").await;
    let got = query_rows(&engine, "SELECT * FROM pg.edges ORDER BY id").await;
    assert_eq!(
        got[0],
        [
            "1",
            "-32768",
            "-9223372036854775808",
            "1.5",
            "-0.125",
            "-1234567890.05",
            "123456789012345678.000001",
            "Zoë 'quoted'",
            "AB",
            "x   ",
            "false",
            "1969-07-20",
            "1999-12-31T23:59:59.999999",
            "1970-01-01T00:00:00Z",
        ]
    );
    assert_eq!(
        got[1][1..].iter().filter(|v| *v == "NULL").count(),
        13,
        "{:?}",
        got[1]
    );
    assert_eq!(
        got[2],
        [
            "3",
            "32767",
            "9223372036854775807",
            "-0.5",
            "1e300",
            "0.01",
            "-0.000001",
            "(empty)",
            "(empty)",
            "abcd",
            "true",
            "2100-02-28",
            "2026-10-01T12:34:56",
            "2026-10-01T11:34:56Z",
        ]
    );
    // Many batches: every row once, values intact.
    let totals = query_rows(
        &engine,
        "SELECT count(*), sum(id), sum(amount), count(DISTINCT name) FROM (SELECT id + 0 AS id, amount, name FROM pg.many) AS m",
    )
    .await;
    assert_eq!(
        totals,
        vec![vec!["50000", "1250025000", "12500250.00", "50000"]]
    );
}

/// An error PostgreSQL raises while running a query reaches the user with
/// PostgreSQL's own message, not the client library's bare "db error".
#[tokio::test]
async fn postgres_errors_carry_the_servers_message() {
    let Some(db) = pg_or_skip().await else { return };
    let (engine, _tmp) = pg_engine(
        &db,
        "CREATE TABLE readings (id int4, amount int4);
         INSERT INTO readings VALUES (1, 10), (2, 0);",
    )
    .await;
    let err = query(&engine, "SELECT id / amount AS ratio FROM pg.readings")
        .await
        .unwrap_err();
    assert!(err.message.contains("division by zero"), "{}", err.message);
    assert!(!err.message.contains("db error"), "{}", err.message);
}

/// Joins between one database's tables, written around a local table in the
/// `FROM` list, run inside the database when they cannot multiply rows (each
/// added table joined on its primary key), and stay apart when they could;
/// either way the answer is PostgreSQL's own. The keys themselves reach
/// Flight SQL's `GetPrimaryKeys`.
#[tokio::test]
async fn postgres_joins_on_primary_keys_run_inside_postgres() {
    let Some(db) = pg_or_skip().await else { return };
    let (engine, _tmp) = pg_engine(
        &db,
        "CREATE TABLE districts (id int PRIMARY KEY, name text);
         INSERT INTO districts SELECT i, 'district ' || i FROM generate_series(1, 5) AS i;
         CREATE TABLE stations (id int PRIMARY KEY, name text, district int, code text UNIQUE);
         INSERT INTO stations SELECT i, 'station ' || i, i % 5 + 1, 'S' || i FROM generate_series(1, 40) AS i;
         CREATE TABLE calls (id int PRIMARY KEY, station int, priority int);
         INSERT INTO calls SELECT i, i % 40 + 1, i % 5 FROM generate_series(1, 2000) AS i;
         CREATE TABLE units (station int, station_code text, callsign text);
         INSERT INTO units SELECT i % 40 + 1, 'S' || (i % 40 + 1), 'U' || i FROM generate_series(1, 120) AS i;
         CREATE TABLE picked (call_id int);
         INSERT INTO picked SELECT i * 7 FROM generate_series(1, 250) AS i;
         ANALYZE;",
    )
    .await;
    let session = engine.session(Identity::new("test", "test"));
    let run = |sql: String| {
        let session = &session;
        async move { session_rows(session, &sql).await }
    };
    // `picked` copied into a local table, so it sits between the
    // PostgreSQL tables in the FROM lists below.
    run("CREATE TABLE picked AS SELECT * FROM pg.picked".into()).await;
    let remote_sql = |plan: Vec<Vec<String>>| -> Vec<String> {
        plan.concat()
            .iter()
            .flat_map(|cell| cell.lines())
            .filter(|line| line.contains("sql="))
            .map(str::to_string)
            .collect()
    };
    let reads = |sql: &str, table: &str| sql.contains(&format!("\"public\".\"{table}\""));
    // In PostgreSQL itself, with `picked` there too: the expected answers.
    let expected = |sql: String| {
        let client = &db.client;
        async move {
            client
                .query(sql.as_str(), &[])
                .await
                .unwrap()
                .iter()
                .map(|row| vec![row.get::<_, String>(0), row.get::<_, i64>(1).to_string()])
                .collect::<Vec<_>>()
        }
    };

    // calls → stations (primary key) → districts (primary key): one query.
    let grouped = "SELECT d.name, count(*) FROM pg.calls c, picked p, pg.stations s, pg.districts d \
                   WHERE p.call_id = c.id AND c.station = s.id AND s.district = d.id \
                   GROUP BY d.name";
    let sorted = |mut rows: Vec<Vec<String>>| {
        rows.sort();
        rows
    };
    let sent = remote_sql(run(format!("EXPLAIN {grouped}")).await);
    assert_eq!(sent.len(), 1, "{sent:#?}");
    for table in ["calls", "stations", "districts"] {
        assert!(reads(&sent[0], table), "{sent:#?}");
    }
    assert_eq!(
        sorted(run(grouped.into()).await),
        sorted(expected(grouped.replace("pg.", "")).await)
    );

    // A unique constraint is a key too; and a key equated with the other
    // table through the local one (u.station = p.call_id = s.id) binds it.
    for joined in [
        "p.call_id = u.station AND u.station_code = s.code",
        "p.call_id = u.station AND p.call_id = s.id",
    ] {
        let query = format!(
            "SELECT s.name, count(*) FROM pg.units u, picked p, pg.stations s \
             WHERE {joined} GROUP BY s.name"
        );
        let sent = remote_sql(run(format!("EXPLAIN {query}")).await);
        assert_eq!(sent.len(), 1, "{joined}: {sent:#?}");
        assert!(
            reads(&sent[0], "units") && reads(&sent[0], "stations"),
            "{joined}: {sent:#?}"
        );
        assert_eq!(
            sorted(run(query.clone()).await),
            sorted(expected(query.replace("pg.", "")).await),
            "{joined}"
        );
    }

    // calls and units share only `station`, a key of neither: joined in
    // PostgreSQL they could multiply rows, so each is read on its own.
    let apart = "SELECT u.callsign, count(*) FROM pg.calls c, picked p, pg.units u \
                 WHERE p.call_id = c.id AND c.station = u.station \
                 GROUP BY u.callsign";
    let sent = remote_sql(run(format!("EXPLAIN {apart}")).await);
    assert_eq!(sent.len(), 2, "{sent:#?}");
    assert!(
        sent.iter()
            .all(|sql| !(reads(sql, "calls") && reads(sql, "units"))),
        "{sent:#?}"
    );
    assert_eq!(
        sorted(run(apart.into()).await),
        sorted(expected(apart.replace("pg.", "")).await)
    );

    assert_eq!(
        session.primary_key("pg", "stations").await.unwrap(),
        vec!["id"]
    );
    assert!(session.primary_key("pg", "units").await.unwrap().is_empty());
}

/// `SET bluelamp.deposit_mode = 'validate'` on `source.keyed (id PRIMARY
/// KEY, note)`: valid rows are recorded as validated and nothing is sent; a
/// statement repeating a key is refused naming the row. Returns the outcomes
/// `bluelamp.deposits` shows.
async fn dry_run(engine: &Engine, source: &str) -> Vec<Vec<String>> {
    let session = engine.session(Identity::new("test", "test"));
    let run = |sql: String| {
        let session = &session;
        async move {
            let output = session.sql(&sql).await?;
            let batches: Vec<RecordBatch> = output
                .stream
                .try_collect()
                .await
                .map_err(QueryError::from)?;
            Ok::<_, QueryError>(rows(&batches).unwrap())
        }
    };
    run("SET bluelamp.deposit_mode = 'validate'".into())
        .await
        .unwrap();
    let sent = run(format!(
        "INSERT INTO {source}.keyed (id, note) VALUES (1, 'one'), (2, 'two')"
    ))
    .await
    .unwrap();
    assert_eq!(sent, [["0"]], "{source}: a dry run stores nothing");
    let e = run(format!(
        "INSERT INTO {source}.keyed (id, note) VALUES (3, 'three'), (3, 'again')"
    ))
    .await
    .unwrap_err();
    assert!(
        e.message.contains("row 2: key (id) = (3) repeats row 1"),
        "{source}: {e}"
    );
    assert!(e.message.contains("nothing was sent"), "{source}: {e}");
    run("SELECT statement, row, outcome FROM bluelamp.deposits ORDER BY statement, row".into())
        .await
        .unwrap()
}

fn check_dry_run(source: &str, outcomes: &[Vec<String>]) {
    let outcomes: Vec<Vec<&str>> = outcomes
        .iter()
        .map(|r| r.iter().map(String::as_str).collect())
        .collect();
    assert_eq!(
        outcomes,
        [
            ["1", "1", "validated"],
            ["1", "2", "validated"],
            ["2", "1", "validated"],
            ["2", "2", "invalid"]
        ],
        "{source}"
    );
}

#[tokio::test]
async fn validate_mode_sends_nothing_to_postgres() {
    let Some(db) = pg_or_skip().await else { return };
    let (engine, _tmp) = pg_engine(&db, "CREATE TABLE keyed (id int PRIMARY KEY, note text)").await;
    check_dry_run("pg", &dry_run(&engine, "pg").await);
    let n: i64 = db
        .client
        .query_one("SELECT count(*) FROM keyed", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "nothing reached PostgreSQL");
}

#[tokio::test]
async fn validate_mode_sends_nothing_to_mariadb() {
    let Some(db) = mariadb_or_skip().await else {
        return;
    };
    db.execute("CREATE TABLE keyed (id INT PRIMARY KEY, note TEXT)")
        .await
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let engine = engine_from_text(&mariadb_source("maria", &db.name), tmp.path())
        .await
        .unwrap();
    check_dry_run("maria", &dry_run(&engine, "maria").await);
    let n = db
        .query_strings("SELECT count(*) FROM keyed")
        .await
        .unwrap();
    assert_eq!(n, [Some("0".to_string())], "nothing reached MariaDB");
}

#[tokio::test]
async fn validate_mode_sends_nothing_to_sqlite() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("db.sqlite");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("CREATE TABLE keyed (id INTEGER PRIMARY KEY, note TEXT);")
        .unwrap();
    drop(conn);
    let engine = engine_from_text(&sqlite_source("lite", &path), tmp.path())
        .await
        .unwrap();
    check_dry_run("lite", &dry_run(&engine, "lite").await);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let n: i64 = conn
        .query_row("SELECT count(*) FROM keyed", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 0, "nothing reached SQLite");
}

/// Views are tables too, in every database: the PostgreSQL and SQLite
/// connections of `datafusion-table-providers` list tables only, so these
/// sources list relations themselves (`connectors/src/sql/upstream/views.rs`).
#[tokio::test]
async fn views_are_tables_in_every_database() {
    let views = [
        "CREATE TABLE calls (id int, grade text)",
        "INSERT INTO calls VALUES (1, 'A'), (2, 'B'), (3, 'A')",
        "CREATE VIEW urgent AS SELECT id FROM calls WHERE grade = 'A'",
    ];
    let expected = vec![vec!["1".to_string()], vec!["3".to_string()]];
    if let Some(db) = pg_or_skip().await {
        let setup = format!(
            "{}; CREATE MATERIALIZED VIEW graded AS SELECT grade, count(*) AS n FROM calls GROUP BY grade",
            views.join("; ")
        );
        let (engine, _tmp) = pg_engine(&db, &setup).await;
        assert_eq!(
            query_rows(&engine, "SELECT id FROM pg.urgent ORDER BY id").await,
            expected
        );
        assert_eq!(
            query_rows(&engine, "SELECT n FROM pg.graded WHERE grade = 'A'").await,
            vec![vec!["2".to_string()]]
        );
    }
    if let Some(db) = mariadb_or_skip().await {
        for statement in views {
            db.execute(statement).await.unwrap();
        }
        let tmp = tempfile::tempdir().unwrap();
        let engine = engine_from_text(&mariadb_source("maria", &db.name), tmp.path())
            .await
            .unwrap();
        assert_eq!(
            query_rows(&engine, "SELECT id FROM maria.urgent ORDER BY id").await,
            expected
        );
    }
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("db.sqlite");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(&format!("{};", views.join("; ")))
        .unwrap();
    drop(conn);
    let engine = engine_from_text(&sqlite_source("lite", &path), tmp.path())
        .await
        .unwrap();
    assert_eq!(
        query_rows(&engine, "SELECT id FROM lite.urgent ORDER BY id").await,
        expected
    );
}

/// A `HAVING` over a scalar subquery (TPC-H Q11's shape), planned as a
/// cluster plans it (the subquery decorrelated into a join): the unparser
/// would write the join over the grouped aggregate without its `GROUP BY`,
/// so the join runs in DataFusion over the two sides, each sent to
/// PostgreSQL on its own, and the answer is the one-process answer.
#[tokio::test]
async fn a_having_over_a_scalar_subquery_answers_when_decorrelated() {
    let Some(db) = pg_or_skip().await else {
        return;
    };
    let (engine, _dir) = pg_engine(
        &db,
        "CREATE TABLE stock (part int, supplier int, qty int, cost numeric(10, 2));
         INSERT INTO stock SELECT g % 40, g % 7, 1 + g % 13, (g % 17) + 0.5
           FROM generate_series(1, 2000) g;",
    )
    .await;
    let sql = "SELECT part, sum(cost * qty) AS value FROM pg.stock WHERE supplier <> 3 \
               GROUP BY part HAVING sum(cost * qty) > \
               (SELECT sum(cost * qty) * 0.026 FROM pg.stock WHERE supplier <> 3) \
               ORDER BY value DESC, part";
    let kept = query_rows(&engine, sql).await;
    assert!(kept.len() > 3 && kept.len() < 40, "{kept:?}");
    let session = engine.session(Identity::new("test", "test"));
    session_rows(
        &session,
        "SET datafusion.optimizer.enable_physical_uncorrelated_scalar_subquery = false",
    )
    .await;
    let decorrelated = session_rows(&session, sql).await;
    assert_eq!(decorrelated, kept);
}
