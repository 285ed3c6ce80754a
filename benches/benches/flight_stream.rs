//! Flight SQL streaming rate: a 10-million-row, five-column result read by
//! pyarrow's Flight client (Arrow C++, streaming record batches) and by the
//! ADBC Flight SQL driver (Go), from Bluelamp and from ROAPI serving the same
//! Parquet file over its own Flight SQL endpoint, against DataFusion
//! collecting the same query in-process — all in one run, in rounds: each
//! round collects in-process and reads every endpoint with every client
//! once, so the figures compared share the machine's moment. Each server
//! runs in a process of its own for the whole run: ROAPI as installed,
//! Bluelamp's endpoint as this binary started again with
//! `BLUELAMP_BENCH_SERVE` (the engine and server `bluelamp serve` runs, with
//! the same allocator). The readings are written uncompressed; with
//! `BLUELAMP_BENCH_SNAPPY=1` every round also measures them compressed with
//! Snappy (see [`FILES`]). Run:
//!
//! ```sh
//! cargo bench --workspace --bench flight_stream
//! ```
//!
//! It installs its Python clients (ADBC, pyarrow, ROAPI) into the project's
//! test virtualenv with `tests/python/setup.sh`. `BLUELAMP_BENCH_ROWS`
//! (default 10,000,000) and `BLUELAMP_BENCH_RUNS` (default 3) change the size
//! and the number of timed rounds (after one warm-up round); the Parquet files
//! are cached in `~/.cache/bluelamp/bench`.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use arrow::array::{
    BooleanArray, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use bluelamp_benches::{env_number, median, process_cpu};
use bluelamp_engine::{Config, Engine};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::properties::WriterProperties;
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

/// A server under measurement, in a process of its own: stopped when
/// dropped, whatever the outcome.
struct Server {
    name: &'static str,
    child: Child,
    uri: String,
    /// What its table names are prefixed with (Bluelamp's are qualified by
    /// their source).
    prefix: &'static str,
    user: Option<(String, String)>,
}

impl Server {
    /// `child`, once it accepts connections on `port`, to be asked for
    /// tables named with `prefix` (as `user`, if given).
    ///
    /// # Errors
    /// If the server exits or takes over a minute to listen (it is stopped).
    fn start(
        name: &'static str,
        child: Child,
        port: u16,
        prefix: &'static str,
        user: Option<(&str, &str)>,
    ) -> anyhow::Result<Self> {
        let mut server = Self {
            name,
            child,
            uri: format!("grpc://127.0.0.1:{port}"),
            prefix,
            user: user.map(|(u, p)| (u.to_string(), p.to_string())),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(server);
            }
            match server.child.try_wait() {
                Ok(Some(status)) => bail!("{name} exited before listening: {status}"),
                Err(e) => bail!("cannot watch {name}: {e}"),
                Ok(None) => {}
            }
            if Instant::now() > deadline {
                bail!("{name} did not start listening within 60 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The benchmark's query over `table` as this server names it.
    fn query(&self, table: &str) -> String {
        query(&format!("{}{table}", self.prefix))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cache_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map_or_else(std::env::temp_dir, PathBuf::from)
        .join(".cache/bluelamp/bench")
}

/// `rows` readings (id, value, grade, seen_at, flagged), compressed with
/// `compression`.
fn write_parquet(path: &Path, rows: usize, compression: Compression) -> anyhow::Result<()> {
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
    let properties = WriterProperties::builder()
        .set_compression(compression)
        .build();
    let mut writer = ArrowWriter::try_new(file, Arc::clone(&schema), Some(properties))?;
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

/// The Python clients, as `flight_stream.py` names them.
const CLIENTS: [&str; 2] = ["pyarrow", "adbc"];

/// The Python clients: one process, kept for the whole run, answering one
/// timed read per request (see `benches/python/flight_stream.py`).
struct Python {
    child: Child,
    requests: ChildStdin,
    answers: BufReader<ChildStdout>,
}

impl Python {
    fn start() -> anyhow::Result<Self> {
        let mut child = Command::new(python().join("python"))
            .arg(Path::new(ROOT).join("python/flight_stream.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("cannot start the Python clients")?;
        let requests = child
            .stdin
            .take()
            .context("no pipe to the Python clients")?;
        let answers = child
            .stdout
            .take()
            .context("no pipe from the Python clients")?;
        Ok(Self {
            child,
            requests,
            answers: BufReader::new(answers),
        })
    }

    /// One read of the query over `table` from `server` by `client`: rows,
    /// wall time and the client's CPU time.
    fn read(
        &mut self,
        client: &str,
        server: &Server,
        table: &str,
    ) -> anyhow::Result<(usize, Duration, Duration)> {
        let mut request = serde_json::json!({
            "client": client,
            "uri": server.uri,
            "query": server.query(table),
        });
        if let Some((user, password)) = &server.user {
            request["user"] = user.as_str().into();
            request["password"] = password.as_str().into();
        }
        writeln!(self.requests, "{request}")?;
        self.requests.flush()?;
        let mut line = String::new();
        if self.answers.read_line(&mut line)? == 0 {
            bail!("the Python clients exited (their error is above)");
        }
        let answer: serde_json::Value = serde_json::from_str(&line)
            .with_context(|| format!("the Python clients answered {line:?}"))?;
        if let Some(error) = answer.get("error") {
            bail!("{client} reading from {}: {error}", server.name);
        }
        let seconds = |key: &str| {
            answer[key]
                .as_f64()
                .map(Duration::from_secs_f64)
                .with_context(|| format!("no {key} in the client's answer {line:?}"))
        };
        let rows = answer["rows"].as_u64().context("no rows in the answer")?;
        Ok((
            usize::try_from(rows)?,
            seconds("seconds")?,
            seconds("cpu_seconds")?,
        ))
    }
}

impl Drop for Python {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One client's reads of one endpoint, a sample per round.
#[derive(Default)]
struct Reads {
    wall: Vec<Duration>,
    server_cpu: Vec<Duration>,
    client_cpu: Vec<Duration>,
}

impl Reads {
    /// One read of `table` from `server` by `client`, which must return
    /// `rows` rows.
    fn measure(
        &mut self,
        python: &mut Python,
        client: &str,
        server: &Server,
        table: &str,
        rows: usize,
    ) -> anyhow::Result<()> {
        let before = process_cpu(Some(server.pid()))?;
        let (n, wall, client_cpu) = python.read(client, server, table)?;
        let server_cpu = process_cpu(Some(server.pid()))?.saturating_sub(before);
        anyhow::ensure!(
            n == rows,
            "{} streamed {n} rows to {client}, not {rows}",
            server.name
        );
        self.wall.push(wall);
        self.server_cpu.push(server_cpu);
        self.client_cpu.push(client_cpu);
        Ok(())
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

/// DataFusion collecting the query over the file in this process, with its
/// default settings or another batch size: a sample per round.
struct InProcess {
    ctx: SessionContext,
    wall: Vec<Duration>,
    cpu: Vec<Duration>,
}

impl InProcess {
    /// DataFusion over `parquet`, registered as `table`.
    async fn new(parquet: &Path, table: &str, batch_size: Option<usize>) -> anyhow::Result<Self> {
        let mut config = SessionConfig::new();
        if let Some(n) = batch_size {
            config = config.with_batch_size(n);
        }
        let ctx = SessionContext::new_with_config(config);
        ctx.register_parquet(
            table,
            parquet.to_string_lossy().as_ref(),
            ParquetReadOptions::default(),
        )
        .await?;
        Ok(Self {
            ctx,
            wall: Vec::new(),
            cpu: Vec::new(),
        })
    }

    /// One collection of `query`, which must return `rows` rows.
    async fn measure(&mut self, query: &str, rows: usize) -> anyhow::Result<()> {
        let cpu = process_cpu(None)?;
        let started = Instant::now();
        let batches = self.ctx.sql(query).await?.collect().await?;
        let wall = started.elapsed();
        let n: usize = batches.iter().map(RecordBatch::num_rows).sum();
        anyhow::ensure!(n == rows, "DataFusion returned {n} rows");
        drop(batches);
        self.cpu.push(process_cpu(None)?.saturating_sub(cpu));
        self.wall.push(wall);
        Ok(())
    }

    fn clear(&mut self) {
        self.wall.clear();
        self.cpu.clear();
    }
}

/// The mean of CPU samples (each is counted in 10 ms ticks, so a median
/// would round).
fn mean(samples: &[Duration]) -> Duration {
    samples.iter().sum::<Duration>() / u32::try_from(samples.len().max(1)).unwrap_or(u32::MAX)
}

/// The median of `numerator[i] / denominator[i]`: a ratio taken within each
/// round, so drift between rounds cancels.
fn paired(numerator: &[Duration], denominator: &[Duration]) -> f64 {
    let mut ratios: Vec<f64> = numerator
        .iter()
        .zip(denominator)
        .map(|(n, d)| n.as_secs_f64() / d.as_secs_f64())
        .collect();
    ratios.sort_by(f64::total_cmp);
    ratios.get(ratios.len() / 2).copied().unwrap_or(f64::NAN)
}

fn rate(rows: usize, d: Duration) -> f64 {
    rows as f64 / d.as_secs_f64()
}

/// The benchmark's query over `table`.
fn query(table: &str) -> String {
    format!("SELECT id, value, grade, seen_at, flagged FROM {table}")
}

/// One Parquet file of the same readings, as the bench writes it.
struct File {
    /// As the report names it.
    name: &'static str,
    /// Its table (and the file's stem).
    table: &'static str,
    compression: Compression,
}

/// The readings as files. Uncompressed (always measured) is the hardest case
/// for the in-process ratio: in-process DataFusion spends least on it, while
/// what an endpoint adds — framing, sending, the client's receiving — is the
/// same either way. Snappy (with `BLUELAMP_BENCH_SNAPPY=1`) is how pyarrow,
/// Spark and DuckDB write Parquet unless told otherwise; it is the hard case
/// for the ROAPI ratio, since ROAPI decodes a table into memory once when it
/// starts while Bluelamp reads the file for every query.
const FILES: [File; 2] = [
    File {
        name: "uncompressed",
        table: "readings",
        compression: Compression::UNCOMPRESSED,
    },
    File {
        name: "Snappy",
        table: "readings_snappy",
        compression: Compression::SNAPPY,
    },
];

/// One file's measurements: in-process DataFusion (defaults, and the
/// endpoint's batch size), and each client's reads of each endpoint.
struct Case {
    file: &'static File,
    in_process: [InProcess; 2],
    reads: Vec<[Reads; 2]>,
}

async fn run() -> anyhow::Result<()> {
    let rows = env_number("BLUELAMP_BENCH_ROWS", 10_000_000.0) as usize;
    let files = if env_number("BLUELAMP_BENCH_SNAPPY", 0.0) > 0.0 {
        &FILES[..]
    } else {
        &FILES[..1]
    };
    // At least one timed round: the ratios need a sample.
    let runs = env_number("BLUELAMP_BENCH_RUNS", 3.0).max(1.0) as usize;
    let status = Command::new("bash")
        .arg(Path::new(ROOT).join("../tests/python/setup.sh"))
        .arg(Path::new(ROOT).join("python/requirements.txt"))
        .status()?;
    if !status.success() {
        bail!("tests/python/setup.sh failed: the benchmark needs its Python clients");
    }
    let dir = cache_dir().join(format!("flight-{rows}"));
    std::fs::create_dir_all(&dir)?;
    let path = |file: &File| dir.join(format!("{}.parquet", file.table));
    for file in files {
        let parquet = path(file);
        if !parquet.is_file() {
            let started = Instant::now();
            write_parquet(&parquet, rows, file.compression)?;
            eprintln!(
                "wrote {rows} rows to {} in {:.1}s",
                parquet.display(),
                started.elapsed().as_secs_f64()
            );
        }
    }

    // DataFusion in-process, collecting: with its defaults, and with the
    // batch size Bluelamp's endpoint uses for results.
    let served_batch = bluelamp_engine::ServerSettings::default().batch_size;
    let mut cases = Vec::new();
    for file in files {
        let parquet = path(file);
        cases.push(Case {
            file,
            in_process: [
                InProcess::new(&parquet, file.table, None).await?,
                InProcess::new(&parquet, file.table, Some(served_batch)).await?,
            ],
            reads: CLIENTS.iter().map(|_| Default::default()).collect(),
        });
    }

    // Bluelamp's endpoint over a files source (each file a table), in a
    // process of its own as `bluelamp serve` runs (and as ROAPI runs below):
    // this bench binary again, told by the environment to serve. It shares
    // no heap or runtime with the in-process runs, as a real endpoint would
    // not.
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
    let bluelamp = Server::start(
        "Bluelamp's endpoint",
        child,
        port,
        "bench.",
        Some(("bench", "bench")),
    )?;

    // ROAPI on the same files.
    let flight_port = free_port()?;
    let mut command = Command::new(python().join("roapi"));
    for file in files {
        command.args(["-t", &format!("{}={}", file.table, path(file).display())]);
    }
    let child = command
        .args(["--addr-flight-sql", &format!("127.0.0.1:{flight_port}")])
        .args(["-a", &format!("127.0.0.1:{}", free_port()?)])
        .args(["-p", &format!("127.0.0.1:{}", free_port()?)])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start roapi")?;
    let roapi = Server::start("ROAPI", child, flight_port, "", None)?;

    // Rounds: each, for each file, collects in-process once per setting,
    // then reads every endpoint with every client once, so what is compared
    // shares the machine's state of the moment (it drifts by tens of percent
    // within minutes here). Round 0 is a warm-up (and makes the
    // connections).
    let servers = [&bluelamp, &roapi];
    let mut python = Python::start()?;
    for round in 0..=runs {
        eprintln!(
            "flight_stream: round {round} of {runs}{}",
            if round == 0 { " (warm-up)" } else { "" }
        );
        for case in &mut cases {
            let table = case.file.table;
            for collect in &mut case.in_process {
                collect.measure(&query(table), rows).await?;
            }
            for (client, per_server) in CLIENTS.iter().zip(&mut case.reads) {
                for (server, samples) in servers.iter().zip(per_server.iter_mut()) {
                    samples.measure(&mut python, client, server, table, rows)?;
                }
            }
            if round == 0 {
                case.in_process.iter_mut().for_each(InProcess::clear);
                case.reads.iter_mut().flatten().for_each(Reads::clear);
            }
        }
    }
    drop((python, bluelamp, roapi));

    println!("flight_stream: {rows} rows x 5 columns, {runs} rounds (wall: median; CPU: mean)");
    for case in &cases {
        report(case, rows, served_batch);
    }
    Ok(())
}

/// Prints one file's figures and the ratios the issue sets targets for.
fn report(case: &Case, rows: usize, served_batch: usize) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("{} file ({}.parquet):", case.file.name, case.file.table);
    println!("  {:<36} {:>8} {:>14}   CPU per run", "", "wall", "rows/s");
    let line = |what: &str, d: Duration, cpu: String| {
        println!(
            "  {what:<36} {:>5.0} ms {:>14.0}   {cpu}",
            ms(d),
            rate(rows, d)
        );
    };
    let [df, df_batch] = &case.in_process;
    line(
        "DataFusion in-process collect",
        median(&df.wall),
        format!("{:.0} ms", ms(mean(&df.cpu))),
    );
    line(
        &format!("  same, batch_size {served_batch}"),
        median(&df_batch.wall),
        format!("{:.0} ms", ms(mean(&df_batch.cpu))),
    );
    let served = |r: &Reads| {
        format!(
            "server {:.0} ms + client {:.0} ms",
            ms(mean(&r.server_cpu)),
            ms(mean(&r.client_cpu))
        )
    };
    for (name, [ours, theirs]) in CLIENTS.iter().zip(&case.reads) {
        line(
            &format!("Bluelamp Flight SQL, {name} client"),
            median(&ours.wall),
            served(ours),
        );
        line(
            &format!("ROAPI Flight SQL, {name} client"),
            median(&theirs.wall),
            served(theirs),
        );
    }
    let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
    for (name, [ours, theirs]) in CLIENTS.iter().zip(&case.reads) {
        let wall = median(&ours.wall);
        println!(
            "  {name} client: Bluelamp / ROAPI {:.3} (target >= 1.5), Bluelamp / in-process {:.3} (target >= 0.5; {:.3} against batch_size {served_batch})",
            rate(rows, wall) / rate(rows, median(&theirs.wall)),
            rate(rows, wall) / rate(rows, median(&df.wall)),
            rate(rows, wall) / rate(rows, median(&df_batch.wall))
        );
        println!(
            "    paired within rounds (median of each round's ratio): Bluelamp / ROAPI {:.3}, Bluelamp / in-process {:.3}",
            paired(&theirs.wall, &ours.wall),
            paired(&df.wall, &ours.wall)
        );
        // Server and client share this machine's cores: their CPU time
        // spread perfectly over all of them bounds the wall time from below.
        let client_cpu = mean(&ours.client_cpu);
        let floor = (mean(&ours.server_cpu) + client_cpu).as_secs_f64() / cores;
        // What DataFusion spends reading and decoding at the endpoint's
        // batch size: an endpoint can spend no less.
        let decode_only = (mean(&df_batch.cpu) + client_cpu).as_secs_f64() / cores;
        let df_wall = median(&df.wall).as_secs_f64();
        println!(
            "    on {cores} cores: this run's CPU allows at best {:.0} ms, in-process ratio {:.3}; a server that only read and decoded (in-process CPU at batch_size {served_batch}) and sent for free would allow {:.3}",
            floor * 1e3,
            df_wall / floor,
            df_wall / decode_only
        );
    }
    // The issue's own reference point: ROAPI through ADBC against in-process.
    if let Some(adbc) = CLIENTS.iter().position(|c| *c == "adbc") {
        let [_, theirs] = &case.reads[adbc];
        println!(
            "  ROAPI (ADBC) / in-process {:.3} (the issue measured ~14M / ~54M rows/s = 0.26)",
            rate(rows, median(&theirs.wall)) / rate(rows, median(&df.wall))
        );
    }
}
