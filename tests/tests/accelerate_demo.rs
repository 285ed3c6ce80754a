//! Acceleration over the demo force's REST systems, as `bluelamp demo
//! --accelerate` runs it: an append refresh of RMS crimes fetches what is
//! new through RMS's own `recorded_from` filter (proven from the system's
//! request counts), copies match what the systems serve, a supplier having
//! a bad hour (500s, malformed pages) leaves the copy as it was and says
//! why, and copies keep up with systems that add records while they run.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use bluelamp_engine::{Engine, Identity, QueryError};
use bluelamp_simulators::http::{DemoAcceleration, Faults, SystemKind, SystemOptions};
use bluelamp_tests::fixtures::LiveDemo;
use futures::TryStreamExt;

/// The user the refreshes run as: the systems are told each request's end
/// user.
const EXTRA: &str = "[[user]]\nname = \"officer\"\n";

/// As [`EXTRA`], with a password to sign in over Flight SQL.
fn with_password() -> String {
    let hash = bluelamp_flight_server::hash_password("demo").unwrap();
    format!("[[user]]\nname = \"officer\"\npassword_hash = \"{hash}\"\n")
}

fn acceleration() -> DemoAcceleration {
    DemoAcceleration {
        refresh: "1h".into(),
        as_user: "officer".into(),
        crimes_window: None,
    }
}

async fn run(engine: &Engine, sql: &str, live: bool) -> Result<Vec<RecordBatch>, QueryError> {
    let session = engine.session(Identity::new("officer", "test"));
    if live {
        session.sql("SET bluelamp.live = true").await?;
    }
    let output = session.sql(sql).await?;
    output.stream.try_collect().await.map_err(QueryError::from)
}

/// The first value of `sql`, from the copy or (`live`) from the system.
async fn value(engine: &Engine, sql: &str, live: bool) -> String {
    let batches = run(engine, sql, live)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let batch = batches.iter().find(|b| b.num_rows() > 0).expect("a row");
    arrow::util::display::array_value_to_string(batch.column(0), 0).unwrap()
}

/// Waits (up to 60 s) for the first copies of `tables` (`source.table`).
async fn first_copies(engine: &Engine, tables: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = engine.accelerations();
        let missing: Vec<&&str> = tables
            .iter()
            .filter(|t| {
                !status
                    .iter()
                    .any(|a| format!("{}.{}", a.source, a.table) == **t && a.rows.is_some())
            })
            .collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no copy of {missing:?} after 60 s: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// GET requests RMS has answered on its crimes list.
fn crime_pages(demo: &LiveDemo) -> u64 {
    let rms = demo
        .systems
        .iter()
        .find(|s| s.kind == SystemKind::Rms)
        .unwrap();
    rms.stats.to_json()["endpoints"]["GET /crimes"]["requests"]
        .as_u64()
        .unwrap_or(0)
}

/// The whole of RMS crimes, as one text.
const CRIMES: &str = "SELECT concat_ws('|', count(*), count(DISTINCT crime_reference), \
                      string_agg(concat(crime_reference, recorded_at, status), ',' \
                      ORDER BY crime_reference)) FROM rms.crimes";

#[tokio::test]
async fn an_append_refresh_fetches_new_crimes_in_at_most_two_pages() {
    let demo =
        LiveDemo::start_accelerated(0.1, EXTRA, SystemOptions::default(), Some(&acceleration()))
            .await;
    let engine = &demo.engine;
    first_copies(
        engine,
        &[
            "cad.incidents",
            "rms.crimes",
            "rms.people",
            "rms.crime_people",
            "stops.stops_street",
        ],
    )
    .await;
    // The copies hold what the force holds.
    assert_eq!(
        value(engine, "SELECT count(*) FROM rms.crimes", false).await,
        demo.force.crimes.len().to_string()
    );
    assert_eq!(
        value(engine, "SELECT count(*) FROM cad.incidents", false).await,
        demo.force.incidents.len().to_string()
    );
    // 100 crimes are recorded now, later than any the force holds.
    let newest = demo
        .force
        .crimes
        .iter()
        .map(|c| c.recorded_at)
        .max()
        .unwrap();
    assert!(
        newest < chrono::Utc::now(),
        "the force's crimes are in the past"
    );
    run(
        engine,
        "INSERT INTO rms.crimes (incident_urn, offence_code, offence, recorded_at, status) \
         SELECT 'CAD-20261204-' || lpad(CAST(value AS VARCHAR), 5, '0'), '049/00', \
                'Other theft', now(), 'under investigation' \
         FROM range(1, 101) ORDER BY value",
        false,
    )
    .await
    .unwrap();
    // The copy has them only after its next refresh.
    assert_eq!(
        value(engine, "SELECT count(*) FROM rms.crimes", false).await,
        demo.force.crimes.len().to_string()
    );
    let before = crime_pages(&demo);
    let done = engine.refresh("rms", "crimes").await.unwrap();
    let pages = crime_pages(&demo) - before;
    assert!(pages <= 2, "an append refresh read {pages} pages of crimes");
    // The 100 new crimes, and the newest already held read again.
    assert!(
        (101..=110).contains(&done.fetched),
        "fetched {}",
        done.fetched
    );
    assert_eq!(done.rows as usize, demo.force.crimes.len() + 100);
    assert_eq!(
        value(engine, CRIMES, false).await,
        value(engine, CRIMES, true).await
    );
    let status = value(
        engine,
        "SELECT concat_ws(' ', mode, fetched, requests) FROM bluelamp.accelerations \
         WHERE source = 'rms' AND \"table\" = 'crimes'",
        false,
    )
    .await;
    assert_eq!(status, format!("append {} {pages}", done.fetched));
}

#[tokio::test]
async fn a_supplier_failing_leaves_the_copy_and_says_why() {
    let demo =
        LiveDemo::start_accelerated(0.02, EXTRA, SystemOptions::default(), Some(&acceleration()))
            .await;
    let engine = &demo.engine;
    first_copies(engine, &["rms.crimes", "cad.incidents"]).await;
    let held = value(engine, CRIMES, false).await;
    let rms = demo
        .systems
        .iter()
        .find(|s| s.kind == SystemKind::Rms)
        .unwrap();
    for (faults, says) in [
        ("errors=1.0", "HTTP 500"),
        ("malformed=1.0", "not valid JSON"),
    ] {
        rms.set_faults(faults.parse::<Faults>().unwrap());
        let error = engine.refresh("rms", "crimes").await.unwrap_err();
        assert!(
            error
                .message
                .contains("refreshing rms.crimes failed (the previous copy is kept)")
                && error.message.contains(says),
            "{faults}: {error}"
        );
        // The copy answers as before; the failure is on record.
        assert_eq!(value(engine, CRIMES, false).await, held, "{faults}");
        let last_error = value(
            engine,
            "SELECT last_error FROM bluelamp.accelerations WHERE source = 'rms' AND \"table\" = 'crimes'",
            false,
        )
        .await;
        assert!(last_error.contains(says), "{faults}: {last_error}");
    }
    rms.set_faults(Faults::none());
    engine.refresh("rms", "crimes").await.unwrap();
    assert_eq!(value(engine, CRIMES, false).await, held);
    let last_error = run(
        engine,
        "SELECT last_error FROM bluelamp.accelerations WHERE last_error IS NOT NULL",
        false,
    )
    .await
    .unwrap();
    assert_eq!(
        last_error.iter().map(RecordBatch::num_rows).sum::<usize>(),
        0
    );
}

#[tokio::test]
async fn copies_keep_up_with_systems_that_add_records() {
    let options = SystemOptions {
        live_rate: 40.0,
        ..SystemOptions::default()
    };
    let demo = LiveDemo::start_accelerated(0.02, EXTRA, options, Some(&acceleration())).await;
    let engine = &demo.engine;
    first_copies(engine, &["rms.crimes", "cad.incidents"]).await;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        engine.refresh("rms", "crimes").await.unwrap();
        engine.refresh("cad", "incidents").await.unwrap();
    }
    let crimes = value(engine, "SELECT count(*) FROM rms.crimes", false)
        .await
        .parse::<usize>()
        .unwrap();
    assert!(crimes > demo.force.crimes.len(), "no new crimes: {crimes}");
    // No crime twice, and every crime recorded before the copy's newest is
    // in it, as the system itself answers.
    assert_eq!(
        value(
            engine,
            "SELECT count(*) - count(DISTINCT crime_reference) FROM rms.crimes",
            false
        )
        .await,
        "0"
    );
    let newest = value(
        engine,
        "SELECT CAST(max(recorded_at) AS VARCHAR) FROM rms.crimes",
        false,
    )
    .await;
    let before = format!(
        "SELECT concat_ws('|', count(*), string_agg(crime_reference, ',' ORDER BY crime_reference)) \
         FROM rms.crimes WHERE recorded_at < TIMESTAMP '{newest}'"
    );
    assert_eq!(
        value(engine, &before, false).await,
        value(engine, &before, true).await
    );
    let incidents = value(engine, "SELECT count(*) FROM cad.incidents", false)
        .await
        .parse::<usize>()
        .unwrap();
    assert!(
        incidents > demo.force.incidents.len(),
        "no new incidents: {incidents}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flight_sql_results_from_copies_say_how_fresh_they_are() {
    let demo = LiveDemo::start_accelerated(
        0.02,
        &with_password(),
        SystemOptions::default(),
        Some(&acceleration()),
    )
    .await;
    first_copies(&demo.engine, &["rms.crimes", "cad.incidents"]).await;
    let server =
        bluelamp_flight_server::serve(demo.engine.clone(), Some("127.0.0.1:0".parse().unwrap()))
            .await
            .unwrap();
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = arrow_flight::sql::client::FlightSqlServiceClient::new(channel);
    client.handshake("officer", "demo").await.unwrap();
    let copy_time = |table: &str| {
        let status = demo.engine.accelerations();
        let copy = status
            .iter()
            .find(|a| format!("{}.{}", a.source, a.table) == table)
            .unwrap();
        chrono::DateTime::<chrono::Utc>::from(copy.as_of.unwrap())
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    };
    // Refreshed apart, so the two copies have different times.
    tokio::time::sleep(Duration::from_millis(20)).await;
    demo.engine.refresh("cad", "incidents").await.unwrap();
    let (crimes, incidents) = (copy_time("rms.crimes"), copy_time("cad.incidents"));
    assert!(crimes < incidents);
    for (sql, want) in [
        (
            "SELECT count(*) FROM cad.incidents",
            Some(incidents.clone()),
        ),
        // A join answers as fresh as its oldest copy.
        (
            "SELECT count(*) FROM rms.crimes c JOIN cad.incidents i ON i.urn = c.incident_urn",
            Some(crimes.clone()),
        ),
        ("SELECT count(*) FROM custody.custody_records", None),
    ] {
        let info = client.execute(sql.into(), None).await.unwrap();
        let schema = info.clone().try_decode_schema().unwrap();
        assert_eq!(
            schema.metadata().get("bluelamp.as_of"),
            want.as_ref(),
            "{sql}"
        );
        bluelamp_tests::flight_client::fetch(&mut client, info)
            .await
            .unwrap();
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_window_copy_holds_exactly_the_force_s_recent_crimes() {
    // A window that starts half-way through the force's month (October
    // 2026), whatever today is.
    let middle = chrono::DateTime::parse_from_rfc3339("2026-10-16T00:00:00Z").unwrap();
    let days = (chrono::Utc::now() - middle.to_utc()).num_days();
    let window = DemoAcceleration {
        crimes_window: Some(format!("{days}d")),
        ..acceleration()
    };
    let demo =
        LiveDemo::start_accelerated(0.05, EXTRA, SystemOptions::default(), Some(&window)).await;
    let engine = &demo.engine;
    first_copies(engine, &["rms.crimes"]).await;
    let status = engine.accelerations();
    let crimes = status
        .iter()
        .find(|a| a.source == "rms" && a.table == "crimes")
        .unwrap();
    assert_eq!(crimes.mode, "window");
    // The window's start: the copy's time less the window, to the
    // millisecond.
    let as_of = chrono::DateTime::<chrono::Utc>::from(crimes.as_of.unwrap());
    let start = as_of - chrono::Duration::days(days);
    let start = chrono::DateTime::from_timestamp_millis(start.timestamp_millis()).unwrap();
    let mut want: Vec<String> = demo
        .force
        .crimes
        .iter()
        .filter(|c| c.recorded_at >= start)
        .map(|c| c.crime_reference.clone())
        .collect();
    want.sort();
    assert!(
        !want.is_empty() && want.len() < demo.force.crimes.len(),
        "the window should cut the force's crimes: {} of {}",
        want.len(),
        demo.force.crimes.len()
    );
    let batches = run(
        engine,
        "SELECT crime_reference FROM rms.crimes ORDER BY crime_reference",
        false,
    )
    .await
    .unwrap();
    let got: Vec<String> = batches
        .iter()
        .flat_map(|b| {
            (0..b.num_rows())
                .map(|i| arrow::util::display::array_value_to_string(b.column(0), i).unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(got, want);
}
