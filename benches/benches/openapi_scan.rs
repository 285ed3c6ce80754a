//! Scan throughput: `SELECT * FROM cad.incidents` through Bluelamp against a
//! bare `reqwest` + `serde_json` loop fetching the same pages in the same
//! process. Run:
//!
//! ```sh
//! cargo bench --workspace --bench openapi_scan
//! ```
//!
//! `BLUELAMP_BENCH_SCALE` (default 1: 50,000 incidents) and
//! `BLUELAMP_BENCH_RUNS` (default 7) change the size and the number of timed
//! runs; each side is measured alternately and the medians are compared.

use std::time::Duration;

use bluelamp_benches::{Direct, Live, env_number, median, served};
use bluelamp_simulators::http::SystemKind;

fn main() -> anyhow::Result<()> {
    bluelamp_benches::block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let scale = env_number("BLUELAMP_BENCH_SCALE", 1.0);
    let runs = env_number("BLUELAMP_BENCH_RUNS", 7.0) as usize;
    let live = Live::start(scale, &[SystemKind::Cad]).await?;
    let cad = live.system(SystemKind::Cad);
    let direct = Direct::new();
    let expected = live.force.incidents.len();
    let sql = "SELECT * FROM cad.incidents";

    // One untimed run of each warms connections and the OpenAPI document.
    let (rows, engine_served) = served(cad, live.count_rows(sql)).await?;
    anyhow::ensure!(
        rows == expected,
        "Bluelamp returned {rows} of {expected} incidents"
    );
    let (records, direct_served) = served(
        cad,
        direct.cad_incidents(cad, &live.options.cad_api_key, 500, None),
    )
    .await?;
    anyhow::ensure!(
        records.len() == expected,
        "direct loop got {} of {expected}",
        records.len()
    );
    eprintln!(
        "pages: Bluelamp {} requests, direct {} requests",
        engine_served.requests, direct_served.requests
    );

    let mut engine_times = Vec::new();
    let mut direct_times = Vec::new();
    for _ in 0..runs {
        let started = std::time::Instant::now();
        live.count_rows(sql).await?;
        engine_times.push(started.elapsed());
        let started = std::time::Instant::now();
        let records = direct
            .cad_incidents(cad, &live.options.cad_api_key, 500, None)
            .await?;
        std::hint::black_box(records);
        direct_times.push(started.elapsed());
    }
    let rate = |d: Duration| expected as f64 / d.as_secs_f64();
    let (engine, direct) = (median(&engine_times), median(&direct_times));
    println!("openapi_scan: SELECT * FROM cad.incidents, {expected} records, {runs} runs (median)");
    println!(
        "  Bluelamp        {:>8.1} ms  {:>10.0} records/s",
        engine.as_secs_f64() * 1e3,
        rate(engine)
    );
    println!(
        "  reqwest+serde   {:>8.1} ms  {:>10.0} records/s",
        direct.as_secs_f64() * 1e3,
        rate(direct)
    );
    println!(
        "  rate ratio Bluelamp / direct: {:.2} (target >= 0.8)",
        rate(engine) / rate(direct)
    );
    Ok(())
}
