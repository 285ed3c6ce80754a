//! The `flightsql` source's reading rate: 10 million rows × 5 columns from
//! a remote Bluelamp (its endpoint in a process of its own, serving the
//! readings Parquet file) read through a `flightsql` source of a local
//! engine, against a direct Flight SQL client (arrow-flight's, reading every
//! endpoint at once) running the same query on the same server — both in
//! one run, in rounds, so each round's ratio compares the same moment of
//! the machine. The issue's target: the source at ≥ 0.8 of the direct
//! client's rate. Run:
//!
//! ```sh
//! cargo bench --workspace --bench flightsql_source
//! ```
//!
//! `BLUELAMP_BENCH_ROWS` (default 10,000,000) and `BLUELAMP_BENCH_RUNS`
//! (default 3, after one warm-up round) change the size and the rounds; the
//! Parquet file is cached in `~/.cache/bluelamp/bench` (shared with
//! `flight_stream`). `BLUELAMP_BENCH_EXPLAIN=1` prints the source query's
//! `EXPLAIN ANALYZE` first.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use arrow_flight::sql::client::FlightSqlServiceClient;
use bluelamp_benches::endpoint::{
    Endpoint, cache_dir, cached_readings, readings_query, serve_if_child,
};
use bluelamp_benches::{env_number, median};
use bluelamp_engine::{Config, Engine, Identity};
use datafusion::parquet::basic::Compression;
use futures::StreamExt;
use tonic::transport::Channel;

fn main() -> anyhow::Result<()> {
    match serve_if_child() {
        Some(served) => served,
        None => bluelamp_benches::block_on(run()),
    }
}

/// Reads the query's every endpoint at once with arrow-flight's Flight SQL
/// client, counting rows as batches arrive (nothing is kept).
async fn direct(uri: &str, sql: &str) -> anyhow::Result<usize> {
    let channel = Channel::from_shared(uri.to_string())?.connect().await?;
    let mut client = FlightSqlServiceClient::new(channel);
    client.handshake("bench", "bench").await?;
    let info = client.execute(sql.to_string(), None).await?;
    let mut readers = Vec::new();
    for endpoint in info.endpoint {
        let ticket = endpoint.ticket.context("an endpoint without a ticket")?;
        let mut client = client.clone();
        readers.push(tokio::spawn(async move {
            let mut stream = client.do_get(ticket).await?;
            let mut rows = 0usize;
            while let Some(batch) = stream.next().await {
                rows += batch?.num_rows();
            }
            anyhow::Ok(rows)
        }));
    }
    let mut rows = 0;
    for reader in readers {
        rows += reader.await??;
    }
    Ok(rows)
}

/// Runs the query through the local engine's `flightsql` source, counting
/// rows as batches arrive.
async fn through_source(engine: &Engine, sql: &str) -> anyhow::Result<usize> {
    let session = engine.session(Identity::new("bench", "bench"));
    let mut stream = session.sql(sql).await?.stream;
    let mut rows = 0usize;
    while let Some(batch) = stream.next().await {
        rows += batch?.num_rows();
    }
    Ok(rows)
}

async fn timed<F: std::future::Future<Output = anyhow::Result<usize>>>(
    rows: usize,
    what: &str,
    read: F,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let got = read.await?;
    if got != rows {
        bail!("{what} read {got} rows, not {rows}");
    }
    Ok(started.elapsed())
}

async fn run() -> anyhow::Result<()> {
    let rows = env_number("BLUELAMP_BENCH_ROWS", 10_000_000.0) as usize;
    let runs = env_number("BLUELAMP_BENCH_RUNS", 3.0).max(1.0) as usize;
    let dir = cache_dir().join(format!("flight-{rows}"));
    std::fs::create_dir_all(&dir)?;
    cached_readings(
        &dir.join("readings.parquet"),
        rows,
        Compression::UNCOMPRESSED,
    )?;
    let hash = bluelamp_flight_server::hash_password("bench").map_err(anyhow::Error::msg)?;
    let remote = Endpoint::bluelamp(
        &format!(
            "[[source]]\nname = \"bench\"\nkind = \"files\"\nlocation = \"{}\"\n\n[[user]]\nname = \"bench\"\npassword_hash = \"{hash}\"\n",
            dir.display()
        ),
        &cache_dir().join(format!("flightsql-source-{rows}.toml")),
    )?;
    let local = Engine::start(
        Config::parse(
            &format!(
                "[[source]]\nname = \"remote\"\nkind = \"flightsql\"\nurl = \"{}\"\nuser = \"bench\"\npassword = \"bench\"\nschemas = [\"bench\"]\n",
                remote.uri
            ),
            "local.toml",
            dir.clone(),
        )?,
        &bluelamp_connectors::registry(),
    )
    .await?;
    if let Some(error) = &local.sources()[0].last_error {
        bail!("the flightsql source did not connect: {error}");
    }
    if env_number("BLUELAMP_BENCH_EXPLAIN", 0.0) > 0.0 {
        let session = local.session(Identity::new("bench", "bench"));
        let plan = session
            .sql(&format!(
                "EXPLAIN ANALYZE {}",
                readings_query("remote.readings")
            ))
            .await?
            .stream
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?;
        println!("{}", arrow::util::pretty::pretty_format_batches(&plan)?);
    }
    let direct_sql = readings_query("bench.readings");
    let source_sql = readings_query("remote.readings");
    let mut direct_times = Vec::new();
    let mut source_times = Vec::new();
    for round in 0..=runs {
        eprintln!(
            "flightsql_source: round {round} of {runs}{}",
            if round == 0 { " (warm-up)" } else { "" }
        );
        let d = timed(rows, "the direct client", direct(&remote.uri, &direct_sql)).await?;
        let s = timed(
            rows,
            "the flightsql source",
            through_source(&local, &source_sql),
        )
        .await?;
        if round > 0 {
            direct_times.push(d);
            source_times.push(s);
        }
    }
    let mut ratios: Vec<f64> = direct_times
        .iter()
        .zip(&source_times)
        .map(|(d, s)| d.as_secs_f64() / s.as_secs_f64())
        .collect();
    ratios.sort_by(f64::total_cmp);
    let ratio = ratios[ratios.len() / 2];
    let rate = |d: Duration| rows as f64 / d.as_secs_f64();
    println!("flightsql_source: {rows} rows x 5 columns, {runs} rounds (median wall)");
    println!(
        "  direct Flight SQL client (arrow-flight)  {:>7.0} ms  {:>12.0} rows/s",
        median(&direct_times).as_secs_f64() * 1e3,
        rate(median(&direct_times))
    );
    println!(
        "  through the flightsql source             {:>7.0} ms  {:>12.0} rows/s",
        median(&source_times).as_secs_f64() * 1e3,
        rate(median(&source_times))
    );
    println!(
        "  source rate / direct rate (median of per-round ratios): {ratio:.2} (target >= 0.80)"
    );
    Ok(())
}
