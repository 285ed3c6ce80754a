//! The Flight SQL endpoint with arrow-flight's own Flight SQL client, one test
//! per area: authentication, queries and streaming, metadata, prepared
//! statements, updates, cancellation, error codes, tickets, TLS.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{AsArray, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Int64Type, Schema};
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{CommandGetDbSchemas, CommandGetPrimaryKeys, CommandGetTables, SqlInfo};
use arrow_flight::{CancelFlightInfoRequest, CancelStatus, FlightInfo};
use bluelamp_engine::{Config, Engine};
use bluelamp_flight_server::{RunningServer, hash_password, serve};
use bluelamp_tests::flight_client::{fetch, strings};
use futures::TryStreamExt;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity as TlsIdentity};

struct Server {
    server: RunningServer,
    dir: tempfile::TempDir,
}

fn users() -> String {
    let analyst = hash_password("demo").unwrap();
    let other = hash_password("other-pass").unwrap();
    format!(
        "[[user]]\nname = \"analyst\"\npassword_hash = \"{analyst}\"\n\n[[user]]\nname = \"other\"\npassword_hash = \"{other}\"\n"
    )
}

/// Two file sources (`cad`, `rms`) for a cross-source join, and one database
/// source that is down.
async fn start(extra: &str) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(extra, &dir).await;
    let server = serve(engine, Some("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    Server { server, dir }
}

/// The engine behind [`start`]'s server, its files in `dir`.
async fn engine(extra: &str, dir: &tempfile::TempDir) -> Engine {
    std::fs::create_dir_all(dir.path().join("cad")).unwrap();
    std::fs::create_dir_all(dir.path().join("rms")).unwrap();
    std::fs::write(
        dir.path().join("cad/incidents.csv"),
        "urn,grade\nCAD-1,I\nCAD-2,S\nCAD-3,E\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("rms/crimes.csv"),
        "crime_reference,incident_urn\nCRN/1,CAD-1\nCRN/2,CAD-1\nCRN/3,CAD-3\n",
    )
    .unwrap();
    let text = format!(
        "[engine]\nconnect_timeout = \"2s\"\n\n{extra}\n{}\n[[source]]\nname = \"cad\"\nkind = \"files\"\nlocation = \"cad\"\n\n[[source]]\nname = \"rms\"\nkind = \"files\"\nlocation = \"rms\"\n\n[[source]]\nname = \"pnc\"\nkind = \"postgres\"\nhost = \"127.0.0.1\"\nport = 1\nuser = \"u\"\ndatabase = \"d\"\nsslmode = \"disable\"\n",
        users()
    );
    let config = Config::parse(&text, "flight.toml", dir.path().to_path_buf()).unwrap();
    Engine::start(config, &bluelamp_connectors::registry())
        .await
        .unwrap()
}

async fn client(server: &Server) -> FlightSqlServiceClient<Channel> {
    let channel = Channel::from_shared(format!("http://{}", server.server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    FlightSqlServiceClient::new(channel)
}

async fn logged_in(server: &Server) -> FlightSqlServiceClient<Channel> {
    let mut c = client(server).await;
    c.handshake("analyst", "demo").await.unwrap();
    c
}

async fn query(c: &mut FlightSqlServiceClient<Channel>, sql: &str) -> Vec<RecordBatch> {
    let info = c.execute(sql.to_string(), None).await.unwrap();
    fetch(c, info).await.unwrap()
}

/// Whether an error's text carries a gRPC code.
fn has_code(e: &impl std::fmt::Display, code: tonic::Code) -> bool {
    e.to_string().contains(code.description())
}

#[tokio::test]
async fn handshake_tokens_and_basic_credentials() {
    let s = start("").await;
    // No credentials: UNAUTHENTICATED.
    let mut anonymous = client(&s).await;
    let e = anonymous
        .execute("SELECT 1".into(), None)
        .await
        .unwrap_err();
    assert!(has_code(&e, tonic::Code::Unauthenticated), "{e}");
    // Wrong password: UNAUTHENTICATED, without echoing it.
    let e = anonymous.handshake("analyst", "wrong").await.unwrap_err();
    assert!(has_code(&e, tonic::Code::Unauthenticated), "{e}");
    assert!(!e.to_string().contains("wrong\""), "{e}");
    // The handshake returns a bearer token in the header and the payload.
    let mut c = client(&s).await;
    let payload = c.handshake("analyst", "demo").await.unwrap();
    let token = c.token().unwrap().clone();
    assert_eq!(payload, token.as_bytes());
    let batches = query(&mut c, "SELECT 41 + 1 AS answer").await;
    assert_eq!(strings(&batches, "answer"), ["42"]);
    // A made-up token is refused.
    let mut forged = client(&s).await;
    forged.set_token("not-a-token".into());
    assert!(forged.execute("SELECT 1".into(), None).await.is_err());
    // Basic credentials on an ordinary call work without a handshake.
    let mut basic = client(&s).await;
    basic.set_header("authorization", "Basic b3RoZXI6b3RoZXItcGFzcw==");
    let batches = query(&mut basic, "SELECT 1 AS one").await;
    assert_eq!(strings(&batches, "one"), ["1"]);
    s.server.shutdown().await;
}

#[tokio::test]
async fn queries_join_sources_and_stream_in_batches() {
    let s = start("").await;
    let mut c = logged_in(&s).await;
    let batches = query(
        &mut c,
        "SELECT i.urn, i.grade, count(c.crime_reference) AS crimes FROM cad.incidents i LEFT JOIN rms.crimes c ON c.incident_urn = i.urn GROUP BY i.urn, i.grade ORDER BY i.urn",
    )
    .await;
    assert_eq!(strings(&batches, "urn"), ["CAD-1", "CAD-2", "CAD-3"]);
    assert_eq!(strings(&batches, "crimes"), ["2", "0", "1"]);
    // A large result arrives as many batches, not one message.
    let info = c
        .execute("SELECT value FROM range(0, 1000000)".into(), None)
        .await
        .unwrap();
    let batches = fetch(&mut c, info).await.unwrap();
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    assert_eq!(rows, 1_000_000);
    assert!(batches.len() > 10, "{} batches", batches.len());
    let sum: i64 = batches
        .iter()
        .map(|b| {
            b.column(0)
                .as_primitive::<Int64Type>()
                .iter()
                .flatten()
                .sum::<i64>()
        })
        .sum();
    assert_eq!(sum, 999_999 * 1_000_000 / 2);
    s.server.shutdown().await;
}

/// A dictionary-encoded result column (a Parquet file that stores one, a
/// declared dictionary column) reaches the client as the plain strings its
/// announced schema names, nulls kept.
#[tokio::test]
async fn dictionary_columns_arrive_as_plain_strings() {
    let s = start("").await;
    let mut c = logged_in(&s).await;
    let info = c
        .execute(
            "SELECT urn, arrow_cast(CASE WHEN urn = 'CAD-2' THEN NULL ELSE grade END, 'Dictionary(Int16, Utf8)') AS grade FROM cad.incidents ORDER BY urn".into(),
            None,
        )
        .await
        .unwrap();
    let announced = info.clone().try_decode_schema().unwrap();
    assert_eq!(
        announced.field_with_name("grade").unwrap().data_type(),
        &DataType::Utf8
    );
    let batches = fetch(&mut c, info).await.unwrap();
    for batch in &batches {
        assert_eq!(batch.schema().fields(), announced.fields());
    }
    assert_eq!(strings(&batches, "grade"), ["I", "NULL", "E"]);
    s.server.shutdown().await;
}

/// `DoGet` through the generated tonic service (the path a request takes
/// when our own HTTP/2 handler passes it on) sends the layout GetFlightInfo
/// announced: plain strings, not the views DataFusion reads.
#[tokio::test]
async fn generated_do_get_sends_the_announced_layout() {
    use arrow_flight::flight_service_server::FlightService;
    use arrow_flight::utils::flight_data_to_batches;
    use arrow_flight::{FlightDescriptor, Ticket};
    use bluelamp_flight_server::{Authenticator, BluelampFlightSql};
    use prost::Message;

    let dir = tempfile::tempdir().unwrap();
    let engine = engine("", &dir).await;
    let auth = Authenticator::new(&engine.config().users, Duration::from_secs(60)).unwrap();
    let service = BluelampFlightSql::new(engine, auth).unwrap();
    let command = arrow_flight::sql::CommandStatementQuery {
        query: "SELECT urn, grade FROM cad.incidents ORDER BY urn".into(),
        transaction_id: None,
    };
    let descriptor = FlightDescriptor::new_cmd(
        arrow_flight::sql::Any::pack(&command)
            .unwrap()
            .encode_to_vec(),
    );
    let info = service
        .get_flight_info(authorized(descriptor))
        .await
        .unwrap()
        .into_inner();
    let announced = info.clone().try_decode_schema().unwrap();
    assert_eq!(
        announced.field_with_name("urn").unwrap().data_type(),
        &DataType::Utf8
    );
    let ticket: Ticket = info.endpoint[0].ticket.clone().unwrap();
    let stream = service
        .do_get(authorized(ticket))
        .await
        .unwrap()
        .into_inner();
    let data: Vec<_> = stream.try_collect().await.unwrap();
    let batches = flight_data_to_batches(&data).unwrap();
    assert_eq!(batches[0].schema().fields(), announced.fields());
    assert_eq!(strings(&batches, "urn"), ["CAD-1", "CAD-2", "CAD-3"]);
}

/// `message` as a request from `analyst` with basic credentials.
fn authorized<T>(message: T) -> tonic::Request<T> {
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode("analyst:demo");
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Basic {basic}").parse().unwrap());
    request
}

#[tokio::test]
async fn metadata_for_bi_tools() {
    let s = start("").await;
    let mut c = logged_in(&s).await;

    let info = c
        .get_sql_info(vec![
            SqlInfo::FlightSqlServerName,
            SqlInfo::FlightSqlServerReadOnly,
            SqlInfo::SqlIdentifierQuoteChar,
        ])
        .await
        .unwrap();
    let batches = fetch(&mut c, info).await.unwrap();
    let text = arrow::util::pretty::pretty_format_batches(&batches)
        .unwrap()
        .to_string();
    assert!(text.contains("Bluelamp"), "{text}");
    assert!(text.contains('"'), "{text}");
    assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), 3);

    let info = c.get_xdbc_type_info(Default::default()).await.unwrap();
    let batches = fetch(&mut c, info).await.unwrap();
    let names = strings(&batches, "type_name");
    for t in ["BIGINT", "VARCHAR", "TIMESTAMP", "BOOLEAN", "DOUBLE"] {
        assert!(names.contains(&t.to_string()), "{names:?}");
    }

    let info = c.get_catalogs().await.unwrap();
    let batches = fetch(&mut c, info).await.unwrap();
    assert_eq!(strings(&batches, "catalog_name"), ["bluelamp"]);

    let info = c
        .get_db_schemas(CommandGetDbSchemas {
            catalog: Some("bluelamp".into()),
            db_schema_filter_pattern: Some("r_s".into()),
        })
        .await
        .unwrap();
    let batches = fetch(&mut c, info).await.unwrap();
    assert_eq!(strings(&batches, "db_schema_name"), ["rms"]);
    let info = c
        .get_db_schemas(CommandGetDbSchemas {
            catalog: None,
            db_schema_filter_pattern: None,
        })
        .await
        .unwrap();
    let all = strings(&fetch(&mut c, info).await.unwrap(), "db_schema_name");
    for schema in ["bluelamp", "cad", "information_schema", "public", "rms"] {
        assert!(all.contains(&schema.to_string()), "{all:?}");
    }

    let info = c
        .get_tables(CommandGetTables {
            catalog: None,
            db_schema_filter_pattern: Some("%".into()),
            table_name_filter_pattern: Some("%cident%".into()),
            table_types: vec!["BASE TABLE".into()],
            include_schema: true,
        })
        .await
        .unwrap();
    let batches = fetch(&mut c, info).await.unwrap();
    assert_eq!(strings(&batches, "table_name"), ["incidents"]);
    assert_eq!(strings(&batches, "db_schema_name"), ["cad"]);
    let schema_bytes = batches[0].column_by_name("table_schema").unwrap();
    let schema_bytes = schema_bytes.as_binary::<i32>().value(0);
    let schema = arrow::ipc::convert::try_schema_from_ipc_buffer(schema_bytes).unwrap();
    let names: Vec<&String> = schema.fields().iter().map(|f| f.name()).collect();
    assert_eq!(names, ["urn", "grade"]);
    let info = c
        .get_tables(CommandGetTables {
            catalog: None,
            db_schema_filter_pattern: Some("information_schema".into()),
            table_name_filter_pattern: None,
            table_types: vec!["VIEW".into()],
            include_schema: false,
        })
        .await
        .unwrap();
    let views = strings(&fetch(&mut c, info).await.unwrap(), "table_name");
    assert!(views.contains(&"columns".to_string()), "{views:?}");

    let info = c.get_table_types().await.unwrap();
    let types = strings(&fetch(&mut c, info).await.unwrap(), "table_type");
    assert_eq!(types, ["BASE TABLE", "LOCAL TEMPORARY", "VIEW"]);

    // Files declare no key: an empty answer of the right shape.
    let info = c
        .get_primary_keys(CommandGetPrimaryKeys {
            catalog: None,
            db_schema: Some("cad".into()),
            table: "incidents".into(),
        })
        .await
        .unwrap();
    let batches = fetch(&mut c, info).await.unwrap();
    assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), 0);
    let info = c
        .get_exported_keys(arrow_flight::sql::CommandGetExportedKeys {
            catalog: None,
            db_schema: Some("cad".into()),
            table: "incidents".into(),
        })
        .await
        .unwrap();
    let schema = info.clone().try_decode_schema().unwrap();
    assert_eq!(schema.field(2).name(), "pk_table_name");
    let batches = fetch(&mut c, info).await.unwrap();
    assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), 0);
    s.server.shutdown().await;
}

#[tokio::test]
async fn prepared_statements_bind_parameters() {
    let s = start("").await;
    let mut c = logged_in(&s).await;
    let mut prepared = c
        .prepare(
            "SELECT crime_reference FROM rms.crimes WHERE incident_urn = $1 ORDER BY crime_reference"
                .into(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        prepared.dataset_schema().unwrap().field(0).name(),
        "crime_reference"
    );
    let parameters = prepared.parameter_schema().unwrap().clone();
    assert_eq!(parameters.fields().len(), 1);
    assert_eq!(parameters.field(0).data_type(), &DataType::Utf8);
    for (urn, want) in [("CAD-1", vec!["CRN/1", "CRN/2"]), ("CAD-3", vec!["CRN/3"])] {
        let batch = RecordBatch::try_new(
            Arc::new(parameters.clone()),
            vec![Arc::new(arrow::array::StringArray::from(vec![urn]))],
        )
        .unwrap();
        prepared.set_parameters(batch).unwrap();
        let info = prepared.execute().await.unwrap();
        let batches = fetch(&mut c, info).await.unwrap();
        assert_eq!(strings(&batches, "crime_reference"), want);
    }
    prepared.close().await.unwrap();

    // Prepared INSERT with several parameter rows.
    c.execute_update("CREATE TABLE notes (id BIGINT, note VARCHAR)".into(), None)
        .await
        .unwrap();
    let mut insert = c
        .prepare("INSERT INTO notes VALUES ($1, $2)".into(), None)
        .await
        .unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("$1", DataType::Int64, true),
        Field::new("$2", DataType::Utf8, true),
    ]));
    let rows = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(vec![1, 2, 3])),
            Arc::new(arrow::array::StringArray::from(vec!["a", "b", "c"])),
        ],
    )
    .unwrap();
    insert.set_parameters(rows).unwrap();
    assert_eq!(insert.execute_update().await.unwrap(), 3);
    let batches = query(&mut c, "SELECT count(*) AS n FROM notes").await;
    assert_eq!(strings(&batches, "n"), ["3"]);
    s.server.shutdown().await;
}

#[tokio::test]
async fn updates_return_row_counts_and_tables_persist_per_user() {
    let s = start("").await;
    let mut c = logged_in(&s).await;
    assert_eq!(
        c.execute_update(
            "CREATE TABLE tasks (urn VARCHAR, done BOOLEAN)".into(),
            None
        )
        .await
        .unwrap(),
        0
    );
    let n = c
        .execute_update(
            "INSERT INTO tasks SELECT urn, false FROM cad.incidents".into(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(n, 3);
    let batches = query(&mut c, "SELECT count(*) AS n FROM tasks").await;
    assert_eq!(strings(&batches, "n"), ["3"]);
    // Another user has their own scratch schema.
    let mut other = client(&s).await;
    other.handshake("other", "other-pass").await.unwrap();
    let e = other
        .execute("SELECT * FROM tasks".into(), None)
        .await
        .unwrap_err();
    assert!(has_code(&e, tonic::Code::NotFound), "{e}");
    // A SELECT is not an update.
    let e = c.execute_update("SELECT 1".into(), None).await.unwrap_err();
    assert!(has_code(&e, tonic::Code::InvalidArgument), "{e}");
    s.server.shutdown().await;
}

#[tokio::test]
async fn errors_have_precise_codes_and_no_internals() {
    let s = start("").await;
    let mut c = logged_in(&s).await;
    let e = c.execute("SELEC 1".into(), None).await.unwrap_err();
    assert!(has_code(&e, tonic::Code::InvalidArgument), "{e}");
    assert!(e.to_string().contains("SELEC"), "{e}");
    let e = c
        .execute("SELECT * FROM cad.nowhere".into(), None)
        .await
        .unwrap_err();
    assert!(has_code(&e, tonic::Code::NotFound), "{e}");
    let e = c
        .execute("SELECT * FROM pnc.people".into(), None)
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(has_code(&e, tonic::Code::Unavailable), "{text}");
    assert!(text.contains("pnc"), "{text}");
    // Nothing of the server's disk layout reaches the client.
    let dir = s.dir.path().display().to_string();
    for sql in [
        "SELECT * FROM cad.incidents WHERE nosuch = 1",
        "SELECT * FROM pnc.people",
    ] {
        let e = c.execute(sql.into(), None).await.unwrap_err();
        assert!(!e.to_string().contains(&dir), "{e}");
    }
    s.server.shutdown().await;
}

#[tokio::test]
async fn tickets_belong_to_their_user() {
    let s = start("").await;
    let mut analyst = logged_in(&s).await;
    let info = analyst
        .execute("SELECT urn FROM cad.incidents".into(), None)
        .await
        .unwrap();
    let mut other = client(&s).await;
    other.handshake("other", "other-pass").await.unwrap();
    let e = fetch(&mut other, info.clone()).await.unwrap_err();
    assert!(has_code(&e, tonic::Code::PermissionDenied), "{e}");
    // The owner can still read it, once.
    let batches = fetch(&mut analyst, info.clone()).await.unwrap();
    assert_eq!(strings(&batches, "urn").len(), 3);
    let e = fetch(&mut analyst, info).await.unwrap_err();
    assert!(has_code(&e, tonic::Code::NotFound), "{e}");
    s.server.shutdown().await;
}

#[tokio::test]
async fn tickets_expire() {
    let s = start("[server]\nticket_ttl = \"1s\"\n").await;
    let mut c = logged_in(&s).await;
    let info = c.execute("SELECT 1".into(), None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let e = fetch(&mut c, info).await.unwrap_err();
    assert!(e.to_string().contains("expired"), "{e}");
    s.server.shutdown().await;
}

#[tokio::test]
async fn cancel_flight_info_stops_waiting_and_running_queries() {
    let s = start("").await;
    let mut c = logged_in(&s).await;
    let long = "SELECT sum(value) AS s FROM range(0, 100000000000)";
    // Cancelled before it is read: DoGet answers CANCELLED.
    let info = c.execute(long.into(), None).await.unwrap();
    assert_eq!(cancel(&mut c, info.clone()).await, CancelStatus::Cancelled);
    let e = fetch(&mut c, info).await.unwrap_err();
    assert!(has_code(&e, tonic::Code::Cancelled), "{e}");

    // Cancelled while running: the stream ends with CANCELLED, promptly.
    let info = c.execute(long.into(), None).await.unwrap();
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let stream = c.do_get(ticket).await.unwrap();
    let reader = tokio::spawn(async move { stream.try_collect::<Vec<_>>().await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut c2 = logged_in(&s).await;
    assert_eq!(cancel(&mut c2, info).await, CancelStatus::Cancelled);
    let outcome = tokio::time::timeout(Duration::from_secs(10), reader)
        .await
        .expect("the cancelled query stopped")
        .unwrap();
    let e = outcome.unwrap_err();
    assert!(e.to_string().contains("cancelled"), "{e}");
    s.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_cancelled_from_another_connection_ends_its_stream_with_cancelled() {
    let s = start("").await;
    let mut c = logged_in(&s).await;
    let long = "SELECT sum(value) AS s FROM range(0, 100000000000)";
    let info = c.execute(long.into(), None).await.unwrap();
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let stream = c.do_get(ticket).await.unwrap();
    let reader = tokio::spawn(async move { stream.try_collect::<Vec<_>>().await });
    // A second connection of the same user finds it in bluelamp.queries,
    // as a Flight SQL statement, and stops it.
    let mut c2 = logged_in(&s).await;
    let started = std::time::Instant::now();
    let id = loop {
        let rows = query(
            &mut c2,
            "SELECT id, client FROM bluelamp.queries WHERE state = 'running' AND sql LIKE 'SELECT sum(value)%'",
        )
        .await;
        if let Some(id) = strings(&rows, "id").first() {
            assert_eq!(strings(&rows, "client"), ["flight-sql"]);
            break id.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "never listed as running"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let answer = query(
        &mut c2,
        &format!("SELECT bluelamp.cancel_query('{id}') AS answer"),
    )
    .await;
    assert_eq!(
        strings(&answer, "answer"),
        [format!("cancelled {id} (flight-sql by analyst)")]
    );
    let outcome = tokio::time::timeout(Duration::from_secs(20), reader)
        .await
        .expect("the cancelled statement stopped")
        .unwrap();
    let e = outcome.unwrap_err();
    assert!(has_code(&e, tonic::Code::Cancelled), "{e}");
    assert!(
        e.to_string()
            .contains(&format!("statement {id} was cancelled by analyst")),
        "{e}"
    );
    s.server.shutdown().await;
}

/// Sends CancelFlightInfo with the client's credentials.
async fn cancel(c: &mut FlightSqlServiceClient<Channel>, info: FlightInfo) -> CancelStatus {
    let token = c.token().cloned();
    let mut request = tonic::Request::new(CancelFlightInfoRequest::new(info));
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    let body = prost::Message::encode_to_vec(request.get_ref());
    let mut action = tonic::Request::new(arrow_flight::Action {
        r#type: "CancelFlightInfo".into(),
        body: body.into(),
    });
    *action.metadata_mut() = request.metadata().clone();
    let mut results = c.inner_mut().do_action(action).await.unwrap().into_inner();
    let result = results.message().await.unwrap().unwrap();
    let decoded: arrow_flight::CancelFlightInfoResult =
        prost::Message::decode(result.body).unwrap();
    decoded.status()
}

async fn tls_client(
    addr: std::net::SocketAddr,
    pki: &bluelamp_tests::fixtures::Pki,
    with_client_cert: bool,
) -> Result<FlightSqlServiceClient<Channel>, String> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.ca))
        .domain_name("localhost");
    if with_client_cert {
        tls = tls.identity(TlsIdentity::from_pem(&pki.client_cert, &pki.client_key));
    }
    let channel = Channel::from_shared(format!("https://localhost:{}", addr.port()))
        .unwrap()
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))?;
    Ok(FlightSqlServiceClient::new(channel))
}

#[tokio::test]
async fn tls_and_mutual_tls() {
    let pki = bluelamp_tests::fixtures::pki();
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [
        ("ca.pem", &pki.ca),
        ("server.pem", &pki.server_cert),
        ("server.key", &pki.server_key),
    ] {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let path = |n: &str| dir.path().join(n).display().to_string();

    // TLS: a TLS client works; a plaintext client does not.
    let s = start(&format!(
        "[server]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
        path("server.pem"),
        path("server.key")
    ))
    .await;
    assert!(s.server.tls);
    let mut c = tls_client(s.server.addr, &pki, false).await.unwrap();
    c.handshake("analyst", "demo").await.unwrap();
    assert_eq!(strings(&query(&mut c, "SELECT 7 AS n").await, "n"), ["7"]);
    let mut plain = client(&s).await;
    assert!(plain.handshake("analyst", "demo").await.is_err());
    s.server.shutdown().await;

    // Mutual TLS: without a client certificate the call fails.
    let s = start(&format!(
        "[server]\ntls_cert = \"{}\"\ntls_key = \"{}\"\nclient_ca = \"{}\"\n",
        path("server.pem"),
        path("server.key"),
        path("ca.pem")
    ))
    .await;
    let refused = match tls_client(s.server.addr, &pki, false).await {
        Err(_) => true,
        Ok(mut c) => c.handshake("analyst", "demo").await.is_err(),
    };
    assert!(refused, "a client without a certificate was served");
    let mut c = tls_client(s.server.addr, &pki, true).await.unwrap();
    c.handshake("analyst", "demo").await.unwrap();
    assert_eq!(strings(&query(&mut c, "SELECT 8 AS n").await, "n"), ["8"]);
    s.server.shutdown().await;
}

#[tokio::test]
async fn serving_without_users_or_with_bad_tls_files_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::parse("", "empty.toml", dir.path().to_path_buf()).unwrap();
    let engine = Engine::start(config, &bluelamp_connectors::registry())
        .await
        .unwrap();
    let e = serve(engine, Some("127.0.0.1:0".parse().unwrap()))
        .await
        .err()
        .unwrap();
    assert!(e.to_string().contains("no [[user]]"), "{e}");

    let text = format!(
        "[server]\ntls_cert = \"missing.pem\"\ntls_key = \"missing.key\"\n\n{}",
        users()
    );
    let config = Config::parse(&text, "tls.toml", dir.path().to_path_buf()).unwrap();
    let engine = Engine::start(config, &bluelamp_connectors::registry())
        .await
        .unwrap();
    let e = serve(engine, Some("127.0.0.1:0".parse().unwrap()))
        .await
        .err()
        .unwrap();
    assert!(e.to_string().contains("server.tls_cert"), "{e}");

    let e = Config::parse(
        "[server]\ntls_cert = \"a.pem\"\n",
        "half.toml",
        dir.path().to_path_buf(),
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("tls_key"), "{e}");
    let e = Config::parse(
        "[[user]]\nname = \"x\"\npassword_hash = \"plaintext\"\n",
        "user.toml",
        dir.path().to_path_buf(),
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("user.toml:1"), "{e}");
    assert!(e.to_string().contains("hash-password"), "{e}");
}

/// A supplier whose answers arrive garbled however often they are asked
/// for: the query fails as UNAVAILABLE, naming the source and the endpoint,
/// not as an internal error, and no partial result is returned.
#[tokio::test]
async fn a_failing_source_is_unavailable_and_named() {
    use axum::routing::get;
    let document = serde_json::json!({
        "openapi": "3.0.3", "info": {"title": "garbled", "version": "1"},
        "paths": {"/notes": {"get": {"operationId": "listNotes", "responses": {"200": {"description": "ok",
            "content": {"application/json": {"schema": {"type": "array", "items":
                {"type": "object", "properties": {"id": {"type": "integer"}}}}}}}}}}}
    });
    let app = axum::Router::new()
        .route(
            "/openapi.json",
            get(move || {
                let document = document.clone();
                async move { axum::Json(document) }
            }),
        )
        .route("/notes", get(|| async { "[{\"id\": 1}, {\"id\"" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let s = start(&format!(
        "[[source]]\nname = \"notes\"\nkind = \"openapi\"\nspec = \"{url}/openapi.json\"\nretries = 1\n"
    ))
    .await;
    let mut c = logged_in(&s).await;
    let e = match c.execute("SELECT * FROM notes.notes".into(), None).await {
        Ok(info) => fetch(&mut c, info)
            .await
            .map(|_| ())
            .unwrap_err()
            .to_string(),
        Err(e) => e.to_string(),
    };
    assert!(has_code(&e, tonic::Code::Unavailable), "{e}");
    assert!(
        e.contains("source 'notes' (openapi): GET /notes: the answer is not valid JSON"),
        "{e}"
    );
}
