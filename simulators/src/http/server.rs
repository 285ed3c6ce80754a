//! What every HTTP system shares: binding, graceful shutdown, request accounting,
//! transport faults, query-string parsing and JSON error answers.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::faults::{Action, Faults};
use crate::force::Force;

/// Which system to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SystemKind {
    /// Command and control.
    Cad,
    /// Records management.
    Rms,
    /// Stop and search open data.
    Stops,
}

impl SystemKind {
    /// Every HTTP system.
    pub const ALL: [SystemKind; 3] = [SystemKind::Cad, SystemKind::Rms, SystemKind::Stops];

    /// The system's short name.
    pub fn name(self) -> &'static str {
        match self {
            SystemKind::Cad => "cad",
            SystemKind::Rms => "rms",
            SystemKind::Stops => "stops",
        }
    }

    /// Where its OpenAPI document is served.
    pub fn openapi_path(self) -> &'static str {
        match self {
            SystemKind::Cad => "/openapi.json",
            SystemKind::Rms => "/openapi.yaml",
            SystemKind::Stops => "/openapi.json",
        }
    }
}

impl FromStr for SystemKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cad" => Ok(SystemKind::Cad),
            "rms" => Ok(SystemKind::Rms),
            "stops" => Ok(SystemKind::Stops),
            other => Err(format!("unknown system '{other}' (use cad, rms or stops)")),
        }
    }
}

/// Settings for a simulated system. The defaults are the demo force's
/// published credentials.
#[derive(Debug, Clone)]
pub struct SystemOptions {
    /// Faults to inject.
    pub faults: Faults,
    /// The C&C API key (`X-API-Key` header).
    pub cad_api_key: String,
    /// RMS OAuth2 client id.
    pub rms_client_id: String,
    /// RMS OAuth2 client secret.
    pub rms_client_secret: String,
    /// Lifetime of an RMS access token.
    pub rms_token_ttl: Duration,
    /// RMS requests per second before it answers 429.
    pub rms_rate_limit: u32,
    /// New records per second each growing system adds while it runs (C&C
    /// incidents, RMS crimes), stamped with the time they are added; 0 for
    /// none.
    pub live_rate: f64,
}

impl Default for SystemOptions {
    fn default() -> Self {
        Self {
            faults: Faults::none(),
            cad_api_key: "demo-cad-key".into(),
            rms_client_id: "bluelamp-demo".into(),
            rms_client_secret: "demo-rms-secret".into(),
            rms_token_ttl: Duration::from_secs(300),
            rms_rate_limit: 200,
            live_rate: 0.0,
        }
    }
}

/// Request and record counters, per endpoint.
#[derive(Debug, Default)]
pub struct Stats {
    requests: AtomicU64,
    records: AtomicU64,
    data_requests: AtomicU64,
    write_requests: AtomicU64,
    endpoints: Mutex<BTreeMap<String, (u64, u64)>>,
    statuses: Mutex<BTreeMap<u16, u64>>,
    /// Data requests by the end user they were made for (the
    /// `X-On-Behalf-Of` header), `-` where none was named.
    on_behalf_of: Mutex<BTreeMap<String, u64>>,
}

/// The header naming the end user a request is made for.
pub const ON_BEHALF_OF: &str = "x-on-behalf-of";

impl Stats {
    fn record(&self, endpoint: &str, status: u16, records: u64) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.records.fetch_add(records, Ordering::Relaxed);
        if let Ok(mut map) = self.endpoints.lock() {
            let entry = map.entry(endpoint.to_string()).or_default();
            entry.0 += 1;
            entry.1 += records;
        }
        if let Ok(mut map) = self.statuses.lock() {
            *map.entry(status).or_default() += 1;
        }
    }

    /// Requests served since the last reset.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Records served since the last reset.
    pub fn records(&self) -> u64 {
        self.records.load(Ordering::Relaxed)
    }

    /// Data requests per end user named in `X-On-Behalf-Of` (`-`: none).
    pub fn on_behalf_of(&self) -> BTreeMap<String, u64> {
        self.on_behalf_of
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default()
    }

    /// The counters as the `/_stats` document.
    pub fn to_json(&self) -> Value {
        let endpoints: serde_json::Map<String, Value> = self
            .endpoints
            .lock()
            .map(|m| {
                m.iter()
                    .map(|(k, (req, rec))| (k.clone(), json!({"requests": req, "records": rec})))
                    .collect()
            })
            .unwrap_or_default();
        let statuses: serde_json::Map<String, Value> = self
            .statuses
            .lock()
            .map(|m| m.iter().map(|(k, v)| (k.to_string(), json!(v))).collect())
            .unwrap_or_default();
        json!({
            "requests": self.requests(),
            "records": self.records(),
            "endpoints": endpoints,
            "statuses": statuses,
            "on_behalf_of": self.on_behalf_of(),
        })
    }

    fn reset(&self) {
        self.requests.store(0, Ordering::Relaxed);
        self.records.store(0, Ordering::Relaxed);
        if let Ok(mut m) = self.endpoints.lock() {
            m.clear();
        }
        if let Ok(mut m) = self.statuses.lock() {
            m.clear();
        }
        if let Ok(mut m) = self.on_behalf_of.lock() {
            m.clear();
        }
    }
}

/// How many records a response carries; handlers attach it for accounting.
#[derive(Debug, Clone, Copy)]
pub struct RecordCount(pub u64);

/// A system running on a loopback port.
pub struct RunningSystem {
    /// Which system.
    pub kind: SystemKind,
    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    /// Its counters.
    pub stats: Arc<Stats>,
    faults: Arc<RwLock<Faults>>,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    /// Adds new records at the live rate.
    grower: Option<tokio::task::JoinHandle<()>>,
}

impl RunningSystem {
    /// The OpenAPI document's URL.
    pub fn openapi_url(&self) -> String {
        format!("{}{}", self.url, self.kind.openapi_path())
    }

    /// Replaces the transport faults (latency, 5xx, 429 bursts, resets,
    /// malformed pages) from the next request on, as a supplier's system
    /// has a bad hour; the system's documentation breaks stay as started.
    pub fn set_faults(&self, faults: Faults) {
        let faults = faults.for_system(self.kind.name());
        *self.faults.write().unwrap_or_else(|p| p.into_inner()) = faults;
    }

    /// Stops accepting connections and waits for the server to finish.
    pub async fn shutdown(mut self) {
        if let Some(grower) = self.grower.take() {
            grower.abort();
        }
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for RunningSystem {
    fn drop(&mut self) {
        if let Some(grower) = self.grower.take() {
            grower.abort();
        }
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Shared by the middleware of one system.
#[derive(Clone)]
pub(crate) struct Common {
    pub stats: Arc<Stats>,
    pub faults: Arc<RwLock<Faults>>,
}

/// Adds one new record, made at the given time (a live demo's growth).
pub(crate) type Grow = Arc<dyn Fn(DateTime<Utc>) + Send + Sync>;

/// Binds `addr` (port 0 for a free port) and serves `kind` over `force`.
///
/// # Errors
/// The address cannot be bound.
pub async fn start(
    kind: SystemKind,
    force: Arc<Force>,
    options: SystemOptions,
    addr: SocketAddr,
) -> std::io::Result<RunningSystem> {
    // Only this system's `SYSTEM:doc-...` breaks apply to it.
    let options = SystemOptions {
        faults: options.faults.for_system(kind.name()),
        ..options
    };
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let url = format!("http://{local}");
    let stats = Arc::new(Stats::default());
    let faults = Arc::new(RwLock::new(options.faults.clone()));
    let common = Common {
        stats: Arc::clone(&stats),
        faults: Arc::clone(&faults),
    };
    let (api, grow) = match kind {
        SystemKind::Cad => super::cad::router(&force, &options),
        SystemKind::Rms => super::rms::router(&force, &options),
        SystemKind::Stops => (super::stops::router(&force, &options, &url), None),
    };
    let grower = match grow {
        Some(grow) if options.live_rate.is_finite() && options.live_rate > 0.0 => {
            let every = Duration::from_secs_f64(1.0 / options.live_rate);
            Some(tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    grow(Utc::now());
                }
            }))
        }
        _ => None,
    };
    let app = api
        .route_layer(axum::middleware::from_fn_with_state(
            common.clone(),
            account,
        ))
        .route("/_stats", get(get_stats).delete(reset_stats))
        .with_state(common);
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
    });
    Ok(RunningSystem {
        kind,
        url,
        stats,
        faults,
        shutdown: Some(tx),
        task,
        grower,
    })
}

async fn get_stats(State(common): State<Common>) -> Response {
    axum::Json(common.stats.to_json()).into_response()
}

async fn reset_stats(State(common): State<Common>) -> StatusCode {
    common.stats.reset();
    StatusCode::NO_CONTENT
}

/// Counts every request and applies transport faults to data endpoints.
async fn account(State(common): State<Common>, request: Request, next: Next) -> Response {
    let endpoint = format!(
        "{} {}",
        request.method(),
        request.extensions().get::<MatchedPath>().map_or_else(
            || request.uri().path().to_string(),
            |p| p.as_str().to_string()
        )
    );
    let path = request.uri().path().to_string();
    let is_data = !(path.starts_with("/openapi") || path.starts_with("/oauth"));
    let is_write = is_data && request.method() == axum::http::Method::POST;
    if is_data {
        let user = request
            .headers()
            .get(ON_BEHALF_OF)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_string();
        if let Ok(mut map) = common.stats.on_behalf_of.lock() {
            *map.entry(user).or_default() += 1;
        }
    }
    let faults = common
        .faults
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let action = if is_data {
        let n = common.stats.data_requests.fetch_add(1, Ordering::Relaxed);
        let write = is_write
            .then(|| common.stats.write_requests.fetch_add(1, Ordering::Relaxed) + 1)
            .and_then(|w| faults.write_action(w));
        write.unwrap_or_else(|| faults.action(n))
    } else {
        Action::Serve
    };
    if is_data && !faults.latency.is_zero() {
        tokio::time::sleep(faults.latency).await;
    }
    let response = match action {
        Action::ServerError(code) => error(
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            "simulated server error",
        ),
        Action::TooManyRequests => too_many_requests(&faults),
        Action::Serve | Action::Reset | Action::Malformed => next.run(request).await,
    };
    let records = response
        .extensions()
        .get::<RecordCount>()
        .map_or(0, |c| c.0);
    common
        .stats
        .record(&endpoint, response.status().as_u16(), records);
    match action {
        Action::Reset if response.status().is_success() => reset_mid_body(response).await,
        Action::Malformed if response.status().is_success() => malformed(response).await,
        _ => response,
    }
}

/// Sends the headers and half the body, then drops the connection.
async fn reset_mid_body(response: Response) -> Response {
    let (parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "could not buffer body");
    };
    let half = bytes.slice(..bytes.len() / 2);
    let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
        Ok(half),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "simulated reset",
        )),
    ];
    let mut parts = parts;
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from_stream(futures::stream::iter(chunks)))
}

/// Sends a complete response whose JSON is cut off.
async fn malformed(response: Response) -> Response {
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "could not buffer body");
    };
    let cut = bytes.slice(..(bytes.len() * 2 / 3).max(1));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(cut))
}

/// A JSON error answer.
pub(crate) fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({"error": message}))).into_response()
}

/// 429 with `Retry-After: 1` (without it under `no-retry-after`).
pub(crate) fn too_many_requests(faults: &Faults) -> Response {
    let mut response = error(
        StatusCode::TOO_MANY_REQUESTS,
        "rate limit exceeded; retry after 1 second",
    );
    if !faults.no_retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

/// A JSON body with its record count attached for accounting.
pub(crate) fn records_response(body: Value, records: usize) -> Response {
    let mut response = axum::Json(body).into_response();
    response
        .extensions_mut()
        .insert(RecordCount(records as u64));
    response
}

/// Query parameters; a parameter may repeat, and list parameters also accept
/// comma-separated values.
#[derive(Debug, Default)]
pub(crate) struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    pub fn parse(query: Option<&str>) -> Self {
        let pairs = query
            .map(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .into_owned()
                    .collect()
            })
            .unwrap_or_default();
        Self { pairs }
    }

    /// The single value of `name`.
    pub fn one(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, split on commas.
    pub fn list(&self, name: &str) -> Option<Vec<String>> {
        let values: Vec<String> = self
            .pairs
            .iter()
            .filter(|(k, _)| k == name)
            .flat_map(|(_, v)| v.split(',').map(|s| s.trim().to_string()))
            .filter(|s| !s.is_empty())
            .collect();
        (!values.is_empty()).then_some(values)
    }

    /// Names not in `known`, so unknown parameters are rejected, not ignored.
    pub fn unknown(&self, known: &[&str]) -> Option<String> {
        self.pairs
            .iter()
            .map(|(k, _)| k)
            .find(|k| !known.contains(&k.as_str()))
            .cloned()
    }

    /// A number within `min..=max`, or `default` when absent.
    pub fn number(&self, name: &str, default: u64, min: u64, max: u64) -> Result<u64, String> {
        match self.one(name) {
            None => Ok(default),
            Some(v) => v
                .parse::<u64>()
                .ok()
                .filter(|n| (min..=max).contains(n))
                .ok_or_else(|| format!("{name} must be a whole number from {min} to {max}")),
        }
    }

    /// An RFC 3339 timestamp.
    pub fn time(&self, name: &str) -> Result<Option<chrono::DateTime<chrono::Utc>>, String> {
        self.one(name)
            .map(|v| {
                chrono::DateTime::parse_from_rfc3339(v)
                    .map(|t| t.with_timezone(&chrono::Utc))
                    .map_err(|_| {
                        format!("{name} must be an RFC 3339 date-time such as 2026-10-01T00:00:00Z")
                    })
            })
            .transpose()
    }

    /// Every pair except `skip`, for fingerprinting a query.
    pub fn fingerprint(&self, skip: &[&str]) -> u64 {
        let mut pairs: Vec<&(String, String)> = self
            .pairs
            .iter()
            .filter(|(k, _)| !skip.contains(&k.as_str()))
            .collect();
        pairs.sort();
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for (k, v) in pairs {
            for b in k.bytes().chain([b'=']).chain(v.bytes()).chain([b'&']) {
                h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3);
            }
        }
        h
    }
}

/// Applies schema-drift faults to one page of records. `first` is the dataset
/// index of the page's first record; `optional` is a field the document marks
/// optional; `wrong` is a field and a value of the wrong type for it.
pub(crate) fn drift(
    faults: &Faults,
    records: &mut [Value],
    first: usize,
    optional: &str,
    wrong: (&str, Value),
) {
    for (i, record) in records.iter_mut().enumerate() {
        let Some(object) = record.as_object_mut() else {
            continue;
        };
        if faults.drift_extra {
            object.insert(
                "x_undocumented".into(),
                json!({"added_by": "a newer supplier release"}),
            );
        }
        if faults.drift_missing {
            object.remove(optional);
        }
        if faults.drift_wrong_type && first + i == 7 {
            object.insert(wrong.0.to_string(), wrong.1.clone());
        }
    }
}

/// Whether the router should reject unknown parameters (always: a typo in a
/// filter must not silently return everything).
pub(crate) fn reject_unknown(params: &Params, known: &[&str]) -> Option<Response> {
    params.unknown(known).map(|name| {
        error(
            StatusCode::BAD_REQUEST,
            &format!(
                "unknown query parameter '{name}'; supported: {}",
                known.join(", ")
            ),
        )
    })
}

/// Type alias so each system's router can carry the shared state.
pub(crate) type SystemRouter = Router<Common>;
