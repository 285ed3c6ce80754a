//! Operations: statements that would run without end or allocate without
//! limit are stopped with clear errors while other users' statements keep
//! answering; `bluelamp.queries` and `bluelamp.cancel_query` from a second
//! session; Prometheus metrics scraped over HTTP and parsed as Prometheus
//! parses them; `/readyz` following a demo system that stops.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bluelamp_engine::{Engine, ErrorKind, Identity, Session};
use bluelamp_tests::fixtures::{LiveDemo, engine_from_text};
use bluelamp_tests::slt::{session_rows, try_session_rows};

/// Never ends on its own: each step makes the next.
const RUNAWAY: &str =
    "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t) SELECT count(*) FROM t";

/// The one value `sql` answers.
async fn value(session: &Session, sql: &str) -> String {
    let rows = session_rows(session, sql).await;
    assert_eq!(rows.len(), 1, "{sql}: {rows:?}");
    rows[0][0].clone()
}

/// Waits until `user`'s runaway statement shows as running to `session`;
/// returns its id.
async fn running_id(session: &Session) -> String {
    let started = Instant::now();
    loop {
        let rows = session_rows(
            session,
            "SELECT id FROM bluelamp.queries WHERE state = 'running' AND sql LIKE 'WITH RECURSIVE%'",
        )
        .await;
        if let Some(row) = rows.first() {
            return row[0].clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the runaway statement never showed as running"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_too_large_to_make_are_refused_under_the_default_limits() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_from_text("", dir.path()).await.unwrap();
    let session = engine.session(Identity::local());
    for (sql, function) in [
        ("SELECT repeat('a', 1000000000)", "repeat()"),
        ("SELECT array_repeat(1, 100000000)", "array_repeat()"),
        ("SELECT cardinality(range(10000000000))", "range()"),
        ("SELECT lpad('x', 2000000000)", "lpad()"),
        (
            "SELECT length(replace(repeat('a', 10000000), 'a', repeat('b', 100)))",
            "replace()",
        ),
    ] {
        let started = Instant::now();
        let error = try_session_rows(&session, sql).await.expect_err(sql);
        assert_eq!(error.kind, ErrorKind::Execution, "{sql}: {}", error.message);
        assert!(
            error.message.starts_with(function)
                && error.message.contains("[engine] max_value_size"),
            "{sql}: {}",
            error.message
        );
        // Refused before anything is made, not after minutes of work.
        assert!(started.elapsed() < Duration::from_secs(20), "{sql}");
    }
    // Ordinary uses are untouched.
    assert_eq!(
        value(&session, "SELECT length(repeat('ab', 1000))").await,
        "2000"
    );
    assert_eq!(
        value(&session, "SELECT cardinality(range(1, 1001))").await,
        "1000"
    );
    assert_eq!(value(&session, "SELECT lpad('7', 3, '0')").await, "007");
    // A statement that does run for ever ends at the default timeout.
    assert_eq!(session.statement_timeout(), Some(Duration::from_secs(600)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_values_that_fit_one_by_one_are_held_to_the_memory_limit() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_from_text("[engine]\nmemory_limit = \"256MiB\"\n", dir.path())
        .await
        .unwrap();
    let session = engine.session(Identity::local());
    // 200 rows of 10 MB each: every value fits, the batch does not.
    let error = try_session_rows(
        &session,
        "SELECT sum(length(repeat('a', 10000000 + v % 2))) FROM generate_series(1, 200) AS t(v)",
    )
    .await
    .unwrap_err();
    assert!(
        error.message.contains("[engine] memory_limit"),
        "{}",
        error.message
    );
    assert_eq!(
        value(
            &session,
            "SELECT sum(length(repeat('a', 1000 + v % 2))) FROM generate_series(1, 200) AS t(v)"
        )
        .await,
        "200100"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_past_its_timeout_stops_while_another_session_answers() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_from_text("[engine]\nstatement_timeout = \"20s\"\n", dir.path())
        .await
        .unwrap();
    let runner = engine.session(Identity::local());
    // A session may shorten the server's limit, never lift it.
    let refused = try_session_rows(&runner, "SET bluelamp.statement_timeout = '1h'")
        .await
        .unwrap_err();
    assert_eq!(refused.kind, ErrorKind::InvalidQuery);
    assert!(
        refused
            .message
            .contains("longer than the server allows (20s"),
        "{}",
        refused.message
    );
    session_rows(&runner, "SET bluelamp.statement_timeout = '2s'").await;
    assert_eq!(runner.statement_timeout(), Some(Duration::from_secs(2)));
    let runaway = tokio::spawn({
        let runner = runner.clone();
        async move {
            let started = Instant::now();
            let result = try_session_rows(&runner, RUNAWAY).await;
            (result, started.elapsed())
        }
    });
    // Another session of the server answers while the runaway runs.
    let other = engine.session(Identity::local());
    let id = running_id(&other).await;
    for _ in 0..5 {
        assert_eq!(
            value(&other, "SELECT count(*) FROM generate_series(1, 1000)").await,
            "1000"
        );
    }
    assert_eq!(
        value(
            &other,
            &format!("SELECT state FROM bluelamp.queries WHERE id = '{id}'")
        )
        .await,
        "running",
        "the other session answered while the runaway was still running"
    );
    let (result, took) = runaway.await.unwrap();
    let error = result.unwrap_err();
    assert_eq!(error.kind, ErrorKind::TimedOut, "{}", error.message);
    assert!(
        error
            .message
            .contains(&format!("statement {id} was stopped after 2s"))
            && error.message.contains("SET bluelamp.statement_timeout"),
        "{}",
        error.message
    );
    assert!(took >= Duration::from_secs(2), "{took:?}");
    let row = session_rows(
        &other,
        &format!("SELECT state, error FROM bluelamp.queries WHERE id = '{id}'"),
    )
    .await;
    assert_eq!(row[0][0], "timed out");
    assert_eq!(row[0][1], error.message);
}

const USERS: &str = "[[user]]\nname = \"ann\"\n\n[[user]]\nname = \"bob\"\n\n\
                     [[user]]\nname = \"ops\"\nroles = [\"operator\"]\n";

fn as_user(engine: &Engine, user: &str) -> Session {
    engine.session(Identity::new(user, "local"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_is_cancelled_from_a_second_session_by_its_user_or_an_operator() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_from_text(USERS, dir.path()).await.unwrap();
    let ann = as_user(&engine, "ann");
    let spawn_runaway =
        |session: Session| tokio::spawn(async move { try_session_rows(&session, RUNAWAY).await });

    let first = spawn_runaway(ann.clone());
    let ann_again = as_user(&engine, "ann");
    let id = running_id(&ann_again).await;
    // Another user neither sees nor stops it.
    let bob = as_user(&engine, "bob");
    assert_eq!(
        value(
            &bob,
            &format!("SELECT count(*) FROM bluelamp.queries WHERE id = '{id}'")
        )
        .await,
        "0"
    );
    let refused = try_session_rows(&bob, &format!("SELECT bluelamp.cancel_query('{id}')"))
        .await
        .unwrap_err();
    assert!(
        refused
            .message
            .contains(&format!("there is no statement '{id}' that you may cancel")),
        "{}",
        refused.message
    );
    // Its own user stops it from another session; its client hears why.
    let answer = value(&ann_again, &format!("SELECT bluelamp.cancel_query('{id}')")).await;
    assert_eq!(answer, format!("cancelled {id} (embedded by ann)"));
    let error = tokio::time::timeout(Duration::from_secs(20), first)
        .await
        .expect("the cancelled statement ends")
        .unwrap()
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Cancelled, "{}", error.message);
    assert_eq!(
        error.message,
        format!("statement {id} was cancelled by ann (bluelamp.cancel_query)")
    );
    assert_eq!(
        value(
            &ann_again,
            &format!("SELECT state FROM bluelamp.queries WHERE id = '{id}'")
        )
        .await,
        "cancelled"
    );
    let again = try_session_rows(&ann_again, &format!("SELECT bluelamp.cancel_query('{id}')"))
        .await
        .unwrap_err();
    assert!(
        again.message.contains("has already ended (cancelled)"),
        "{}",
        again.message
    );

    // An operator sees and stops anyone's.
    let second = spawn_runaway(ann.clone());
    let ops = as_user(&engine, "ops");
    let id = running_id(&ops).await;
    assert_eq!(
        value(
            &ops,
            &format!("SELECT \"user\" FROM bluelamp.queries WHERE id = '{id}'")
        )
        .await,
        "ann"
    );
    value(&ops, &format!("SELECT bluelamp.cancel_query('{id}')")).await;
    let error = tokio::time::timeout(Duration::from_secs(20), second)
        .await
        .expect("the cancelled statement ends")
        .unwrap()
        .unwrap_err();
    assert_eq!(
        error.message,
        format!("statement {id} was cancelled by ops (bluelamp.cancel_query)")
    );
    // The session carries on.
    assert_eq!(value(&ann, "SELECT 1 + 1").await, "2");
}

/// Every sample of a scrape, by metric name and sorted labels.
fn scrape(text: &str) -> HashMap<String, f64> {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let parsed = prometheus_parse::Scrape::parse(lines).expect("Prometheus text format");
    let mut out = HashMap::new();
    for sample in parsed.samples {
        let mut labels: Vec<String> = sample
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        labels.sort();
        let value = match sample.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            prometheus_parse::Value::Histogram(buckets) => {
                // The `+Inf` bucket counts every observation.
                buckets.last().map_or(0.0, |b| b.count)
            }
            prometheus_parse::Value::Summary(_) => continue,
        };
        out.insert(format!("{}{{{}}}", sample.metric, labels.join(",")), value);
    }
    out
}

async fn get(url: &str) -> (u16, String) {
    let response = reqwest::get(url).await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_scraped_over_http_count_a_query_against_the_demo_systems() {
    let demo = LiveDemo::start(0.02, "").await;
    let monitor = bluelamp_monitor::serve(demo.engine.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let url = format!("http://{}/metrics", monitor.addr);
    let session = demo.engine.session(Identity::local());
    let (status, text) = get(&url).await;
    assert_eq!(status, 200);
    let before = scrape(&text);
    let rows = session_rows(&session, "SELECT * FROM cad.incidents")
        .await
        .len();
    assert!(rows > 10, "{rows}");
    let figures = session_rows(
        &session,
        "SELECT requests, records_fetched, bytes_fetched, rows, state FROM bluelamp.queries \
         WHERE sql = 'SELECT * FROM cad.incidents'",
    )
    .await;
    let (_, text) = get(&url).await;
    let after = scrape(&text);
    let moved = |key: &str| {
        after.get(key).copied().unwrap_or(0.0) - before.get(key).copied().unwrap_or(0.0)
    };

    // What the statement saw, and what the source metrics counted, agree.
    let [requests, records, bytes, delivered, state] = &figures[0][..] else {
        panic!("{figures:?}")
    };
    assert_eq!(state, "finished");
    assert_eq!(delivered, &rows.to_string());
    assert_eq!(records, &rows.to_string(), "every record fetched once");
    let requests: f64 = requests.parse().unwrap();
    assert!(requests >= 1.0);
    assert_eq!(
        moved("bluelamp_source_requests_total{source=cad}"),
        requests
    );
    assert_eq!(
        moved("bluelamp_source_request_duration_seconds{source=cad}"),
        requests,
        "one latency observation per request"
    );
    assert_eq!(
        moved("bluelamp_source_records_total{source=cad}"),
        rows as f64
    );
    assert_eq!(
        moved("bluelamp_source_bytes_total{source=cad}"),
        bytes.parse::<f64>().unwrap()
    );
    assert_eq!(moved("bluelamp_source_requests_total{source=rms}"), 0.0);
    // Two statements ended between the scrapes: the query and the read of
    // bluelamp.queries (one row).
    assert_eq!(
        moved("bluelamp_statements_total{client=embedded,outcome=ok}"),
        2.0
    );
    assert_eq!(
        moved("bluelamp_statement_rows_total{client=embedded}"),
        rows as f64 + 1.0
    );
    assert_eq!(
        moved("bluelamp_statement_duration_seconds{client=embedded}"),
        2.0
    );
    assert_eq!(after["bluelamp_source_up{source=cad}"], 1.0);
    assert_eq!(after["bluelamp_statements_running{}"], 0.0);
    assert!(after["bluelamp_sessions_open{client=embedded}"] >= 1.0);
    assert!(after["bluelamp_memory_limit_bytes{}"] > 0.0);
    monitor.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_a_demo_system_that_stops() {
    let mut demo = LiveDemo::start(0.01, "").await;
    let monitor = bluelamp_monitor::serve(demo.engine.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let base = format!("http://{}", monitor.addr);
    assert_eq!(get(&format!("{base}/healthz")).await.0, 200);
    let (status, body) = get(&format!("{base}/readyz")).await;
    assert_eq!(status, 200, "{body}");
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["ready"], true);
    for source in ["cad", "rms", "stops", "custody", "anpr"] {
        assert_eq!(ready["sources"][source]["status"], "up", "{body}");
    }
    let at = demo
        .systems
        .iter()
        .position(|s| s.kind.name() == "rms")
        .unwrap();
    demo.systems.remove(at).shutdown().await;
    let started = Instant::now();
    let (status, body) = loop {
        let (status, body) = get(&format!("{base}/readyz")).await;
        if status != 200 || started.elapsed() > Duration::from_secs(30) {
            break (status, body);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(status, 503, "{body}");
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["ready"], false);
    assert_eq!(ready["sources"]["rms"]["status"], "down", "{body}");
    assert!(
        ready["sources"]["rms"]["error"]
            .as_str()
            .unwrap()
            .contains("rms"),
        "{body}"
    );
    assert_eq!(ready["sources"]["cad"]["status"], "up", "{body}");
    // The process itself is still alive.
    assert_eq!(get(&format!("{base}/healthz")).await.0, 200);
    monitor.shutdown().await;
}

/// One statement read from the demo's CAD system and one that fails while
/// it runs, traced to an OTLP receiver: the statement spans, their source
/// scans and each request under them, with the trace ids the audit trail
/// and the error message give.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_and_their_source_requests_are_traced_to_an_otlp_receiver() {
    use bluelamp_tests::otlp::{OtlpReceiver, ReceivedSpan};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let mut receiver = OtlpReceiver::start().await;
    let settings = bluelamp_engine::config::TelemetrySettings {
        otlp_endpoint: Some(receiver.endpoint()),
        service_name: "bluelamp-under-test".to_string(),
    };
    let telemetry = bluelamp_monitor::telemetry::Telemetry::start(&settings)
        .unwrap()
        .expect("an endpoint turns traces on");
    // Each test runs in a process of its own (nextest), so this one may
    // take the process's subscriber.
    tracing_subscriber::registry()
        .with(telemetry.layer())
        .try_init()
        .expect("no other subscriber in this test's process");
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let demo = LiveDemo::start(
        0.02,
        &format!(
            "[audit]\npath = {}\n",
            toml::Value::String(audit.display().to_string())
        ),
    )
    .await;
    let session = demo.engine.session(Identity::local());
    let read = "SELECT * FROM cad.incidents";
    let rows = session_rows(&session, read).await.len();
    assert!(rows > 10, "{rows}");
    let failing = "SELECT count(*) / (count(*) - count(*)) FROM cad.incidents";
    let error = try_session_rows(&session, failing).await.unwrap_err();
    drop(session);
    let telemetry = tokio::task::spawn_blocking(move || {
        telemetry.flush();
        telemetry
    })
    .await
    .unwrap();
    let statements = |spans: &[ReceivedSpan]| {
        spans
            .iter()
            .filter(|s| s.name == "statement")
            .cloned()
            .collect::<Vec<_>>()
    };
    assert!(
        receiver
            .wait_for(Duration::from_secs(20), |spans| statements(spans).len()
                >= 2)
            .await,
        "two statement spans within 20 s; received {:?}",
        receiver.received
    );
    let spans = receiver.received.clone();
    assert!(spans.iter().all(|s| s.service == "bluelamp-under-test"));

    // The read: finished, its rows, under it the scan of cad.incidents (a
    // span per partition that reads pages), and under that each request
    // with its method, path template, status and records, which add up to
    // the rows.
    let read_span = statements(&spans)
        .into_iter()
        .find(|s| s.attribute("bluelamp.state") == "finished")
        .expect("the read's statement span");
    assert!(read_span.parent_span_id.is_empty(), "a statement is a root");
    assert_eq!(read_span.attribute("bluelamp.rows"), rows.to_string());
    assert_eq!(read_span.attribute("bluelamp.client"), "embedded");
    assert!(
        read_span
            .attribute("bluelamp.statement_id")
            .starts_with('q')
    );
    assert_eq!(read_span.status_code, 1, "ok");
    assert!(
        !read_span.attributes.values().any(|v| v.contains("SELECT")),
        "no SQL text leaves in a trace: {read_span:?}"
    );
    let scans: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|s| s.parent_span_id == read_span.span_id)
        .collect();
    assert!(!scans.is_empty());
    for scan in &scans {
        assert_eq!(scan.name, "scan cad.incidents");
        assert_eq!(scan.attribute("bluelamp.source"), "cad");
        assert_eq!(scan.trace_id, read_span.trace_id);
        // The statement lasts until its rows are delivered: its scans
        // happen within it.
        assert!(
            read_span.start_ns <= scan.start_ns && scan.end_ns <= read_span.end_ns,
            "{scan:?} outside {read_span:?}"
        );
    }
    let requests: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|s| scans.iter().any(|scan| s.parent_span_id == scan.span_id))
        .collect();
    assert!(!requests.is_empty());
    let mut records = 0;
    for request in &requests {
        assert_eq!(request.trace_id, read_span.trace_id);
        assert_eq!(request.attribute("http.request.method"), "GET");
        assert_eq!(request.attribute("url.template"), "/incidents");
        assert_eq!(request.name, "GET /incidents");
        assert_eq!(request.attribute("http.response.status_code"), "200");
        assert_eq!(request.attribute("bluelamp.attempts"), "1");
        assert_eq!(request.status_code, 1, "ok");
        assert_eq!(request.attribute("bluelamp.source"), "cad");
        records += request
            .attribute("bluelamp.records")
            .parse::<usize>()
            .unwrap();
    }
    assert_eq!(records, rows, "the requests' records are the rows");

    // The failure: its span says so, and its message names its trace.
    let failed_span = statements(&spans)
        .into_iter()
        .find(|s| s.attribute("bluelamp.state") == "failed")
        .expect("the failing statement's span");
    assert_eq!(failed_span.status_code, 2, "error");
    assert_eq!(failed_span.status_message, "failed");
    assert!(
        !failed_span
            .attributes
            .values()
            .any(|v| v.contains("Divide")),
        "no error text (which can quote values) in a span: {failed_span:?}"
    );
    assert_ne!(failed_span.trace_id, read_span.trace_id);
    assert!(
        error
            .message
            .ends_with(&format!("(trace {})", failed_span.trace_id)),
        "{}",
        error.message
    );
    assert!(
        error.message.contains("Divide by zero"),
        "{}",
        error.message
    );

    // The audit trail's records of each statement carry its trace id.
    drop(demo);
    let trail = std::fs::read_to_string(&audit).unwrap();
    let records: Vec<serde_json::Value> = trail
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let trace_of = |sql: &str| {
        let statement = records
            .iter()
            .find(|r| r["event"] == "statement" && r["statement"] == sql)
            .unwrap_or_else(|| panic!("no record of {sql}: {trail}"));
        let completed = records
            .iter()
            .find(|r| r["event"] == "completed" && r["statement_seq"] == statement["seq"])
            .unwrap_or_else(|| panic!("no completion of {sql}: {trail}"));
        assert_eq!(statement["trace_id"], completed["trace_id"]);
        statement["trace_id"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(trace_of(read), read_span.trace_id);
    assert_eq!(trace_of(failing), failed_span.trace_id);
    tokio::task::spawn_blocking(move || telemetry.shutdown())
        .await
        .unwrap();
}
