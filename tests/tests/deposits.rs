//! Deposits into the demo force's supplier systems with `INSERT`: validation
//! before anything is sent, per-row outcomes, idempotent retries through
//! faults, dry runs, and the seed workflow — each checked against the
//! simulators' own request counts and data.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use bluelamp_engine::{Identity, QueryError, Session};
use bluelamp_simulators::http::{Faults, SystemKind, SystemOptions};
use bluelamp_tests::fixtures::LiveDemo;
use bluelamp_tests::slt::rows;
use futures::TryStreamExt;

async fn run(session: &Session, sql: &str) -> Result<Vec<Vec<String>>, QueryError> {
    bluelamp_tests::slt::try_session_rows(session, sql).await
}

async fn one(session: &Session, sql: &str) -> String {
    run(session, sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))[0][0]
        .clone()
}

/// POSTs one system has served.
fn posts(demo: &LiveDemo, kind: SystemKind, path: &str) -> u64 {
    let system = demo.systems.iter().find(|s| s.kind == kind).unwrap();
    system.stats.to_json()["endpoints"][format!("POST {path}")]["requests"]
        .as_u64()
        .unwrap_or(0)
}

/// `n` new crimes for made-up incidents on a day outside the demo month, so
/// they are easy to count in RMS.
fn hundred_crimes(n: usize) -> String {
    format!(
        "INSERT INTO rms.crimes (incident_urn, offence_code, offence, recorded_at, status) \
         SELECT 'CAD-20261231-' || lpad(CAST(value AS VARCHAR), 5, '0'), '049/00', 'Other theft', \
                TIMESTAMP '2026-12-31T10:00:00Z', 'under investigation' \
         FROM range(1, {}) ORDER BY value",
        n + 1
    )
}

const COUNT_DEPOSITED: &str =
    "SELECT count(*) FROM rms.crimes WHERE incident_urn LIKE 'CAD-20261231-%'";

fn with_faults(faults: &str) -> SystemOptions {
    SystemOptions {
        faults: faults.parse::<Faults>().unwrap(),
        ..SystemOptions::default()
    }
}

#[tokio::test]
async fn invalid_rows_are_rejected_before_anything_is_sent() {
    let demo = LiveDemo::start(0.01, "").await;
    let session = demo.engine.session(Identity::new("analyst", "test"));
    let before = one(&session, "SELECT count(*) FROM rms.crimes").await;
    // Row 2 lacks a required field, row 3 has a bad enum, row 4 breaks a
    // pattern; row 1 is fine but is not sent either.
    let e = run(
        &session,
        "INSERT INTO rms.crimes (incident_urn, offence_code, offence, recorded_at, status) \
         SELECT 'CAD-20261031-00001', '049/00', 'Other theft', TIMESTAMP '2026-10-31T10:00:00Z', 'under investigation' \
         UNION ALL SELECT 'CAD-20261031-00002', '049/00', NULL, TIMESTAMP '2026-10-31T10:00:00Z', 'under investigation' \
         UNION ALL SELECT 'CAD-20261031-00003', '049/00', 'Other theft', TIMESTAMP '2026-10-31T10:00:00Z', 'closed' \
         UNION ALL SELECT 'CAD-20261031-00004', '49', 'Other theft', TIMESTAMP '2026-10-31T10:00:00Z', 'finalised'",
    )
    .await
    .unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("3 of 4 rows are invalid, so nothing was sent"),
        "{text}"
    );
    assert!(text.contains("row 2: offence: is required"), "{text}");
    assert!(
        text.contains("row 3: status: 'closed' is not one of"),
        "{text}"
    );
    assert!(
        text.contains("row 4: offence_code: '49' does not match"),
        "{text}"
    );
    assert_eq!(posts(&demo, SystemKind::Rms, "/crimes"), 0);
    assert_eq!(
        one(&session, "SELECT count(*) FROM rms.crimes").await,
        before
    );
    let outcomes = run(
        &session,
        "SELECT row, outcome FROM bluelamp.deposits ORDER BY row",
    )
    .await
    .unwrap();
    assert_eq!(
        outcomes,
        [
            ["1", "not sent"],
            ["2", "invalid"],
            ["3", "invalid"],
            ["4", "invalid"]
        ]
    );
    // A NULL in a VALUES list for a required column is refused by the planner,
    // also before anything is sent.
    assert!(
        run(
            &session,
            "INSERT INTO rms.crimes (incident_urn, offence_code, offence, recorded_at, status) VALUES \
             ('CAD-20261031-00001', '049/00', NULL, TIMESTAMP '2026-10-31T10:00:00Z', 'under investigation')",
        )
        .await
        .is_err()
    );
    // A value of the wrong type fails while planning, also before sending.
    let e = run(
        &session,
        "INSERT INTO rms.crimes (incident_urn, offence_code, offence, recorded_at, status, restricted) VALUES \
         ('CAD-20261031-00005', '049/00', 'Other theft', TIMESTAMP '2026-10-31T10:00:00Z', 'under investigation', 'perhaps')",
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("perhaps"), "{e}");
    // The supplier assigns the crime reference; a row may not bring one.
    let e = run(
        &session,
        "INSERT INTO rms.crimes (crime_reference, incident_urn, offence_code, offence, recorded_at, status) VALUES \
         ('CRN/26/999999', 'CAD-20261031-00006', '049/00', 'Other theft', TIMESTAMP '2026-10-31T10:00:00Z', 'under investigation')",
    )
    .await
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("crime_reference: is not part of the request"),
        "{e}"
    );
    // A table with no create operation cannot be inserted into.
    let e = run(
        &session,
        "INSERT INTO rms.people (person_id, forename, surname) VALUES ('P1', 'A', 'B')",
    )
    .await
    .unwrap_err();
    assert!(
        e.to_string().contains("no documented create operation"),
        "{e}"
    );
    assert_eq!(posts(&demo, SystemKind::Rms, "/crimes"), 0);
}

#[tokio::test]
async fn stored_rows_report_the_reference_the_supplier_assigned() {
    let demo = LiveDemo::start(0.01, "").await;
    let session = demo.engine.session(Identity::new("analyst", "test"));
    let got = run(&session, &hundred_crimes(3)).await.unwrap();
    assert_eq!(got, [["3"]]);
    let outcomes = run(
        &session,
        "SELECT row, outcome, http_status, identifier, idempotency_key IS NOT NULL, request LIKE 'POST /crimes {%' FROM bluelamp.deposits ORDER BY row",
    )
    .await
    .unwrap();
    assert_eq!(outcomes.len(), 3);
    let next = demo.force.crimes.len();
    for (i, row) in outcomes.iter().enumerate() {
        assert_eq!(row[1..3], ["stored", "201"]);
        assert_eq!(row[3], format!("CRN/26/{:06}", next + i + 1));
        assert_eq!(row[4..], ["true", "true"]);
    }
    // The new crimes are in RMS, readable like any other.
    let stored = run(
        &session,
        "SELECT crime_reference, incident_urn, status FROM rms.crimes WHERE incident_urn LIKE 'CAD-20261231-%' ORDER BY incident_urn",
    )
    .await
    .unwrap();
    assert_eq!(
        stored[0],
        [
            outcomes[0][3].as_str(),
            "CAD-20261231-00001",
            "under investigation"
        ]
    );
    assert_eq!(posts(&demo, SystemKind::Rms, "/crimes"), 3);
}

#[tokio::test]
async fn a_500_on_row_57_leaves_a_rerun_to_store_the_rest_without_duplicates() {
    // Writes 57 to 60 fail: row 57's first attempt and its three retries.
    let demo = LiveDemo::start_with(0.01, "", with_faults("fail_writes=57-60")).await;
    let session = demo.engine.session(Identity::new("analyst", "test"));
    let e = run(&session, &hundred_crimes(100)).await.unwrap_err();
    let text = e.to_string();
    assert!(text.contains("99 of 100 rows stored"), "{text}");
    assert!(text.contains("row 57: failed"), "{text}");
    let failed = run(
        &session,
        "SELECT row, outcome, http_status FROM bluelamp.deposits WHERE outcome <> 'stored'",
    )
    .await
    .unwrap();
    assert_eq!(failed, [["57", "failed", "500"]]);
    assert_eq!(one(&session, COUNT_DEPOSITED).await, "99");
    // The same statement again: row 57 is stored, the rest are replays.
    let got = run(&session, &hundred_crimes(100)).await.unwrap();
    assert_eq!(got, [["100"]]);
    let second = run(
        &session,
        "SELECT outcome, count(*) FROM bluelamp.deposits WHERE statement = 2 GROUP BY outcome ORDER BY outcome",
    )
    .await
    .unwrap();
    assert_eq!(second, [["replayed", "99"], ["stored", "1"]]);
    assert_eq!(one(&session, COUNT_DEPOSITED).await, "100");
    let distinct = one(
        &session,
        "SELECT count(DISTINCT incident_urn) FROM rms.crimes WHERE incident_urn LIKE 'CAD-20261231-%'",
    )
    .await;
    assert_eq!(distinct, "100");
}

#[tokio::test]
async fn a_connection_reset_after_sending_is_retried_safely_with_the_same_key() {
    let demo = LiveDemo::start_with(0.01, "", with_faults("reset_writes=5")).await;
    let session = demo.engine.session(Identity::new("analyst", "test"));
    let got = run(&session, &hundred_crimes(10)).await.unwrap();
    assert_eq!(got, [["10"]]);
    let fifth = run(
        &session,
        "SELECT outcome FROM bluelamp.deposits WHERE row = 5",
    )
    .await
    .unwrap();
    assert_eq!(fifth, [["replayed"]]);
    // Stored once, although sent twice.
    assert_eq!(one(&session, COUNT_DEPOSITED).await, "10");
    assert_eq!(posts(&demo, SystemKind::Rms, "/crimes"), 11);
}

#[tokio::test]
async fn without_an_idempotency_key_an_unclear_write_is_reported_not_repeated() {
    // C&C's crime-reference interface has no idempotency key.
    let demo = LiveDemo::start_with(0.01, "", with_faults("reset_writes=2")).await;
    let session = demo.engine.session(Identity::new("analyst", "test"));
    let urns: Vec<&str> = demo
        .force
        .incidents
        .iter()
        .take(3)
        .map(|i| i.urn.as_str())
        .collect();
    let values: Vec<String> = urns
        .iter()
        .enumerate()
        .map(|(i, urn)| format!("('{urn}', 'CRN/26/9{i:05}')"))
        .collect();
    let e = run(
        &session,
        &format!(
            "INSERT INTO cad.record_crime_reference (urn, crime_reference) VALUES {}",
            values.join(", ")
        ),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("2 of 3 rows stored"), "{e}");
    let outcomes = run(
        &session,
        "SELECT row, outcome, message LIKE '%may or may not have been stored%' FROM bluelamp.deposits ORDER BY row",
    )
    .await
    .unwrap();
    assert_eq!(
        outcomes,
        [
            ["1", "stored", "NULL"],
            ["2", "unknown", "true"],
            ["3", "stored", "NULL"]
        ]
    );
    // Sent exactly once each: the unclear one was not repeated.
    let path = "/incidents/{urn}/crime-reference";
    assert_eq!(posts(&demo, SystemKind::Cad, path), 3);
}

#[tokio::test]
async fn a_429_storm_slows_deposits_down_but_stores_each_row_once() {
    let demo = LiveDemo::start_with(0.01, "", with_faults("burst429=5")).await;
    let session = demo.engine.session(Identity::new("analyst", "test"));
    let got = run(&session, &hundred_crimes(30)).await.unwrap();
    assert_eq!(got, [["30"]]);
    assert_eq!(one(&session, COUNT_DEPOSITED).await, "30");
    let system = demo
        .systems
        .iter()
        .find(|s| s.kind == SystemKind::Rms)
        .unwrap();
    let throttled = system.stats.to_json()["statuses"]["429"]
        .as_u64()
        .unwrap_or(0);
    assert!(throttled >= 5, "{}", system.stats.to_json());
}

#[tokio::test]
async fn dry_runs_validate_and_show_requests_without_sending() {
    let demo = LiveDemo::start(0.01, "").await;
    let session = demo.engine.session(Identity::new("analyst", "test"));
    let plan = run(&session, &format!("EXPLAIN {}", hundred_crimes(2)))
        .await
        .unwrap();
    let text = plan
        .iter()
        .map(|r| r.join(" "))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(text.contains("OpenApiSink: rms.crimes"), "{text}");
    assert!(text.contains("/crimes body={"), "{text}");
    assert!(text.contains("Idempotency-Key"), "{text}");
    run(&session, "SET bluelamp.deposit_mode = 'validate'")
        .await
        .unwrap();
    let got = run(&session, &hundred_crimes(2)).await.unwrap();
    assert_eq!(got, [["0"]]);
    let outcomes = run(
        &session,
        "SELECT outcome, request FROM bluelamp.deposits ORDER BY row",
    )
    .await
    .unwrap();
    assert_eq!(outcomes.len(), 2);
    assert_eq!(outcomes[0][0], "validated");
    assert!(
        outcomes[0][1].starts_with("POST /crimes {\"incident_urn\":\"CAD-20261231-00001\""),
        "{}",
        outcomes[0][1]
    );
    assert_eq!(posts(&demo, SystemKind::Rms, "/crimes"), 0);
    let e = run(&session, "SET bluelamp.deposit_mode = 'maybe'").await;
    let e = match e {
        Err(e) => e.to_string(),
        Ok(_) => run(&session, &hundred_crimes(1))
            .await
            .unwrap_err()
            .to_string(),
    };
    assert!(e.contains("'send' or 'validate'"), "{e}");
}

#[tokio::test]
async fn the_seed_workflow_records_missing_crimes_and_then_finds_nothing_to_do() {
    let demo = LiveDemo::start(0.02, "").await;
    let session = demo.engine.session(Identity::new("analyst", "test"));
    let missing: Vec<&str> = demo
        .force
        .incidents
        .iter()
        .filter(|i| {
            i.status == "closed"
                && i.opening_code.starts_with("Crime")
                && i.crime_reference.is_none()
                && !demo.force.crimes.iter().any(|c| c.incident_urn == i.urn)
        })
        .map(|i| i.urn.as_str())
        .collect();
    assert!(!missing.is_empty());
    let script = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../queries/workflows/record_missing_crimes.sql"),
    )
    .unwrap();
    for round in 1..=2 {
        let mut results = Vec::new();
        for statement in session.parse(&script).unwrap() {
            let planned = session.plan(&statement).await.unwrap();
            let output = session.execute(planned).await.unwrap();
            let batches: Vec<_> = output.stream.try_collect().await.unwrap();
            results.push(rows(&batches).unwrap());
        }
        let expected = if round == 1 { missing.len() } else { 0 };
        assert_eq!(
            results[0],
            [[expected.to_string()]],
            "round {round}: crimes deposited"
        );
        assert_eq!(
            results[1],
            [[expected.to_string()]],
            "round {round}: references recorded"
        );
    }
    // C&C now carries every new reference, matching RMS.
    let after = run(
        &session,
        "SELECT count(*) FROM cad.incidents i JOIN rms.crimes c ON c.incident_urn = i.urn \
         WHERE i.status = 'closed' AND i.opening_code LIKE 'Crime%' AND (i.crime_reference IS NULL OR i.crime_reference <> c.crime_reference)",
    )
    .await
    .unwrap();
    assert_eq!(after, [["0"]]);
}
