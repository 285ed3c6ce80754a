//! The demo force's non-HTTP systems against real servers: the custody system's
//! portable SQL loads into PostgreSQL and answers the same as the SQLite file.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use bluelamp_engine::Identity;
use bluelamp_tests::fixtures::{engine_from_text, write_demo};
use bluelamp_tests::services::{PgDatabase, pg_host, pg_port, service_missing};
use bluelamp_tests::slt::rows;
use futures::TryStreamExt;

#[tokio::test]
async fn custody_sql_loads_into_postgres_and_matches_sqlite() {
    let db = match PgDatabase::create().await {
        Ok(db) => db,
        Err(e) => return service_missing("PostgreSQL", &e),
    };
    let tmp = tempfile::tempdir().unwrap();
    let config = write_demo(tmp.path());
    let force_dir = config.parent().unwrap();
    let script = std::fs::read_to_string(force_dir.join("custody.sql")).unwrap();
    db.client.batch_execute(&script).await.unwrap();
    let text = format!(
        "[[source]]\nname = \"lite\"\nkind = \"sqlite\"\npath = \"{}\"\n\n[[source]]\nname = \"pg\"\nkind = \"postgres\"\nhost = \"{}\"\nport = {}\nuser = \"postgres\"\ndatabase = \"{}\"\nsslmode = \"disable\"\n",
        force_dir.join("custody.sqlite").display(),
        pg_host(),
        pg_port(),
        db.name
    );
    let engine = engine_from_text(&text, tmp.path()).await.unwrap();
    let session = engine.session(Identity::new("test", "test"));
    let mut answers = Vec::new();
    for source in ["lite", "pg"] {
        let output = session
            .sql(&format!(
                "SELECT station, disposal, count(*) AS n, min(arrived_at) AS first, count(released_at) AS released
                 FROM {source}.custody_records GROUP BY station, disposal ORDER BY station, disposal"
            ))
            .await
            .unwrap();
        let batches: Vec<_> = output.stream.try_collect().await.unwrap();
        answers.push(rows(&batches).unwrap());
    }
    assert!(!answers[0].is_empty());
    assert_eq!(answers[0], answers[1]);
}
