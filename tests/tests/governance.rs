//! Governance over Flight SQL: statements that reach the server's files are
//! refused unless granted, DDL stays in the session's own schema, and each
//! client connection has a session of its own. Each bypass attempt is its
//! own test, run through arrow-flight's Flight SQL client against a real
//! server.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use arrow::array::RecordBatch;
use arrow_flight::sql::client::FlightSqlServiceClient;
use bluelamp_engine::{Config, Engine};
use bluelamp_flight_server::{RunningServer, hash_password, serve};
use bluelamp_tests::flight_client::{fetch, strings};
use tonic::transport::Channel;

struct Server {
    server: RunningServer,
    dir: tempfile::TempDir,
}

/// A `cad` and an `rms` file source; `analyst` (no grants) and `exporter`
/// (may COPY into `exports/` and read `shared/` as external tables).
async fn start() -> Server {
    start_with("[audit]\npath = \"audit/audit.jsonl\"\n").await
}

/// [`start`] with another `[audit]` section.
async fn start_with(audit: &str) -> Server {
    let dir = tempfile::tempdir().unwrap();
    for folder in ["cad", "rms", "exports", "shared", "secret"] {
        std::fs::create_dir_all(dir.path().join(folder)).unwrap();
    }
    std::fs::write(
        dir.path().join("cad/incidents.csv"),
        "urn,grade\nCAD-1,I\nCAD-2,S\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("rms/crimes.csv"),
        "crime_reference,incident_urn\nCRN/1,CAD-1\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("shared/codes.csv"), "code,label\nA,alpha\n").unwrap();
    std::fs::write(dir.path().join("secret/keys.csv"), "k\nhunter2\n").unwrap();
    let hash = hash_password("demo").unwrap();
    let text = format!(
        r#"
[[user]]
name = "analyst"
password_hash = "{hash}"
roles = ["analyst"]

[[user]]
name = "exporter"
password_hash = "{hash}"
roles = ["exporter"]

[[policy.files]]
roles = ["exporter"]
copy_to = ["exports"]
external_tables = ["shared"]

{audit}

[[source]]
name = "cad"
kind = "files"
location = "cad"

[[source]]
name = "rms"
kind = "files"
location = "rms"
"#
    );
    let config = Config::parse(&text, "governance.toml", dir.path().to_path_buf()).unwrap();
    let engine = Engine::start(config, &bluelamp_connectors::registry())
        .await
        .unwrap();
    let server = serve(engine, Some("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    Server { server, dir }
}

async fn client(server: &Server) -> FlightSqlServiceClient<Channel> {
    let channel = Channel::from_shared(format!("http://{}", server.server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    FlightSqlServiceClient::new(channel)
}

async fn login(server: &Server, user: &str) -> FlightSqlServiceClient<Channel> {
    let mut c = client(server).await;
    c.handshake(user, "demo").await.unwrap();
    c
}

/// Runs a statement as a query, then as an update, returning the first
/// error; Ok if both paths accept it.
async fn run(c: &mut FlightSqlServiceClient<Channel>, sql: &str) -> Result<(), String> {
    match c.execute(sql.to_string(), None).await {
        Ok(info) => fetch(c, info).await.map(|_| ()).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

async fn query(c: &mut FlightSqlServiceClient<Channel>, sql: &str) -> Vec<RecordBatch> {
    let info = c.execute(sql.to_string(), None).await.unwrap();
    fetch(c, info).await.unwrap()
}

/// The statement is refused with PERMISSION_DENIED, by the query path and
/// by the update path alike.
async fn assert_denied(c: &mut FlightSqlServiceClient<Channel>, sql: &str, mentions: &str) {
    let e = run(c, sql).await.expect_err(sql);
    assert!(
        e.contains(tonic::Code::PermissionDenied.description()),
        "{sql}: {e}"
    );
    assert!(e.contains(mentions), "{sql}: {e}");
    let e = c
        .execute_update(sql.to_string(), None)
        .await
        .expect_err(sql)
        .to_string();
    assert!(
        e.contains(tonic::Code::PermissionDenied.description()),
        "{sql} (update): {e}"
    );
}

#[tokio::test]
async fn create_external_table_over_server_files_is_refused() {
    let s = start().await;
    let mut c = login(&s, "analyst").await;
    let secret = s.dir.path().join("secret/keys.csv");
    assert_denied(
        &mut c,
        &format!(
            "CREATE EXTERNAL TABLE k STORED AS CSV LOCATION '{}' OPTIONS ('format.has_header' 'true')",
            secret.display()
        ),
        "no grant",
    )
    .await;
    assert_denied(
        &mut c,
        "CREATE EXTERNAL TABLE p STORED AS CSV LOCATION '/etc/passwd'",
        "CREATE EXTERNAL TABLE",
    )
    .await;
    s.server.shutdown().await;
}

#[tokio::test]
async fn copy_to_any_path_is_refused_and_writes_nothing() {
    let s = start().await;
    let mut c = login(&s, "analyst").await;
    let target = s.dir.path().join("exports/out.csv");
    assert_denied(
        &mut c,
        &format!(
            "COPY (SELECT * FROM cad.incidents) TO '{}'",
            target.display()
        ),
        "COPY",
    )
    .await;
    assert!(!target.exists());
    s.server.shutdown().await;
}

#[tokio::test]
async fn explain_analyze_cannot_carry_a_copy() {
    let s = start().await;
    let mut c = login(&s, "analyst").await;
    let target = s.dir.path().join("exports/sneaky.csv");
    assert_denied(
        &mut c,
        &format!("EXPLAIN ANALYZE COPY (SELECT 1) TO '{}'", target.display()),
        "COPY",
    )
    .await;
    assert!(!target.exists());
    s.server.shutdown().await;
}

#[tokio::test]
async fn granted_copy_writes_inside_its_folder_only() {
    let s = start().await;
    let mut c = login(&s, "exporter").await;
    let inside = s.dir.path().join("exports/incidents.csv");
    let n = c
        .execute_update(
            format!(
                "COPY (SELECT * FROM cad.incidents) TO '{}'",
                inside.display()
            ),
            None,
        )
        .await
        .unwrap();
    assert_eq!(n, 2);
    let written = std::fs::read_to_string(&inside).unwrap();
    assert!(written.contains("CAD-2"), "{written}");
    // `..` out of the folder, and a sibling folder, are outside the grant.
    let escape = format!("{}/exports/../secret/out.csv", s.dir.path().display());
    assert_denied(
        &mut c,
        &format!("COPY (SELECT 1) TO '{escape}'"),
        "outside the folders",
    )
    .await;
    assert!(!s.dir.path().join("secret/out.csv").exists());
    let sibling = s.dir.path().join("exports-old/out.csv");
    assert_denied(
        &mut c,
        &format!("COPY (SELECT 1) TO '{}'", sibling.display()),
        "outside the folders",
    )
    .await;
    s.server.shutdown().await;
}

#[cfg(unix)]
#[tokio::test]
async fn a_link_inside_the_granted_folder_does_not_lead_out() {
    let s = start().await;
    std::os::unix::fs::symlink(
        s.dir.path().join("secret"),
        s.dir.path().join("exports/link"),
    )
    .unwrap();
    let mut c = login(&s, "exporter").await;
    let through = s.dir.path().join("exports/link/out.csv");
    assert_denied(
        &mut c,
        &format!("COPY (SELECT 1) TO '{}'", through.display()),
        "outside the folders",
    )
    .await;
    assert!(!s.dir.path().join("secret/out.csv").exists());
    s.server.shutdown().await;
}

#[tokio::test]
async fn granted_external_tables_read_inside_their_folder_only() {
    let s = start().await;
    let mut c = login(&s, "exporter").await;
    let shared = s.dir.path().join("shared/codes.csv");
    c.execute_update(
        format!(
            "CREATE EXTERNAL TABLE codes STORED AS CSV LOCATION '{}' OPTIONS ('format.has_header' 'true')",
            shared.display()
        ),
        None,
    )
    .await
    .unwrap();
    let batches = query(&mut c, "SELECT label FROM codes").await;
    assert_eq!(strings(&batches, "label"), ["alpha"]);
    // The grant to write exports is not a grant to read them as tables.
    let exports = s.dir.path().join("exports");
    assert_denied(
        &mut c,
        &format!(
            "CREATE EXTERNAL TABLE e STORED AS CSV LOCATION '{}/'",
            exports.display()
        ),
        "outside the folders",
    )
    .await;
    s.server.shutdown().await;
}

#[tokio::test]
async fn ddl_on_source_and_system_schemas_is_refused() {
    let s = start().await;
    let mut c = login(&s, "analyst").await;
    for (sql, mentions) in [
        (
            "CREATE VIEW rms.mine AS SELECT 1 AS x",
            "session's own schema",
        ),
        ("DROP TABLE rms.crimes", "session's own schema"),
        (
            "CREATE TABLE bluelamp.sources2 AS SELECT 1 AS x",
            "session's own schema",
        ),
        (
            "CREATE VIEW bluelamp.cad.v AS SELECT 1 AS x",
            "session's own schema",
        ),
        ("CREATE SCHEMA extra", "schemas and catalogs"),
        ("DROP SCHEMA rms", "schemas and catalogs"),
    ] {
        assert_denied(&mut c, sql, mentions).await;
    }
    // CREATE TABLE AS first looks the name up, so a source's schema
    // answers that it has no such table; either way nothing is created.
    assert!(
        run(&mut c, "CREATE TABLE cad.t AS SELECT 1 AS x")
            .await
            .is_err()
    );
    // The sources still answer as before.
    let batches = query(&mut c, "SELECT count(*) AS n FROM rms.crimes").await;
    assert_eq!(strings(&batches, "n"), ["1"]);
    let batches = query(
        &mut c,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'cad'",
    )
    .await;
    assert_eq!(strings(&batches, "table_name"), ["incidents"]);
    s.server.shutdown().await;
}

#[tokio::test]
async fn settings_that_reach_the_server_are_locked() {
    let s = start().await;
    let mut c = login(&s, "analyst").await;
    assert_denied(
        &mut c,
        "SET datafusion.runtime.temp_directory = '/etc'",
        "datafusion.runtime",
    )
    .await;
    assert_denied(
        &mut c,
        "SET datafusion.runtime.memory_limit = '1T'",
        "datafusion.runtime",
    )
    .await;
    // Ordinary settings still work.
    c.execute_update("SET datafusion.execution.batch_size = 100".into(), None)
        .await
        .unwrap();
    s.server.shutdown().await;
}

#[tokio::test]
async fn views_and_tables_in_the_scratch_schema_still_work() {
    let s = start().await;
    let mut c = login(&s, "analyst").await;
    c.execute_update(
        "CREATE VIEW immediate AS SELECT urn FROM cad.incidents WHERE grade = 'I'".into(),
        None,
    )
    .await
    .unwrap();
    c.execute_update("CREATE TABLE public.t AS SELECT 1 AS x".into(), None)
        .await
        .unwrap();
    let batches = query(&mut c, "SELECT urn FROM immediate").await;
    assert_eq!(strings(&batches, "urn"), ["CAD-1"]);
    c.execute_update("DROP VIEW immediate".into(), None)
        .await
        .unwrap();
    s.server.shutdown().await;
}

#[tokio::test]
async fn two_connections_of_one_user_do_not_share_a_session() {
    let s = start().await;
    let mut first = login(&s, "analyst").await;
    let mut second = login(&s, "analyst").await;
    first
        .execute_update("CREATE VIEW mine AS SELECT 1 AS x".into(), None)
        .await
        .unwrap();
    let batches = query(&mut first, "SELECT x FROM mine").await;
    assert_eq!(strings(&batches, "x"), ["1"]);
    let e = run(&mut second, "SELECT x FROM mine").await.unwrap_err();
    assert!(e.contains(tonic::Code::NotFound.description()), "{e}");
    // Clients sending basic credentials on every call are told apart by
    // their connection.
    let mut basic_a = client(&s).await;
    let mut basic_b = client(&s).await;
    let header = "Basic YW5hbHlzdDpkZW1v"; // analyst:demo
    basic_a.set_header("authorization", header);
    basic_b.set_header("authorization", header);
    basic_a
        .execute_update("CREATE VIEW only_a AS SELECT 2 AS y".into(), None)
        .await
        .unwrap();
    let batches = query(&mut basic_a, "SELECT y FROM only_a").await;
    assert_eq!(strings(&batches, "y"), ["2"]);
    assert!(run(&mut basic_b, "SELECT y FROM only_a").await.is_err());
    s.server.shutdown().await;
}

fn trail(dir: &tempfile::TempDir) -> Vec<bluelamp_engine::audit::AuditRecord> {
    let path = dir.path().join("audit/audit.jsonl");
    bluelamp_engine::audit::search(&path, &Default::default()).unwrap()
}

#[tokio::test]
async fn every_statement_is_in_the_audit_trail() {
    let s = start().await;
    let mut c = login(&s, "analyst").await;
    c.execute_update(
        "SET bluelamp.purpose = 'Op Bluebell: missing person'".into(),
        None,
    )
    .await
    .unwrap();
    let batches = query(
        &mut c,
        "SELECT i.urn, c.crime_reference FROM cad.incidents i JOIN rms.crimes c ON c.incident_urn = i.urn",
    )
    .await;
    assert_eq!(strings(&batches, "urn"), ["CAD-1"]);
    assert!(
        run(&mut c, "COPY (SELECT 1) TO '/tmp/x.csv'")
            .await
            .is_err()
    );
    assert!(
        run(&mut c, "SELECT nosuch FROM cad.incidents")
            .await
            .is_err()
    );
    s.server.shutdown().await;
    let records = trail(&s.dir);
    let query_record = records
        .iter()
        .find(|r| r.event == "statement" && r.statement.contains("JOIN"))
        .expect("the query's record");
    assert_eq!(query_record.user, "analyst");
    assert_eq!(query_record.auth, "token");
    assert!(
        query_record
            .client
            .as_deref()
            .is_some_and(|c| c.starts_with("127.0.0.1:"))
    );
    assert_eq!(
        query_record.purpose.as_deref(),
        Some("Op Bluebell: missing person")
    );
    assert_eq!(query_record.sources, ["cad", "rms"]);
    assert_eq!(query_record.tables, ["cad.incidents", "rms.crimes"]);
    for column in [
        "cad.incidents.urn",
        "rms.crimes.crime_reference",
        "rms.crimes.incident_urn",
    ] {
        assert!(
            query_record.columns.iter().any(|c| c == column),
            "{:?}",
            query_record.columns
        );
    }
    assert!(
        !query_record
            .columns
            .iter()
            .any(|c| c == "cad.incidents.grade")
    );
    let completed = records
        .iter()
        .find(|r| r.event == "completed" && r.statement_seq == Some(query_record.seq))
        .expect("the query's completion");
    assert_eq!(
        (completed.rows, completed.outcome.as_str()),
        (Some(1), "ok")
    );
    assert_eq!(completed.recipient.as_deref(), Some("analyst"));
    let refused = records
        .iter()
        .find(|r| r.statement.contains("COPY"))
        .unwrap();
    assert_eq!(refused.outcome, "refused");
    assert!(refused.error.as_deref().unwrap().contains("no grant"));
    let failed = records
        .iter()
        .find(|r| r.statement.contains("nosuch"))
        .unwrap();
    assert_eq!(failed.outcome, "error");
    let path = s.dir.path().join("audit/audit.jsonl");
    assert_eq!(
        bluelamp_engine::audit::verify(&path).unwrap(),
        records.len() as u64
    );
}

#[tokio::test]
async fn concurrent_clients_write_one_unbroken_chain() {
    let s = start().await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let mut c = login(&s, "analyst").await;
        tasks.push(tokio::spawn(async move {
            for _ in 0..5 {
                let batches = query(&mut c, "SELECT count(*) AS n FROM cad.incidents").await;
                assert_eq!(strings(&batches, "n"), ["2"]);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    s.server.shutdown().await;
    // Completion records are written as results end; give the writer a moment.
    let path = s.dir.path().join("audit/audit.jsonl");
    let mut statements = 0;
    for _ in 0..50 {
        let records = trail(&s.dir);
        statements = records.iter().filter(|r| r.event == "completed").count();
        if statements == 40 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(statements, 40);
    assert!(bluelamp_engine::audit::verify(&path).is_ok());
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn an_unwritable_audit_trail_refuses_queries() {
    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("full.jsonl");
    std::os::unix::fs::symlink("/dev/full", &full).unwrap();
    let s = start_with(&format!("[audit]\npath = \"{}\"\n", full.display())).await;
    let mut c = login(&s, "analyst").await;
    let e = run(&mut c, "SELECT urn FROM cad.incidents")
        .await
        .unwrap_err();
    assert!(e.contains(tonic::Code::Unavailable.description()), "{e}");
    assert!(e.contains("audit log"), "{e}");
    assert!(!e.contains("CAD-1"), "{e}");
    s.server.shutdown().await;
}

#[tokio::test]
async fn a_required_purpose_must_be_stated_first() {
    let s =
        start_with("[audit]\npath = \"audit/audit.jsonl\"\nrequire_purpose = [\"rms\"]\n").await;
    let mut c = login(&s, "analyst").await;
    // Sources that need no purpose answer without one.
    let batches = query(&mut c, "SELECT count(*) AS n FROM cad.incidents").await;
    assert_eq!(strings(&batches, "n"), ["2"]);
    let e = run(&mut c, "SELECT * FROM rms.crimes").await.unwrap_err();
    assert!(
        e.contains(tonic::Code::PermissionDenied.description()),
        "{e}"
    );
    assert!(e.contains("SET bluelamp.purpose"), "{e}");
    c.execute_update("SET bluelamp.purpose = 'case 42'".into(), None)
        .await
        .unwrap();
    let batches = query(&mut c, "SELECT crime_reference FROM rms.crimes").await;
    assert_eq!(strings(&batches, "crime_reference"), ["CRN/1"]);
    // The purpose belongs to this connection, not to the user.
    let mut other = login(&s, "analyst").await;
    assert!(run(&mut other, "SELECT * FROM rms.crimes").await.is_err());
    s.server.shutdown().await;
    let records = trail(&s.dir);
    assert!(
        records
            .iter()
            .any(|r| r.outcome == "refused" && r.tables == ["rms.crimes"])
    );
    assert!(
        records
            .iter()
            .any(|r| r.purpose.as_deref() == Some("case 42") && r.tables == ["rms.crimes"])
    );
}

#[tokio::test]
async fn a_statement_that_fails_as_it_starts_is_audited_as_failed() {
    let s = start().await;
    let mut c = login(&s, "analyst").await;
    c.execute_update("CREATE TABLE twice AS SELECT 1 AS x".into(), None)
        .await
        .unwrap();
    // Plans, then fails when it runs: the table is already there.
    let e = c
        .execute_update("CREATE TABLE twice AS SELECT 2 AS x".into(), None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("already exists"), "{e}");
    s.server.shutdown().await;
    let records = trail(&s.dir);
    let second = records
        .iter()
        .filter(|r| r.event == "statement" && r.statement.contains("SELECT 2"))
        .collect::<Vec<_>>();
    assert_eq!(second.len(), 1, "one statement record: {second:?}");
    let completed = records
        .iter()
        .find(|r| r.event == "completed" && r.statement_seq == Some(second[0].seq))
        .expect("its completion");
    assert_eq!(completed.outcome, "error");
    assert!(
        completed
            .error
            .as_deref()
            .is_some_and(|m| m.contains("already exists")),
        "{completed:?}"
    );
}
