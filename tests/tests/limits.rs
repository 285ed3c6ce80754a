//! `[engine] memory_limit`: one memory pool for every session of a server;
//! a statement that needs more fails with an error naming the limit, and the
//! server goes on answering.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use bluelamp_engine::{Engine, ErrorKind, Identity, QueryError};
use bluelamp_tests::fixtures::engine_from_text;
use bluelamp_tests::slt::{session_rows, try_session_rows};

/// The error `sql` meets, at planning or while its rows stream.
async fn error_of(engine: &Engine, sql: &str) -> QueryError {
    try_session_rows(&engine.session(Identity::local()), sql)
        .await
        .expect_err(sql)
}

async fn count(engine: &Engine, sql: &str) -> usize {
    session_rows(&engine.session(Identity::local()), sql)
        .await
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_over_the_memory_limit_fails_naming_it_and_others_answer() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_from_text("[engine]\nmemory_limit = \"4MiB\"\n", dir.path())
        .await
        .unwrap();
    assert_eq!(engine.memory_limit(), 4 * 1024 * 1024);
    // Grouping spills to disk under the limit and answers.
    assert_eq!(
        count(
            &engine,
            "SELECT count(DISTINCT v) FROM generate_series(1, 3000000) AS t(v)"
        )
        .await,
        1
    );
    // Every value held at once in one list: more than 4 MiB, and a list
    // cannot spill.
    let error = error_of(
        &engine,
        "SELECT cardinality(array_agg(v)) FROM generate_series(1, 3000000) AS t(v)",
    )
    .await;
    assert_eq!(error.kind, ErrorKind::Execution);
    assert!(
        error.message.contains("[engine] memory_limit") && error.message.contains("carries on"),
        "{}",
        error.message
    );
    // The pool is free again: small statements answer.
    assert_eq!(
        count(&engine, "SELECT * FROM generate_series(1, 1000)").await,
        1000
    );
}

#[tokio::test]
async fn the_default_limit_is_half_the_machines_memory_and_sizes_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_from_text("", dir.path()).await.unwrap();
    let total: u64 = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(8 * 1024 * 1024 * 1024, |kib| kib * 1024);
    assert_eq!(engine.memory_limit(), total / 2);
    let error = engine_from_text("[engine]\nmemory_limit = \"8 gigs\"\n", dir.path())
        .await
        .unwrap_err();
    assert!(
        error.contains("test.toml:2") && error.contains("unknown size unit"),
        "{error}"
    );
}
