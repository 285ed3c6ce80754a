//! Acceleration: what local copies of the REST systems' tables buy, and
//! what they cost. Run:
//!
//! ```sh
//! cargo bench --workspace --bench acceleration
//! ```
//!
//! 1. **Cookbook**: the nine `queries/*.sql` over the demo force with its
//!    C&C, RMS and stop-and-search tables accelerated (as `bluelamp demo
//!    --accelerate`), each query once from the systems themselves (`SET
//!    bluelamp.live = true`) and once from the copies, in one run; the
//!    answers must match. Custody (SQLite) and ANPR (Parquet) are read
//!    directly in both.
//! 2. **Append refresh**: 100 crimes recorded through SQL, then one refresh
//!    of `rms.crimes`: the pages of crimes RMS served for it (from its own
//!    counters) and the records fetched.
//! 3. **Memory**: `anpr.reads` (1M rows at scale 1) accelerated in memory:
//!    the process's resident memory after the copy is made, less before,
//!    against the copy's Arrow size.
//!
//! `BLUELAMP_BENCH_SCALE` (default 1).

use std::path::Path;
use std::time::{Duration, Instant};

use bluelamp_benches::env_number;
use bluelamp_engine::{Config, Engine, Identity};
use bluelamp_simulators::http::{DemoAcceleration, SystemKind, SystemOptions};
use bluelamp_tests::fixtures::LiveDemo;
use bluelamp_tests::slt::rows;
use futures::TryStreamExt;

/// Set for the process that measures memory: the folder of the force's
/// files.
const MEMORY_CHILD: &str = "BLUELAMP_BENCH_MEMORY_FORCE";

fn main() -> anyhow::Result<()> {
    match std::env::var_os(MEMORY_CHILD) {
        Some(base) => bluelamp_benches::block_on(memory(std::path::PathBuf::from(base))),
        None => bluelamp_benches::block_on(run()),
    }
}

async fn run() -> anyhow::Result<()> {
    let scale = env_number("BLUELAMP_BENCH_SCALE", 1.0);
    cookbook_and_append(scale).await?;
    // Memory is measured in a process of its own, which holds nothing
    // else: the force is written here and read there.
    let dir = tempfile::tempdir()?;
    let force = bluelamp_simulators::generate(1, scale, |_| {});
    let files = bluelamp_simulators::write_force(&force, dir.path())?;
    let base = files
        .config
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| dir.path().to_path_buf());
    println!(
        "
ANPR reads in the force: {}",
        force.anpr.len()
    );
    drop(force);
    let status = std::process::Command::new(std::env::current_exe()?)
        .env(MEMORY_CHILD, &base)
        .status()?;
    anyhow::ensure!(status.success(), "the memory measurement failed");
    Ok(())
}

/// Rows of `sql` as text, and how long it took, from the copies or (`live`)
/// the systems.
async fn answer(
    engine: &Engine,
    sql: &str,
    live: bool,
) -> anyhow::Result<(Vec<Vec<String>>, Duration)> {
    let session = engine.session(Identity::new("officer", "bench"));
    if live {
        session.sql("SET bluelamp.live = true").await?;
    }
    let started = Instant::now();
    let batches: Vec<_> = session.sql(sql).await?.stream.try_collect().await?;
    let took = started.elapsed();
    Ok((rows(&batches)?, took))
}

async fn wait_for_copies(engine: &Engine, tables: usize) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let status = engine.accelerations();
        if let Some(error) = status.iter().find_map(|a| a.last_error.clone()) {
            anyhow::bail!("{error}");
        }
        if status.iter().filter(|a| a.rows.is_some()).count() == tables {
            return Ok(started.elapsed());
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "no copies after 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn cookbook_and_append(scale: f64) -> anyhow::Result<()> {
    let options = SystemOptions {
        // Measure the client, not the simulator's rate limit.
        rms_rate_limit: 100_000,
        ..SystemOptions::default()
    };
    let accelerate = DemoAcceleration {
        refresh: "1h".into(),
        as_user: "officer".into(),
        crimes_window: None,
    };
    let demo = LiveDemo::start_accelerated(
        scale,
        "[[user]]\nname = \"officer\"\n",
        options,
        Some(&accelerate),
    )
    .await;
    let engine = &demo.engine;
    let copies = wait_for_copies(engine, 5).await?;
    let held: u64 = engine.accelerations().iter().filter_map(|a| a.rows).sum();
    println!(
        "scale {scale}: first copies of 5 tables ({held} rows) in {:.2}s",
        copies.as_secs_f64()
    );

    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("../queries");
    let mut files: Vec<_> = std::fs::read_dir(&folder)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    println!("\n| query | live | from copies | ratio |\n|---|---|---|---|");
    let (mut live_total, mut copy_total) = (Duration::ZERO, Duration::ZERO);
    for file in &files {
        let sql = std::fs::read_to_string(file)?;
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned());
        let name = name.unwrap_or_default();
        let (live_rows, live) = answer(engine, &sql, true).await?;
        let (copy_rows, copy) = answer(engine, &sql, false).await?;
        anyhow::ensure!(
            live_rows == copy_rows,
            "{name}: the copies answer {} rows, the systems {}",
            copy_rows.len(),
            live_rows.len()
        );
        live_total += live;
        copy_total += copy;
        println!(
            "| {name} | {:.1} ms | {:.1} ms | {:.1} |",
            live.as_secs_f64() * 1000.0,
            copy.as_secs_f64() * 1000.0,
            live.as_secs_f64() / copy.as_secs_f64()
        );
    }
    println!(
        "| **total** | {:.1} ms | {:.1} ms | **{:.1}** |",
        live_total.as_secs_f64() * 1000.0,
        copy_total.as_secs_f64() * 1000.0,
        live_total.as_secs_f64() / copy_total.as_secs_f64()
    );

    // Append: 100 new crimes, one refresh.
    let session = engine.session(Identity::new("officer", "bench"));
    let insert = "INSERT INTO rms.crimes (incident_urn, offence_code, offence, recorded_at, status) \
                  SELECT 'CAD-20261204-' || lpad(CAST(value AS VARCHAR), 5, '0'), '049/00', \
                         'Other theft', now(), 'under investigation' \
                  FROM range(1, 101) ORDER BY value";
    let _: Vec<_> = session.sql(insert).await?.stream.try_collect().await?;
    let rms = demo
        .systems
        .iter()
        .find(|s| s.kind == SystemKind::Rms)
        .ok_or_else(|| anyhow::anyhow!("no RMS"))?;
    let pages = |stats: &serde_json::Value| stats["endpoints"]["GET /crimes"]["requests"].as_u64();
    let before = pages(&rms.stats.to_json()).unwrap_or(0);
    let started = Instant::now();
    let done = engine.refresh("rms", "crimes").await?;
    let took = started.elapsed();
    let after = pages(&rms.stats.to_json()).unwrap_or(0);
    println!(
        "\nappend refresh of rms.crimes after 100 new crimes: {} pages of crimes, {} records fetched, \
         {} rows in the copy, {:.1} ms (a full read: {} crimes)",
        after - before,
        done.fetched,
        done.rows,
        took.as_secs_f64() * 1000.0,
        done.rows
    );
    Ok(())
}

/// Resident and peak resident memory of this process, in bytes.
fn resident() -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let field = |name: &str| -> anyhow::Result<u64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .ok_or_else(|| anyhow::anyhow!("no {name} in /proc/self/status"))?;
        let kib: u64 = line
            .split_whitespace()
            .nth(1)
            .ok_or_else(|| anyhow::anyhow!("{line}"))?
            .parse()?;
        Ok(kib * 1024)
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

async fn memory(base: std::path::PathBuf) -> anyhow::Result<()> {
    // Refreshed on demand, so the engine is up (and its own memory counted
    // out) before the copy is made.
    let config = Config::parse(
        "[[source]]\nname = \"anpr\"\nkind = \"files\"\nlocation = \"anpr\"\n\n\
         [source.tables.reads.accelerate]\non_demand = true\n",
        "bench.toml",
        base,
    )?;
    let engine = Engine::start(config, &bluelamp_connectors::registry()).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (before, peak_before) = resident()?;
    let started = Instant::now();
    engine.refresh("anpr", "reads").await?;
    let took = started.elapsed();
    let (_, peak) = resident()?;
    // Memory freed while reading goes back to the system shortly after.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (after, _) = resident()?;
    let status = engine.accelerations();
    let copy = status
        .first()
        .ok_or_else(|| anyhow::anyhow!("no acceleration"))?;
    let arrow = copy.bytes.unwrap_or(0) as f64;
    let mib = |b: f64| b / (1024.0 * 1024.0);
    println!(
        "anpr.reads accelerated in memory: {} rows in {:.2}s; Arrow size {:.1} MiB; \
         resident after 2 s +{:.1} MiB ({:.2}x Arrow); peak resident +{:.1} MiB ({:.2}x Arrow)",
        copy.rows.unwrap_or(0),
        took.as_secs_f64(),
        mib(arrow),
        mib(after.saturating_sub(before) as f64),
        after.saturating_sub(before) as f64 / arrow,
        mib(peak.saturating_sub(peak_before) as f64),
        peak.saturating_sub(peak_before) as f64 / arrow,
    );
    Ok(())
}
