//! What the Flight SQL benches share: the readings file they read (written
//! once and cached), and Bluelamp's endpoint in a process of its own — the
//! bench binary started again with [`SERVE_ENV`], running the engine and
//! server `bluelamp serve` runs — so it shares no heap or runtime with the
//! client being measured.

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
use bluelamp_engine::{Config, Engine};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::properties::WriterProperties;

/// Set (to a config file) in the child process that serves Bluelamp's
/// endpoint; [`LISTEN_ENV`] is its address.
pub const SERVE_ENV: &str = "BLUELAMP_BENCH_SERVE";
/// The child's listen address.
pub const LISTEN_ENV: &str = "BLUELAMP_BENCH_LISTEN";
/// Set to `postgres` in a child that serves the PostgreSQL protocol rather
/// than Flight SQL.
pub const PROTOCOL_ENV: &str = "BLUELAMP_BENCH_PROTOCOL";

/// Where benches cache what they generate (`~/.cache/bluelamp/bench`).
pub fn cache_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map_or_else(std::env::temp_dir, PathBuf::from)
        .join(".cache/bluelamp/bench")
}

/// A free loopback port (bound, then released for a child to take).
///
/// # Errors
/// If no port can be bound.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The benches' query over `table`: every column of the readings.
pub fn readings_query(table: &str) -> String {
    format!("SELECT id, value, grade, seen_at, flagged FROM {table}")
}

/// Writes `rows` readings (id, value, grade, seen_at, flagged) to `path`
/// as Parquet compressed with `compression`.
///
/// # Errors
/// If the file cannot be written.
pub fn write_readings(path: &Path, rows: usize, compression: Compression) -> anyhow::Result<()> {
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

/// `path` holding `rows` readings, written first if it is not cached.
///
/// # Errors
/// If the file cannot be written.
pub fn cached_readings(path: &Path, rows: usize, compression: Compression) -> anyhow::Result<()> {
    if !path.is_file() {
        let started = Instant::now();
        write_readings(path, rows, compression)?;
        eprintln!(
            "wrote {rows} rows to {} in {:.1}s",
            path.display(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// In the child process ([`SERVE_ENV`] set): serves Bluelamp's endpoint
/// until the parent kills it, and returns `Some` only if it fails. In the
/// parent: `None`.
pub fn serve_if_child() -> Option<anyhow::Result<()>> {
    let config = std::env::var_os(SERVE_ENV)?;
    Some(crate::block_on(serve(PathBuf::from(config))))
}

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
    if std::env::var(PROTOCOL_ENV).is_ok_and(|p| p == "postgres") {
        let _server = bluelamp_pg_server::serve(engine, Some(listen)).await?;
        std::future::pending::<()>().await;
    } else {
        let _server = bluelamp_flight_server::serve(engine, Some(listen)).await?;
        std::future::pending::<()>().await;
    }
    Ok(())
}

/// A server under measurement in a process of its own, stopped when
/// dropped, whatever the outcome.
pub struct Endpoint {
    /// As reports name it.
    pub name: &'static str,
    /// The process.
    pub child: Child,
    /// `grpc://127.0.0.1:PORT`.
    pub uri: String,
    /// The port.
    pub port: u16,
}

impl Endpoint {
    /// `child`, once it accepts connections on `port`.
    ///
    /// # Errors
    /// If the server exits or takes over a minute to listen (it is stopped).
    pub fn wait(name: &'static str, child: Child, port: u16) -> anyhow::Result<Self> {
        let mut server = Self {
            name,
            child,
            uri: format!("grpc://127.0.0.1:{port}"),
            port,
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

    /// Bluelamp's endpoint over config `text` (saved as `config_path`),
    /// as this bench binary run again with [`SERVE_ENV`].
    ///
    /// # Errors
    /// A config that does not parse (checked before the child starts), or
    /// a child that does not start listening.
    pub fn bluelamp(text: &str, config_path: &Path) -> anyhow::Result<Self> {
        Self::bluelamp_speaking(text, config_path, "flightsql")
    }

    /// As [`Endpoint::bluelamp`], serving the PostgreSQL protocol; `uri`
    /// is `postgres://127.0.0.1:PORT/bluelamp`.
    ///
    /// # Errors
    /// As for [`Endpoint::bluelamp`].
    pub fn bluelamp_postgres(text: &str, config_path: &Path) -> anyhow::Result<Self> {
        let mut endpoint = Self::bluelamp_speaking(text, config_path, "postgres")?;
        endpoint.uri = format!("postgres://127.0.0.1:{}/bluelamp", endpoint.port);
        Ok(endpoint)
    }

    fn bluelamp_speaking(text: &str, config_path: &Path, protocol: &str) -> anyhow::Result<Self> {
        let dir = config_path
            .parent()
            .context("config without a folder")?
            .to_path_buf();
        Config::parse(text, "bench.toml", dir)?;
        std::fs::write(config_path, text)?;
        let port = free_port()?;
        let child = Command::new(std::env::current_exe()?)
            .env(SERVE_ENV, config_path)
            .env(LISTEN_ENV, format!("127.0.0.1:{port}"))
            .env(PROTOCOL_ENV, protocol)
            .stdout(Stdio::null())
            .spawn()
            .context("cannot start Bluelamp's endpoint")?;
        Self::wait("Bluelamp's endpoint", child, port)
    }

    /// The process id, for its CPU time.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
