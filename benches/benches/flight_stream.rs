//! Flight SQL streaming rate: a 10-million-row, five-column result read by
//! pyarrow's Flight client (Arrow C++, streaming record batches) and by the
//! ADBC Flight SQL driver (Go), from Bluelamp and from ROAPI serving the same
//! Parquet file over its own Flight SQL endpoint, against DataFusion
//! collecting the same query in-process — all in one run. Each server runs
//! in a process of its own: ROAPI as installed, Bluelamp's endpoint as this
//! binary started again with `BLUELAMP_BENCH_SERVE` (the engine and server
//! `bluelamp serve` runs, with the same allocator). Run:
//!
//! ```sh
//! cargo bench --workspace --bench flight_stream
//! ```
//!
//! It installs its Python clients (ADBC, pyarrow, ROAPI) into the project's
//! test virtualenv with `tests/python/setup.sh`. `BLUELAMP_BENCH_ROWS`
//! (default 10,000,000) and `BLUELAMP_BENCH_RUNS` (default 3) change the size
//! and number of timed runs; the Parquet file is cached in
//! `~/.cache/bluelamp/bench`.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use arrow::array::{
    BooleanArray, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use bluelamp_benches::{env_number, median, process_cpu};
use bluelamp_engine::{Config, Engine};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Set (to a config file) in the child process that serves Bluelamp's
/// endpoint; `BLUELAMP_BENCH_LISTEN` is its address.
const SERVE_ENV: &str = "BLUELAMP_BENCH_SERVE";
const LISTEN_ENV: &str = "BLUELAMP_BENCH_LISTEN";

fn main() -> anyhow::Result<()> {
    match std::env::var_os(SERVE_ENV) {
        Some(config) => bluelamp_benches::block_on(serve(PathBuf::from(config))),
        None => bluelamp_benches::block_on(run()),
    }
}

/// The child process: Bluelamp's endpoint as `bluelamp serve` runs it (the
/// same engine, server and allocator), until the parent kills it.
async fn serve(path: PathBuf) -> anyhow::Result<()> {
    let listen: SocketAddr = std::env::var(LISTEN_ENV)
        .context("no listen address")?
        .parse()?;
    let text = std::fs::read_to_string(&path)?;
    let dir = path
        .parent()
        .context("config without a folder")?
        .to_path_buf();
    let config = Config::parse(&text, &path.display().to_string(), dir)?;
    let engine = Engine::start(config, &bluelamp_connectors::registry()).await?;
    let _server = bluelamp_flight_server::serve(engine, Some(listen)).await?;
    std::future::pending::<()>().await;
    Ok(())
}

/// Runs `measure` (given the server's process id) once the server `child`
/// accepts connections on `port`, then stops the server whatever the
/// outcome. Fails if the server exits or takes over a minute to listen.
fn with_server<T>(
    mut child: Child,
    port: u16,
    what: &str,
    measure: impl FnOnce(u32) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let result = loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break measure(child.id());
        }
        match child.try_wait() {
            Ok(Some(status)) => break Err(anyhow!("{what} exited before listening: {status}")),
            Err(e) => break Err(anyhow!("cannot watch {what}: {e}")),
            Ok(None) => {}
        }
        if Instant::now() > deadline {
            break Err(anyhow!("{what} did not start listening within 60 s"));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = child.kill();
    let _ = child.wait();
    result
}

fn cache_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map_or_else(std::env::temp_dir, PathBuf::from)
        .join(".cache/bluelamp/bench")
}

/// `rows` readings: id, value, grade, seen_at, flagged.
fn write_parquet(path: &Path, rows: usize) -> anyhow::Result<()> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("value", DataType::Float64, false),
        Field::new("grade", DataType::Utf8, false),
        Field::new(
            "seen_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("flagged", DataType::Boolean, false),
    ]));
    let tmp = path.with_extension("partial");
    let file = std::fs::File::create(&tmp)?;
    let mut writer = ArrowWriter::try_new(file, Arc::clone(&schema), None)?;
    let grades = ["I", "S", "E", "R"];
    let chunk = 1 << 16;
    let mut start = 0usize;
    while start < rows {
        let n = chunk.min(rows - start);
        let ids: Vec<i64> = (start..start + n).map(|i| i as i64).collect();
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(Int64Array::from(ids.clone())),
                Arc::new(Float64Array::from_iter_values(
                    ids.iter().map(|i| (*i as f64) * 0.37 % 1000.0),
                )),
                Arc::new(StringArray::from_iter_values(
                    ids.iter().map(|i| grades[(*i as usize * 7) % 4]),
                )),
                Arc::new(
                    TimestampMicrosecondArray::from_iter_values(
                        ids.iter().map(|i| 1_790_000_000_000_000 + i * 1_000_000),
                    )
                    .with_timezone("UTC"),
                ),
                Arc::new(BooleanArray::from_iter(
                    ids.iter().map(|i| Some(i % 3 == 0)),
                )),
            ],
        )?;
        writer.write(&batch)?;
        start += n;
    }
    writer.close()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn python() -> PathBuf {
    std::env::var_os("BLUELAMP_VENV")
        .map_or_else(|| Path::new(ROOT).join("../tests/.venv"), PathBuf::from)
        .join("bin")
}

/// Runs the Python client; returns rows and per-run seconds.
/// The Python clients, as `flight_stream.py --client` names them.
const CLIENTS: [&str; 2] = ["pyarrow", "adbc"];

/// One client's runs against one endpoint, per run.
#[derive(Clone, Copy)]
struct Measured {
    /// Wall time (median).
    wall: Duration,
    /// CPU time of the server process (its whole run, warm-up included,
    /// divided by the number of runs).
    server_cpu: Duration,
    /// CPU time of the client process (median).
    client_cpu: Duration,
}

/// Runs every client against one endpoint, served by process `pid`.
fn clients(
    uri: &str,
    query: &str,
    user: Option<(&str, &str)>,
    runs: usize,
    rows: usize,
    server: (&str, u32),
) -> anyhow::Result<Vec<Measured>> {
    let (server, pid) = server;
    CLIENTS
        .iter()
        .map(|name| {
            let cpu_before = process_cpu(Some(pid))?;
            let (n, times, cpu) = client(name, uri, query, user, runs)?;
            let server_cpu = process_cpu(Some(pid))?.saturating_sub(cpu_before);
            anyhow::ensure!(
                n == rows,
                "{server} streamed {n} rows to {name}, not {rows}"
            );
            Ok(Measured {
                wall: median(&times),
                // The client runs once more than it times (a warm-up).
                server_cpu: server_cpu / (runs as u32 + 1),
                client_cpu: median(&cpu),
            })
        })
        .collect()
}

/// Runs one Python client; returns rows, and seconds and CPU seconds per run.
fn client(
    name: &str,
    uri: &str,
    query: &str,
    user: Option<(&str, &str)>,
    runs: usize,
) -> anyhow::Result<(usize, Vec<Duration>, Vec<Duration>)> {
    let mut command = Command::new(python().join("python"));
    command
        .arg(Path::new(ROOT).join("python/flight_stream.py"))
        .args(["--client", name, "--uri", uri, "--query", query])
        .args(["--runs", &runs.to_string()]);
    if let Some((name, password)) = user {
        command.args(["--user", name, "--password", password]);
    }
    let output = command.output().context("cannot run the Python client")?;
    if !output.status.success() {
        bail!(
            "the Python client failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let rows = report["rows"].as_u64().context("no rows")? as usize;
    let durations = |key: &str| -> anyhow::Result<Vec<Duration>> {
        Ok(report[key]
            .as_array()
            .with_context(|| format!("no {key} in the client's report"))?
            .iter()
            .filter_map(serde_json::Value::as_f64)
            .map(Duration::from_secs_f64)
            .collect())
    };
    Ok((rows, durations("seconds")?, durations("cpu_seconds")?))
}

/// DataFusion collecting `query` over `parquet` in this process (default
/// settings, or another batch size): median time of `runs` after a warm-up,
/// and the mean CPU time they took.
async fn collect_in_process(
    parquet: &Path,
    query: &str,
    batch_size: Option<usize>,
    rows: usize,
    runs: usize,
) -> anyhow::Result<(Duration, Duration)> {
    let mut config = SessionConfig::new();
    if let Some(n) = batch_size {
        config = config.with_batch_size(n);
    }
    let ctx = SessionContext::new_with_config(config);
    ctx.register_parquet(
        "readings",
        parquet.to_string_lossy().as_ref(),
        ParquetReadOptions::default(),
    )
    .await?;
    let mut times = Vec::new();
    let mut cpu_started = process_cpu(None)?;
    for run in 0..=runs {
        if run == 1 {
            cpu_started = process_cpu(None)?;
        }
        let started = Instant::now();
        let batches = ctx.sql(query).await?.collect().await?;
        let n: usize = batches.iter().map(RecordBatch::num_rows).sum();
        anyhow::ensure!(n == rows, "DataFusion returned {n} rows");
        drop(batches);
        if run > 0 {
            times.push(started.elapsed());
        }
    }
    let cpu = process_cpu(None)?.saturating_sub(cpu_started) / runs.max(1) as u32;
    Ok((median(&times), cpu))
}

fn rate(rows: usize, d: Duration) -> f64 {
    rows as f64 / d.as_secs_f64()
}

async fn run() -> anyhow::Result<()> {
    let rows = env_number("BLUELAMP_BENCH_ROWS", 10_000_000.0) as usize;
    let runs = env_number("BLUELAMP_BENCH_RUNS", 3.0) as usize;
    let status = Command::new("bash")
        .arg(Path::new(ROOT).join("../tests/python/setup.sh"))
        .arg(Path::new(ROOT).join("python/requirements.txt"))
        .status()?;
    if !status.success() {
        bail!("tests/python/setup.sh failed: the benchmark needs its Python clients");
    }
    let dir = cache_dir().join(format!("flight-{rows}"));
    std::fs::create_dir_all(&dir)?;
    let parquet = dir.join("readings.parquet");
    if !parquet.is_file() {
        let started = Instant::now();
        write_parquet(&parquet, rows)?;
        eprintln!(
            "wrote {rows} rows to {} in {:.1}s",
            parquet.display(),
            started.elapsed().as_secs_f64()
        );
    }
    let query = "SELECT id, value, grade, seen_at, flagged FROM readings";

    // DataFusion in-process, collecting: with its defaults, and with the
    // batch size Bluelamp's endpoint uses for results.
    let served_batch = bluelamp_engine::ServerSettings::default().batch_size;
    let mut in_process = Vec::new();
    for batch_size in [None, Some(served_batch)] {
        in_process.push(collect_in_process(&parquet, query, batch_size, rows, runs).await?);
    }

    // Bluelamp's endpoint over a files source, in a process of its own as
    // `bluelamp serve` runs (and as ROAPI runs below): this bench binary
    // again, told by the environment to serve. It shares no heap or runtime
    // with the in-process runs above, as a real endpoint would not.
    let hash = bluelamp_flight_server::hash_password("bench").map_err(anyhow::Error::msg)?;
    // BLUELAMP_BENCH_BATCH_SIZE tries another [server] batch_size.
    let engine_section = std::env::var("BLUELAMP_BENCH_BATCH_SIZE")
        .map(|n| format!("[server]\nbatch_size = {n}\n\n"))
        .unwrap_or_default();
    let text = format!(
        "{engine_section}[[source]]\nname = \"bench\"\nkind = \"files\"\nlocation = \"{}\"\n\n[[user]]\nname = \"bench\"\npassword_hash = \"{hash}\"\n",
        dir.display()
    );
    // Checked here, so a bad config fails before the child starts.
    Config::parse(&text, "bench.toml", dir.clone())?;
    let config_path = cache_dir().join(format!("flight-{rows}.toml"));
    std::fs::write(&config_path, text)?;
    let port = free_port()?;
    let child = Command::new(std::env::current_exe()?)
        .env(SERVE_ENV, &config_path)
        .env(LISTEN_ENV, format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .spawn()
        .context("cannot start Bluelamp's endpoint")?;
    let bluelamp = with_server(child, port, "Bluelamp's endpoint", |pid| {
        clients(
            &format!("grpc://127.0.0.1:{port}"),
            "SELECT id, value, grade, seen_at, flagged FROM bench.readings",
            Some(("bench", "bench")),
            runs,
            rows,
            ("Bluelamp", pid),
        )
    })?;

    // ROAPI on the same file.
    let flight_port = free_port()?;
    let roapi = Command::new(python().join("roapi"))
        .args(["-t", &format!("readings={}", parquet.display())])
        .args(["--addr-flight-sql", &format!("127.0.0.1:{flight_port}")])
        .args(["-a", &format!("127.0.0.1:{}", free_port()?)])
        .args(["-p", &format!("127.0.0.1:{}", free_port()?)])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start roapi")?;
    let roapi_uri = format!("grpc://127.0.0.1:{flight_port}");
    let roapi_times = with_server(roapi, flight_port, "roapi", |pid| {
        clients(&roapi_uri, query, None, runs, rows, ("ROAPI", pid))
    })?;

    let (df, df_cpu) = in_process[0];
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("flight_stream: {rows} rows x 5 columns, {runs} runs (median)");
    println!("  {:<36} {:>8} {:>14}   CPU per run", "", "wall", "rows/s");
    let line = |what: &str, d: Duration, cpu: String| {
        println!(
            "  {what:<36} {:>5.0} ms {:>14.0}   {cpu}",
            ms(d),
            rate(rows, d)
        );
    };
    line(
        "DataFusion in-process collect",
        df,
        format!("{:.0} ms", ms(df_cpu)),
    );
    let (df_batch, df_batch_cpu) = in_process[1];
    line(
        &format!("  same, batch_size {served_batch}"),
        df_batch,
        format!("{:.0} ms", ms(df_batch_cpu)),
    );
    let served = |m: Measured| {
        format!(
            "server {:.0} ms + client {:.0} ms",
            ms(m.server_cpu),
            ms(m.client_cpu)
        )
    };
    for (i, name) in CLIENTS.iter().enumerate() {
        line(
            &format!("Bluelamp Flight SQL, {name} client"),
            bluelamp[i].wall,
            served(bluelamp[i]),
        );
        line(
            &format!("ROAPI Flight SQL, {name} client"),
            roapi_times[i].wall,
            served(roapi_times[i]),
        );
    }
    let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
    for (i, name) in CLIENTS.iter().enumerate() {
        let ours = bluelamp[i];
        println!(
            "  {name} client: Bluelamp / ROAPI {:.2} (target >= 1.5), Bluelamp / in-process {:.2} (target >= 0.5; {:.2} against batch_size {served_batch})",
            rate(rows, ours.wall) / rate(rows, roapi_times[i].wall),
            rate(rows, ours.wall) / rate(rows, df),
            rate(rows, ours.wall) / rate(rows, df_batch)
        );
        // Server and client share this machine's cores: their CPU time
        // spread perfectly over all of them bounds the wall time from below.
        let floor = (ours.server_cpu + ours.client_cpu).as_secs_f64() / cores;
        // What DataFusion spends reading and decoding at the endpoint's
        // batch size: an endpoint can spend no less.
        let decode_only = (df_batch_cpu + ours.client_cpu).as_secs_f64() / cores;
        println!(
            "    on {cores} cores: this run's CPU allows at best {:.0} ms, in-process ratio {:.2}; a server that only read and decoded (in-process CPU at batch_size {served_batch}) and sent for free would allow {:.2}",
            floor * 1e3,
            df.as_secs_f64() / floor,
            df.as_secs_f64() / decode_only
        );
    }
    Ok(())
}
