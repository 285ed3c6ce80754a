//! The `flightsql` connector against real Flight SQL servers: another
//! Bluelamp (pushdown proven by EXPLAIN and by the remote's own audit
//! trail; the end user's identity forwarded to the remote's policy; TLS
//! and mutual TLS; prepared-statement deposits; wrong credentials), and a
//! small Flight SQL server of the test's own that declares nothing, lies
//! about its schema, or goes away mid-stream.
//! (The conformance suite runs over it too: `conformance::flightsql`.)

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::sql::metadata::GetTablesBuilder;
use arrow_flight::sql::server::FlightSqlService;
use arrow_flight::sql::{
    CommandGetTables, CommandStatementQuery, ProstMessageExt, SqlInfo, TicketStatementQuery,
};
use arrow_flight::{FlightData, FlightDescriptor, FlightEndpoint, FlightInfo, Ticket};
use bluelamp_engine::audit::{AuditRecord, SearchFilter, search};
use bluelamp_engine::{Engine, ErrorKind, Identity, QueryError};
use bluelamp_tests::fixtures::{RemoteBluelamp, engine_from_text, write_incidents};
use futures::{Stream, StreamExt, TryStreamExt, stream};
use prost::Message;
use tonic::{Request, Response, Status};

const REMOTE_CAD: &str = "[audit]\npath = \"audit.jsonl\"\n\n[[source]]\nname = \"cad\"\nkind = \"files\"\nlocation = \"cad\"\n";

async fn rows(engine: &Engine, user: &str, sql: &str) -> Result<Vec<RecordBatch>, QueryError> {
    let session = engine.session(Identity::new(user, "test"));
    let output = session.sql(sql).await?;
    output.stream.try_collect().await.map_err(QueryError::from)
}

/// `sql`'s answer as `analyst`, as a table.
async fn ask(engine: &Engine, sql: &str) -> String {
    text(&rows(engine, "analyst", sql).await.unwrap())
}

fn text(batches: &[RecordBatch]) -> String {
    arrow::util::pretty::pretty_format_batches(batches)
        .unwrap()
        .to_string()
}

/// The remote's audit trail, once every record is written.
async fn remote_trail(remote: &RemoteBluelamp, dir: &Path) -> Vec<AuditRecord> {
    remote.engine.audit_log().unwrap().flush().await.unwrap();
    search(&dir.join("audit.jsonl"), &SearchFilter::default()).unwrap()
}

#[tokio::test]
async fn a_filtered_aggregate_is_sent_whole_to_the_remote() {
    let dir = tempfile::tempdir().unwrap();
    write_incidents(dir.path());
    let remote = RemoteBluelamp::start(REMOTE_CAD, "", dir.path()).await;
    let local = engine_from_text(&remote.source("force_b", ""), dir.path())
        .await
        .unwrap();
    let sql = "SELECT grade, count(*) AS n FROM force_b.incidents WHERE NOT closed GROUP BY grade ORDER BY grade";
    let plan = ask(&local, &format!("EXPLAIN {sql}")).await;
    assert!(
        plan.contains("sql_federation_exec") || plan.contains("VirtualExecutionPlan"),
        "{plan}"
    );
    assert!(plan.contains("GROUP BY"), "the aggregate is sent: {plan}");
    assert!(plan.contains("NOT"), "the filter is sent: {plan}");
    let answer = ask(&local, sql).await;
    let oracle = text(
        &rows(
            &remote.engine,
            "federation",
            "SELECT grade, count(*) AS n FROM cad.incidents WHERE NOT closed GROUP BY grade ORDER BY grade",
        )
        .await
        .unwrap(),
    );
    assert_eq!(answer, oracle);
    assert!(answer.contains("| A     | 75 |"), "{answer}");
    // The remote ran the aggregate: it sent 3 rows, not 300.
    let trail = remote_trail(&remote, dir.path()).await;
    let statement = trail
        .iter()
        .find(|r| r.event == "statement" && r.statement.contains("GROUP BY"))
        .unwrap_or_else(|| panic!("the remote saw no aggregate: {trail:?}"));
    assert_eq!(statement.user, "federation");
    let completed = trail
        .iter()
        .find(|r| r.event == "completed" && r.statement_seq == Some(statement.seq))
        .unwrap();
    assert_eq!(completed.rows, Some(3), "{completed:?}");
}

#[tokio::test]
async fn a_join_of_two_forces_incidents() {
    // A regional unit joins two forces' C&C incidents by station.
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    write_incidents(dir_a.path());
    write_incidents(dir_b.path());
    let force_a = RemoteBluelamp::start(REMOTE_CAD, "", dir_a.path()).await;
    let force_b = RemoteBluelamp::start(REMOTE_CAD, "", dir_b.path()).await;
    let config = format!(
        "{}{}",
        force_a.source("force_a", ""),
        force_b.source("force_b", "")
    );
    let local = engine_from_text(&config, dir_a.path()).await.unwrap();
    let answer = rows(
        &local,
        "regional",
        "SELECT count(*) AS n FROM force_a.incidents a JOIN force_b.incidents b ON a.urn = b.urn WHERE a.grade = 'A'",
    )
    .await
    .unwrap();
    assert!(text(&answer).contains("| 100 |"), "{}", text(&answer));
    // Each force is asked only for its own side, filtered where it can be.
    let plan = text(
        &rows(
            &local,
            "regional",
            "EXPLAIN SELECT count(*) FROM force_a.incidents a JOIN force_b.incidents b ON a.urn = b.urn WHERE a.grade = 'A'",
        )
        .await
        .unwrap(),
    );
    assert_eq!(
        plan.matches("sql_federation_exec")
            .count()
            .max(plan.matches("VirtualExecutionPlan").count()),
        2,
        "{plan}"
    );
}

#[tokio::test]
async fn the_end_user_is_forwarded_and_the_remote_policy_applies() {
    let dir = tempfile::tempdir().unwrap();
    write_incidents(dir.path());
    let remote_config = format!(
        "{REMOTE_CAD}\n[[user]]\nname = \"alice\"\nroles = [\"analyst\"]\n\n[[user]]\nname = \"bob\"\nroles = [\"analyst\"]\n\n[[policy.grant]]\nusers = [\"federation\"]\ntables = [\"cad.*\"]\n\n[[policy.grant]]\nroles = [\"analyst\"]\ntables = [\"cad.*\"]\n\n[[policy.row_filter]]\nname = \"grade A only\"\nroles = [\"analyst\"]\ntable = \"cad.incidents\"\nfilter = \"grade = 'A'\"\n"
    );
    let remote = RemoteBluelamp::start(&remote_config, "act_for = [\"alice\"]", dir.path()).await;
    let local = engine_from_text(
        &remote.source(
            "force_b",
            "on_behalf_of = \"x-bluelamp-on-behalf-of: {user}\"",
        ),
        dir.path(),
    )
    .await
    .unwrap();
    let sql = "SELECT grade, count(*) AS n FROM force_b.incidents GROUP BY grade";
    let answer = text(&rows(&local, "alice", sql).await.unwrap());
    assert!(answer.contains("| A     | 100 |"), "{answer}");
    assert!(
        !answer.contains("| B "),
        "alice sees grade A only: {answer}"
    );
    // bob is a user there, but the federation account may not act for him.
    let refused = rows(&local, "bob", sql).await.unwrap_err();
    assert!(refused.message.contains("force_b"), "{refused:?}");
    assert!(
        refused.message.contains("may not act for others"),
        "{refused:?}"
    );
    // The remote's audit trail names alice, and through whom she came.
    let trail = remote_trail(&remote, dir.path()).await;
    let alice = trail
        .iter()
        .find(|r| r.event == "statement" && r.user == "alice")
        .unwrap_or_else(|| panic!("{trail:?}"));
    assert!(alice.auth.ends_with("via federation"), "{alice:?}");
    assert!(
        alice.policies.iter().any(|p| p == "grade A only"),
        "{alice:?}"
    );
}

#[tokio::test]
async fn tls_and_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    write_incidents(dir.path());
    let pki = bluelamp_tests::fixtures::pki();
    for (name, pem) in [
        ("ca.pem", &pki.ca),
        ("server.pem", &pki.server_cert),
        ("server.key", &pki.server_key),
        ("client.pem", &pki.client_cert),
        ("client.key", &pki.client_key),
    ] {
        std::fs::write(dir.path().join(name), pem).unwrap();
    }
    let remote = RemoteBluelamp::start(
        &format!("{REMOTE_CAD}\n[server]\ntls_cert = \"server.pem\"\ntls_key = \"server.key\"\nclient_ca = \"ca.pem\"\n"),
        "",
        dir.path(),
    )
    .await;
    let port = remote.server.addr.port();
    let source = |extra: &str| {
        format!(
            "[[source]]\nname = \"force_b\"\nkind = \"flightsql\"\nurl = \"grpc+tls://localhost:{port}\"\nuser = \"federation\"\npassword = \"federation-pass\"\ntls_ca = \"ca.pem\"\n{extra}\n"
        )
    };
    let local = engine_from_text(
        &source("tls_cert = \"client.pem\"\ntls_key = \"client.key\""),
        dir.path(),
    )
    .await
    .unwrap();
    let answer = ask(&local, "SELECT count(*) AS n FROM force_b.incidents").await;
    assert!(answer.contains("| 300 |"), "{answer}");
    // Without a client certificate the server refuses the connection.
    let local = engine_from_text(&source(""), dir.path()).await.unwrap();
    let e = rows(&local, "analyst", "SELECT count(*) FROM force_b.incidents")
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unavailable, "{e:?}");
    assert!(e.message.contains("force_b"), "{e:?}");
    // Plain gRPC to a TLS server fails too, naming the source.
    let plain = format!(
        "[[source]]\nname = \"force_b\"\nkind = \"flightsql\"\nurl = \"grpc://127.0.0.1:{port}\"\nuser = \"federation\"\npassword = \"federation-pass\"\n"
    );
    let local = engine_from_text(&plain, dir.path()).await.unwrap();
    let e = rows(&local, "analyst", "SELECT 1 FROM force_b.incidents")
        .await
        .unwrap_err();
    assert!(e.message.contains("force_b"), "{e:?}");
}

#[tokio::test]
async fn wrong_credentials_leave_the_source_down_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    write_incidents(dir.path());
    let remote = RemoteBluelamp::start(REMOTE_CAD, "", dir.path()).await;
    let config = remote
        .source("force_b", "")
        .replace("federation-pass", "wrong-pass");
    let local = engine_from_text(&config, dir.path()).await.unwrap();
    let status = &local.sources()[0];
    let error = status.last_error.clone().unwrap();
    assert!(error.contains("check user and password"), "{error}");
    assert!(
        !error.contains("wrong-pass"),
        "the password is never shown: {error}"
    );
    let e = rows(&local, "analyst", "SELECT * FROM force_b.incidents")
        .await
        .unwrap_err();
    assert!(e.message.contains("force_b"), "{e:?}");
}

#[tokio::test]
async fn deposits_go_as_prepared_inserts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rms.sqlite");
    let db = rusqlite::Connection::open(&path).unwrap();
    db.execute_batch("CREATE TABLE crimes (crime_reference TEXT NOT NULL, incident_urn TEXT)")
        .unwrap();
    drop(db);
    let remote = RemoteBluelamp::start(
        &format!(
            "[[source]]\nname = \"rms\"\nkind = \"sqlite\"\npath = \"{}\"\n",
            path.display()
        ),
        "",
        dir.path(),
    )
    .await;
    let local = engine_from_text(&remote.source("force_b", ""), dir.path())
        .await
        .unwrap();
    let inserted = text(
        &rows(
            &local,
            "officer",
            "INSERT INTO force_b.crimes VALUES ('CRN/26/1', 'XY-1'), ('CRN/26/2', NULL), ('CRN/26/3', 'XY-''quoted''')",
        )
        .await
        .unwrap(),
    );
    assert!(inserted.contains("| 3 "), "{inserted}");
    let stored = text(
        &rows(
            &remote.engine,
            "federation",
            "SELECT crime_reference, incident_urn FROM rms.crimes ORDER BY crime_reference",
        )
        .await
        .unwrap(),
    );
    assert!(
        stored.contains("| CRN/26/3        | XY-'quoted'  |"),
        "{stored}"
    );
    assert!(
        stored.contains("| CRN/26/2        |              |"),
        "{stored}"
    );
}

#[tokio::test]
async fn configuration_mistakes_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (options, expected) in [
        (
            "url = \"http2://x:1\"",
            "url: 'http2://x:1': scheme 'http2' is not Flight SQL's",
        ),
        ("url = \"grpc://x\"", "needs a host and a port"),
        (
            "url = \"grpc://x:1\"\ntoken = \"t\"\nuser = \"u\"\npassword = \"p\"",
            "give either `token` or `user` and `password`",
        ),
        (
            "url = \"grpc://x:1\"\nuser = \"u\"",
            "`user` and `password` go together",
        ),
        (
            "url = \"grpc://x:1\"\ntls_ca = \"ca.pem\"",
            "write grpc+tls:// to use TLS",
        ),
        (
            "url = \"grpc+tls://x:1\"\ntls_cert = \"c.pem\"",
            "mutual TLS needs both `tls_cert` and `tls_key`",
        ),
        (
            "url = \"grpc://x:1\"\non_behalf_of = \"no colon\"",
            "on_behalf_of",
        ),
        ("url = \"grpc://x:1\"\nschema = \"cad\"", "schema"),
    ] {
        let config = format!("[[source]]\nname = \"b\"\nkind = \"flightsql\"\n{options}\n");
        let e = engine_from_text(&config, dir.path()).await.unwrap_err();
        assert!(e.contains(expected), "{options}: {e}");
        assert!(e.starts_with("test.toml:"), "{options}: {e}");
    }
}

// ---------------------------------------------------------------------
// A Flight SQL server of the test's own.

/// What the test's server does.
#[derive(Clone, Copy, PartialEq)]
enum Behaviour {
    /// Answers queries with the rows it announced, and declares nothing.
    Honest,
    /// Announces `id` as Int64 and sends it as text.
    Lies,
    /// Sends one batch, then nothing until it is shut down.
    Stalls,
}

#[derive(Clone)]
struct TestServer {
    behaviour: Behaviour,
    /// The queries it was sent.
    queries: Arc<std::sync::Mutex<Vec<String>>>,
}

fn announced() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("grade", DataType::Utf8, true),
    ]))
}

fn honest_batch() -> RecordBatch {
    RecordBatch::try_new(
        announced(),
        vec![
            Arc::new(Int64Array::from(vec![1, 2, 3, 4])),
            Arc::new(StringArray::from(vec![
                Some("A"),
                Some("B"),
                None,
                Some("A"),
            ])),
        ],
    )
    .unwrap()
}

type DataStream = Pin<Box<dyn Stream<Item = Result<FlightData, Status>> + Send>>;

fn encode(schema: SchemaRef, batches: Vec<RecordBatch>) -> DataStream {
    Box::pin(
        FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(stream::iter(batches.into_iter().map(Ok)))
            .map_err(Status::from),
    )
}

#[tonic::async_trait]
impl FlightSqlService for TestServer {
    type FlightService = TestServer;

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let ticket = Ticket::new(query.as_any().encode_to_vec());
        let info = FlightInfo::new()
            .with_descriptor(request.into_inner())
            .with_endpoint(FlightEndpoint::new().with_ticket(ticket));
        Ok(Response::new(info))
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let mut builder: GetTablesBuilder = query.into_builder();
        builder
            .append("test", "main", "incidents", "TABLE", &announced())
            .map_err(Status::from)?;
        let batch = builder.build().map_err(Status::from)?;
        Ok(Response::new(encode(batch.schema(), vec![batch])))
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.queries.lock().unwrap().push(query.query.clone());
        let handle = TicketStatementQuery {
            statement_handle: query.query.into_bytes().into(),
        };
        let info = FlightInfo::new()
            .with_descriptor(request.into_inner())
            .with_endpoint(
                FlightEndpoint::new().with_ticket(Ticket::new(handle.as_any().encode_to_vec())),
            );
        Ok(Response::new(info))
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let sql = String::from_utf8_lossy(&ticket.statement_handle).to_string();
        match self.behaviour {
            Behaviour::Honest => {
                // Answers the connector's simple scans: all the columns.
                let batch = honest_batch();
                let wanted: Vec<usize> = announced()
                    .fields()
                    .iter()
                    .enumerate()
                    .filter(|(_, f)| {
                        sql.contains(&format!("\"{}\"", f.name()))
                            || sql.contains(&format!(".{}", f.name()))
                            || sql.contains(&format!(" {}", f.name()))
                    })
                    .map(|(i, _)| i)
                    .collect();
                let batch = batch.project(&wanted).unwrap();
                Ok(Response::new(encode(batch.schema(), vec![batch])))
            }
            Behaviour::Lies => {
                let schema = Arc::new(Schema::new(vec![
                    Field::new("id", DataType::Utf8, false),
                    Field::new("grade", DataType::Utf8, true),
                ]));
                let batch = RecordBatch::try_new(
                    Arc::clone(&schema),
                    vec![
                        Arc::new(StringArray::from(vec!["one"])),
                        Arc::new(StringArray::from(vec![Some("A")])),
                    ],
                )
                .unwrap();
                Ok(Response::new(encode(schema, vec![batch])))
            }
            Behaviour::Stalls => {
                let first = encode(announced(), vec![honest_batch()]);
                Ok(Response::new(Box::pin(first.chain(stream::pending()))))
            }
        }
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

/// The test's server, running on a runtime of its own in its own thread
/// until the returned sender is dropped or fires; then the runtime ends and
/// every connection is cut, as a crash would cut them.
fn start_test_server(
    behaviour: Behaviour,
) -> (tokio::sync::oneshot::Sender<()>, String, TestServer) {
    let server = TestServer {
        behaviour,
        queries: Arc::default(),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (bound, address) = std::sync::mpsc::channel();
    let service = FlightServiceServer::new(server.clone());
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            bound.send(listener.local_addr().unwrap()).unwrap();
            let serve = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener));
            tokio::select! {
                _ = serve => {}
                _ = stopped => {}
            }
        });
        runtime.shutdown_background();
    });
    let addr = address.recv().unwrap();
    (stop, format!("grpc://{addr}"), server)
}

fn test_source(url: &str) -> String {
    format!("[[source]]\nname = \"other\"\nkind = \"flightsql\"\nurl = \"{url}\"\n")
}

#[tokio::test]
async fn a_server_that_declares_nothing_is_sent_scans_only() {
    let (stop, url, server) = start_test_server(Behaviour::Honest);
    let dir = tempfile::tempdir().unwrap();
    let local = engine_from_text(&test_source(&url), dir.path())
        .await
        .unwrap();
    let answer = ask(
        &local,
        "SELECT grade, count(*) AS n FROM other.incidents GROUP BY grade ORDER BY grade",
    )
    .await;
    assert!(answer.contains("| A     | 2 |"), "{answer}");
    assert!(answer.contains("|       | 1 |"), "{answer}");
    let sent = server.queries.lock().unwrap().clone();
    assert!(!sent.is_empty());
    for query in &sent {
        assert!(
            !query.to_uppercase().contains("GROUP BY") && !query.contains("count("),
            "nothing the server did not declare is sent: {query}"
        );
    }
    drop(stop);
}

#[tokio::test]
async fn a_server_that_sends_another_schema_than_it_announced_is_refused() {
    let (stop, url, _server) = start_test_server(Behaviour::Lies);
    let dir = tempfile::tempdir().unwrap();
    let local = engine_from_text(&test_source(&url), dir.path())
        .await
        .unwrap();
    let e = rows(&local, "analyst", "SELECT id, grade FROM other.incidents")
        .await
        .unwrap_err();
    assert!(e.message.contains("source 'other' (flightsql)"), "{e:?}");
    assert!(e.message.contains("announced"), "{e:?}");
    drop(stop);
}

#[tokio::test]
async fn a_server_lost_mid_stream_fails_the_query_never_shortens_it() {
    let (stop, url, _server) = start_test_server(Behaviour::Stalls);
    let dir = tempfile::tempdir().unwrap();
    let local = engine_from_text(&test_source(&url), dir.path())
        .await
        .unwrap();
    let session = local.session(Identity::new("analyst", "test"));
    let output = session
        .sql("SELECT id, grade FROM other.incidents")
        .await
        .unwrap();
    let mut stream = output.stream;
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(first.num_rows(), 4);
    // The server goes away with the stream open.
    stop.send(()).unwrap();
    let next = tokio::time::timeout(std::time::Duration::from_secs(30), stream.next())
        .await
        .expect("the loss is noticed, not waited on forever");
    let e = QueryError::from(
        next.expect("an error, not the end of the result")
            .unwrap_err(),
    );
    assert_eq!(e.kind, ErrorKind::Unavailable, "{e:?}");
    assert!(e.message.contains("source 'other' (flightsql)"), "{e:?}");
}

// ---------------------------------------------------------------------
// ROAPI, a foreign Flight SQL server (the `roapi` package in the test
// virtualenv ships its binary).

/// A free loopback port (bound, then released for the child to take).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running ROAPI, killed when dropped.
struct Roapi(std::process::Child);

impl Drop for Roapi {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn roapi_is_read_as_a_foreign_flight_sql_server() {
    let venv = std::env::var_os("BLUELAMP_VENV").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv"),
        std::path::PathBuf::from,
    );
    let binary = venv.join("bin").join("roapi");
    if !binary.is_file() {
        return bluelamp_tests::services::service_missing(
            "ROAPI",
            &format!(
                "{} does not exist; run tests/python/setup.sh",
                binary.display()
            ),
        );
    }
    let dir = tempfile::tempdir().unwrap();
    write_incidents(dir.path());
    let port = free_port();
    // ROAPI always starts its HTTP and PostgreSQL servers too.
    let _roapi = Roapi(
        std::process::Command::new(&binary)
            .arg("-t")
            .arg(format!(
                "incidents={}",
                dir.path().join("cad").join("incidents.csv").display()
            ))
            .args(["--addr-flight-sql", &format!("127.0.0.1:{port}")])
            .args(["-a", &format!("127.0.0.1:{}", free_port())])
            .args(["-p", &format!("127.0.0.1:{}", free_port())])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let config = format!(
        "[[source]]\nname = \"roapi\"\nkind = \"flightsql\"\nurl = \"grpc://127.0.0.1:{port}\"\n"
    );
    // It listens within a second or so; the source is down until then.
    let mut local = None;
    for _ in 0..100 {
        let engine = engine_from_text(&config, dir.path()).await.unwrap();
        if engine.sources()[0].state == bluelamp_engine::SourceState::Up {
            local = Some(engine);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let local = local.expect("ROAPI answers within 10 s");
    let sql = "SELECT grade, count(*) AS n FROM roapi.incidents WHERE NOT closed AND station <> 'station-0' GROUP BY grade ORDER BY grade";
    let answer = ask(&local, sql).await;
    // The same query over the same file, in Bluelamp itself.
    let oracle_engine = engine_from_text(
        "[[source]]\nname = \"cad\"\nkind = \"files\"\nlocation = \"cad\"\n",
        dir.path(),
    )
    .await
    .unwrap();
    let oracle = ask(
        &oracle_engine,
        &sql.replace("roapi.incidents", "cad.incidents"),
    )
    .await;
    assert_eq!(answer, oracle);
    // ROAPI declares no SQL capabilities, so the aggregate runs here.
    let plan = ask(&local, &format!("EXPLAIN {sql}")).await;
    let federated: Vec<&str> = plan
        .lines()
        .filter(|l| l.contains("sql_federation_exec") || l.contains("VirtualExecutionPlan"))
        .collect();
    assert!(!federated.is_empty(), "{plan}");
    assert!(
        federated
            .iter()
            .all(|l| !l.contains("GROUP BY") && !l.contains("count(")),
        "{plan}"
    );
    // An empty answer, which ROAPI sends with no columns at all.
    let empty = rows(
        &local,
        "analyst",
        "SELECT urn FROM roapi.incidents WHERE grade = 'Z'",
    )
    .await
    .unwrap();
    assert_eq!(empty.iter().map(RecordBatch::num_rows).sum::<usize>(), 0);
}

#[tokio::test]
async fn a_remote_bluelamp_table_can_be_accelerated() {
    let dir = tempfile::tempdir().unwrap();
    write_incidents(dir.path());
    let remote = RemoteBluelamp::start(REMOTE_CAD, "", dir.path()).await;
    let config = format!(
        "{}\n[source.tables.incidents.accelerate]\nrefresh = \"1h\"\n",
        remote.source("force_b", "")
    );
    let local = engine_from_text(&config, dir.path()).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !local.accelerations().iter().any(|a| a.rows == Some(300)) {
        assert!(
            std::time::Instant::now() < deadline,
            "no copy: {:?}",
            local.accelerations()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let reads_of_incidents = |trail: &[AuditRecord]| {
        trail
            .iter()
            .filter(|r| r.event == "statement" && r.statement.contains("incidents"))
            .count()
    };
    let before = reads_of_incidents(&remote_trail(&remote, dir.path()).await);
    assert!(before >= 1, "the refresh read the remote");
    // Queries are answered by the copy: the remote is not asked again.
    let sql = "SELECT grade, count(*) AS n FROM force_b.incidents WHERE NOT closed GROUP BY grade ORDER BY grade";
    for _ in 0..3 {
        assert!(ask(&local, sql).await.contains("| A     | 75 |"));
    }
    let after = reads_of_incidents(&remote_trail(&remote, dir.path()).await);
    assert_eq!(before, after);
}
