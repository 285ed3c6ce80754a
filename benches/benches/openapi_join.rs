//! Join lookup: one day of C&C incidents joined with their RMS crimes. Reports
//! the requests and records RMS served against a full scan of `rms.crimes`,
//! and the wall time against calling the two APIs directly with the right
//! URNs (`reqwest` + `serde_json`, concurrent `incident_urn` batches). Run:
//!
//! ```sh
//! cargo bench --workspace --bench openapi_join
//! ```
//!
//! `BLUELAMP_BENCH_SCALE` (default 1) and `BLUELAMP_BENCH_RUNS` (default 7).

use std::collections::HashSet;

use bluelamp_benches::{Direct, Live, env_number, median, served, time_runs};
use bluelamp_simulators::http::SystemKind;

const JOIN: &str = "SELECT i.urn, i.grade, c.crime_reference, c.offence, c.status
FROM cad.incidents i JOIN rms.crimes c ON c.incident_urn = i.urn
WHERE i.opened_at >= TIMESTAMP '2026-10-07T00:00:00Z' AND i.opened_at < TIMESTAMP '2026-10-08T00:00:00Z'";
const FROM: &str = "2026-10-07T00:00:00Z";
const TO: &str = "2026-10-08T00:00:00Z";

fn main() -> anyhow::Result<()> {
    bluelamp_benches::block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let scale = env_number("BLUELAMP_BENCH_SCALE", 1.0);
    let runs = env_number("BLUELAMP_BENCH_RUNS", 7.0) as usize;
    let live = Live::start(scale, &[SystemKind::Cad, SystemKind::Rms]).await?;
    let (cad, rms) = (live.system(SystemKind::Cad), live.system(SystemKind::Rms));
    let direct = Direct::new();

    // The right answer, from the force itself.
    let from = chrono::DateTime::parse_from_rfc3339(FROM)?;
    let to = chrono::DateTime::parse_from_rfc3339(TO)?;
    let day: HashSet<&str> = live
        .force
        .incidents
        .iter()
        .filter(|i| i.opened_at >= from && i.opened_at < to)
        .map(|i| i.urn.as_str())
        .collect();
    let expected = live
        .force
        .crimes
        .iter()
        .filter(|c| day.contains(c.incident_urn.as_str()))
        .count();

    let (rows, lookup) = served(rms, live.count_rows(JOIN)).await?;
    anyhow::ensure!(
        rows == expected,
        "join returned {rows} rows, want {expected}"
    );
    let (all, scan) = served(rms, live.count_rows("SELECT * FROM rms.crimes")).await?;
    anyhow::ensure!(
        all == live.force.crimes.len(),
        "full scan returned {all} rows"
    );

    let direct_call = || async {
        let incidents = direct
            .cad_incidents(cad, &live.options.cad_api_key, 500, Some((FROM, TO)))
            .await?;
        let urns: Vec<String> = incidents
            .iter()
            .filter_map(|i| i["urn"].as_str().map(str::to_string))
            .collect();
        let token = direct.rms_token(rms, &live.options).await?;
        let crimes = direct.rms_crimes_for(rms, &token, &urns, 200).await?;
        Ok::<_, anyhow::Error>(crimes.len())
    };
    let (direct_times, direct_rows) = time_runs(runs, direct_call).await?;
    anyhow::ensure!(
        direct_rows == expected,
        "direct calls got {direct_rows} crimes, want {expected}"
    );
    let (engine_times, _) = time_runs(runs, || live.count_rows(JOIN)).await?;

    let (engine, direct) = (median(&engine_times), median(&direct_times));
    println!(
        "openapi_join: one day ({} incidents) joined with RMS crimes, {expected} rows, {runs} runs (median)",
        day.len()
    );
    println!(
        "  RMS served for the join:      {:>6} requests {:>8} records",
        lookup.requests, lookup.records
    );
    println!(
        "  RMS served for a full scan:   {:>6} requests {:>8} records",
        scan.requests, scan.records
    );
    println!(
        "  records ratio full scan / join: {:.1}x fewer (target >= 20x)",
        scan.records as f64 / lookup.records.max(1) as f64
    );
    println!(
        "  wall time: Bluelamp {:.1} ms, direct API calls {:.1} ms, ratio {:.2} (target <= 2)",
        engine.as_secs_f64() * 1e3,
        direct.as_secs_f64() * 1e3,
        engine.as_secs_f64() / direct.as_secs_f64()
    );
    Ok(())
}
