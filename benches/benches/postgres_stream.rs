//! PostgreSQL protocol streaming rate: a one-million-row, five-column
//! result (id, value, grade, seen_at, flagged) read whole by psycopg 3 in
//! binary, from Bluelamp's PostgreSQL endpoint serving a Parquet file and
//! from this machine's PostgreSQL serving the same rows from a table — in
//! one run, in rounds: each round reads PostgreSQL, then Bluelamp, so the
//! figures compared share the machine's moment. Bluelamp's endpoint runs
//! in a process of its own, as `bluelamp serve` does (this bench binary
//! started again; see `bluelamp_benches::endpoint`). The warm-up round
//! checks that both servers sent the same rows (an order-independent
//! digest). Run:
//!
//! ```sh
//! cargo bench --workspace --bench postgres_stream
//! ```
//!
//! It installs psycopg into the project's test virtualenv with
//! `tests/python/setup.sh`, and makes (then drops) a database of its own on
//! the PostgreSQL at `BLUELAMP_TEST_PG_HOST`/`BLUELAMP_TEST_PG_PORT`
//! (default 127.0.0.1:5432, user `postgres`), as the tests do. `BLUELAMP_BENCH_ROWS`
//! (default 1,000,000) and `BLUELAMP_BENCH_RUNS` (default 5) change the
//! size and the number of timed rounds.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use bluelamp_benches::endpoint::{
    Endpoint, cache_dir, cached_readings, readings_query, serve_if_child,
};
use bluelamp_benches::{env_number, median};
use bluelamp_tests::services::{PgDatabase, pg_host, pg_port};
use datafusion::parquet::basic::Compression;
use futures::SinkExt;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn main() -> anyhow::Result<()> {
    match serve_if_child() {
        Some(served) => served,
        None => bluelamp_benches::block_on(run()),
    }
}

fn venv_bin() -> PathBuf {
    std::env::var_os("BLUELAMP_VENV")
        .map_or_else(|| Path::new(ROOT).join("../tests/.venv"), PathBuf::from)
        .join("bin")
}

/// psycopg in one process, kept for the whole run, answering one timed
/// read per request (see `benches/python/postgres_stream.py`).
struct Psycopg {
    child: Child,
    requests: ChildStdin,
    answers: BufReader<ChildStdout>,
}

/// One read's outcome.
struct Read {
    seconds: Duration,
    cpu: Duration,
    rows: u64,
    sums: Option<serde_json::Value>,
}

impl Psycopg {
    fn start() -> anyhow::Result<Self> {
        let mut child = Command::new(venv_bin().join("python"))
            .arg(Path::new(ROOT).join("python/postgres_stream.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("cannot start psycopg")?;
        let requests = child.stdin.take().context("no pipe to psycopg")?;
        let answers = child.stdout.take().context("no pipe from psycopg")?;
        Ok(Self {
            child,
            requests,
            answers: BufReader::new(answers),
        })
    }

    fn read(&mut self, conninfo: &str, query: &str, check: bool) -> anyhow::Result<Read> {
        let request = serde_json::json!({"conninfo": conninfo, "query": query, "check": check});
        writeln!(self.requests, "{request}")?;
        self.requests.flush()?;
        let mut line = String::new();
        if self.answers.read_line(&mut line)? == 0 {
            bail!("psycopg exited (its error is above)");
        }
        let answer: serde_json::Value =
            serde_json::from_str(&line).with_context(|| format!("psycopg answered {line:?}"))?;
        if let Some(error) = answer.get("error") {
            bail!("psycopg reading {query:?}: {error}");
        }
        let seconds = |key: &str| {
            answer[key]
                .as_f64()
                .map(Duration::from_secs_f64)
                .with_context(|| format!("no {key} in {line:?}"))
        };
        Ok(Read {
            seconds: seconds("seconds")?,
            cpu: seconds("cpu_seconds")?,
            rows: answer["rows"].as_u64().context("no rows in the answer")?,
            sums: answer.get("sums").cloned(),
        })
    }
}

impl Drop for Psycopg {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Makes a database of the bench's own on the machine's PostgreSQL (dropped
/// when it is dropped) holding `rows` readings in the table `readings`:
/// the rows `write_readings` puts in the Parquet file, by the same formulas.
async fn load_postgres(rows: usize) -> anyhow::Result<PgDatabase> {
    let database = PgDatabase::create()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach PostgreSQL: {e}"))?;
    let client = &database.client;
    client
        .batch_execute(
            "CREATE TABLE readings (id bigint NOT NULL, value double precision NOT NULL, \
             grade text NOT NULL, seen_at timestamptz NOT NULL, flagged boolean NOT NULL)",
        )
        .await?;
    let sink = client
        .copy_in("COPY readings FROM STDIN")
        .await
        .context("COPY into PostgreSQL")?;
    futures::pin_mut!(sink);
    let grades = ["I", "S", "E", "R"];
    let mut chunk = String::with_capacity(1 << 20);
    for i in 0..rows {
        let id = i as i64;
        let seen = chrono::DateTime::from_timestamp_micros(1_790_000_000_000_000 + id * 1_000_000)
            .context("timestamp out of range")?;
        chunk.push_str(&format!(
            "{id}\t{}\t{}\t{}\t{}\n",
            (id as f64) * 0.37 % 1000.0,
            grades[(i * 7) % 4],
            seen.format("%Y-%m-%d %H:%M:%S+00"),
            if id % 3 == 0 { "t" } else { "f" }
        ));
        if chunk.len() > (1 << 20) - 200 {
            sink.send(bytes::Bytes::from(std::mem::take(&mut chunk)))
                .await?;
        }
    }
    sink.send(bytes::Bytes::from(chunk)).await?;
    sink.as_mut().finish().await?;
    client.batch_execute("VACUUM ANALYZE readings").await?;
    Ok(database)
}

async fn run() -> anyhow::Result<()> {
    let rows = env_number("BLUELAMP_BENCH_ROWS", 1_000_000.0) as usize;
    let runs = env_number("BLUELAMP_BENCH_RUNS", 5.0).max(1.0) as usize;
    let status = Command::new("bash")
        .arg(Path::new(ROOT).join("../tests/python/setup.sh"))
        .status()?;
    if !status.success() {
        bail!("tests/python/setup.sh failed: the benchmark needs psycopg");
    }
    let dir = cache_dir().join(format!("postgres-{rows}"));
    std::fs::create_dir_all(&dir)?;
    cached_readings(&dir.join("readings.parquet"), rows, Compression::SNAPPY)?;

    eprintln!("postgres_stream: loading {rows} rows into PostgreSQL");
    let database = load_postgres(rows).await?;
    // Both servers' sessions in UTC, so psycopg reads timestamps alike.
    let postgres = format!(
        "host={} port={} user=postgres dbname={} options='-c TimeZone=UTC'",
        pg_host(),
        pg_port(),
        database.name
    );

    let verifier = bluelamp_engine::scram::ScramVerifier::new("bench");
    let text = format!(
        "[[source]]\nname = \"bench\"\nkind = \"files\"\nlocation = \"{}\"\n\n[[user]]\nname = \"bench\"\nscram_sha256 = \"{verifier}\"\n",
        dir.display()
    );
    let endpoint =
        Endpoint::bluelamp_postgres(&text, &cache_dir().join(format!("postgres-{rows}.toml")))?;
    let bluelamp = format!(
        "host=127.0.0.1 port={} user=bench password=bench dbname=bluelamp",
        endpoint.port
    );

    let servers = [
        (
            "PostgreSQL 15 (table)",
            postgres.as_str(),
            readings_query("readings"),
        ),
        (
            "Bluelamp (Parquet)",
            bluelamp.as_str(),
            readings_query("bench.readings"),
        ),
    ];
    let mut psycopg = Psycopg::start()?;
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); servers.len()];
    let mut cpu: Vec<Vec<Duration>> = vec![Vec::new(); servers.len()];
    for round in 0..=runs {
        eprintln!(
            "postgres_stream: round {round} of {runs}{}",
            if round == 0 {
                " (warm-up, checking the rows)"
            } else {
                ""
            }
        );
        let mut digests = Vec::new();
        for (i, (name, conninfo, query)) in servers.iter().enumerate() {
            let read = psycopg.read(conninfo, query, round == 0)?;
            if read.rows != rows as u64 {
                bail!("{name} sent {} rows, not {rows}", read.rows);
            }
            if round == 0 {
                digests.push(read.sums);
            } else {
                times[i].push(read.seconds);
                cpu[i].push(read.cpu);
            }
        }
        if round == 0 && digests.windows(2).any(|w| w[0] != w[1]) {
            bail!("the servers sent different rows: {digests:?}");
        }
    }
    drop(psycopg);
    drop(endpoint);

    println!(
        "postgres_stream: {rows} rows x 5 columns to psycopg 3 (binary), {runs} rounds (median)"
    );
    let postgres_median = median(&times[0]);
    for (i, (name, ..)) in servers.iter().enumerate() {
        let wall = median(&times[i]);
        let client_cpu = cpu[i].iter().sum::<Duration>() / cpu[i].len().max(1) as u32;
        println!(
            "  {name:<22} {:>7.3} s  {:>5.2} M rows/s  client CPU {:.3} s  ({:.2}x PostgreSQL's time)",
            wall.as_secs_f64(),
            rows as f64 / wall.as_secs_f64() / 1e6,
            client_cpu.as_secs_f64(),
            wall.as_secs_f64() / postgres_median.as_secs_f64()
        );
    }
    drop(database);
    Ok(())
}
