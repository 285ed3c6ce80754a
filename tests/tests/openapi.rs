//! The OpenAPI connector against the demo force's real HTTP systems: discovery,
//! every pagination and auth style, pushdown proven from the systems' own
//! request counts, and faults that are either survived or clearly reported.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bluelamp_engine::{Engine, ErrorKind, Identity, QueryError};
use bluelamp_simulators::force::Force;
use bluelamp_simulators::generate;
use bluelamp_simulators::http::{RunningSystem, SystemKind, SystemOptions, start};
use bluelamp_tests::fixtures::engine_from_text;

struct Demo {
    force: Arc<Force>,
    cad: RunningSystem,
    rms: RunningSystem,
    _stops: RunningSystem,
    engine: Engine,
    _dir: tempfile::TempDir,
}

async fn demo(options: SystemOptions, source_options: &str) -> Demo {
    let force = Arc::new(generate(11, 0.02, |_| {}));
    let addr = SocketAddr::from(([127, 0, 0, 1], 0));
    let cad = start(SystemKind::Cad, Arc::clone(&force), options.clone(), addr)
        .await
        .unwrap();
    let rms = start(SystemKind::Rms, Arc::clone(&force), options.clone(), addr)
        .await
        .unwrap();
    let stops = start(SystemKind::Stops, Arc::clone(&force), options.clone(), addr)
        .await
        .unwrap();
    let config = format!(
        "[[source]]\nname = \"cad\"\nkind = \"openapi\"\nspec = \"{}\"\nauth = {{ type = \"api_key\", name = \"X-API-Key\", value = \"{}\" }}\n{source_options}\n\n\
         [[source]]\nname = \"rms\"\nkind = \"openapi\"\nspec = \"{}\"\nauth = {{ type = \"oauth2\", client_id = \"{}\", client_secret = \"{}\" }}\n{source_options}\n\n\
         [[source]]\nname = \"stops\"\nkind = \"openapi\"\nspec = \"{}\"\n{source_options}\n",
        cad.openapi_url(),
        options.cad_api_key,
        rms.openapi_url(),
        options.rms_client_id,
        options.rms_client_secret,
        stops.openapi_url(),
    );
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_from_text(&config, dir.path()).await.unwrap();
    Demo {
        force,
        cad,
        rms,
        _stops: stops,
        engine,
        _dir: dir,
    }
}

async fn query(engine: &Engine, sql: &str) -> Result<Vec<Vec<String>>, QueryError> {
    let session = engine.session(Identity::new("test", "test"));
    bluelamp_tests::slt::try_session_rows(&session, sql).await
}

async fn one(engine: &Engine, sql: &str) -> String {
    let got = query(engine, sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    got[0][0].clone()
}

#[tokio::test]
async fn discovers_tables_with_documented_types() {
    let d = demo(SystemOptions::default(), "").await;
    let tables = query(
        &d.engine,
        "SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema IN ('cad', 'rms', 'stops') ORDER BY 1, 2",
    )
    .await
    .unwrap();
    let names: Vec<String> = tables
        .iter()
        .map(|r| format!("{}.{}", r[0], r[1]))
        .collect();
    assert_eq!(
        names,
        [
            "cad.incident",
            "cad.incident_assignments",
            "cad.incident_log",
            "cad.incidents",
            "cad.record_crime_reference",
            "rms.crime_people",
            "rms.crimes",
            "rms.people",
            "stops.stops_street"
        ]
    );
    let columns = query(
        &d.engine,
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns WHERE table_schema = 'cad' AND table_name = 'incidents' ORDER BY ordinal_position",
    )
    .await
    .unwrap();
    let find = |name: &str| columns.iter().find(|r| r[0] == name).unwrap().clone();
    assert_eq!(find("urn")[1..], ["Utf8", "NO"]);
    assert!(
        find("opened_at")[1].starts_with("Timestamp(µs"),
        "{:?}",
        find("opened_at")
    );
    assert_eq!(find("closed_at")[2], "YES");
    assert!(
        find("location")[1].starts_with("Struct("),
        "{:?}",
        find("location")
    );
    assert_eq!(columns[0][0], "urn", "columns follow the document's order");
    assert_eq!(
        one(&d.engine, "SELECT min(location['beat']) FROM cad.incidents").await,
        "B01"
    );
}

#[tokio::test]
async fn every_pagination_style_returns_every_record() {
    let d = demo(SystemOptions::default(), "").await;
    let f = &d.force;
    assert_eq!(
        one(&d.engine, "SELECT count(DISTINCT urn) FROM cad.incidents").await,
        f.incidents.len().to_string()
    );
    assert_eq!(
        one(
            &d.engine,
            "SELECT count(DISTINCT crime_reference) FROM rms.crimes"
        )
        .await,
        f.crimes.len().to_string()
    );
    assert_eq!(
        one(&d.engine, "SELECT count(*) FROM rms.people").await,
        f.people.len().to_string()
    );
    assert_eq!(
        one(&d.engine, "SELECT count(*) FROM rms.crime_people").await,
        f.crime_people.len().to_string()
    );
    assert_eq!(
        one(&d.engine, "SELECT count(*) FROM stops.stops_street").await,
        f.stops.len().to_string()
    );
    // Cross-system: every crime's incident is in C&C.
    assert_eq!(
        one(&d.engine, "SELECT count(*) FROM rms.crimes c LEFT JOIN cad.incidents i ON i.urn = c.incident_urn WHERE i.urn IS NULL").await,
        "0"
    );
}

#[tokio::test]
async fn filters_and_limits_reach_the_api() {
    let d = demo(SystemOptions::default(), "").await;
    let f = &d.force;
    let before = (d.cad.stats.requests(), d.cad.stats.records());
    let got = query(
        &d.engine,
        "SELECT urn FROM cad.incidents WHERE grade = 'I' LIMIT 5",
    )
    .await
    .unwrap();
    assert_eq!(got.len(), 5);
    assert_eq!(
        d.cad.stats.requests() - before.0,
        1,
        "a LIMIT stops fetching"
    );
    assert_eq!(
        d.cad.stats.records() - before.1,
        5,
        "the limit is the page size"
    );

    let urns: Vec<&str> = f
        .incidents
        .iter()
        .skip(10)
        .take(3)
        .map(|i| i.urn.as_str())
        .collect();
    let list = urns
        .iter()
        .map(|u| format!("'{u}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let before = d.cad.stats.records();
    let got = query(
        &d.engine,
        &format!("SELECT urn, grade FROM cad.incidents WHERE urn IN ({list}) ORDER BY urn"),
    )
    .await
    .unwrap();
    assert_eq!(got.len(), 3);
    assert_eq!(
        d.cad.stats.records() - before,
        3,
        "only the listed incidents were fetched"
    );

    let day = f
        .incidents
        .iter()
        .filter(|i| i.opened_at.format("%Y-%m-%d").to_string() == "2026-10-05")
        .count();
    let before = d.cad.stats.records();
    let sql = "SELECT count(*) FROM cad.incidents WHERE opened_at >= '2026-10-05T00:00:00Z' AND opened_at < '2026-10-06T00:00:00Z'";
    assert_eq!(one(&d.engine, sql).await, day.to_string());
    assert_eq!(
        d.cad.stats.records() - before,
        day as u64,
        "the day's range went to the API"
    );

    // A strict > on an inclusive parameter is pushed as a superset and filtered again.
    let first = f.incidents.iter().map(|i| i.opened_at).min().unwrap();
    let sql = format!(
        "SELECT count(*) FROM cad.incidents WHERE opened_at > '{}'",
        first.to_rfc3339()
    );
    assert_eq!(
        one(&d.engine, &sql).await,
        (f.incidents.len() - 1).to_string()
    );

    let plan = query(
        &d.engine,
        "EXPLAIN SELECT urn FROM cad.incidents WHERE status = 'closed' AND grade IN ('I', 'S')",
    )
    .await
    .unwrap()
    .into_iter()
    .map(|r| r.join(" "))
    .collect::<Vec<_>>()
    .join("\n");
    assert!(
        plan.contains("OpenApiExec: source=cad endpoint=GET /incidents pagination=cursor params=["),
        "{plan}"
    );
    assert!(
        plan.contains("grade=I,S") && plan.contains("status=closed"),
        "{plan}"
    );

    let crns: Vec<&str> = f
        .crimes
        .iter()
        .take(2)
        .map(|c| c.crime_reference.as_str())
        .collect();
    let sql = format!(
        "SELECT count(*) FROM rms.crimes WHERE crime_reference IN ('{}', '{}')",
        crns[0], crns[1]
    );
    let before = d.rms.stats.records();
    assert_eq!(one(&d.engine, &sql).await, "2");
    assert_eq!(d.rms.stats.records() - before, 2);
}

#[tokio::test]
async fn lookup_tables_need_their_key() {
    let d = demo(SystemOptions::default(), "").await;
    let err = query(&d.engine, "SELECT * FROM cad.incident_log")
        .await
        .unwrap_err();
    assert!(
        err.message.contains("needs a value for 'incident_urn'"),
        "{}",
        err.message
    );
    let urn = &d.force.incidents[4].urn;
    let expected = d
        .force
        .incident_log
        .iter()
        .filter(|l| &l.urn == urn)
        .count();
    assert_eq!(
        one(
            &d.engine,
            &format!("SELECT count(*) FROM cad.incident_log WHERE incident_urn = '{urn}'")
        )
        .await,
        expected.to_string()
    );
    let other = &d.force.incidents[5].urn;
    let both = d
        .force
        .incident_log
        .iter()
        .filter(|l| &l.urn == urn || &l.urn == other)
        .count();
    let sql =
        format!("SELECT count(*) FROM cad.incident_log WHERE incident_urn IN ('{urn}', '{other}')");
    assert_eq!(one(&d.engine, &sql).await, both.to_string());
}

#[tokio::test]
async fn oauth_tokens_are_refreshed_and_bad_credentials_are_clear() {
    let options = SystemOptions {
        rms_token_ttl: Duration::from_millis(1500),
        ..SystemOptions::default()
    };
    let d = demo(options.clone(), "").await;
    assert_eq!(
        one(&d.engine, "SELECT count(*) FROM rms.people").await,
        d.force.people.len().to_string()
    );
    tokio::time::sleep(Duration::from_millis(1700)).await;
    assert_eq!(
        one(&d.engine, "SELECT count(*) FROM rms.people").await,
        d.force.people.len().to_string()
    );

    let config = format!(
        "[[source]]\nname = \"rms\"\nkind = \"openapi\"\nspec = \"{}\"\nauth = {{ type = \"oauth2\", client_id = \"bluelamp-demo\", client_secret = \"Wrong-Secret-123\" }}\n",
        d.rms.openapi_url()
    );
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_from_text(&config, dir.path()).await.unwrap();
    let err = query(&engine, "SELECT count(*) FROM rms.people")
        .await
        .unwrap_err();
    assert!(
        err.message.contains("refused the client credentials"),
        "{}",
        err.message
    );
    assert!(!err.message.contains("Wrong-Secret-123"), "{}", err.message);

    let config = format!(
        "[[source]]\nname = \"cad\"\nkind = \"openapi\"\nspec = \"{}\"\nauth = {{ type = \"api_key\", name = \"X-API-Key\", value = \"Wrong-Key-456\" }}\n",
        d.cad.openapi_url()
    );
    let engine = engine_from_text(&config, dir.path()).await.unwrap();
    let err = query(&engine, "SELECT count(*) FROM cad.incidents")
        .await
        .unwrap_err();
    assert!(
        err.message
            .starts_with("source 'cad' (openapi): GET /incidents: HTTP 401"),
        "{}",
        err.message
    );
    assert!(!err.message.contains("Wrong-Key-456"), "{}", err.message);
}

fn with_faults(faults: &str) -> SystemOptions {
    SystemOptions {
        faults: faults.parse().unwrap(),
        ..SystemOptions::default()
    }
}

#[tokio::test]
async fn transport_faults_are_retried_to_a_complete_answer() {
    let d = demo(
        with_faults("errors=0.2,burst429=2,reset=0.1,seed=4"),
        "retries = 8\npage_size = 50",
    )
    .await;
    let f = &d.force;
    assert_eq!(
        one(&d.engine, "SELECT count(DISTINCT urn) FROM cad.incidents").await,
        f.incidents.len().to_string()
    );
    assert_eq!(
        one(
            &d.engine,
            "SELECT count(DISTINCT crime_reference) FROM rms.crimes"
        )
        .await,
        f.crimes.len().to_string()
    );
    assert_eq!(
        one(&d.engine, "SELECT count(*) FROM stops.stops_street").await,
        f.stops.len().to_string()
    );
    let statuses = d.cad.stats.to_json()["statuses"].clone();
    assert!(
        statuses.get("429").is_some()
            && (statuses.get("500").is_some() || statuses.get("503").is_some()),
        "{statuses}"
    );
}

#[tokio::test]
async fn malformed_pages_and_wrong_types_fail_clearly() {
    // Every answer garbled: the query fails naming the source, as unavailable.
    let d = demo(with_faults("malformed=1"), "retries = 1").await;
    let err = query(&d.engine, "SELECT count(*) FROM cad.incidents")
        .await
        .unwrap_err();
    assert!(
        err.message
            .starts_with("source 'cad' (openapi): GET /incidents: the answer is not valid JSON")
            && err.message.contains("(after 2 attempts)"),
        "{}",
        err.message
    );
    assert_eq!(err.kind, ErrorKind::Unavailable);
    // Some answers garbled: each is asked for again, and the answer is whole.
    let d = demo(with_faults("malformed=0.3"), "retries = 8").await;
    assert_eq!(
        one(&d.engine, "SELECT count(*) FROM cad.incidents").await,
        d.force.incidents.len().to_string()
    );

    let d = demo(with_faults("drift=wrongtype"), "").await;
    let err = query(&d.engine, "SELECT count(*) FROM cad.incidents")
        .await
        .unwrap_err();
    assert!(
        err.message.contains(
            "GET /incidents: page 1 has a record that does not match the documented schema"
        ),
        "{}",
        err.message
    );
    assert!(err.message.contains("grade"), "{}", err.message);
    assert_eq!(err.kind, ErrorKind::Execution);
}

#[tokio::test]
async fn extra_fields_are_ignored_and_missing_optional_fields_are_null() {
    let d = demo(with_faults("drift=extra+missing"), "").await;
    let f = &d.force;
    assert_eq!(
        one(&d.engine, "SELECT count(*) FROM cad.incidents").await,
        f.incidents.len().to_string()
    );
    assert_eq!(
        one(
            &d.engine,
            "SELECT count(vehicle_registration) FROM cad.incidents"
        )
        .await,
        "0"
    );
    assert_eq!(
        one(&d.engine, "SELECT count(outcome_code) FROM rms.crimes").await,
        "0"
    );
}

#[tokio::test]
async fn slow_systems_time_out_with_a_clear_error() {
    let d = demo(
        with_faults("latency=800ms"),
        "timeout = \"200ms\"\nretries = 1",
    )
    .await;
    let err = query(&d.engine, "SELECT count(*) FROM cad.incidents")
        .await
        .unwrap_err();
    assert!(
        err.message.contains("GET /incidents: timed out"),
        "{}",
        err.message
    );
    assert_eq!(err.kind, ErrorKind::Unavailable);
}

#[tokio::test]
async fn joins_look_up_only_the_keys_they_need() {
    let d = demo(SystemOptions::default(), "").await;
    let f = &d.force;
    let day: Vec<&str> = f
        .incidents
        .iter()
        .filter(|i| i.opened_at.format("%Y-%m-%d").to_string() == "2026-10-03")
        .map(|i| i.urn.as_str())
        .collect();
    let expected = f
        .crimes
        .iter()
        .filter(|c| day.contains(&c.incident_urn.as_str()))
        .count();
    assert!(expected > 0 && expected * 5 < f.crimes.len());
    let sql = "SELECT count(*) FROM cad.incidents i JOIN rms.crimes c ON c.incident_urn = i.urn
               WHERE i.opened_at >= '2026-10-03T00:00:00Z' AND i.opened_at < '2026-10-04T00:00:00Z'";
    let before = d.rms.stats.records();
    assert_eq!(one(&d.engine, sql).await, expected.to_string());
    assert_eq!(
        d.rms.stats.records() - before,
        expected as u64,
        "only that day's crimes were fetched"
    );

    let plan = query(&d.engine, &format!("EXPLAIN {sql}")).await.unwrap();
    let text = plan
        .iter()
        .map(|r| r.join(" "))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(text.contains("join_lookup=[incident_urn]"), "{text}");

    // A lookup table keyed by a path parameter, joined: one request per key.
    let immediate: Vec<&str> = f
        .incidents
        .iter()
        .filter(|i| i.grade == "I" && day.contains(&i.urn.as_str()))
        .map(|i| i.urn.as_str())
        .collect();
    let entries = f
        .incident_log
        .iter()
        .filter(|l| immediate.contains(&l.urn.as_str()))
        .count();
    let before = d.cad.stats.requests();
    let sql = "SELECT count(*) FROM cad.incidents i JOIN cad.incident_log l ON l.incident_urn = i.urn
               WHERE i.grade = 'I' AND i.opened_at >= '2026-10-03T00:00:00Z' AND i.opened_at < '2026-10-04T00:00:00Z'";
    assert_eq!(one(&d.engine, sql).await, entries.to_string());
    assert_eq!(d.cad.stats.requests() - before, 1 + immediate.len() as u64);
}
