//! The PostgreSQL wire protocol with real clients: tokio-postgres (SCRAM,
//! the extended protocol in binary, portals with row limits, cancel) and
//! `psql` (TLS, the simple protocol). Every type Bluelamp sends is checked
//! against the real PostgreSQL on this machine sending the same values, in
//! text and in binary; policy and audit are checked to hold as for any
//! other front end; and the same query answers alike over Flight SQL.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::time::{Duration, Instant};

use bluelamp_engine::audit::{SearchFilter, search};
use bluelamp_engine::scram::ScramVerifier;
use bluelamp_pg_server::{RunningPgServer, serve};
use bluelamp_tests::fixtures::LiveDemo;
use bluelamp_tests::pg::PgFixture;
use bluelamp_tests::services::{pg_host, pg_port, service_missing};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{FromSql, Type};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

async fn fixture(extra: &str) -> PgFixture {
    PgFixture::start(extra).await
}

fn settings(server: &RunningPgServer, user: &str, password: &str) -> String {
    format!(
        "host=127.0.0.1 port={} user={user} password={password} dbname=bluelamp connect_timeout=10",
        server.addr.port()
    )
}

async fn connect(server: &RunningPgServer) -> Client {
    try_connect(&settings(server, "analyst", "demo"))
        .await
        .unwrap()
}

async fn try_connect(settings: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(settings, NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// The rows of a simple query, as text.
async fn simple(client: &Client, sql: &str) -> Vec<Vec<Option<String>>> {
    client
        .simple_query(sql)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_string))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// The server's message of an error (tokio-postgres's own text is "db error").
fn message(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_else(|| e.to_string())
}

fn code(e: &tokio_postgres::Error) -> String {
    e.code()
        .map(|c| c.code().to_string())
        .unwrap_or_else(|| format!("no SQLSTATE: {e}"))
}

/// Any value's bytes as the server sent them (binary format).
struct Raw(Vec<u8>);

impl<'a> FromSql<'a> for Raw {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(raw.to_vec()))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// One value per type Bluelamp produces, written for Bluelamp and for
/// PostgreSQL: each pair must reach a client byte for byte alike.
const TYPES: &[(&str, &str)] = &[
    ("true", "true"),
    ("CAST(-7 AS SMALLINT)", "(-7)::int2"),
    ("CAST(123456 AS INT)", "123456::int4"),
    (
        "CAST(-9007199254740993 AS BIGINT)",
        "(-9007199254740993)::int8",
    ),
    ("CAST(1.5 AS REAL)", "1.5::float4"),
    ("CAST(-0.1 AS DOUBLE)", "(-0.1)::float8"),
    ("CAST('1e300' AS DOUBLE)", "'1e300'::float8"),
    ("CAST(1.25 AS DECIMAL(10,3))", "1.250::numeric(10,3)"),
    (
        "CAST(-12345.678 AS DECIMAL(12,3))",
        "(-12345.678)::numeric(12,3)",
    ),
    ("CAST(0.0001 AS DECIMAL(10,4))", "0.0001::numeric(10,4)"),
    (
        "CAST(100000000 AS DECIMAL(20,0))",
        "100000000::numeric(20,0)",
    ),
    ("'café ☕'", "'café ☕'::text"),
    ("X'00ff10'", "'\\x00ff10'::bytea"),
    ("DATE '2024-02-29'", "'2024-02-29'::date"),
    ("DATE '1999-12-31'", "'1999-12-31'::date"),
    ("TIME '13:14:15.5'", "'13:14:15.5'::time"),
    (
        "TIMESTAMP '2024-01-02 03:04:05.123456'",
        "'2024-01-02 03:04:05.123456'::timestamp",
    ),
    (
        "TIMESTAMP '1969-07-20 20:17:40'",
        "'1969-07-20 20:17:40'::timestamp",
    ),
    (
        "arrow_cast(TIMESTAMP '2024-06-01 12:00:00', 'Timestamp(Microsecond, Some(\"UTC\"))')",
        "'2024-06-01 12:00:00+00'::timestamptz",
    ),
    ("INTERVAL '1 day 2 hours'", "interval '1 day 2 hours'"),
    ("INTERVAL '14 months 3 days'", "interval '14 months 3 days'"),
    ("CAST(NULL AS INT)", "NULL::int4"),
];

async fn oracle() -> Option<Client> {
    let settings = format!(
        "host={} port={} user=postgres dbname=postgres connect_timeout=5 options='-c TimeZone=UTC'",
        pg_host(),
        pg_port()
    );
    match try_connect(&settings).await {
        Ok(client) => Some(client),
        Err(e) => {
            service_missing("PostgreSQL", &e.to_string());
            None
        }
    }
}

#[tokio::test]
async fn every_type_reaches_clients_as_postgresql_sends_it() {
    let Some(postgres) = oracle().await else {
        return;
    };
    let f = fixture("").await;
    let bluelamp = connect(&f.pg).await;
    for (ours, theirs) in TYPES {
        // Text, through the simple protocol.
        let got = simple(&bluelamp, &format!("SELECT {ours} AS v")).await;
        let want = simple(&postgres, &format!("SELECT {theirs} AS v")).await;
        assert_eq!(got, want, "text of {ours} / {theirs}");
        // Binary, through the extended protocol; and the same type OID.
        let got = bluelamp
            .query_one(&format!("SELECT {ours} AS v"), &[])
            .await
            .unwrap();
        let want = postgres
            .query_one(&format!("SELECT {theirs} AS v"), &[])
            .await
            .unwrap();
        assert_eq!(
            got.columns()[0].type_(),
            want.columns()[0].type_(),
            "type of {ours} / {theirs}"
        );
        let got: Option<Raw> = got.get(0);
        let want: Option<Raw> = want.get(0);
        assert_eq!(
            got.map(|r| r.0),
            want.map(|r| r.0),
            "binary of {ours} / {theirs}"
        );
    }
    // Nested values arrive as JSON.
    let rows = simple(
        &bluelamp,
        "SELECT make_array(1, 2) AS l, named_struct('a', 1, 'b', 'x') AS s",
    )
    .await;
    assert_eq!(
        rows,
        [[
            Some("[1,2]".to_string()),
            Some(r#"{"a":1,"b":"x"}"#.to_string())
        ]]
    );
    f.pg.shutdown().await;
}

#[tokio::test]
async fn scram_logins_and_their_failures() {
    let f = fixture("").await;
    let client = connect(&f.pg).await;
    assert_eq!(simple(&client, "SELECT 1").await, [[Some("1".into())]]);
    for (user, password) in [
        ("analyst", "wrong"),
        ("nobody", "demo"),
        ("flightonly", "demo"),
    ] {
        let e = try_connect(&settings(&f.pg, user, password))
            .await
            .err()
            .unwrap_or_else(|| panic!("{user} logged in"));
        assert_eq!(e.code(), Some(&SqlState::INVALID_PASSWORD), "{user}: {e}");
        assert_eq!(
            message(&e),
            format!("password authentication failed for user \"{user}\"")
        );
    }
    let e =
        try_connect(&settings(&f.pg, "analyst", "demo").replace("dbname=bluelamp", "dbname=other"))
            .await
            .err()
            .unwrap();
    assert_eq!(code(&e), "3D000", "{e}");
    assert!(
        message(&e).contains("connect to database \"bluelamp\""),
        "{e}"
    );
    f.pg.shutdown().await;
}

#[tokio::test]
async fn errors_carry_sqlstates() {
    let f = fixture("").await;
    let client = connect(&f.pg).await;
    for (sql, want) in [
        ("SELEC 1", "42601"),
        ("SELECT * FROM cad.nope", "42P01"),
        ("SELECT nope FROM cad.incidents", "42703"),
        ("SET nonsense = 1", "42704"),
        ("SAVEPOINT a", "25P01"),
    ] {
        let e = client.simple_query(sql).await.unwrap_err();
        assert_eq!(code(&e), want, "{sql}: {e}");
        // The extended protocol reports the same.
        let e = client.query(sql, &[]).await.unwrap_err();
        assert_eq!(code(&e), want, "{sql} (extended): {e}");
    }
    // The connection is still usable, and a comment-only query (Grafana's
    // health check) is an empty query, not an error.
    assert!(simple(&client, "-- ping").await.is_empty());
    assert_eq!(simple(&client, "SELECT 2").await, [[Some("2".into())]]);
    f.pg.shutdown().await;
}

#[tokio::test]
async fn parameters_bind_in_text_and_binary() {
    let f = fixture("").await;
    let client = connect(&f.pg).await;
    // Typed by the statement: grade is text, the count comes back as int8.
    let rows = client
        .query(
            "SELECT count(*) AS n FROM cad.incidents WHERE grade = $1 AND closed = $2",
            &[&"A", &true],
        )
        .await
        .unwrap();
    let n: i64 = rows[0].get("n");
    // Grades cycle A, B, C; every fourth is closed: i % 12 == 0.
    assert_eq!(n, 25);
    // A prepared statement runs many times with different values.
    let statement = client
        .prepare("SELECT urn FROM cad.incidents WHERE urn = $1")
        .await
        .unwrap();
    assert_eq!(statement.params(), &[Type::TEXT]);
    for i in [0, 150, 299] {
        let urn = format!("XY-{i:05}");
        let row = client.query_one(&statement, &[&urn]).await.unwrap();
        assert_eq!(row.get::<_, String>(0), urn);
    }
    // Untyped placeholders take the client's declared type.
    let row = client
        .query_one("SELECT $1::BIGINT + 1 AS x", &[&41i64])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 42);
    let e = client
        .query("SELECT count(*) FROM cad.incidents WHERE grade = $1", &[])
        .await
        .unwrap_err();
    assert!(message(&e).contains("1 parameter"), "{e}");
    // A parameter number far past PostgreSQL's limit is an error, not a
    // list of billions of parameters.
    let e = client
        .query("SELECT $1::BIGINT, $4000000000::BIGINT", &[&1i64])
        .await
        .unwrap_err();
    assert!(
        message(&e).contains("parameters a statement may take"),
        "{e}"
    );
    f.pg.shutdown().await;
}

#[tokio::test]
async fn portals_send_rows_in_chunks_inside_a_transaction() {
    let f = fixture("").await;
    let mut client = connect(&f.pg).await;
    let tx = client.transaction().await.unwrap();
    let portal = tx
        .bind("SELECT urn FROM cad.incidents ORDER BY urn", &[])
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut chunks = Vec::new();
    loop {
        let rows = tx.query_portal(&portal, 128).await.unwrap();
        if rows.is_empty() {
            break;
        }
        chunks.push(rows.len());
        seen.extend(rows.iter().map(|r| r.get::<_, String>(0)));
    }
    assert_eq!(chunks, [128, 128, 44]);
    let want: Vec<String> = (0..300).map(|i| format!("XY-{i:05}")).collect();
    assert_eq!(seen, want);
    // A deposit cannot run inside a transaction block.
    let e = tx
        .simple_query("INSERT INTO cad.incidents VALUES ('XY-99999', 'A', 'x', false)")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "0A000", "{e}");
    assert!(message(&e).contains("transaction block"), "{e}");
    // The failed block now refuses statements until it ends.
    let e = tx.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(code(&e), "25P02", "{e}");
    tx.rollback().await.unwrap();
    assert_eq!(simple(&client, "SELECT 3").await, [[Some("3".into())]]);
    f.pg.shutdown().await;
}

#[tokio::test]
async fn a_long_query_is_cancelled() {
    let f = fixture("").await;
    let client = connect(&f.pg).await;
    let cancel = client.cancel_token();
    let started = Instant::now();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        cancel.cancel_query(NoTls).await.unwrap();
    });
    let e = client
        .simple_query("SELECT max(value % 7) FROM range(100000000000)")
        .await
        .unwrap_err();
    canceller.await.unwrap();
    assert_eq!(e.code(), Some(&SqlState::QUERY_CANCELED), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "cancel took {:?}",
        started.elapsed()
    );
    // The same in the extended protocol; then the connection goes on.
    let cancel = client.cancel_token();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        cancel.cancel_query(NoTls).await.unwrap();
    });
    let e = client
        .query("SELECT max(value % 7) FROM range(100000000000)", &[])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::QUERY_CANCELED), "{e}");
    assert_eq!(simple(&client, "SELECT 4").await, [[Some("4".into())]]);
    f.pg.shutdown().await;
}

#[tokio::test]
async fn session_parameters_drivers_send() {
    let f = fixture("").await;
    let client = connect(&f.pg).await;
    for sql in [
        "SET extra_float_digits = 3",
        "SET application_name = 'PostgreSQL JDBC Driver'",
        "SET DateStyle = ISO",
        "SET TIME ZONE 'UTC'",
        "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED",
        "BEGIN",
        "COMMIT",
    ] {
        client
            .simple_query(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    assert_eq!(
        simple(&client, "SHOW application_name").await,
        [[Some("PostgreSQL JDBC Driver".into())]]
    );
    assert_eq!(
        simple(&client, "SHOW transaction isolation level").await,
        [[Some("read committed".into())]]
    );
    let e = client
        .simple_query("SET client_encoding = 'LATIN1'")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "22023", "{e}");
    // Dotted names are the session's own settings.
    client
        .simple_query("SET datafusion.execution.batch_size = 100")
        .await
        .unwrap();
    f.pg.shutdown().await;
}

/// `psql` from PATH, or `None` (said loudly; a failure under CI=true).
fn psql() -> Option<&'static str> {
    match std::process::Command::new("psql").arg("--version").output() {
        Ok(out) if out.status.success() => Some("psql"),
        Ok(out) => {
            service_missing("psql", &String::from_utf8_lossy(&out.stderr));
            None
        }
        Err(e) => {
            service_missing("psql (install postgresql-client)", &e.to_string());
            None
        }
    }
}

async fn run_psql(port: u16, sslmode: &str, sql: &str) -> std::process::Output {
    tokio::process::Command::new("psql")
        .arg(format!(
            "host=127.0.0.1 port={port} user=analyst dbname=bluelamp sslmode={sslmode}"
        ))
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .env("PGPASSWORD", "demo")
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .await
        .unwrap()
}

#[tokio::test]
async fn psql_runs_queries_and_tls_is_required_when_configured() {
    if psql().is_none() {
        return;
    }
    let plain = fixture("").await;
    let out = run_psql(
        plain.pg.addr.port(),
        "prefer",
        "SELECT grade, count(*) FROM cad.incidents GROUP BY grade ORDER BY grade",
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "A|100\nB|100\nC|100\n"
    );
    // psql's own parameters: variables, quoted as literals by psql
    // (`:'name'`), in a script read from standard input. (SQL PREPARE is
    // refused where policy applies: see the README.)
    let mut child = tokio::process::Command::new("psql")
        .arg(format!(
            "host=127.0.0.1 port={} user=analyst dbname=bluelamp sslmode=disable",
            plain.pg.addr.port()
        ))
        .args([
            "-X",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-v",
            "grade=C'; --",
        ])
        .env("PGPASSWORD", "demo")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    tokio::io::AsyncWriteExt::write_all(
        &mut stdin,
        b"SELECT count(*) FROM cad.incidents WHERE grade = :'grade';\n\
          \\set grade C\n\
          SELECT count(*) FROM cad.incidents WHERE grade = :'grade' AND closed;\n",
    )
    .await
    .unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The first value is a literal, not SQL: no grade is `C'; --`.
    assert_eq!(String::from_utf8_lossy(&out.stdout), "0\n25\n");
    let out = run_psql(plain.pg.addr.port(), "prefer", "SELECT * FROM cad.nope").await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not found"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    plain.pg.shutdown().await;

    let (f, _pki) = PgFixture::start_tls().await;
    assert!(f.pg.tls);
    let out = run_psql(
        f.pg.addr.port(),
        "require",
        "SELECT ssl FROM (SELECT true AS ssl)",
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "t\n");
    let out = run_psql(f.pg.addr.port(), "disable", "SELECT 1").await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("accepts only TLS connections"), "{stderr}");
    // tokio-postgres without TLS is refused the same way.
    let e = try_connect(&settings(&f.pg, "analyst", "demo"))
        .await
        .err()
        .unwrap();
    assert_eq!(code(&e), "28000", "{e}");
    f.pg.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_types_cancel_wrong_password_and_client_certificates() {
    if psql().is_none() {
        return;
    }
    let f = fixture("").await;
    let port = f.pg.addr.port();
    // Every type as psql prints it, against psql printing PostgreSQL's own.
    let postgres = format!(
        "host={} port={} user=postgres dbname=postgres options='-c TimeZone=UTC'",
        pg_host(),
        pg_port()
    );
    let oracle_up = tokio::process::Command::new("psql")
        .args([&postgres, "-X", "-A", "-t", "-c", "SELECT 1"])
        .output()
        .await
        .is_ok_and(|o| o.status.success());
    if oracle_up {
        for (ours, theirs) in TYPES {
            let got = run_psql(port, "disable", &format!("SELECT {ours}")).await;
            let want = tokio::process::Command::new("psql")
                .args([
                    &postgres,
                    "-X",
                    "-A",
                    "-t",
                    "-c",
                    &format!("SELECT {theirs}"),
                ])
                .output()
                .await
                .unwrap();
            assert!(
                got.status.success(),
                "{ours}: {}",
                String::from_utf8_lossy(&got.stderr)
            );
            assert_eq!(
                String::from_utf8_lossy(&got.stdout),
                String::from_utf8_lossy(&want.stdout),
                "psql's text of {ours} / {theirs}"
            );
        }
    } else {
        service_missing("PostgreSQL (for psql's oracle)", "psql cannot reach it");
    }
    // Ctrl-C: psql sends a CancelRequest and the statement ends with 57014.
    let child = tokio::process::Command::new("psql")
        .arg(format!(
            "host=127.0.0.1 port={port} user=analyst dbname=bluelamp sslmode=disable"
        ))
        .args([
            "-X",
            "-v",
            "VERBOSITY=verbose",
            "-c",
            "SELECT max(value % 7) FROM range(100000000000)",
        ])
        .env("PGPASSWORD", "demo")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let pid = child.id().unwrap().to_string();
    let killed = tokio::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("57014") && stderr.contains("canceling statement due to user request"),
        "{stderr}"
    );
    // A wrong password.
    let out = tokio::process::Command::new("psql")
        .arg(format!(
            "host=127.0.0.1 port={port} user=analyst dbname=bluelamp"
        ))
        .args(["-X", "-c", "SELECT 1"])
        .env("PGPASSWORD", "wrong")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("password authentication failed for user \"analyst\""),
        "{stderr}"
    );
    f.pg.shutdown().await;

    // Mutual TLS: with [server] client_ca, a client must present a
    // certificate the CA signed, besides its password.
    let pki = bluelamp_tests::fixtures::pki();
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        path.display().to_string()
    };
    let (cert, key, ca) = (
        file("server.pem", &pki.server_cert),
        file("server.key", &pki.server_key),
        file("ca.pem", &pki.ca),
    );
    let (client_cert, client_key) = (
        file("client.pem", &pki.client_cert),
        file("client.key", &pki.client_key),
    );
    let f = fixture(&format!(
        "\n[server]\ntls_cert = \"{cert}\"\ntls_key = \"{key}\"\nclient_ca = \"{ca}\"\n"
    ))
    .await;
    let port = f.pg.addr.port();
    let with_certificate = tokio::process::Command::new("psql")
        .arg(format!(
            "host=127.0.0.1 port={port} user=analyst dbname=bluelamp sslmode=require sslcert={client_cert} sslkey={client_key}"
        ))
        .args(["-X", "-A", "-t", "-c", "SELECT 7"])
        .env("PGPASSWORD", "demo")
        .output()
        .await
        .unwrap();
    assert!(
        with_certificate.status.success(),
        "{}",
        String::from_utf8_lossy(&with_certificate.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&with_certificate.stdout), "7\n");
    let without = run_psql(port, "require", "SELECT 7").await;
    assert!(
        !without.status.success(),
        "a client without a certificate got in"
    );
    f.pg.shutdown().await;
}

#[tokio::test]
async fn psql_describes_schemas_and_tables() {
    if psql().is_none() {
        return;
    }
    let f = fixture("").await;
    let port = f.pg.addr.port();
    for (command, want) in [
        (
            "\\dn",
            "List of schemas\nName|Owner\nbluelamp|bluelamp\ncad|bluelamp\npublic|bluelamp\n(3 rows)\n",
        ),
        (
            "\\dt cad.*",
            "List of relations\nSchema|Name|Type|Owner\ncad|incidents|table|bluelamp\n(1 row)\n",
        ),
        (
            "\\d cad.incidents",
            "Table \"cad.incidents\"\nColumn|Type|Collation|Nullable|Default\nurn|text|||\ngrade|text|||\nstation|text|||\nclosed|boolean|||\n",
        ),
        ("\\d cad.nope", ""),
    ] {
        let out = tokio::process::Command::new("psql")
            .arg(format!(
                "host=127.0.0.1 port={port} user=analyst dbname=bluelamp"
            ))
            .args(["-X", "-A", "-c", command])
            .env("PGPASSWORD", "demo")
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if want.is_empty() {
            assert!(
                stderr.contains("Did not find any relation named \"cad.nope\""),
                "{command}: {stderr}"
            );
        } else {
            assert!(out.status.success(), "{command}: {stderr}");
            assert_eq!(String::from_utf8_lossy(&out.stdout), want, "{command}");
        }
    }
    f.pg.shutdown().await;
}

/// Introspection as BI tools' drivers do it, in queries of our own shaped
/// like theirs (the catalog tables, columns, joins, functions and casts
/// each client's queries use): Npgsql's type load (Power BI), pgjdbc's
/// tables and columns (DBeaver, Metabase, Tableau), Grafana's table and
/// column pickers, Metabase's field description, DBeaver's navigator.
/// Each names the rows it must find.
const INTROSPECTION: &[(&str, &str, &[&str])] = &[
    (
        "Npgsql: types through two derived tables, arrays and multiranges by their element, ordered by kind",
        "SELECT ns.nspname, t.oid, t.typname, t.typtype, t.typnotnull, t.elemtypoid \
         FROM ( \
           -- the element's kind beside each type's own \n\
           SELECT typ.oid, typ.typnamespace, typ.typname, typ.typtype, typ.typnotnull, typ.relkind, \
             elemtyp.oid AS elemtypoid, elemtyp.typname AS elemtypname, elemcls.relkind AS elemrelkind, \
             CASE WHEN elemproc.proname = 'array_recv' THEN 'a' ELSE elemtyp.typtype END AS elemtyptype \
           FROM ( \
             SELECT typ.oid, typnamespace, typname, typrelid, typnotnull, relkind, typelem AS elemoid, \
               CASE WHEN proc.proname = 'array_recv' THEN 'a' ELSE typ.typtype END AS typtype, \
               CASE WHEN proc.proname = 'array_recv' THEN typ.typelem \
                    WHEN typ.typtype = 'r' THEN rngsubtype \
                    WHEN typ.typtype = 'm' THEN (SELECT rngtypid FROM pg_range WHERE rngmultitypid = typ.oid) \
                    WHEN typ.typtype = 'd' THEN typ.typbasetype END AS elemtypoid \
             FROM pg_type AS typ \
             LEFT JOIN pg_class AS cls ON (cls.oid = typ.typrelid) \
             LEFT JOIN pg_proc AS proc ON proc.oid = typ.typreceive \
             LEFT JOIN pg_range ON (pg_range.rngtypid = typ.oid) \
           ) AS typ \
           LEFT JOIN pg_type AS elemtyp ON elemtyp.oid = elemtypoid \
           LEFT JOIN pg_class AS elemcls ON (elemcls.oid = elemtyp.typrelid) \
           LEFT JOIN pg_proc AS elemproc ON elemproc.oid = elemtyp.typreceive \
         ) AS t \
         JOIN pg_namespace AS ns ON (ns.oid = typnamespace) \
         WHERE typtype IN ('b', 'r', 'm', 'e', 'd') \
           OR (typtype = 'c' AND relkind = 'c') \
           OR (typtype = 'p' AND typname IN ('record', 'void', 'unknown')) \
           OR (typtype = 'a' AND (elemtyptype IN ('b', 'r', 'm', 'e', 'd') \
               OR (elemtyptype = 'p' AND elemtypname IN ('record', 'void')) \
               OR (elemtyptype = 'c' AND elemrelkind = 'c'))) \
         ORDER BY CASE WHEN typtype IN ('b', 'e', 'p') THEN 0 WHEN typtype = 'c' THEN 1 \
           WHEN typtype = 'r' THEN 2 WHEN typtype = 'm' THEN 3 \
           WHEN typtype = 'd' AND elemtyptype <> 'a' THEN 4 WHEN typtype = 'a' THEN 5 \
           WHEN typtype = 'd' AND elemtyptype = 'a' THEN 6 END",
        &[
            "pg_catalog|23|int4|b|f|",
            "pg_catalog|1007|_int4|a|f|23",
            "pg_catalog|1184|timestamptz|b|f|",
        ],
    ),
    (
        "Npgsql: fields of free-standing composite types",
        "SELECT typ.oid, att.attname, att.atttypid FROM pg_type AS typ \
         JOIN pg_namespace AS ns ON (ns.oid = typ.typnamespace) \
         JOIN pg_class AS cls ON (cls.oid = typ.typrelid) \
         JOIN pg_attribute AS att ON (att.attrelid = typ.typrelid) \
         WHERE (typ.typtype = 'c' AND cls.relkind = 'c') AND attnum > 0 AND NOT attisdropped \
         ORDER BY typ.oid, att.attnum",
        &[],
    ),
    (
        "Npgsql: enum labels",
        "SELECT pg_type.oid, enumlabel FROM pg_enum JOIN pg_type ON pg_type.oid = enumtypid ORDER BY oid, enumsortorder",
        &[],
    ),
    (
        "pgjdbc: tables of a schema, with remarks",
        "SELECT NULL AS table_cat, n.nspname AS table_schem, c.relname AS table_name, \
           CASE WHEN n.nspname ~ '^pg_' OR n.nspname = 'information_schema' THEN 'SYSTEM TABLE' \
             ELSE CASE c.relkind WHEN 'r' THEN 'TABLE' WHEN 'v' THEN 'VIEW' ELSE NULL END END AS table_type, \
           d.description AS remarks \
         FROM pg_catalog.pg_namespace n, pg_catalog.pg_class c \
         LEFT JOIN pg_catalog.pg_description d ON (c.oid = d.objoid AND d.objsubid = 0 AND d.classoid = 'pg_class'::regclass) \
         WHERE c.relnamespace = n.oid AND n.nspname LIKE 'cad' AND c.relname LIKE '%' \
         ORDER BY table_type, table_schem, table_name",
        &["|cad|incidents|TABLE|"],
    ),
    (
        "pgjdbc: columns with types, defaults and comments",
        "SELECT n.nspname, c.relname, a.attname, a.atttypid, a.attnotnull OR (t.typtype = 'd' AND t.typnotnull) AS attnotnull, \
           a.attnum, pg_catalog.pg_get_expr(def.adbin, def.adrelid) AS adsrc, dsc.description, t.typbasetype, t.typtype \
         FROM pg_catalog.pg_namespace n \
         JOIN pg_catalog.pg_class c ON (c.relnamespace = n.oid) \
         JOIN pg_catalog.pg_attribute a ON (a.attrelid = c.oid) \
         JOIN pg_catalog.pg_type t ON (a.atttypid = t.oid) \
         LEFT JOIN pg_catalog.pg_attrdef def ON (a.attrelid = def.adrelid AND a.attnum = def.adnum) \
         LEFT JOIN pg_catalog.pg_description dsc ON (c.oid = dsc.objoid AND a.attnum = dsc.objsubid) \
         LEFT JOIN pg_catalog.pg_class dc ON (dc.oid = dsc.classoid AND dc.relname = 'pg_class') \
         WHERE c.relkind IN ('r', 'p', 'v', 'f', 'm') AND a.attnum > 0 AND NOT a.attisdropped \
           AND n.nspname LIKE 'cad' AND c.relname LIKE 'incidents' \
         ORDER BY nspname, c.relname, attnum",
        &[
            "cad|incidents|urn|25|f|1|||0|b",
            "cad|incidents|closed|16|f|4|||0|b",
        ],
    ),
    (
        "pgjdbc and Grafana: the server's version number",
        "SELECT current_setting('server_version_num')::int AS version, current_catalog, current_schema()",
        &["160000|bluelamp|public"],
    ),
    (
        "Grafana: tables for the query builder, bare where their schema is on the search path",
        "SELECT CASE WHEN quote_ident(table_schema) IN ( \
             SELECT CASE WHEN trim(p[n]) = '\"$user\"' THEN user ELSE trim(p[n]) END \
             FROM generate_series(array_lower(string_to_array(current_setting('search_path'), ','), 1), \
                                  array_upper(string_to_array(current_setting('search_path'), ','), 1)) AS n, \
                  string_to_array(current_setting('search_path'), ',') p) \
           THEN quote_ident(table_name) \
           ELSE quote_ident(table_schema) || '.' || quote_ident(table_name) END AS \"table\" \
         FROM information_schema.tables \
         WHERE quote_ident(table_schema) NOT IN ('information_schema', 'pg_catalog') AND table_type = 'BASE TABLE' \
         ORDER BY 1",
        &["cad.incidents"],
    ),
    (
        "Grafana: the search path's schemas, the current user for \"$user\"",
        "SELECT CASE WHEN trim(p[n]) = '\"$user\"' THEN user ELSE trim(p[n]) END AS schema \
         FROM generate_series(array_lower(string_to_array(current_setting('search_path'), ','), 1), \
                              array_upper(string_to_array(current_setting('search_path'), ','), 1)) AS n, \
              string_to_array(current_setting('search_path'), ',') p",
        &["analyst", "public"],
    ),
    (
        "Grafana: columns of a table",
        "SELECT quote_ident(column_name) AS \"column\", data_type AS \"type\" \
         FROM information_schema.columns WHERE table_schema = 'cad' AND table_name = 'incidents' \
         ORDER BY ordinal_position",
        &["urn|text", "grade|text", "station|text", "closed|boolean"],
    ),
    (
        "Metabase: fields with identity, nullability and comments",
        "SELECT c.column_name AS name, c.udt_name AS database_type, c.ordinal_position - 1 AS database_position, \
           c.is_identity = 'YES' OR c.column_default LIKE 'nextval(%' AS auto_increment, \
           c.is_nullable = 'NO' AND c.column_default IS NULL AND c.is_identity = 'NO' AS required, \
           col_description(('\"' || c.table_schema || '\".\"' || c.table_name || '\"')::regclass::oid, c.ordinal_position) AS field_comment \
         FROM information_schema.columns c \
         WHERE c.table_schema = 'cad' AND c.table_name = 'incidents' \
         ORDER BY c.ordinal_position",
        // NOT NULL columns default to nothing: auto_increment is NULL, as in PostgreSQL.
        &["urn|text|0||f|", "closed|bool|3||f|"],
    ),
    (
        "Metabase: tables with their estimated rows",
        "SELECT n.nspname AS schema, c.relname AS name, s.n_live_tup AS estimated_row_count \
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid \
         WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND n.nspname = 'cad'",
        &["cad|incidents|"],
    ),
    (
        "DBeaver: schemas with descriptions",
        "SELECT n.oid, n.*, d.description FROM pg_catalog.pg_namespace n \
         LEFT OUTER JOIN pg_catalog.pg_description d ON d.objoid = n.oid AND d.objsubid = 0 AND d.classoid = 'pg_namespace'::regclass \
         WHERE n.nspname = 'cad' ORDER BY nspname",
        &[],
    ),
    (
        "DBeaver: tables of a schema",
        "SELECT c.oid, c.relname, c.relkind, t.relname AS tabrelname, d.description \
         FROM pg_catalog.pg_class c \
         LEFT OUTER JOIN pg_catalog.pg_class t ON c.reltoastrelid = t.oid \
         LEFT OUTER JOIN pg_catalog.pg_description d ON d.objoid = c.oid AND d.objsubid = 0 AND d.classoid = 'pg_class'::regclass \
         WHERE c.relnamespace = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = 'cad') AND c.relkind NOT IN ('i', 'I', 'c')",
        &[],
    ),
    (
        "DBeaver: columns of a table",
        "SELECT c.relname, a.attname, a.atttypid, pg_catalog.pg_get_expr(ad.adbin, ad.adrelid, true) AS def_value, dsc.description, dep.objid \
         FROM pg_catalog.pg_attribute a \
         INNER JOIN pg_catalog.pg_class c ON (a.attrelid = c.oid) \
         LEFT OUTER JOIN pg_catalog.pg_attrdef ad ON (a.attrelid = ad.adrelid AND a.attnum = ad.adnum) \
         LEFT OUTER JOIN pg_catalog.pg_description dsc ON (c.oid = dsc.objoid AND a.attnum = dsc.objsubid) \
         LEFT OUTER JOIN pg_depend dep ON dep.refobjid = a.attrelid AND dep.deptype = 'i' AND dep.refobjsubid = a.attnum \
         WHERE NOT a.attisdropped AND c.relkind NOT IN ('i', 'I', 'c') AND c.oid = 'cad.incidents'::regclass \
         ORDER BY a.attnum",
        &["incidents|urn|25|||", "incidents|closed|16|||"],
    ),
];

#[tokio::test]
async fn bi_tools_introspection_queries_answer() {
    let f = fixture("").await;
    let client = connect(&f.pg).await;
    for (what, sql, want) in INTROSPECTION {
        let messages = client
            .simple_query(sql)
            .await
            .unwrap_or_else(|e| panic!("{what}: {}", message(&e)));
        let rows: Vec<String> = messages
            .iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(row) => Some(
                    (0..row.len())
                        .map(|i| row.get(i).unwrap_or_default())
                        .collect::<Vec<_>>()
                        .join("|"),
                ),
                _ => None,
            })
            .collect();
        for row in *want {
            assert!(
                rows.iter().any(|r| r == row),
                "{what}: no row {row:?} in {rows:?}"
            );
        }
        // The same through the extended protocol, as JDBC and Npgsql send them.
        let extended = client.query(*sql, &[]).await;
        assert!(extended.is_ok(), "{what} (extended): {extended:?}");
    }
    // Npgsql sends its type load as one batch of four statements.
    let batch = format!(
        "SELECT version();\n{};\n{};\n{};",
        INTROSPECTION[0].1, INTROSPECTION[1].1, INTROSPECTION[2].1
    );
    let messages = client
        .simple_query(&batch)
        .await
        .unwrap_or_else(|e| panic!("Npgsql's batch: {}", message(&e)));
    let completed = messages
        .iter()
        .filter(|m| matches!(m, SimpleQueryMessage::CommandComplete(_)))
        .count();
    assert_eq!(completed, 4, "Npgsql's batch answers each statement");
    f.pg.shutdown().await;
}

#[tokio::test]
async fn policy_and_audit_hold_over_postgres() {
    let audit = tempfile::tempdir().unwrap();
    let hash = bluelamp_flight_server::hash_password("demo").unwrap();
    let scram = ScramVerifier::new("demo").to_string();
    let extra = format!(
        "{}\n[audit]\npath = \"{}\"\n",
        bluelamp_simulators::access::demo_access(
            &hash,
            Some(&scram),
            &audit.path().join("exports").display().to_string()
        ),
        audit.path().join("audit.jsonl").display()
    );
    let live = LiveDemo::start(0.02, &extra).await;
    let pg = serve(live.engine.clone(), Some("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let client = connect(&pg).await;
    // A table the analyst is not granted does not exist for them; nor does
    // a hidden column.
    let e = client
        .simple_query("SELECT * FROM cad.incident_log LIMIT 1")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "42P01", "{e}");
    let e = client
        .query(
            "SELECT vehicle_registration FROM cad.incidents LIMIT 1",
            &[],
        )
        .await
        .unwrap_err();
    assert_eq!(code(&e), "42703", "{e}");
    // The catalog shows only what the analyst may read: no incident log in
    // pg_class, no vehicle registration in pg_attribute or
    // information_schema.columns.
    let cad_tables = "SELECT c.relname FROM pg_catalog.pg_class c \
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
        WHERE n.nspname = $1 ORDER BY 1";
    let names = |rows: Vec<tokio_postgres::Row>| -> Vec<String> {
        rows.iter().map(|r| r.get::<_, String>(0)).collect()
    };
    let analyst_tables = names(client.query(cad_tables, &[&"cad"]).await.unwrap());
    assert_eq!(analyst_tables, ["incident_assignments", "incidents"]);
    let columns = "SELECT a.attname FROM pg_catalog.pg_attribute a \
        JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
        WHERE n.nspname = 'cad' AND c.relname = 'incidents' ORDER BY a.attnum";
    let analyst_columns = names(client.query(columns, &[]).await.unwrap());
    assert!(analyst_columns.contains(&"urn".to_string()));
    assert!(!analyst_columns.contains(&"vehicle_registration".to_string()));
    let information = names(
        client
            .query(
                "SELECT column_name::text FROM information_schema.columns \
                 WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
                &[&"cad", &"incidents"],
            )
            .await
            .unwrap(),
    );
    assert_eq!(information, analyst_columns);
    let supervisor = try_connect(&settings(&pg, "supervisor", "demo"))
        .await
        .unwrap();
    let supervisor_tables = names(supervisor.query(cad_tables, &[&"cad"]).await.unwrap());
    assert!(
        supervisor_tables.contains(&"incident_log".to_string()),
        "{supervisor_tables:?}"
    );
    let supervisor_columns = names(supervisor.query(columns, &[]).await.unwrap());
    assert!(supervisor_columns.contains(&"vehicle_registration".to_string()));
    // Masks apply: the same answer as the analyst's own session gives.
    let sql = "SELECT forename, surname, birth_year FROM rms.people ORDER BY person_id LIMIT 5";
    let over_pg = simple(&client, sql).await;
    let session = live
        .engine
        .session(bluelamp_engine::Identity::new("analyst", "test"));
    let output = session.sql(sql).await.unwrap();
    let batches: Vec<arrow::array::RecordBatch> = futures::TryStreamExt::try_collect(output.stream)
        .await
        .unwrap();
    let mut direct = Vec::new();
    for batch in &batches {
        for row in 0..batch.num_rows() {
            direct.push(
                (0..batch.num_columns())
                    .map(|c| {
                        let column = batch.column(c);
                        (!arrow::array::Array::is_null(column.as_ref(), row)).then(|| {
                            arrow::util::display::array_value_to_string(column, row).unwrap()
                        })
                    })
                    .collect::<Vec<_>>(),
            );
        }
    }
    assert_eq!(over_pg, direct);
    assert!(
        over_pg.iter().all(|r| r[0].as_deref() != Some("")),
        "{over_pg:?}"
    );
    pg.shutdown().await;
    // Each statement is in the audit trail, as the analyst, from postgres.
    let records = search(
        &audit.path().join("audit.jsonl"),
        &SearchFilter {
            user: Some("analyst".into()),
            ..SearchFilter::default()
        },
    )
    .unwrap();
    let people: Vec<_> = records
        .iter()
        .filter(|r| r.statement.contains("rms.people") && r.auth == "scram-sha-256")
        .collect();
    assert_eq!(people.len(), 1, "{records:?}");
    assert!(
        people[0]
            .client
            .as_deref()
            .is_some_and(|c| c.starts_with("127.0.0.1:")),
        "{people:?}"
    );
    assert!(
        people[0]
            .policies
            .contains(&"analysts see no names".to_string())
    );
    assert!(
        records
            .iter()
            .any(|r| r.statement.contains("incident_log") && r.outcome != "ok"),
        "the refused read is audited too"
    );
}

#[tokio::test]
async fn flight_sql_and_postgres_answer_alike() {
    let f = fixture("").await;
    let flight =
        bluelamp_flight_server::serve(f.engine.clone(), Some("127.0.0.1:0".parse().unwrap()))
            .await
            .unwrap();
    let sql = "SELECT grade, station, count(*) AS n, min(urn) AS first, bool_or(closed) AS any_closed \
               FROM cad.incidents GROUP BY grade, station ORDER BY grade, station";
    let over_pg = simple(&connect(&f.pg).await, sql).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", flight.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = arrow_flight::sql::client::FlightSqlServiceClient::new(channel);
    client.handshake("analyst", "demo").await.unwrap();
    let info = client.execute(sql.to_string(), None).await.unwrap();
    let batches = bluelamp_tests::flight_client::fetch(&mut client, info)
        .await
        .unwrap();
    let columns = ["grade", "station", "n", "first", "any_closed"];
    let texts: Vec<Vec<String>> = columns
        .iter()
        .map(|c| bluelamp_tests::flight_client::strings(&batches, c))
        .collect();
    let over_flight: Vec<Vec<Option<String>>> = (0..texts[0].len())
        .map(|row| {
            texts
                .iter()
                .map(|column| {
                    Some(match column[row].as_str() {
                        "true" => "t".to_string(),
                        "false" => "f".to_string(),
                        other => other.to_string(),
                    })
                })
                .collect()
        })
        .collect();
    assert_eq!(over_pg.len(), 21);
    assert_eq!(over_pg, over_flight);
    flight.shutdown().await;
    f.pg.shutdown().await;
}
