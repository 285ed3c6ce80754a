//! `bluelamp certify published --source rms --allow-writes` on the demo's
//! RMS at scale 1 (14,470 crimes, 20,000 people, 28,880 links), at the
//! system's own rate limit (200 requests a second, answered with 429 and
//! `Retry-After` beyond it). Run:
//!
//! ```sh
//! cargo bench --workspace --bench certify_published
//! ```
//!
//! Each run starts a fresh RMS (the round trip deposits), checks every
//! tier 2 criterion, and must reach tier 2. `BLUELAMP_BENCH_SCALE` (1 by
//! default) and `BLUELAMP_BENCH_RUNS` (3 by default) change the size and the
//! number of timed runs; the median is reported with the requests it took.

use std::net::SocketAddr;
use std::sync::Arc;

use bluelamp_benches::{env_number, median, served};
use bluelamp_simulators::http::{SystemKind, SystemOptions, openapi_sources, start};

fn main() -> anyhow::Result<()> {
    bluelamp_benches::block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let scale = env_number("BLUELAMP_BENCH_SCALE", 1.0);
    let runs = env_number("BLUELAMP_BENCH_RUNS", 3.0) as usize;
    let force = Arc::new(bluelamp_simulators::generate(1, scale, |_| {}));
    // The demo's own settings, rate limit included.
    let options = SystemOptions::default();
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..runs.max(1) {
        let rms = start(
            SystemKind::Rms,
            Arc::clone(&force),
            options.clone(),
            SocketAddr::from(([127, 0, 0, 1], 0)),
        )
        .await?;
        let config = bluelamp_engine::Config::parse(
            &openapi_sources(std::slice::from_ref(&rms), &options),
            "bench.toml",
            std::env::temp_dir(),
        )?;
        let started = std::time::Instant::now();
        let (report, work) = served(&rms, async {
            bluelamp_certify::live::check_source(config, "rms", None, true)
                .await
                .map_err(anyhow::Error::msg)
        })
        .await?;
        times.push(started.elapsed());
        anyhow::ensure!(
            report.tier_reached == Some(2),
            "the clean RMS did not reach tier 2: {}",
            report.summary
        );
        last = Some(work);
        rms.shutdown().await;
    }
    let work = last.unwrap_or(bluelamp_benches::Served {
        requests: 0,
        records: 0,
    });
    println!(
        "certify_published: rms at scale {scale} ({} crimes), {runs} runs (median)",
        force.crimes.len()
    );
    println!(
        "  {:>8.1} s  {} requests  {} records served  (target < 60 s)",
        median(&times).as_secs_f64(),
        work.requests,
        work.records
    );
    Ok(())
}
