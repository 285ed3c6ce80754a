//! # bluelamp-benches
//!
//! Benchmarks measure; tests assert. Figures from here go into issue notes and
//! `benches/README.md`, never into test thresholds.
//!
//! Each whole-workload run is a `[[bench]]` target with `harness = false`, so
//! it is one documented command (`cargo bench --workspace --bench
//! <name>`); see `benches/README.md` for what each measures and the figures.
//! This library holds what they share: starting the demo force's HTTP systems
//! and an engine over them, timing, a direct (bare `reqwest` +
//! `serde_json`) client to compare against, and ([`endpoint`]) the Flight
//! SQL benches' readings file and Bluelamp endpoint in a process of its own.

pub mod endpoint;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bluelamp_engine::{Config, Engine, Identity};
use bluelamp_simulators::http::{RunningSystem, SystemKind, SystemOptions, openapi_sources, start};
use bluelamp_simulators::{Force, generate};
use futures::TryStreamExt;

/// The allocator the `bluelamp` binary uses, so that a bench measures what
/// the command runs — every bench links this library.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Runs a benchmark's async body on a multi-threaded runtime.
///
/// # Errors
/// The runtime cannot start, or the body's error.
pub fn block_on<T>(
    body: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(body)
}

/// A number from the environment, or a default: `BLUELAMP_BENCH_SCALE`,
/// `BLUELAMP_BENCH_RUNS`.
pub fn env_number(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The demo force's HTTP systems and an engine over them.
pub struct Live {
    /// The generated force.
    pub force: Arc<Force>,
    /// The running systems, in the order asked for.
    pub systems: Vec<RunningSystem>,
    /// Credentials the systems accept.
    pub options: SystemOptions,
    /// An engine with one OpenAPI source per system.
    pub engine: Engine,
}

impl Live {
    /// Generates the force at `scale` (seed 1) and starts `kinds`.
    ///
    /// # Errors
    /// A port that cannot be bound or an engine that does not start.
    pub async fn start(scale: f64, kinds: &[SystemKind]) -> anyhow::Result<Self> {
        let started = Instant::now();
        let force = Arc::new(generate(1, scale, |_| {}));
        let options = SystemOptions {
            // Benchmarks measure the client, not the simulator's rate limit.
            rms_rate_limit: 100_000,
            ..SystemOptions::default()
        };
        let mut systems = Vec::new();
        for kind in kinds {
            let addr = SocketAddr::from(([127, 0, 0, 1], 0));
            systems.push(start(*kind, Arc::clone(&force), options.clone(), addr).await?);
        }
        let config = Config::parse(
            &openapi_sources(&systems, &options),
            "bench.toml",
            std::env::temp_dir(),
        )?;
        let engine = Engine::start(config, &bluelamp_connectors::registry()).await?;
        eprintln!(
            "force at scale {scale}: {} incidents, {} crimes; systems up in {:.1}s",
            force.incidents.len(),
            force.crimes.len(),
            started.elapsed().as_secs_f64()
        );
        Ok(Self {
            force,
            systems,
            options,
            engine,
        })
    }

    /// The running system of a kind.
    ///
    /// # Panics
    /// If that kind was not started.
    pub fn system(&self, kind: SystemKind) -> &RunningSystem {
        #[allow(clippy::expect_used, reason = "benchmark set-up")]
        self.systems
            .iter()
            .find(|s| s.kind == kind)
            .expect("system started")
    }

    /// Runs a query, counting its rows without holding them.
    ///
    /// # Errors
    /// The query's error.
    pub async fn count_rows(&self, sql: &str) -> anyhow::Result<usize> {
        let session = self.engine.session(Identity::new("bench", "bench"));
        let output = session.sql(sql).await?;
        let mut rows = 0;
        let mut stream = output.stream;
        while let Some(batch) = stream.try_next().await? {
            rows += batch.num_rows();
        }
        Ok(rows)
    }

    /// The text of `EXPLAIN ANALYZE` for a query.
    ///
    /// # Errors
    /// The query's error.
    pub async fn explain_analyze(&self, sql: &str) -> anyhow::Result<String> {
        let session = self.engine.session(Identity::new("bench", "bench"));
        let output = session.sql(&format!("EXPLAIN ANALYZE {sql}")).await?;
        let batches: Vec<_> = output.stream.try_collect().await?;
        let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches)?;
        Ok(text.to_string())
    }
}

/// Requests and records one system served while `f` ran.
pub struct Served {
    /// HTTP requests.
    pub requests: u64,
    /// Records in the responses.
    pub records: u64,
}

/// Counts what `system` serves during `f`.
///
/// # Errors
/// Whatever `f` returns.
pub async fn served<T>(
    system: &RunningSystem,
    f: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<(T, Served)> {
    let (requests, records) = (system.stats.requests(), system.stats.records());
    let value = f.await?;
    Ok((
        value,
        Served {
            requests: system.stats.requests() - requests,
            records: system.stats.records() - records,
        },
    ))
}

/// Times `runs` runs of `f`; returns each run's duration and the last result.
///
/// # Errors
/// The first error from `f`.
pub async fn time_runs<T, F, Fut>(runs: usize, mut f: F) -> anyhow::Result<(Vec<Duration>, T)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut times = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs.max(1) {
        let started = Instant::now();
        last = Some(f().await?);
        times.push(started.elapsed());
    }
    let last = last.context("no runs")?;
    Ok((times, last))
}

/// The median of some durations.
pub fn median(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

/// CPU time (user and system, all threads) a process has used so far, from
/// Linux's `/proc/<pid>/stat` — `None` for this process. Its resolution is
/// the kernel's clock tick (10 ms), so measure over several runs.
///
/// # Errors
/// No such process, or not Linux.
pub fn process_cpu(pid: Option<u32>) -> anyhow::Result<Duration> {
    let path = pid.map_or_else(
        || "/proc/self/stat".to_string(),
        |p| format!("/proc/{p}/stat"),
    );
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    cpu_from_stat(&text).with_context(|| format!("{path} is not a process status line"))
}

/// `utime + stime` of a `/proc/<pid>/stat` line: the 14th and 15th fields,
/// counted after the command name (which may hold spaces and parentheses),
/// in ticks of 1/100 s (Linux's `USER_HZ` on every architecture it exports).
fn cpu_from_stat(text: &str) -> Option<Duration> {
    let after_name = &text[text.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((user + system) * 10))
}

/// A direct client of the demo systems: what a developer would write without
/// Bluelamp, with `reqwest` and `serde_json`.
pub struct Direct {
    client: reqwest::Client,
}

impl Default for Direct {
    fn default() -> Self {
        Self::new()
    }
}

impl Direct {
    /// A client with default settings.
    pub fn new() -> Self {
        Self {
            client: reqwest::Client::new(),
        }
    }

    /// Every C&C incident (cursor paging, `limit` records a page), optionally
    /// only those opened in `[from, to)`; returns the records.
    ///
    /// # Errors
    /// HTTP or JSON errors.
    pub async fn cad_incidents(
        &self,
        cad: &RunningSystem,
        api_key: &str,
        limit: usize,
        opened: Option<(&str, &str)>,
    ) -> anyhow::Result<Vec<serde_json::Value>> {
        let mut records = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut query = vec![("limit", limit.to_string())];
            if let Some((from, to)) = opened {
                query.push(("opened_from", from.to_string()));
                query.push(("opened_to", to.to_string()));
            }
            if let Some(c) = &cursor {
                query.push(("cursor", c.clone()));
            }
            let body = self
                .client
                .get(format!("{}/incidents", cad.url))
                .header("X-API-Key", api_key)
                .query(&query)
                .send()
                .await?
                .error_for_status()?
                .bytes()
                .await?;
            let mut page: serde_json::Value = serde_json::from_slice(&body)?;
            if let Some(data) = page.get_mut("data").and_then(|d| d.as_array_mut()) {
                records.append(data);
            }
            cursor = page["next_cursor"].as_str().map(str::to_string);
            if cursor.is_none() {
                return Ok(records);
            }
        }
    }

    /// An RMS access token (OAuth2 client credentials).
    ///
    /// # Errors
    /// HTTP or JSON errors.
    pub async fn rms_token(
        &self,
        rms: &RunningSystem,
        options: &SystemOptions,
    ) -> anyhow::Result<String> {
        let body: serde_json::Value = self
            .client
            .post(format!("{}/oauth/token", rms.url))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", options.rms_client_id.as_str()),
                ("client_secret", options.rms_client_secret.as_str()),
            ])
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        body["access_token"]
            .as_str()
            .map(str::to_string)
            .context("no access_token in the token response")
    }

    /// The RMS crimes for some incident URNs: `incident_urn` lists of at most
    /// `batch` URNs, requested concurrently, each paged with offset/limit.
    ///
    /// # Errors
    /// HTTP or JSON errors.
    pub async fn rms_crimes_for(
        &self,
        rms: &RunningSystem,
        token: &str,
        urns: &[String],
        batch: usize,
    ) -> anyhow::Result<Vec<serde_json::Value>> {
        let requests = urns.chunks(batch.max(1)).map(|chunk| async move {
            let mut records = Vec::new();
            let mut offset = 0usize;
            loop {
                let page: serde_json::Value = self
                    .client
                    .get(format!("{}/crimes", rms.url))
                    .bearer_auth(token)
                    .query(&[
                        ("incident_urn", chunk.join(",")),
                        ("offset", offset.to_string()),
                        ("limit", "1000".to_string()),
                    ])
                    .send()
                    .await?
                    .error_for_status()?
                    .json()
                    .await?;
                let results = page["results"].as_array().cloned().unwrap_or_default();
                offset += results.len();
                let total = page["total"].as_u64().unwrap_or(0) as usize;
                let done = results.is_empty() || offset >= total;
                records.extend(results);
                if done {
                    return Ok::<_, anyhow::Error>(records);
                }
            }
        });
        let pages = futures::future::try_join_all(requests).await?;
        Ok(pages.into_iter().flatten().collect())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{cpu_from_stat, process_cpu};

    #[test]
    fn cpu_time_is_read_after_the_command_name() {
        let line =
            "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 900 0 0 0 150 25 0 0 20 0 9 0 100 0 0";
        assert_eq!(cpu_from_stat(line), Some(Duration::from_millis(1750)));
        assert_eq!(cpu_from_stat("4242 (short) S 1 2"), None);
        assert_eq!(cpu_from_stat("no name here"), None);
    }

    #[test]
    fn busy_work_shows_in_this_process_cpu_time() {
        let before = process_cpu(None).unwrap();
        let started = std::time::Instant::now();
        let mut x = 0u64;
        // Spin until a clock tick of CPU time has been counted (or give up).
        while process_cpu(None).unwrap() == before && started.elapsed().as_secs() < 5 {
            for i in 0..1_000_000u64 {
                x = x.wrapping_mul(31).wrapping_add(i);
            }
            std::hint::black_box(x);
        }
        assert!(process_cpu(None).unwrap() > before);
        assert!(process_cpu(Some(u32::MAX)).is_err());
    }
}
