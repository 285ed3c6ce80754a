//! The demo's systems on a bad day: with
//! `errors=0.1,burst429=3,reset=0.05,malformed=0.05` (5xx answers, bursts of
//! 429, connections cut mid-body, garbled 200 pages), a few hundred generated
//! queries (filters, `IN` lists, lookups by key, cross-system joins, `LIMIT`)
//! must answer exactly as the same queries do against the same systems
//! without faults, or fail with an error naming the source: never a
//! different answer. At least 95 % must answer.
//!
//! `BLUELAMP_SOAK_QUERIES` sets how many (default 240); the figures are
//! printed (`cargo nextest run -E 'binary(fault_soak)' --no-capture`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use bluelamp_engine::{Engine, Identity, QueryError};
use bluelamp_simulators::force::Force;
use bluelamp_simulators::http::SystemOptions;
use bluelamp_tests::fixtures::LiveDemo;
use futures::StreamExt;

const FAULTS: &str = "errors=0.1,burst429=3,reset=0.05,malformed=0.05,seed=11";

/// A small deterministic generator, so a failing run can be repeated.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) as usize) % below.max(1)
    }
}

/// `n` queries over the demo force's tables, their parameters drawn from its data.
fn queries(force: &Force, n: usize) -> Vec<String> {
    let mut rng = Lcg(7);
    let days: Vec<String> = {
        let mut d: Vec<String> = force
            .incidents
            .iter()
            .map(|i| i.opened_at.format("%Y-%m-%d").to_string())
            .collect();
        d.sort();
        d.dedup();
        d
    };
    let urn = |rng: &mut Lcg| force.incidents[rng.next(force.incidents.len())].urn.clone();
    let grades = ["I", "S", "E", "R"];
    (0..n)
        .map(|i| match i % 8 {
            0 => format!(
                "SELECT count(*), min(urn), max(urn) FROM cad.incidents WHERE grade = '{}'",
                grades[rng.next(grades.len())]
            ),
            1 => {
                let day = &days[rng.next(days.len())];
                format!(
                    "SELECT urn, grade FROM cad.incidents WHERE opened_at >= '{day}T00:00:00Z' AND opened_at < '{day}T12:00:00Z' ORDER BY urn"
                )
            }
            2 => {
                let keys: Vec<String> = (0..3).map(|_| format!("'{}'", urn(&mut rng))).collect();
                format!(
                    "SELECT crime_reference, offence FROM rms.crimes WHERE incident_urn IN ({}) ORDER BY crime_reference",
                    keys.join(", ")
                )
            }
            3 => format!(
                "SELECT count(*), max(seq) FROM cad.incident_log WHERE incident_urn = '{}'",
                urn(&mut rng)
            ),
            4 => {
                let day = &days[rng.next(days.len())];
                format!(
                    "SELECT i.grade, count(*) FROM cad.incidents i JOIN rms.crimes c ON c.incident_urn = i.urn \
                     WHERE i.opened_at >= '{day}T00:00:00Z' AND i.opened_at < '{day}T23:59:59Z' GROUP BY i.grade ORDER BY i.grade"
                )
            }
            5 => format!(
                "SELECT status, count(*) FROM rms.crimes GROUP BY status ORDER BY status LIMIT {}",
                1 + rng.next(3)
            ),
            6 => format!(
                "SELECT count(*) FROM cad.incidents i JOIN cad.incident_assignments a ON a.incident_urn = i.urn WHERE i.urn IN ('{}', '{}')",
                urn(&mut rng),
                urn(&mut rng)
            ),
            _ => format!(
                "SELECT count(*), min(datetime) FROM stops.stops_street WHERE age_range = '{}'",
                ["18-24", "25-34", "over 34", "10-17"][rng.next(4)]
            ),
        })
        .collect()
}

async fn run(engine: &Engine, sql: &str) -> Result<Vec<Vec<String>>, QueryError> {
    let session = engine.session(Identity::new("soak", "test"));
    bluelamp_tests::slt::try_session_rows(&session, sql).await
}

async fn answers(engine: &Engine, queries: &[String]) -> Vec<Result<Vec<Vec<String>>, QueryError>> {
    futures::stream::iter(queries.iter().map(|sql| run(engine, sql)))
        .buffered(6)
        .collect()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_day_never_changes_an_answer() {
    let n: usize = std::env::var("BLUELAMP_SOAK_QUERIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(240);
    let calm = LiveDemo::start(0.02, "").await;
    let stormy = LiveDemo::start_with(
        0.02,
        "",
        SystemOptions {
            faults: FAULTS.parse().unwrap(),
            ..SystemOptions::default()
        },
    )
    .await;
    let queries = queries(&calm.force, n);
    let started = std::time::Instant::now();
    let expected = answers(&calm.engine, &queries).await;
    let calm_time = started.elapsed();
    let started = std::time::Instant::now();
    let got = answers(&stormy.engine, &queries).await;
    let stormy_time = started.elapsed();

    let mut same = 0;
    let mut failed: Vec<String> = Vec::new();
    for ((sql, expected), got) in queries.iter().zip(&expected).zip(&got) {
        let expected = expected
            .as_ref()
            .unwrap_or_else(|e| panic!("{sql} fails without faults: {e}"));
        match got {
            Ok(rows) => {
                assert_eq!(rows, expected, "{sql}: a different answer under faults");
                same += 1;
            }
            Err(e) => {
                assert!(
                    e.message.starts_with("source '"),
                    "{sql}: an error that names no source: {e}"
                );
                failed.push(format!("{sql}: {}", e.message));
            }
        }
    }
    println!(
        "fault soak ({FAULTS}): {n} queries, {same} answered exactly as without faults ({:.1} %), {} failed with a clear error, 0 answered differently; {:.1} s without faults, {:.1} s with",
        100.0 * same as f64 / n as f64,
        failed.len(),
        calm_time.as_secs_f64(),
        stormy_time.as_secs_f64()
    );
    for f in failed.iter().take(5) {
        println!("  {f}");
    }
    assert!(
        same * 100 >= n * 95,
        "only {same} of {n} answered; failures:\n{}",
        failed.join("\n")
    );
}
