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

use anyhow::{Context, bail};
use arrow::array::{
    BooleanArray, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use bluelamp_benches::{env_number, median};
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

/// Waits until `child` accepts connections on `port`; fails if it exits
/// or takes longer than a minute.
fn wait_listening(child: &mut Child, port: u16, what: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = child.try_wait()? {
            bail!("{what} exited before listening: {status}");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("{what} did not start listening within 60 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
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

/// Runs every client against one endpoint: per client, median time.
fn clients(
    uri: &str,
    query: &str,
    user: Option<(&str, &str)>,
    runs: usize,
    rows: usize,
    server: &str,
) -> anyhow::Result<Vec<Duration>> {
    CLIENTS
        .iter()
        .map(|name| {
            let (n, times) = client(name, uri, query, user, runs)?;
            anyhow::ensure!(
                n == rows,
                "{server} streamed {n} rows to {name}, not {rows}"
            );
            Ok(median(&times))
        })
        .collect()
}

/// Runs one Python client; returns rows and per-run seconds.
fn client(
    name: &str,
    uri: &str,
    query: &str,
    user: Option<(&str, &str)>,
    runs: usize,
) -> anyhow::Result<(usize, Vec<Duration>)> {
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
    let seconds = report["seconds"]
        .as_array()
        .context("no seconds")?
        .iter()
        .filter_map(serde_json::Value::as_f64)
        .map(Duration::from_secs_f64)
        .collect();
    Ok((rows, seconds))
}

/// DataFusion collecting `query` over `parquet` in this process (default
/// settings, or another batch size): median of `runs` after a warm-up.
async fn collect_in_process(
    parquet: &Path,
    query: &str,
    batch_size: Option<usize>,
    rows: usize,
    runs: usize,
) -> anyhow::Result<Duration> {
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
    for run in 0..=runs {
        let started = Instant::now();
        let batches = ctx.sql(query).await?.collect().await?;
        let n: usize = batches.iter().map(RecordBatch::num_rows).sum();
        anyhow::ensure!(n == rows, "DataFusion returned {n} rows");
        drop(batches);
        if run > 0 {
            times.push(started.elapsed());
        }
    }
    Ok(median(&times))
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
    let mut bluelamp = Command::new(std::env::current_exe()?)
        .env(SERVE_ENV, &config_path)
        .env(LISTEN_ENV, format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .spawn()
        .context("cannot start Bluelamp's endpoint")?;
    let bluelamp_result =
        wait_listening(&mut bluelamp, port, "Bluelamp's endpoint").and_then(|()| {
            clients(
                &format!("grpc://127.0.0.1:{port}"),
                "SELECT id, value, grade, seen_at, flagged FROM bench.readings",
                Some(("bench", "bench")),
                runs,
                rows,
                "Bluelamp",
            )
        });
    let _ = bluelamp.kill();
    let _ = bluelamp.wait();
    let bluelamp = bluelamp_result?;

    // ROAPI on the same file.
    let flight_port = free_port()?;
    let mut roapi = Command::new(python().join("roapi"))
        .args(["-t", &format!("readings={}", parquet.display())])
        .args(["--addr-flight-sql", &format!("127.0.0.1:{flight_port}")])
        .args(["-a", &format!("127.0.0.1:{}", free_port()?)])
        .args(["-p", &format!("127.0.0.1:{}", free_port()?)])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start roapi")?;
    let roapi_uri = format!("grpc://127.0.0.1:{flight_port}");
    let roapi_result = wait_listening(&mut roapi, flight_port, "roapi")
        .and_then(|()| clients(&roapi_uri, query, None, runs, rows, "ROAPI"));
    let _ = roapi.kill();
    let _ = roapi.wait();
    let roapi_times = roapi_result?;

    let df = in_process[0];
    println!("flight_stream: {rows} rows x 5 columns, {runs} runs (median)");
    let line = |what: &str, d: Duration| {
        println!(
            "  {what:<34} {:>8.0} ms  {:>12.0} rows/s",
            d.as_secs_f64() * 1e3,
            rate(rows, d)
        );
    };
    line("DataFusion in-process collect", df);
    line(&format!("  same, batch_size {served_batch}"), in_process[1]);
    for (i, name) in CLIENTS.iter().enumerate() {
        line(&format!("Bluelamp Flight SQL, {name} client"), bluelamp[i]);
        line(&format!("ROAPI Flight SQL, {name} client"), roapi_times[i]);
    }
    for (i, name) in CLIENTS.iter().enumerate() {
        println!(
            "  {name} client: Bluelamp / ROAPI {:.2} (target >= 1.5), Bluelamp / in-process {:.2} (target >= 0.5; {:.2} against batch_size {served_batch})",
            rate(rows, bluelamp[i]) / rate(rows, roapi_times[i]),
            rate(rows, bluelamp[i]) / rate(rows, df),
            rate(rows, bluelamp[i]) / rate(rows, in_process[1])
        );
    }
    Ok(())
}
