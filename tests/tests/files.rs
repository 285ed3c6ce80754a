//! The `files` connector: discovery of files and folders, hive partitions,
//! declared schemas, `file://` URLs, and clear errors for bad declarations.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use bluelamp_engine::Identity;
use bluelamp_tests::fixtures::engine_from_text;
use bluelamp_tests::slt::session_rows;

async fn rows_of(engine: &bluelamp_engine::Engine, sql: &str) -> Vec<Vec<String>> {
    session_rows(&engine.session(Identity::new("test", "test")), sql).await
}

fn layout() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(data.join("events/day=2026-10-01")).unwrap();
    std::fs::create_dir_all(data.join("events/day=2026-10-02")).unwrap();
    std::fs::write(
        data.join("Stop-Search.csv"),
        "id,outcome\n1,arrest\n2,nfa\n",
    )
    .unwrap();
    std::fs::write(data.join("notes.tsv"), "id\tnote\n7\thello\n").unwrap();
    std::fs::write(
        data.join("events/day=2026-10-01/a.ndjson"),
        "{\"id\": 1, \"kind\": \"x\"}\n{\"id\": 2, \"kind\": \"y\"}\n",
    )
    .unwrap();
    std::fs::write(
        data.join("events/day=2026-10-02/b.ndjson"),
        "{\"id\": 3, \"kind\": \"x\"}\n",
    )
    .unwrap();
    std::fs::write(data.join("README.txt"), "not a table").unwrap();
    tmp
}

/// A named int64 column, computed from the row number.
type IntColumn<'a> = (&'a str, fn(i64) -> i64);

/// A folder `data` in a new temporary directory holding `data/{table}.parquet`:
/// 100,000 rows (written in ten row groups) of int64 columns, each computed
/// from the row number; and an engine with that folder as source `files`.
async fn int_table(
    table: &str,
    columns: &[IntColumn<'_>],
) -> (bluelamp_engine::Engine, tempfile::TempDir) {
    use arrow::array::{ArrayRef, Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::parquet::arrow::ArrowWriter;
    use std::sync::Arc;

    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("data")).unwrap();
    let schema = Arc::new(Schema::new(
        columns
            .iter()
            .map(|(name, _)| Field::new(*name, DataType::Int64, false))
            .collect::<Vec<_>>(),
    ));
    let file = std::fs::File::create(tmp.path().join(format!("data/{table}.parquet"))).unwrap();
    let mut writer = ArrowWriter::try_new(file, Arc::clone(&schema), None).unwrap();
    for chunk in 0..10_i64 {
        let rows = (chunk * 10_000)..((chunk + 1) * 10_000);
        let arrays: Vec<ArrayRef> = columns
            .iter()
            .map(|(_, value)| {
                Arc::new(Int64Array::from_iter_values(rows.clone().map(value))) as ArrayRef
            })
            .collect();
        writer
            .write(&RecordBatch::try_new(Arc::clone(&schema), arrays).unwrap())
            .unwrap();
    }
    writer.close().unwrap();
    let engine = engine_from_text(
        "[[source]]\nname = \"files\"\nkind = \"files\"\nlocation = \"data\"\n",
        tmp.path(),
    )
    .await
    .unwrap();
    (engine, tmp)
}

#[tokio::test]
async fn discovers_files_folders_and_partitions() {
    let tmp = layout();
    let engine = engine_from_text(
        "[[source]]\nname = \"f\"\nkind = \"files\"\nlocation = \"data\"\n",
        tmp.path(),
    )
    .await
    .unwrap();
    let tables = rows_of(
        &engine,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'f' ORDER BY 1",
    )
    .await;
    assert_eq!(
        tables,
        vec![vec!["events"], vec!["notes"], vec!["stop_search"]]
    );
    assert_eq!(
        rows_of(&engine, "SELECT note FROM f.notes").await,
        vec![vec!["hello"]]
    );
    assert_eq!(
        rows_of(
            &engine,
            "SELECT day, count(*) FROM f.events GROUP BY day ORDER BY day"
        )
        .await,
        vec![vec!["2026-10-01", "2"], vec!["2026-10-02", "1"]]
    );
    assert_eq!(
        rows_of(
            &engine,
            "SELECT count(*) FROM f.stop_search WHERE outcome = 'arrest'"
        )
        .await,
        vec![vec!["1"]]
    );
}

#[tokio::test]
async fn declared_schemas_replace_inference_and_urls_work() {
    let tmp = layout();
    let url = url::Url::from_directory_path(tmp.path().join("data")).unwrap();
    let config = format!(
        "[[source]]\nname = \"f\"\nkind = \"files\"\nlocation = \"{url}\"\n\n[source.tables.stop_search]\nschema = {{ id = \"text\", outcome = \"Utf8\" }}\n\n[source.tables.events]\nexclude = true\n"
    );
    let engine = engine_from_text(&config, tmp.path()).await.unwrap();
    let types = rows_of(
        &engine,
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = 'f' AND table_name = 'stop_search' ORDER BY ordinal_position",
    )
    .await;
    assert_eq!(types, vec![vec!["id", "Utf8"], vec!["outcome", "Utf8"]]);
    assert_eq!(
        rows_of(&engine, "SELECT max(id) FROM f.stop_search").await,
        vec![vec!["2"]]
    );
    let tables = rows_of(
        &engine,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'f' ORDER BY 1",
    )
    .await;
    assert_eq!(tables, vec![vec!["notes"], vec!["stop_search"]]);
}

#[tokio::test]
async fn bad_declarations_are_config_errors() {
    let tmp = layout();
    let err = engine_from_text(
        "[[source]]\nname = \"f\"\nkind = \"files\"\nlocation = \"data\"\n[source.tables.x]\nschema = { id = \"integr\" }\n",
        tmp.path(),
    )
    .await
    .unwrap_err();
    assert!(
        err.contains("source[f].tables.x.schema: column 'id': unknown type 'integr'"),
        "{err}"
    );
    let engine = engine_from_text(
        "[[source]]\nname = \"f\"\nkind = \"files\"\nlocation = \"nowhere\"\n",
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
}

/// A join's keys filter Parquet rows before an aggregate on the join's
/// other side reads them (TPC-H Q17's shape): with two keys picked, the
/// aggregate sees their 200 rows, not all 100,000, and the answer is the
/// same as computed by hand; with no keys, nothing is aggregated.
#[tokio::test]
async fn join_keys_filter_file_rows_before_an_aggregate() {
    use bluelamp_tests::plans::output_rows;

    // Key i % 1000 for i in 0..100,000, so each key has 100 rows.
    let (engine, _tmp) = int_table("readings", &[("k", |i| i % 1000), ("v", |i| i)]).await;
    let session = engine.session(Identity::new("test", "test"));
    let run = |sql: String| {
        let session = &session;
        async move { session_rows(session, &sql).await }
    };
    run("CREATE TABLE picked (k bigint) AS VALUES (3), (7)".into()).await;
    run("CREATE TABLE nobody (k bigint) AS SELECT 1 WHERE false".into()).await;
    let query = |keys: &str| {
        format!(
            "SELECT p.k, s.total, s.n FROM {keys} p JOIN \
             (SELECT k, sum(v) AS total, count(*) AS n FROM files.readings GROUP BY k) s \
             ON p.k = s.k ORDER BY p.k"
        )
    };
    let plan = run(format!("EXPLAIN ANALYZE {}", query("picked")))
        .await
        .concat()
        .join("\n");
    assert_eq!(
        output_rows(&plan, "FilterExec: DynamicFilter"),
        Some(200),
        "the aggregate should read only the picked keys' rows: {plan}"
    );
    // Key k's values are k, k + 1000, …, k + 99,000.
    assert_eq!(
        run(query("picked")).await,
        vec![
            vec!["3".to_string(), "4950300".to_string(), "100".to_string()],
            vec!["7".to_string(), "4950700".to_string(), "100".to_string()],
        ]
    );
    let plan = run(format!("EXPLAIN ANALYZE {}", query("nobody")))
        .await
        .concat()
        .join("\n");
    // (The join may not even start the aggregate once its build side is empty.)
    assert_eq!(
        output_rows(&plan, "AggregateExec: mode=Partial").unwrap_or(0),
        0,
        "{plan}"
    );
    assert!(run(query("nobody")).await.is_empty());
    // With row-level filtering on, the scan filters rows itself: no
    // second filter is added, and the answer is the same.
    run("SET datafusion.execution.parquet.pushdown_filters = true".into()).await;
    let plan = run(format!("EXPLAIN {}", query("picked")))
        .await
        .concat()
        .join("\n");
    assert!(!plan.contains("FilterExec: DynamicFilter"), "{plan}");
    assert_eq!(run(query("picked")).await.len(), 2);
}

/// A semi join's keys (`o.id IN (SELECT …)`) filter Parquet rows feeding
/// another join below it (TPC-H Q18's shape): of 100,000 orders, only the
/// three picked reach the customer join, and the answer is the same as
/// computed by hand.
#[tokio::test]
async fn semi_join_keys_filter_file_rows_before_another_join() {
    use bluelamp_tests::plans::output_rows;

    let (engine, _tmp) = int_table("orders", &[("id", |i| i), ("customer", |i| i % 10)]).await;
    let session = engine.session(Identity::new("test", "test"));
    let run = |sql: String| {
        let session = &session;
        async move { session_rows(session, &sql).await }
    };
    run("CREATE TABLE customers (id bigint, name text) AS \
         SELECT value, 'customer ' || value FROM generate_series(0, 9)"
        .into())
    .await;
    run("CREATE TABLE picked (id bigint) AS VALUES (12), (25), (99992)".into()).await;
    let query = "SELECT c.name, o.id FROM customers c JOIN files.orders o ON c.id = o.customer \
                 WHERE o.id IN (SELECT id FROM picked) ORDER BY o.id";
    let plan = run(format!("EXPLAIN ANALYZE {query}"))
        .await
        .concat()
        .join("\n");
    assert_eq!(
        output_rows(&plan, "FilterExec: DynamicFilter"),
        Some(3),
        "only the picked orders should reach the customer join: {plan}"
    );
    assert_eq!(
        run(query.into()).await,
        vec![
            vec!["customer 2".to_string(), "12".to_string()],
            vec!["customer 5".to_string(), "25".to_string()],
            vec!["customer 2".to_string(), "99992".to_string()],
        ]
    );
}

/// A folder of symbolic links to files kept elsewhere (how benchmarks and
/// shared drives often lay data out) reads like a folder of files: each
/// table's store is scoped to the link's path, which its reads ask for.
#[cfg(unix)]
#[tokio::test]
async fn tables_over_symbolic_links_read() {
    let data = tempfile::tempdir().unwrap();
    std::fs::write(
        data.path().join("codes.csv"),
        "code,label\nA,alpha\nB,beta\n",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("links")).unwrap();
    std::os::unix::fs::symlink(
        data.path().join("codes.csv"),
        dir.path().join("links/codes.csv"),
    )
    .unwrap();
    let engine = engine_from_text(
        "[[source]]\nname = \"l\"\nkind = \"files\"\nlocation = \"links\"\n",
        dir.path(),
    )
    .await
    .unwrap();
    assert_eq!(
        rows_of(&engine, "SELECT code, label FROM l.codes ORDER BY code").await,
        [["A", "alpha"], ["B", "beta"]]
    );
}
