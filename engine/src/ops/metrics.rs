//! The engine's Prometheus metrics, kept in one registry per engine with
//! the `prometheus` crate and served as its text format by `bluelamp serve`
//! (`[server] metrics_listen`).
//!
//! Families (all prefixed `bluelamp_`):
//! - per source (`source` label): `source_requests_total`,
//!   `source_errors_total` (by `kind`: `timeout`, `connect`, `status_4xx`,
//!   `status_5xx`, `decode`), `source_throttled_total` (429 answers),
//!   `source_retries_total`, `source_request_duration_seconds`,
//!   `source_records_total`, `source_bytes_total`, `source_up` (1 while
//!   the source is connected);
//! - per front end (`client` label: `repl`, `script`, `flight-sql`,
//!   `postgres`): `sessions_open`, `sessions_total`, `statements_total`
//!   (by `outcome`), `statement_duration_seconds`, `statement_rows_total`;
//!   `statements_running`;
//! - memory: `memory_pool_used_bytes`, `memory_limit_bytes`.
//!
//! Connectors report through a [`SourceMetrics`] handle, one per source,
//! which [`Engine::start`](crate::Engine::start) hands each source's
//! configuration; the handle's label values are resolved once.

use std::time::Duration;

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

use super::queries::QueryState;

/// Buckets for request and statement durations, in seconds.
const SECONDS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// Every metric family of one engine.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    source_requests: IntCounterVec,
    source_errors: IntCounterVec,
    source_throttled: IntCounterVec,
    source_retries: IntCounterVec,
    source_latency: HistogramVec,
    source_records: IntCounterVec,
    source_bytes: IntCounterVec,
    source_up: IntGaugeVec,
    sessions_open: IntGaugeVec,
    sessions_total: IntCounterVec,
    statements: IntCounterVec,
    statement_seconds: HistogramVec,
    statement_rows: IntCounterVec,
    running: IntGauge,
    pool_used: IntGauge,
    pool_limit: IntGauge,
}

/// Registers `metric` (its name is fixed here, so a clash is a bug caught
/// by the tests) and returns it.
fn registered<M: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    metric: prometheus::Result<M>,
) -> M {
    #[allow(
        clippy::expect_used,
        reason = "names and labels are constants, checked by tests"
    )]
    let metric = metric.expect("a valid metric definition");
    if let Err(e) = registry.register(Box::new(metric.clone())) {
        tracing::error!("metric not registered: {e}");
    }
    metric
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    registered(registry, IntCounterVec::new(Opts::new(name, help), labels))
}

fn histogram(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    registered(
        registry,
        HistogramVec::new(
            HistogramOpts::new(name, help).buckets(SECONDS.to_vec()),
            labels,
        ),
    )
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every family.
    pub fn new() -> Self {
        let r = Registry::new_custom(Some("bluelamp".into()), None).unwrap_or_default();
        Self {
            source_requests: counter(
                &r,
                "source_requests_total",
                "Requests sent to a source (retries included)",
                &["source"],
            ),
            source_errors: counter(
                &r,
                "source_errors_total",
                "Requests to a source that failed, by kind",
                &["source", "kind"],
            ),
            source_throttled: counter(
                &r,
                "source_throttled_total",
                "Requests a source refused with 429 Too Many Requests",
                &["source"],
            ),
            source_retries: counter(
                &r,
                "source_retries_total",
                "Requests sent again after a failure",
                &["source"],
            ),
            source_latency: histogram(
                &r,
                "source_request_duration_seconds",
                "Time from sending a request to a source to its full answer",
                &["source"],
            ),
            source_records: counter(
                &r,
                "source_records_total",
                "Records received from a source",
                &["source"],
            ),
            source_bytes: counter(
                &r,
                "source_bytes_total",
                "Bytes received from a source",
                &["source"],
            ),
            source_up: registered(
                &r,
                IntGaugeVec::new(
                    Opts::new("source_up", "1 while the source is connected, else 0"),
                    &["source"],
                ),
            ),
            sessions_open: registered(
                &r,
                IntGaugeVec::new(Opts::new("sessions_open", "Sessions open now"), &["client"]),
            ),
            sessions_total: counter(&r, "sessions_total", "Sessions opened", &["client"]),
            statements: counter(
                &r,
                "statements_total",
                "Statements ended, by outcome",
                &["client", "outcome"],
            ),
            statement_seconds: histogram(
                &r,
                "statement_duration_seconds",
                "Time from a statement's start to its end",
                &["client"],
            ),
            statement_rows: counter(
                &r,
                "statement_rows_total",
                "Rows statements returned",
                &["client"],
            ),
            running: registered(
                &r,
                IntGauge::new("statements_running", "Statements running now"),
            ),
            pool_used: registered(
                &r,
                IntGauge::new(
                    "memory_pool_used_bytes",
                    "Memory statements hold in the engine's pool now",
                ),
            ),
            pool_limit: registered(
                &r,
                IntGauge::new(
                    "memory_limit_bytes",
                    "The engine's memory limit ([engine] memory_limit)",
                ),
            ),
            registry: r,
        }
    }

    /// The handle a source's connector reports through.
    pub fn source(&self, name: &str) -> SourceMetrics {
        SourceMetrics {
            name: name.to_string(),
            requests: self.source_requests.with_label_values(&[name]),
            throttled: self.source_throttled.with_label_values(&[name]),
            retries: self.source_retries.with_label_values(&[name]),
            latency: self.source_latency.with_label_values(&[name]),
            records: self.source_records.with_label_values(&[name]),
            bytes: self.source_bytes.with_label_values(&[name]),
            errors: self.source_errors.clone(),
        }
    }

    /// Sets a source's connection state.
    pub fn source_state(&self, name: &str, up: bool) {
        self.source_up.with_label_values(&[name]).set(i64::from(up));
    }

    /// Sets the memory pool's figures.
    pub fn memory(&self, used: usize, limit: u64) {
        self.pool_used.set(i64::try_from(used).unwrap_or(i64::MAX));
        self.pool_limit
            .set(i64::try_from(limit).unwrap_or(i64::MAX));
    }

    /// Counts a session opened by front end `client`; the guard counts its
    /// close.
    pub fn session_opened(&self, client: &str) -> SessionGauge {
        self.sessions_total.with_label_values(&[client]).inc();
        let gauge = self.sessions_open.with_label_values(&[client]);
        gauge.inc();
        SessionGauge { gauge }
    }

    pub(crate) fn statement_started(&self) {
        self.running.inc();
    }

    pub(crate) fn statement_ended(
        &self,
        client: &str,
        state: QueryState,
        elapsed: Duration,
        rows: u64,
    ) {
        self.running.dec();
        let outcome = match state {
            QueryState::Finished => "ok",
            QueryState::Failed => "error",
            QueryState::Cancelled => "cancelled",
            QueryState::TimedOut => "timed_out",
            QueryState::Abandoned => "abandoned",
            QueryState::Running => "running",
        };
        self.statements.with_label_values(&[client, outcome]).inc();
        self.statement_seconds
            .with_label_values(&[client])
            .observe(elapsed.as_secs_f64());
        self.statement_rows
            .with_label_values(&[client])
            .inc_by(rows);
    }

    /// Every family in Prometheus's text format.
    pub fn text(&self) -> String {
        let encoder = prometheus::TextEncoder::new();
        encoder
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|e| format!("# metrics could not be encoded: {e}\n"))
    }
}

/// Counts one session as open until dropped.
#[derive(Debug)]
pub struct SessionGauge {
    gauge: IntGauge,
}

impl Drop for SessionGauge {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// How a request to a source went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestError {
    /// No answer in time.
    Timeout,
    /// The connection could not be made or broke.
    Connect,
    /// A 4xx answer (429 is also counted as throttled).
    Status4xx,
    /// A 5xx answer.
    Status5xx,
    /// An answer that could not be read.
    Decode,
}

impl RequestError {
    fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Connect => "connect",
            Self::Status4xx => "status_4xx",
            Self::Status5xx => "status_5xx",
            Self::Decode => "decode",
        }
    }
}

/// One source's metrics, for its connector.
#[derive(Debug, Clone)]
pub struct SourceMetrics {
    name: String,
    requests: IntCounter,
    throttled: IntCounter,
    retries: IntCounter,
    latency: Histogram,
    records: IntCounter,
    bytes: IntCounter,
    errors: IntCounterVec,
}

impl SourceMetrics {
    /// A handle that counts into a registry nobody reads, for sources made
    /// outside an engine (tests, `bluelamp check`).
    pub fn detached(name: &str) -> Self {
        Metrics::new().source(name)
    }

    /// The source's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Counts one request sent and how long its answer took; `status` is
    /// the HTTP status where there was an answer.
    pub fn request(&self, took: Duration, status: Option<u16>) {
        self.requests.inc();
        self.latency.observe(took.as_secs_f64());
        match status {
            Some(429) => {
                self.throttled.inc();
                self.error(RequestError::Status4xx);
            }
            Some(400..=499) => self.error(RequestError::Status4xx),
            Some(500..=599) => self.error(RequestError::Status5xx),
            _ => {}
        }
    }

    /// Counts a request that failed without an answer, or whose answer
    /// could not be read.
    pub fn error(&self, kind: RequestError) {
        self.errors
            .with_label_values(&[self.name.as_str(), kind.as_str()])
            .inc();
    }

    /// Counts a request about to be sent again.
    pub fn retry(&self) {
        self.retries.inc();
    }

    /// Counts records and bytes received.
    pub fn fetched(&self, records: u64, bytes: u64) {
        self.records.inc_by(records);
        self.bytes.inc_by(bytes);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
    use super::*;

    #[test]
    fn every_family_registers_and_encodes() {
        let metrics = Metrics::new();
        let cad = metrics.source("cad");
        cad.request(Duration::from_millis(20), Some(200));
        cad.request(Duration::from_millis(20), Some(429));
        cad.retry();
        cad.fetched(10, 2048);
        metrics.source_state("cad", true);
        let session = metrics.session_opened("repl");
        metrics.statement_started();
        metrics.statement_ended("repl", QueryState::Finished, Duration::from_millis(5), 3);
        metrics.memory(100, 1000);
        let text = metrics.text();
        for line in [
            "bluelamp_source_requests_total{source=\"cad\"} 2",
            "bluelamp_source_throttled_total{source=\"cad\"} 1",
            "bluelamp_source_errors_total{kind=\"status_4xx\",source=\"cad\"} 1",
            "bluelamp_source_records_total{source=\"cad\"} 10",
            "bluelamp_source_up{source=\"cad\"} 1",
            "bluelamp_sessions_open{client=\"repl\"} 1",
            "bluelamp_statements_total{client=\"repl\",outcome=\"ok\"} 1",
            "bluelamp_memory_limit_bytes 1000",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        drop(session);
        assert!(
            metrics
                .text()
                .contains("bluelamp_sessions_open{client=\"repl\"} 0")
        );
    }
}
