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
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use arrow::record_batch::RecordBatch;
use bluelamp_benches::endpoint::{
    Endpoint, cache_dir, cached_readings, free_port, readings_query, serve_if_child,
};
use bluelamp_benches::{env_number, median, process_cpu};
use datafusion::parquet::basic::Compression;
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn main() -> anyhow::Result<()> {
    match serve_if_child() {
        Some(served) => served,
        None => bluelamp_benches::block_on(run()),
    }
}

/// A server under measurement, and how its tables and users are named.
struct Server {
    endpoint: Endpoint,
    /// What its table names are prefixed with (Bluelamp's are qualified by
    /// their source).
    prefix: &'static str,
    user: Option<(String, String)>,
}

impl Server {
    fn new(endpoint: Endpoint, prefix: &'static str, user: Option<(&str, &str)>) -> Self {
        Self {
            endpoint,
            prefix,
            user: user.map(|(u, p)| (u.to_string(), p.to_string())),
        }
    }

    fn pid(&self) -> u32 {
        self.endpoint.pid()
    }

    /// The benchmark's query over `table` as this server names it.
    fn query(&self, table: &str) -> String {
        readings_query(&format!("{}{table}", self.prefix))
    }
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
            "uri": server.endpoint.uri,
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
            bail!("{client} reading from {}: {error}", server.endpoint.name);
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
            server.endpoint.name
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
        cached_readings(&path(file), rows, file.compression)?;
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
    let bluelamp = Server::new(
        Endpoint::bluelamp(&text, &cache_dir().join(format!("flight-{rows}.toml")))?,
        "bench.",
        Some(("bench", "bench")),
    );

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
    let roapi = Server::new(Endpoint::wait("ROAPI", child, flight_port)?, "", None);

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
                collect.measure(&readings_query(table), rows).await?;
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
