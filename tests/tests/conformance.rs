//! The connector conformance suite (`bluelamp_tests::conformance`) over
//! every connector: files (Parquet, CSV, NDJSON), SQLite, PostgreSQL,
//! MariaDB, OpenAPI (a fixture server serving the same rows) and Flight SQL
//! (another Bluelamp serving the rows as Parquet), and the guide's walk-through
//! connector (`ipc`, Arrow IPC files). Each connector × check is its own test,
//! `<connector>::<check>`, whose failure names both, the SQL, and the
//! connector's answer beside DataFusion's own over the same rows.
//!
//! A connector may deviate only where its source genuinely cannot do
//! better; each deviation is listed in [`KNOWN`] with its reason, and its
//! test asserts that the check still fails, so fixing it shows.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::path::Path;

use bluelamp_engine::{Engine, Identity};
use bluelamp_tests::conformance::{CHECKS, FIXTURE, Row, batch, named, run_check};
use bluelamp_tests::fixtures::engine_from_text;
use bluelamp_tests::services::{
    MariaDatabase, PgDatabase, mariadb_host, mariadb_port, pg_host, pg_port, service_missing,
};

/// Where a connector's answer differs from SQL's and the source cannot do
/// better: (connector, checks, why).
/// MariaDB has no boolean type: `BOOLEAN` is a synonym for `TINYINT(1)`,
/// which holds any value from -128 to 127 (the `(1)` is a display width),
/// so the column is read as what it stores, Int8; reading it as a boolean
/// would turn a stored 2 into `true` and lose it.
const KNOWN: &[(&str, &[&str], &str)] = &[
    (
        "csv",
        &[
            "projection",
            "all_columns",
            "filter_eq_empty_string",
            "filter_neq",
            "filter_in",
            "filter_is_null",
            "filter_and_or_not",
            "aggregate",
        ],
        "CSV cannot tell an empty string from NULL: both are an empty field, which arrow's reader reads as NULL",
    ),
    (
        "mariadb",
        &["filter_bool", "filter_and_or_not", "group_by"],
        "MariaDB's BOOLEAN is TINYINT(1), an integer, and reads as Int8 (what it stores)",
    ),
    (
        "mariadb",
        &["all_columns"],
        "MariaDB's BOOLEAN is TINYINT(1) and reads as Int8; DATETIME has no zone, so times read without one",
    ),
];

/// A loaded connector: the engine, and its fixture and empty tables.
struct Loaded {
    engine: Engine,
    table: String,
    empty: String,
    /// Keeps a database or folder alive for the test.
    _keep: Box<dyn std::any::Any>,
}

impl Loaded {
    /// `engine` over source `source`, whose fixture tables are
    /// `source.conformance` and `source.empty`; `keep` lives as long.
    fn new(engine: Engine, source: &str, keep: impl std::any::Any) -> Option<Self> {
        Some(Self {
            engine,
            table: format!("{source}.conformance"),
            empty: format!("{source}.empty"),
            _keep: Box::new(keep),
        })
    }
}

/// Runs `check` on `connector` loaded by `load`.
async fn conform(connector: &str, check: &str, loaded: Option<Loaded>) {
    let Some(loaded) = loaded else {
        return;
    };
    let session = loaded.engine.session(Identity::new("test", "test"));
    let result = run_check(
        connector,
        &session,
        &loaded.table,
        &loaded.empty,
        named(check),
    )
    .await;
    match KNOWN
        .iter()
        .find(|(c, checks, _)| *c == connector && checks.contains(&check))
    {
        None => {
            if let Err(e) = result {
                panic!("{e}");
            }
        }
        Some((_, _, why)) => assert!(
            result.is_err(),
            "{connector} now passes '{check}', listed as a known deviation ({why}): remove it from KNOWN"
        ),
    }
}

const TYPES: &str = "id = \"Int64\", label = \"Utf8\", amount = \"Float64\", qty = \"Int64\", flag = \"Boolean\", at = \"Timestamp(Microsecond, Some(\\\"UTC\\\"))\", day = \"Date32\"";

/// The fixture as files of `format` in a folder: `conformance` and `empty`.
async fn files(format: &str) -> Option<Loaded> {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let full = batch();
    let empty = full.slice(0, 0);
    for (name, batch) in [("conformance", &full), ("empty", &empty)] {
        let path = data.join(format!("{name}.{format}"));
        let file = std::fs::File::create(&path).unwrap();
        match format {
            "parquet" => {
                let mut w =
                    datafusion::parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None)
                        .unwrap();
                w.write(batch).unwrap();
                w.close().unwrap();
            }
            "csv" => {
                let mut w = arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(file);
                w.write(batch).unwrap();
            }
            "json" => {
                let mut w = arrow::json::LineDelimitedWriter::new(file);
                w.write(batch).unwrap();
                w.finish().unwrap();
            }
            other => panic!("no format {other}"),
        }
    }
    // Text formats carry no types: they are declared, as a user would.
    let declared = if format == "parquet" {
        String::new()
    } else {
        format!(
            "[source.tables.conformance]\nschema = {{ {TYPES} }}\n[source.tables.empty]\nschema = {{ {TYPES} }}\n"
        )
    };
    let engine = engine_from_text(
        &format!("[[source]]\nname = \"f\"\nkind = \"files\"\nlocation = \"data\"\n{declared}"),
        dir.path(),
    )
    .await
    .unwrap();
    Loaded::new(engine, "f", dir)
}

/// The fixture as Arrow IPC files, read by the guide's walk-through
/// connector (`bluelamp_tests::walkthrough`, `kind = "ipc"`).
async fn ipc() -> Option<Loaded> {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let full = batch();
    // Two batches, so the limit and the filters meet a batch boundary.
    let batches = [full.slice(0, 4), full.slice(4, full.num_rows() - 4)];
    for (name, batches) in [("conformance", &batches[..]), ("empty", &[][..])] {
        let file = std::fs::File::create(data.join(format!("{name}.arrow"))).unwrap();
        let mut w = arrow::ipc::writer::FileWriter::try_new(file, &full.schema()).unwrap();
        for batch in batches {
            w.write(batch).unwrap();
        }
        w.finish().unwrap();
    }
    let registry = bluelamp_connectors::registry().with(std::sync::Arc::new(
        bluelamp_tests::walkthrough::IpcSourceFactory,
    ));
    let config = bluelamp_engine::Config::parse(
        "[[source]]\nname = \"w\"\nkind = \"ipc\"\nfolder = \"data\"\n",
        "walkthrough.toml",
        dir.path().to_path_buf(),
    )
    .unwrap();
    let engine = Engine::start(config, &registry).await.unwrap();
    Loaded::new(engine, "w", dir)
}

/// A SQL literal for text; `backslash` doubles backslashes (MariaDB).
fn text(value: Option<&str>, backslash: bool) -> String {
    match value {
        None => "NULL".into(),
        Some(v) => {
            let v = v.replace('\'', "''");
            let v = if backslash {
                v.replace('\\', "\\\\")
            } else {
                v
            };
            format!("'{v}'")
        }
    }
}

fn number<T: ToString>(value: Option<T>) -> String {
    value.map_or("NULL".into(), |v| v.to_string())
}

/// `INSERT` statements for the fixture into `table`; `at` is written by
/// `timestamp` (each database spells a zoned time its own way).
fn inserts(table: &str, backslash: bool, timestamp: impl Fn(&str) -> String) -> Vec<String> {
    FIXTURE
        .iter()
        .map(|r: &Row| {
            format!(
                "INSERT INTO {table} (id, label, amount, qty, flag, at, day) VALUES ({}, {}, {}, {}, {}, {}, {})",
                r.id,
                text(r.label, backslash),
                r.amount.map_or("NULL".into(), |a| format!("{a:e}")),
                number(r.qty),
                r.flag.map_or("NULL".into(), |b| b.to_string()),
                r.at.map_or("NULL".into(), &timestamp),
                text(r.day, false)
            )
        })
        .collect()
}

async fn sqlite() -> Option<Loaded> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("conformance.sqlite");
    let db = rusqlite::Connection::open(&path).unwrap();
    for table in ["conformance", "empty"] {
        db.execute_batch(&format!(
            "CREATE TABLE {table} (id INTEGER NOT NULL, label TEXT, amount REAL, qty INTEGER, flag BOOLEAN, at TIMESTAMP, day DATE)"
        ))
        .unwrap();
    }
    for insert in inserts("conformance", false, |t| format!("'{t}'")) {
        db.execute_batch(&insert).unwrap();
    }
    drop(db);
    let engine = engine_from_text(
        &format!(
            "[[source]]\nname = \"s\"\nkind = \"sqlite\"\npath = \"{}\"\n",
            path.display()
        ),
        dir.path(),
    )
    .await
    .unwrap();
    Loaded::new(engine, "s", dir)
}

/// An engine over PostgreSQL database `db`, as source `name`.
async fn pg_engine(name: &str, db: &str) -> Engine {
    engine_from_text(
        &format!(
            "[[source]]\nname = \"{name}\"\nkind = \"postgres\"\nhost = \"{}\"\nport = {}\nuser = \"postgres\"\ndatabase = \"{db}\"\nsslmode = \"disable\"\n",
            pg_host(),
            pg_port(),
        ),
        Path::new("."),
    )
    .await
    .unwrap()
}

/// An engine over MariaDB database `db`, as source `name`.
async fn mariadb_engine(name: &str, db: &str) -> Engine {
    engine_from_text(
        &format!(
            "[[source]]\nname = \"{name}\"\nkind = \"mysql\"\nhost = \"{}\"\nport = {}\nuser = \"root\"\ndatabase = \"{db}\"\nsslmode = \"disabled\"\n",
            mariadb_host(),
            mariadb_port(),
        ),
        Path::new("."),
    )
    .await
    .unwrap()
}

async fn postgres() -> Option<Loaded> {
    let db = match PgDatabase::create().await {
        Ok(db) => db,
        Err(e) => {
            service_missing("PostgreSQL", &e);
            return None;
        }
    };
    for table in ["conformance", "empty"] {
        db.client
            .batch_execute(&format!(
                "CREATE TABLE {table} (id bigint NOT NULL, label text, amount double precision, qty bigint, flag boolean, at timestamptz, day date)"
            ))
            .await
            .unwrap();
    }
    for insert in inserts("conformance", false, |t| format!("'{t}'")) {
        db.client.batch_execute(&insert).await.unwrap();
    }
    let engine = pg_engine("pg", &db.name).await;
    Loaded::new(engine, "pg", db)
}

async fn mariadb() -> Option<Loaded> {
    let db = match MariaDatabase::create().await {
        Ok(db) => db,
        Err(e) => {
            service_missing("MariaDB", &e);
            return None;
        }
    };
    for table in ["conformance", "empty"] {
        db.execute(&format!(
            "CREATE TABLE {table} (id BIGINT NOT NULL, label VARCHAR(100), amount DOUBLE, qty BIGINT, flag BOOLEAN, at DATETIME(6), day DATE)"
        ))
        .await
        .unwrap();
    }
    // DATETIME has no zone: the fixture's UTC times are written as UTC.
    for insert in inserts("conformance", true, |t| {
        format!("'{}'", t.trim_end_matches('Z').replace('T', " "))
    }) {
        db.execute(&insert).await.unwrap();
    }
    let engine = mariadb_engine("my", &db.name).await;
    Loaded::new(engine, "my", db)
}

/// The fixture served as a supplier's API would serve it: `GET /conformance`
/// (a JSON array) with documented filters on `label`, `qty` (equality and
/// `qty_from`, at least) and `at_from`, which the fixture server applies
/// exactly, and `GET /empty`.
async fn openapi() -> Option<Loaded> {
    use axum::extract::Query;
    use serde_json::{Value, json};
    use std::collections::HashMap;
    let record = |r: &Row| {
        json!({
            "id": r.id, "label": r.label, "amount": r.amount, "qty": r.qty,
            "flag": r.flag, "at": r.at, "day": r.day,
        })
    };
    let list = move |Query(params): Query<HashMap<String, String>>| async move {
        let at = |t: &str| chrono::DateTime::parse_from_rfc3339(t).ok();
        let keep = |r: &&Row| {
            params
                .get("label")
                .is_none_or(|v| r.label == Some(v.as_str()))
                && params
                    .get("qty")
                    .is_none_or(|v| v.parse::<i64>().ok().is_some_and(|q| r.qty == Some(q)))
                && params.get("qty_from").is_none_or(|v| {
                    v.parse::<i64>()
                        .ok()
                        .is_some_and(|q| r.qty.is_some_and(|x| x >= q))
                })
                && params.get("at_from").is_none_or(|v| {
                    at(v).is_some_and(|from| r.at.and_then(at).is_some_and(|x| x >= from))
                })
        };
        axum::Json(Value::Array(
            FIXTURE.iter().filter(keep).map(record).collect(),
        ))
    };
    let nullable = |t: &str, format: Option<&str>| {
        let mut s = json!({"type": t, "nullable": true});
        if let Some(f) = format {
            s["format"] = json!(f);
        }
        s
    };
    let item = json!({
        "type": "object",
        "required": ["id"],
        "properties": {
            "id": {"type": "integer", "format": "int64"},
            "label": nullable("string", None),
            "amount": nullable("number", Some("double")),
            "qty": nullable("integer", Some("int64")),
            "flag": nullable("boolean", None),
            "at": nullable("string", Some("date-time")),
            "day": nullable("string", Some("date")),
        }
    });
    let answer = |schema: &Value| json!({"200": {"description": "rows", "content": {"application/json": {"schema": {"type": "array", "items": schema}}}}});
    let param = |name: &str, schema: Value, filter: Option<Value>| {
        let mut p = json!({"name": name, "in": "query", "schema": schema});
        if let Some(f) = filter {
            p["x-filter"] = f;
        }
        p
    };
    let document = json!({
        "openapi": "3.0.3",
        "info": {"title": "conformance", "version": "1"},
        "paths": {
            "/conformance": {"get": {
                "operationId": "conformance",
                "parameters": [
                    param("label", json!({"type": "string"}), None),
                    param("qty", json!({"type": "integer", "format": "int64"}), None),
                    param("qty_from", json!({"type": "integer", "format": "int64"}), Some(json!({"field": "qty", "op": ">="}))),
                    param("at_from", json!({"type": "string", "format": "date-time"}), Some(json!({"field": "at", "op": ">="}))),
                ],
                "responses": answer(&item)
            }},
            "/empty": {"get": {"operationId": "empty", "responses": answer(&item)}}
        }
    });
    let routes = axum::Router::new()
        .route("/conformance", axum::routing::get(list))
        .route(
            "/empty",
            axum::routing::get(|| async { axum::Json(json!([])) }),
        );
    let url = bluelamp_tests::fixtures::serve_openapi(document, routes).await;
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_from_text(
        &format!("[[source]]\nname = \"api\"\nkind = \"openapi\"\nspec = \"{url}/openapi.json\"\n"),
        dir.path(),
    )
    .await
    .unwrap();
    Loaded::new(engine, "api", dir)
}

/// The fixture in another Bluelamp (Parquet files), served over Flight SQL
/// and read through a `flightsql` source.
async fn flightsql() -> Option<Loaded> {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let full = batch();
    for (name, batch) in [("conformance", full.clone()), ("empty", full.slice(0, 0))] {
        let file = std::fs::File::create(data.join(format!("{name}.parquet"))).unwrap();
        let mut w =
            datafusion::parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }
    let server = bluelamp_tests::fixtures::RemoteBluelamp::start(
        "[[source]]\nname = \"f\"\nkind = \"files\"\nlocation = \"data\"\n",
        "",
        dir.path(),
    )
    .await;
    let engine = engine_from_text(&server.source("fl", "schemas = [\"f\"]"), dir.path())
        .await
        .unwrap();
    Loaded::new(engine, "fl", (dir, server))
}

/// The checks that are not one query against the oracle.
enum Special {
    Concurrent,
    Explain,
    Cancel,
}

async fn special(connector: &str, which: Special, loaded: Option<Loaded>) {
    let Some(loaded) = loaded else {
        return;
    };
    let session = loaded.engine.session(Identity::new("test", "test"));
    let result = match which {
        Special::Concurrent => {
            bluelamp_tests::conformance::concurrent_scans(connector, &session, &loaded.table).await
        }
        Special::Explain => {
            bluelamp_tests::conformance::explain_names_pushed(connector, &session, &loaded.table)
                .await
        }
        Special::Cancel => {
            bluelamp_tests::conformance::cancelled_scan(connector, &session, &loaded.table).await
        }
    };
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// One test per check for a connector: `$connector::$check`.
macro_rules! conformance {
    ($connector:ident, $load:expr, [$($check:ident),* $(,)?]) => {
        mod $connector {
            $(
                #[tokio::test]
                async fn $check() {
                    super::conform(stringify!($connector), stringify!($check), $load.await).await;
                }
            )*

            #[tokio::test]
            async fn concurrent_scans() {
                super::special(stringify!($connector), super::Special::Concurrent, $load.await).await;
            }

            #[tokio::test]
            async fn cancelled_scan() {
                super::special(stringify!($connector), super::Special::Cancel, $load.await).await;
            }

            #[tokio::test]
            async fn explain_names_pushed() {
                super::special(stringify!($connector), super::Special::Explain, $load.await).await;
            }
        }
    };
}

/// The suite for a connector: every check in `CHECKS`, each a test.
macro_rules! suite {
    ($connector:ident, $load:expr) => {
        conformance!(
            $connector,
            $load,
            [
                projection,
                all_columns,
                filter_eq_text,
                filter_eq_trailing_space,
                filter_eq_case,
                filter_eq_empty_string,
                filter_eq_backslash,
                filter_eq_unicode,
                filter_eq_int,
                filter_eq_large_int,
                filter_neq,
                filter_lt,
                filter_le_float,
                filter_gt_text,
                filter_between,
                filter_in,
                filter_not_in,
                filter_like_prefix,
                filter_like_wildcards,
                filter_is_null,
                filter_is_not_null,
                filter_bool,
                filter_and_or_not,
                filter_cast,
                filter_timestamp,
                filter_date,
                limit_ordered,
                limit_unordered,
                limit_filtered,
                order_nulls,
                aggregate,
                group_by,
                filtered_aggregate,
                self_join,
                empty_table,
                empty_scan,
            ]
        );
    };
}

suite!(parquet, super::files("parquet"));
suite!(csv, super::files("csv"));
suite!(ndjson, super::files("json"));
suite!(sqlite, super::sqlite());
suite!(postgres, super::postgres());
suite!(mariadb, super::mariadb());
suite!(openapi, super::openapi());
suite!(flightsql, super::flightsql());
suite!(ipc, super::ipc());

#[test]
fn every_check_has_a_test_for_every_connector() {
    // The macro's list and the suite's must agree: a check added to CHECKS
    // without a test would never run.
    let source = include_str!("conformance.rs");
    let listed = source
        .split("macro_rules! suite")
        .nth(1)
        .and_then(|s| s.split('[').nth(1))
        .and_then(|s| s.split(']').next())
        .unwrap();
    for check in CHECKS {
        assert!(
            listed.contains(&format!("{},", check.name)),
            "check '{}' has no test: add it to the suite! list",
            check.name
        );
    }
    assert_eq!(
        listed.matches(',').count(),
        CHECKS.len(),
        "the suite! list names a check CHECKS does not have"
    );
}

/// A connector that lies: it says it applies every filter exactly, and
/// applies none.
#[derive(Debug)]
struct LiarFactory;

#[async_trait::async_trait]
impl bluelamp_engine::SourceFactory for LiarFactory {
    fn kind(&self) -> &'static str {
        "liar"
    }

    fn validate(
        &self,
        _source: &bluelamp_engine::SourceConfig,
    ) -> Result<(), bluelamp_engine::ConfigError> {
        Ok(())
    }

    async fn connect(
        &self,
        _source: &bluelamp_engine::SourceConfig,
    ) -> Result<bluelamp_engine::ConnectedSource, bluelamp_engine::SourceError> {
        use datafusion::catalog::{MemorySchemaProvider, SchemaProvider};
        let schema = MemorySchemaProvider::new();
        let full = batch();
        for (name, rows) in [("conformance", vec![full.clone()]), ("empty", vec![])] {
            let table =
                datafusion::datasource::MemTable::try_new(full.schema(), vec![rows]).unwrap();
            schema
                .register_table(
                    name.into(),
                    std::sync::Arc::new(Liar(std::sync::Arc::new(table))),
                )
                .unwrap();
        }
        Ok(bluelamp_engine::ConnectedSource::new(std::sync::Arc::new(
            schema,
        )))
    }
}

#[derive(Debug)]
struct Liar(std::sync::Arc<datafusion::datasource::MemTable>);

#[async_trait::async_trait]
impl datafusion::datasource::TableProvider for Liar {
    fn schema(&self) -> arrow::datatypes::SchemaRef {
        datafusion::datasource::TableProvider::schema(self.0.as_ref())
    }

    fn table_type(&self) -> datafusion::logical_expr::TableType {
        datafusion::logical_expr::TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn datafusion::catalog::Session,
        projection: Option<&Vec<usize>>,
        _filters: &[datafusion::logical_expr::Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<std::sync::Arc<dyn datafusion::physical_plan::ExecutionPlan>>
    {
        // The filters are "applied exactly"; none is.
        self.0.scan(state, projection, &[], limit).await
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&datafusion::logical_expr::Expr],
    ) -> datafusion::error::Result<Vec<datafusion::logical_expr::TableProviderFilterPushDown>> {
        Ok(vec![
            datafusion::logical_expr::TableProviderFilterPushDown::Exact;
            filters.len()
        ])
    }
}

#[tokio::test]
async fn the_suite_catches_a_connector_that_lies_about_its_filters() {
    let registry = bluelamp_connectors::registry().with(std::sync::Arc::new(LiarFactory));
    let config = bluelamp_engine::Config::parse(
        "[[source]]\nname = \"liar\"\nkind = \"liar\"\n",
        "liar.toml",
        std::path::PathBuf::from("."),
    )
    .unwrap();
    let engine = Engine::start(config, &registry).await.unwrap();
    let session = engine.session(Identity::new("test", "test"));
    let mut caught = Vec::new();
    for check in CHECKS {
        if run_check("liar", &session, "liar.conformance", "liar.empty", *check)
            .await
            .is_err()
        {
            caught.push(check.name);
        }
    }
    // Every filter the oracle answers with fewer rows than the table has is
    // caught; a projection, which needs no filter, is not.
    for check in [
        "filter_eq_text",
        "filter_eq_trailing_space",
        "filter_not_in",
        "filter_like_prefix",
        "filter_timestamp",
        "filter_cast",
        "filtered_aggregate",
        "limit_filtered",
    ] {
        assert!(
            caught.contains(&check),
            "the lie was not caught by {check}: caught {caught:?}"
        );
    }
    assert!(!caught.contains(&"projection"), "{caught:?}");
}

/// A query over a source that went away, or whose credentials are wrong,
/// fails with an error naming the source, never with an empty or short
/// answer.
mod failures {
    use super::*;

    async fn fails_naming(loaded: &Loaded, sql: &str, source: &str) -> String {
        let session = loaded.engine.session(Identity::new("test", "test"));
        match bluelamp_tests::slt::try_session_rows(&session, sql).await {
            Ok(rows) => panic!("{sql} answered {rows:?} from a source that is not there"),
            Err(e) => {
                let message = e.to_string();
                assert!(
                    message.contains(&format!("'{source}'")),
                    "the error does not name source '{source}': {message}"
                );
                message
            }
        }
    }

    #[tokio::test]
    async fn a_deleted_file_is_an_error_not_an_empty_table() {
        let loaded = files("parquet").await.unwrap();
        let dir = loaded
            ._keep
            .downcast_ref::<tempfile::TempDir>()
            .unwrap()
            .path()
            .to_path_buf();
        std::fs::remove_file(dir.join("data/conformance.parquet")).unwrap();
        fails_naming(&loaded, "SELECT count(*) FROM f.conformance", "f").await;
    }

    /// Rows of `big` that a source streams; enough that the result cannot
    /// sit whole in buffers when the connection is cut.
    const BIG: i64 = 1_000_000;

    /// Streams `SELECT id, pad FROM {source}.big`, calls `cut` once the
    /// first batch has arrived, and reads on: the answer must be every row,
    /// or an error naming `source` (never a short answer).
    async fn cut_mid_stream<F, Fut>(engine: &Engine, source: &str, cut: F) -> Option<String>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = usize>,
    {
        use futures::StreamExt;
        let session = engine.session(Identity::new("test", "test"));
        let output = session
            .sql(&format!("SELECT id, pad FROM {source}.big"))
            .await
            .unwrap();
        let mut stream = output.stream;
        let first = stream.next().await.unwrap().unwrap();
        let mut rows = first.num_rows() as i64;
        let killed = cut().await;
        assert!(killed > 0, "no connection of {source} was found to cut");
        while let Some(batch) = stream.next().await {
            match batch {
                Ok(batch) => rows += batch.num_rows() as i64,
                Err(e) => {
                    let message = e.to_string();
                    assert!(
                        message.contains(&format!("'{source}'")),
                        "the error does not name source '{source}': {message}"
                    );
                    return Some(message);
                }
            }
        }
        assert_eq!(rows, BIG, "a short answer after the connection was cut");
        None
    }

    #[tokio::test]
    async fn a_postgres_connection_cut_mid_stream_is_an_error_naming_the_source() {
        let db = match PgDatabase::create().await {
            Ok(db) => db,
            Err(e) => return service_missing("PostgreSQL", &e),
        };
        db.client
            .batch_execute(&format!(
                "CREATE TABLE big AS SELECT g::bigint AS id, repeat('x', 40) AS pad \
                 FROM generate_series(1, {BIG}) g"
            ))
            .await
            .unwrap();
        let engine = pg_engine("pg", &db.name).await;
        let message = cut_mid_stream(&engine, "pg", || async {
            let rows = db
                .client
                .query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE datname = current_database() AND pid <> pg_backend_pid()",
                    &[],
                )
                .await
                .unwrap();
            rows.len()
        })
        .await;
        let message = message.expect("the cut connection was noticed");
        assert!(
            message.contains("unavailable") || message.contains("connection"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn a_mariadb_connection_cut_mid_stream_is_an_error_naming_the_source() {
        let db = match MariaDatabase::create().await {
            Ok(db) => db,
            Err(e) => return service_missing("MariaDB", &e),
        };
        db.execute("CREATE TABLE big (id BIGINT NOT NULL, pad VARCHAR(64))")
            .await
            .unwrap();
        db.execute(&format!(
            "INSERT INTO big SELECT seq, REPEAT('x', 40) FROM seq_1_to_{BIG}"
        ))
        .await
        .unwrap();
        let engine = mariadb_engine("maria", &db.name).await;
        let name = db.name.clone();
        let message = cut_mid_stream(&engine, "maria", || async {
            let ids = db
                .query_strings(&format!(
                    "SELECT CAST(ID AS CHAR) FROM information_schema.PROCESSLIST \
                     WHERE DB = '{name}' AND ID <> CONNECTION_ID()"
                ))
                .await
                .unwrap();
            for id in ids.iter().flatten() {
                let _ = db.execute(&format!("KILL CONNECTION {id}")).await;
            }
            ids.len()
        })
        .await;
        message.expect("the cut connection was noticed");
    }

    /// Starts `SELECT id, pad FROM {source}.endless` (a table or view that
    /// never ends), drops the stream after its first batch, and waits up to
    /// 15 s for `running` (the source's own count of queries it is running
    /// for the engine) to reach 0: a cancelled scan stops the source's work,
    /// not only ours.
    async fn cancel_stops_the_source<F, Fut>(engine: &Engine, source: &str, running: F)
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = i64>,
    {
        use futures::StreamExt;
        let session = engine.session(Identity::new("test", "test"));
        let output = session
            .sql(&format!("SELECT id, pad FROM {source}.endless"))
            .await
            .unwrap();
        let mut stream = output.stream;
        stream.next().await.unwrap().unwrap();
        assert!(running().await > 0, "{source} shows no running query");
        drop(stream);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            let now = running().await;
            if now == 0 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{source} still runs {now} queries 15 s after the scan was cancelled"
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }

    #[tokio::test]
    async fn a_cancelled_postgres_scan_stops_the_query_in_postgres() {
        let db = match PgDatabase::create().await {
            Ok(db) => db,
            Err(e) => return service_missing("PostgreSQL", &e),
        };
        // A table that never ends: an empty table whose child is a foreign
        // table reading `yes` (file_fdw, which ships with PostgreSQL).
        // (Views would do, but the PostgreSQL source lists tables only.)
        db.client
            .batch_execute(
                "CREATE EXTENSION file_fdw;
                 CREATE SERVER lines FOREIGN DATA WRAPPER file_fdw;
                 CREATE TABLE endless (id bigint, pad text);
                 CREATE FOREIGN TABLE endless_lines () INHERITS (endless) SERVER lines
                   OPTIONS (program 'yes 1,xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx', format 'csv');",
            )
            .await
            .unwrap();
        let engine = pg_engine("pg", &db.name).await;
        cancel_stops_the_source(&engine, "pg", || async {
            db.client
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                     AND state = 'active' AND pid <> pg_backend_pid()",
                    &[],
                )
                .await
                .unwrap()
                .get::<_, i64>(0)
        })
        .await;
    }

    #[tokio::test]
    async fn a_cancelled_mariadb_scan_stops_the_query_in_mariadb() {
        let db = match MariaDatabase::create().await {
            Ok(db) => db,
            Err(e) => return service_missing("MariaDB", &e),
        };
        db.execute(
            "CREATE VIEW endless AS SELECT seq AS id, REPEAT('x', 40) AS pad \
             FROM seq_1_to_1000000000000",
        )
        .await
        .unwrap();
        let engine = mariadb_engine("maria", &db.name).await;
        let name = db.name.clone();
        cancel_stops_the_source(&engine, "maria", || async {
            let count = db
                .query_strings(&format!(
                    "SELECT CAST(COUNT(*) AS CHAR) FROM information_schema.PROCESSLIST \
                     WHERE DB = '{name}' AND COMMAND <> 'Sleep' AND ID <> CONNECTION_ID()"
                ))
                .await
                .unwrap();
            count
                .first()
                .cloned()
                .flatten()
                .and_then(|c| c.parse().ok())
                .unwrap_or(-1)
        })
        .await;
    }

    #[tokio::test]
    async fn the_walkthrough_connector_fails_naming_its_source_when_a_file_goes() {
        let loaded = ipc().await.unwrap();
        let dir = loaded
            ._keep
            .downcast_ref::<tempfile::TempDir>()
            .unwrap()
            .path()
            .to_path_buf();
        // Planned (the schema read) before the file goes, read after.
        let session = loaded.engine.session(Identity::new("test", "test"));
        bluelamp_tests::slt::try_session_rows(&session, "SELECT count(*) FROM w.conformance")
            .await
            .unwrap();
        std::fs::remove_file(dir.join("data/conformance.arrow")).unwrap();
        let message = fails_naming(&loaded, "SELECT label FROM w.conformance", "w").await;
        assert!(message.contains("conformance"), "{message}");
    }

    #[tokio::test]
    async fn the_walkthrough_connector_checks_its_options_without_io() {
        let registry = bluelamp_connectors::registry().with(std::sync::Arc::new(
            bluelamp_tests::walkthrough::IpcSourceFactory,
        ));
        let config = bluelamp_engine::Config::parse(
            "[[source]]\nname = \"w\"\nkind = \"ipc\"\nfoldr = \"data\"\n",
            "walkthrough.toml",
            std::path::PathBuf::from("/nonexistent"),
        )
        .unwrap();
        let error = match Engine::start(config, &registry).await {
            Ok(_) => panic!("a misspelt option was accepted"),
            Err(e) => e.to_string(),
        };
        assert!(error.contains("walkthrough.toml:4"), "{error}");
        assert!(error.contains("foldr"), "{error}");
    }

    #[tokio::test]
    async fn a_dropped_postgres_database_is_an_error() {
        let Some(loaded) = postgres().await else {
            return;
        };
        let name = loaded
            ._keep
            .downcast_ref::<PgDatabase>()
            .unwrap()
            .name
            .clone();
        // Read once, so the pool holds connections that then die.
        let session = loaded.engine.session(Identity::new("test", "test"));
        bluelamp_tests::slt::session_rows(&session, "SELECT count(*) FROM pg.conformance").await;
        let admin = PgDatabase::create().await.unwrap();
        admin
            .client
            .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
            .await
            .unwrap();
        fails_naming(&loaded, "SELECT count(*) FROM pg.conformance", "pg").await;
    }

    #[tokio::test]
    async fn a_dropped_mariadb_database_is_an_error() {
        let Some(loaded) = mariadb().await else {
            return;
        };
        let db = loaded._keep.downcast_ref::<MariaDatabase>().unwrap();
        db.execute(&format!("DROP DATABASE {}", db.name))
            .await
            .unwrap();
        fails_naming(&loaded, "SELECT count(*) FROM my.conformance", "my").await;
    }

    #[tokio::test]
    async fn wrong_credentials_are_an_error_naming_the_source() {
        // PostgreSQL here trusts any password, so the user is wrong instead.
        let pg = engine_from_text(
            &format!(
                "[[source]]\nname = \"pg\"\nkind = \"postgres\"\nhost = \"{}\"\nport = {}\nuser = \"no_such_user_conformance\"\npassword = \"wrong\"\ndatabase = \"postgres\"\nsslmode = \"disable\"\n",
                pg_host(),
                pg_port()
            ),
            Path::new("."),
        )
        .await
        .unwrap();
        let maria = engine_from_text(
            &format!(
                "[[source]]\nname = \"my\"\nkind = \"mysql\"\nhost = \"{}\"\nport = {}\nuser = \"root\"\npassword = \"certainly-wrong\"\ndatabase = \"mysql\"\nsslmode = \"disabled\"\n",
                mariadb_host(),
                mariadb_port()
            ),
            Path::new("."),
        )
        .await
        .unwrap();
        for (engine, sql, source, secret) in [
            (pg, "SELECT * FROM pg.anything", "pg", "wrong"),
            (maria, "SELECT * FROM my.anything", "my", "certainly-wrong"),
        ] {
            let session = engine.session(Identity::new("test", "test"));
            let e = bluelamp_tests::slt::try_session_rows(&session, sql)
                .await
                .unwrap_err()
                .to_string();
            assert!(e.contains(&format!("'{source}'")), "{e}");
            assert!(!e.contains(secret), "the error shows the password: {e}");
        }
    }

    #[tokio::test]
    async fn an_api_that_stops_answering_is_an_error_not_a_short_answer() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        let down = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&down);
        let routes = axum::Router::new().route(
            "/conformance",
            axum::routing::get(move || {
                let down = flag.load(Ordering::SeqCst);
                async move {
                    if down {
                        axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response()
                    } else {
                        axum::Json(serde_json::json!([{"id": 1}])).into_response()
                    }
                }
            }),
        );
        let document = serde_json::json!({
            "openapi": "3.0.3",
            "info": {"title": "t", "version": "1"},
            "paths": {"/conformance": {"get": {"responses": {"200": {"description": "rows",
                "content": {"application/json": {"schema": {"type": "array", "items": {
                    "type": "object", "properties": {"id": {"type": "integer"}}}}}}}}}}}
        });
        use axum::response::IntoResponse;
        let url = bluelamp_tests::fixtures::serve_openapi(document, routes).await;
        let dir = tempfile::tempdir().unwrap();
        let engine = engine_from_text(
            &format!("[[source]]\nname = \"api\"\nkind = \"openapi\"\nspec = \"{url}/openapi.json\"\nretries = 1\n"),
            dir.path(),
        )
        .await
        .unwrap();
        let loaded = Loaded {
            engine,
            table: String::new(),
            empty: String::new(),
            _keep: Box::new(dir),
        };
        down.store(true, Ordering::SeqCst);
        let e = fails_naming(&loaded, "SELECT count(*) FROM api.conformance", "api").await;
        assert!(e.contains("503"), "{e}");
    }
}
