//! The HTTP side of an OpenAPI source: authentication (including OAuth2 token
//! refresh), a per-source rate limit and concurrency cap, timeouts, and retries
//! with exponential backoff and jitter for GETs on 5xx, 429 (honouring
//! `Retry-After`) and connection errors. Error messages name the endpoint and
//! never a credential.
//!
//! The client and its plumbing are here; the rest is split by concern:
//! `auth` (credentials on each request, OAuth2 tokens), `pacing` (the rate
//! limit's slots and the retry policy: backoff and `Retry-After`), `get`
//! (GETs with retries), `post` (writes, retried only where that cannot store
//! a row twice) and `probe` (single raw exchanges, for certification).

mod auth;
mod get;
mod pacing;
mod post;
mod probe;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::Url;
use reqwest::header::HeaderMap;
use serde_json::Value;
use tokio::sync::{Mutex, Semaphore};

use super::config::AuthConfig;

pub use post::Posted;
pub use probe::Probed;

/// HTTP requests every OpenAPI client of this process has sent.
static REQUESTS_SENT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn count_request() {
    REQUESTS_SENT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// How many HTTP requests (retries, token requests and probes included)
/// the OpenAPI clients of this process have sent so far: the difference
/// across a piece of work is what it cost, for evidence such as
/// `bluelamp certify`'s.
pub fn requests_sent() -> u64 {
    REQUESTS_SENT.load(std::sync::atomic::Ordering::Relaxed)
}

/// One fetched page.
#[derive(Debug)]
pub struct Fetched {
    /// Response headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
    /// The body parsed, for [`ApiClient::get_json`] (`Null` otherwise).
    pub json: Value,
    /// Requests it took, retries included.
    pub attempts: u32,
    /// The (successful) HTTP status of the last.
    pub status: u16,
    /// The request's span, for what is learnt of the answer later (its
    /// records, see [`bluelamp_engine::ops::trace::record_records`]).
    pub span: tracing::Span,
}

/// Why a request failed for good.
#[derive(Debug, Clone)]
pub struct FetchError {
    /// A sentence naming the endpoint and the cause.
    pub message: String,
    /// The service could not be reached at all (rather than refusing the request).
    pub unavailable: bool,
    /// The HTTP status the service answered with, if it answered.
    pub status: Option<u16>,
}

/// A header naming the end user a request is made for.
pub type Identity = (reqwest::header::HeaderName, reqwest::header::HeaderValue);

/// A configured HTTP client for one source.
pub struct ApiClient {
    http: reqwest::Client,
    /// The header naming the end user on data requests, if configured.
    on_behalf_of: Option<super::config::OnBehalfOf>,
    /// Headers every request carries (`headers` in the source's config).
    extra_headers: Vec<super::config::ExtraHeader>,
    auth: AuthConfig,
    token_url: Option<Url>,
    token: Mutex<Option<(String, Instant)>>,
    permits: Semaphore,
    interval: Option<Duration>,
    next_slot: Mutex<Instant>,
    /// The source's name and the rate budget it shares with a cluster's
    /// other executors, used instead of `next_slot` where set.
    shared_pacer: Option<(String, Arc<dyn bluelamp_engine::SharedPacer>)>,
    retries: u32,
    secrets: Vec<String>,
    /// The source's request counters and latencies (the engine's metrics).
    metrics: bluelamp_engine::ops::SourceMetrics,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient").finish_non_exhaustive()
    }
}

impl ApiClient {
    /// A client with these limits.
    ///
    /// # Errors
    /// The TLS stack cannot be initialised.
    pub fn new(
        auth: AuthConfig,
        token_url: Option<Url>,
        timeout: Duration,
        concurrency: usize,
        rate_limit: Option<f64>,
        retries: u32,
    ) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("bluelamp/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let secrets = match &auth {
            AuthConfig::None => vec![],
            AuthConfig::ApiKey { value, .. } => vec![value.expose().to_string()],
            AuthConfig::Bearer { token } => vec![token.expose().to_string()],
            AuthConfig::Basic { password, .. } => vec![password.expose().to_string()],
            AuthConfig::Oauth2 { client_secret, .. } => vec![client_secret.expose().to_string()],
        };
        Ok(Self {
            http,
            on_behalf_of: None,
            extra_headers: Vec::new(),
            auth,
            token_url,
            token: Mutex::new(None),
            permits: Semaphore::new(concurrency.max(1)),
            interval: rate_limit
                .filter(|r| *r > 0.0)
                .map(|r| Duration::from_secs_f64(1.0 / r)),
            next_slot: Mutex::new(Instant::now()),
            shared_pacer: None,
            retries,
            secrets,
            metrics: bluelamp_engine::ops::SourceMetrics::detached("unnamed"),
        })
    }

    /// Counts requests, errors and latencies into `metrics`.
    pub fn with_metrics(mut self, metrics: bluelamp_engine::ops::SourceMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// The source's metrics, for what its scans receive.
    pub fn metrics(&self) -> &bluelamp_engine::ops::SourceMetrics {
        &self.metrics
    }

    /// A span for one request to `endpoint` (`GET /incidents/{id}`), under
    /// the current one.
    fn request_span(&self, endpoint: &str) -> tracing::Span {
        let (method, path) = endpoint.split_once(' ').unwrap_or(("GET", endpoint));
        bluelamp_engine::ops::trace::request_span(self.metrics.name(), method, path)
    }

    /// Takes rate-limit slots from `pacer`, shared with other processes, as
    /// `source` (see [`bluelamp_engine::SharedPacer`]).
    pub fn with_shared_pacer(
        mut self,
        source: &str,
        pacer: Option<&Arc<dyn bluelamp_engine::SharedPacer>>,
    ) -> Self {
        self.shared_pacer = pacer.map(|pacer| (source.to_string(), Arc::clone(pacer)));
        self
    }

    /// Sends these headers with every request.
    pub fn with_headers(mut self, headers: Vec<super::config::ExtraHeader>) -> Self {
        self.extra_headers = headers;
        self
    }

    /// `request` with the configured headers.
    fn with_extra_headers(
        &self,
        mut request: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, String> {
        for extra in &self.extra_headers {
            request = request.header(extra.header.clone(), extra.value()?);
        }
        Ok(request)
    }

    /// Names the end user on every data request with this header.
    pub fn with_on_behalf_of(mut self, header: Option<super::config::OnBehalfOf>) -> Self {
        self.on_behalf_of = header;
        self
    }

    /// The header that names `principal` to the supplier, where the source
    /// is configured to send one.
    ///
    /// # Errors
    /// A message where it is configured but no principal is known, or the
    /// principal cannot be named in a header.
    pub fn identity(
        &self,
        principal: Option<&bluelamp_engine::Principal>,
    ) -> Result<Option<Identity>, String> {
        let Some(on_behalf_of) = &self.on_behalf_of else {
            return Ok(None);
        };
        let Some(principal) = principal else {
            return Err(
                "the source sends each request on behalf of its end user, but this request has none"
                    .into(),
            );
        };
        on_behalf_of.for_principal(principal).map(Some)
    }

    /// The underlying HTTP client (for fetching the document itself).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Removes credentials from a message.
    pub fn redact(&self, text: &str) -> String {
        bluelamp_engine::config::redact(text, &self.secrets)
    }

    /// The credential values this client sends, to check that a system
    /// never echoes them.
    pub fn secrets(&self) -> &[String] {
        &self.secrets
    }
}

fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    bluelamp_engine::source::error_chain(error)
}

/// Shared handle.
pub type Client = Arc<ApiClient>;
