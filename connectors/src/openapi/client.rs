//! The HTTP side of an OpenAPI source: authentication (including OAuth2 token
//! refresh), a per-source rate limit and concurrency cap, timeouts, and retries
//! with exponential backoff and jitter for GETs on 5xx, 429 (honouring
//! `Retry-After`) and connection errors. Error messages name the endpoint and
//! never a credential.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde_json::Value;
use tokio::sync::{Mutex, Semaphore};

use super::config::{AuthConfig, KeyLocation};

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
    retries: u32,
    secrets: Vec<String>,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient").finish_non_exhaustive()
    }
}

/// The longest wait a `Retry-After` may impose.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// Extra attempts allowed for 429 answers beyond `retries`, since a rate limit
/// is a request to slow down rather than a failure.
const EXTRA_429_ATTEMPTS: u32 = 10;

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
            retries,
            secrets,
        })
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
        let mut out = text.to_string();
        for secret in self.secrets.iter().filter(|s| !s.is_empty()) {
            out = out.replace(secret.as_str(), "***");
        }
        out
    }

    async fn wait_for_slot(&self) {
        let Some(interval) = self.interval else {
            return;
        };
        let wait = {
            let mut next = self.next_slot.lock().await;
            let now = Instant::now();
            let slot = (*next).max(now);
            *next = slot + interval;
            slot - now
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// A bearer token, fetching or refreshing one shortly before it expires.
    async fn oauth_token(&self, force: bool) -> Result<String, FetchError> {
        let AuthConfig::Oauth2 {
            client_id,
            client_secret,
            scopes,
            ..
        } = &self.auth
        else {
            return Err(FetchError {
                status: None,
                message: "not an OAuth2 source".into(),
                unavailable: false,
            });
        };
        let mut cached = self.token.lock().await;
        if !force
            && let Some((token, expires)) = cached.as_ref()
            && Instant::now() < *expires
        {
            return Ok(token.clone());
        }
        let Some(url) = &self.token_url else {
            return Err(FetchError {
        status: None,
                message: "OAuth2 needs a token URL: set auth.token_url or document a clientCredentials flow".into(),
                unavailable: false,
            });
        };
        let mut form = vec![
            ("grant_type", "client_credentials".to_string()),
            ("client_id", client_id.clone()),
            ("client_secret", client_secret.expose().to_string()),
        ];
        if !scopes.is_empty() {
            form.push(("scope", scopes.join(" ")));
        }
        let endpoint = format!("POST {}", url.path());
        count_request();
        let response = self
            .http
            .post(url.clone())
            .form(&form)
            .send()
            .await
            .map_err(|e| FetchError {
                status: None,
                message: self.redact(&format!(
                    "{endpoint}: cannot get an OAuth2 token: {}",
                    chain(&e)
                )),
                unavailable: true,
            })?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let reason = body
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("no reason given");
            return Err(FetchError {
                status: None,
                message: format!(
                    "{endpoint}: the token endpoint refused the client credentials (HTTP {}: {reason})",
                    status.as_u16()
                ),
                unavailable: false,
            });
        }
        let Some(token) = body.get("access_token").and_then(Value::as_str) else {
            return Err(FetchError {
                status: None,
                message: format!("{endpoint}: the token response has no access_token"),
                unavailable: false,
            });
        };
        let lifetime = Duration::from_secs(
            body.get("expires_in")
                .and_then(Value::as_u64)
                .unwrap_or(3600),
        );
        // Refresh a little early, so a token never expires in flight.
        let margin = (lifetime / 10).min(Duration::from_secs(30));
        *cached = Some((
            token.to_string(),
            Instant::now() + lifetime.saturating_sub(margin),
        ));
        Ok(token.to_string())
    }

    async fn authorise(
        &self,
        request: reqwest::RequestBuilder,
        refresh: bool,
    ) -> Result<reqwest::RequestBuilder, FetchError> {
        Ok(match &self.auth {
            AuthConfig::None => request,
            AuthConfig::ApiKey {
                name,
                value,
                location: KeyLocation::Header,
            } => request.header(name.as_str(), value.expose()),
            AuthConfig::ApiKey {
                name,
                value,
                location: KeyLocation::Query,
            } => request.query(&[(name.as_str(), value.expose())]),
            AuthConfig::Bearer { token } => request.bearer_auth(token.expose()),
            AuthConfig::Basic { username, password } => {
                request.basic_auth(username, Some(password.expose()))
            }
            AuthConfig::Oauth2 { .. } => request.bearer_auth(self.oauth_token(refresh).await?),
        })
    }

    /// GETs `url`, retrying as configured. `endpoint` (e.g. `GET /incidents`)
    /// names the request in errors.
    ///
    /// # Errors
    /// [`FetchError`] once retries are exhausted or for an answer that retrying cannot fix.
    pub async fn get(
        &self,
        url: &Url,
        endpoint: &str,
        identity: Option<&Identity>,
    ) -> Result<Fetched, FetchError> {
        self.fetch(url, endpoint, identity, false).await
    }

    /// GETs a JSON answer: like [`ApiClient::get`], but a successful answer
    /// whose body is not valid JSON (cut off or garbled on the way) is asked
    /// for again, with backoff, within the same retry budget, and the parsed
    /// body is in [`Fetched::json`].
    ///
    /// # Errors
    /// As [`ApiClient::get`]; a body still not JSON after the retries is an
    /// unavailable source.
    pub async fn get_json(
        &self,
        url: &Url,
        endpoint: &str,
        identity: Option<&Identity>,
    ) -> Result<Fetched, FetchError> {
        self.fetch(url, endpoint, identity, true).await
    }

    async fn fetch(
        &self,
        url: &Url,
        endpoint: &str,
        identity: Option<&Identity>,
        json: bool,
    ) -> Result<Fetched, FetchError> {
        let mut attempts = 0u32;
        let mut failures = 0u32;
        let mut throttled = 0u32;
        let mut refreshed = false;
        loop {
            attempts += 1;
            let _permit = self.permits.acquire().await.map_err(|_| FetchError {
                status: None,
                message: "client closed".into(),
                unavailable: true,
            })?;
            self.wait_for_slot().await;
            let mut request = self
                .with_extra_headers(self.http.get(url.clone()))
                .map_err(|message| FetchError {
                    status: None,
                    message,
                    unavailable: false,
                })?;
            if let Some((header, value)) = identity {
                request = request.header(header, value);
            }
            let request = self.authorise(request, false).await?;
            count_request();
            let outcome = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    let headers = response.headers().clone();
                    match response.bytes().await {
                        Ok(body) => Ok((status, headers, body)),
                        Err(e) => Err(format!("the response body was cut off: {}", chain(&e))),
                    }
                }
                Err(e) if e.is_timeout() => {
                    Err("timed out (timeout in the source config)".to_string())
                }
                Err(e) => Err(format!("request failed: {}", chain(&e))),
            };
            drop(_permit);
            let retry_in = |n: u32| backoff(n);
            match outcome {
                Ok((status, headers, body)) if status.is_success() => {
                    if !json {
                        return Ok(Fetched {
                            headers,
                            body,
                            json: Value::Null,
                            attempts,
                        });
                    }
                    match serde_json::from_slice::<Value>(&body) {
                        Ok(parsed) => {
                            return Ok(Fetched {
                                headers,
                                body,
                                json: parsed,
                                attempts,
                            });
                        }
                        Err(e) if failures < self.retries => {
                            failures += 1;
                            tracing::debug!(
                                "{endpoint}: the answer is not valid JSON ({e}); asking again"
                            );
                            tokio::time::sleep(retry_in(failures)).await;
                        }
                        Err(e) => {
                            return Err(FetchError {
                                message: self.redact(&format!(
                                    "{endpoint}: the answer is not valid JSON ({e}){}; the query was stopped rather than return partial results",
                                    after(attempts)
                                )),
                                unavailable: true,
                                status: Some(status.as_u16()),
                            });
                        }
                    }
                }
                Ok((StatusCode::TOO_MANY_REQUESTS, headers, _))
                    if throttled < self.retries + EXTRA_429_ATTEMPTS =>
                {
                    throttled += 1;
                    let wait = retry_after(&headers).unwrap_or_else(|| retry_in(throttled));
                    tracing::debug!("{endpoint}: 429, waiting {wait:?}");
                    tokio::time::sleep(wait).await;
                }
                Ok((StatusCode::UNAUTHORIZED, _, _))
                    if matches!(self.auth, AuthConfig::Oauth2 { .. }) && !refreshed =>
                {
                    refreshed = true;
                    self.oauth_token(true).await?;
                }
                Ok((status, _, _)) if status.is_server_error() && failures < self.retries => {
                    failures += 1;
                    tokio::time::sleep(retry_in(failures)).await;
                }
                Ok((status, _, body)) => {
                    let reason = serde_json::from_slice::<Value>(&body)
                        .ok()
                        .and_then(|v| {
                            v.get("error")
                                .or_else(|| v.get("message"))
                                .map(|m| m.as_str().map_or_else(|| m.to_string(), str::to_string))
                        })
                        .unwrap_or_else(|| {
                            String::from_utf8_lossy(&body).chars().take(200).collect()
                        });
                    let hint = match status.as_u16() {
                        401 | 403 => " (check the source's auth settings)",
                        404 => " (check base_url)",
                        _ => "",
                    };
                    return Err(FetchError {
                        message: self.redact(&format!(
                            "{endpoint}: HTTP {}: {reason}{hint}{}",
                            status.as_u16(),
                            after(attempts)
                        )),
                        unavailable: status.is_server_error()
                            || status == StatusCode::TOO_MANY_REQUESTS,
                        status: Some(status.as_u16()),
                    });
                }
                Err(cause) if failures < self.retries => {
                    failures += 1;
                    tracing::debug!("{endpoint}: {cause}; retrying");
                    tokio::time::sleep(retry_in(failures)).await;
                }
                Err(cause) => {
                    return Err(FetchError {
                        status: None,
                        message: self.redact(&format!("{endpoint}: {cause}{}", after(attempts))),
                        unavailable: true,
                    });
                }
            }
        }
    }
}

/// One raw exchange, for probing how a system behaves
/// ([`ApiClient::probe`]).
#[derive(Debug, Clone)]
pub struct Probed {
    /// The status answered.
    pub status: u16,
    /// The answer's headers.
    pub headers: HeaderMap,
    /// The answer's body.
    pub body: Bytes,
}

impl ApiClient {
    /// Sends one request exactly as given: no retry, no token refresh, no
    /// reading of the answer. With `credentials`, the source's
    /// authentication is added; without, none is (to see what the system
    /// does with a request that has none). The source's rate limit and
    /// concurrency cap still apply.
    ///
    /// # Errors
    /// A request that got no answer at all; the message names `endpoint`.
    pub async fn probe(
        &self,
        method: reqwest::Method,
        url: &Url,
        endpoint: &str,
        body: Option<&Value>,
        headers: &[(&str, String)],
        credentials: bool,
    ) -> Result<Probed, String> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| "client closed".to_string())?;
        self.wait_for_slot().await;
        let mut request = self.with_extra_headers(self.http.request(method, url.clone()))?;
        if let Some(body) = body {
            request = request.json(body);
        }
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        self.send_once(request, endpoint, credentials).await
    }

    /// Sends `request` once (with the source's credentials if asked) and
    /// reads the whole answer, whatever its status.
    async fn send_once(
        &self,
        mut request: reqwest::RequestBuilder,
        endpoint: &str,
        credentials: bool,
    ) -> Result<Probed, String> {
        if credentials {
            request = self
                .authorise(request, false)
                .await
                .map_err(|e| e.message)?;
        }
        count_request();
        let response = request
            .send()
            .await
            .map_err(|e| self.redact(&format!("{endpoint}: {}", chain(&e))))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(|e| {
            self.redact(&format!(
                "{endpoint}: the answer was cut off: {}",
                chain(&e)
            ))
        })?;
        Ok(Probed {
            status,
            headers,
            body,
        })
    }

    /// Sends `count` GETs of `url` at once, with credentials, outside the
    /// source's rate limit and concurrency cap: the short burst that checks
    /// a system answers its documented 429. Each answer, or why there was
    /// none.
    pub async fn burst(
        &self,
        url: &Url,
        endpoint: &str,
        count: usize,
    ) -> Vec<Result<Probed, String>> {
        let requests = (0..count).map(|_| async move {
            let request = self.with_extra_headers(self.http.get(url.clone()))?;
            self.send_once(request, endpoint, true).await
        });
        futures::future::join_all(requests).await
    }

    /// The credential values this client sends, to check that a system
    /// never echoes them.
    pub fn secrets(&self) -> &[String] {
        &self.secrets
    }

    /// A current OAuth2 access token, for a source that uses OAuth2.
    ///
    /// # Errors
    /// Not an OAuth2 source, or the token endpoint refuses.
    pub async fn access_token(&self) -> Result<String, String> {
        self.oauth_token(false).await.map_err(|e| e.message)
    }
}

/// What became of one write.
#[derive(Debug, Clone, PartialEq)]
pub enum Posted {
    /// The supplier stored it (2xx); `replayed` if it answered from an earlier
    /// attempt with the same idempotency key.
    Stored {
        /// HTTP status.
        status: u16,
        /// The response body.
        body: Value,
        /// Whether the answer was a replay.
        replayed: bool,
    },
    /// The supplier refused it (4xx other than 429): the row is wrong.
    Rejected {
        /// HTTP status.
        status: u16,
        /// The supplier's reason.
        reason: String,
    },
    /// It was not stored (the supplier said so, or it was never sent).
    Failed {
        /// HTTP status, if any.
        status: Option<u16>,
        /// Why.
        reason: String,
    },
    /// It was sent but no answer says whether it was stored.
    Unknown {
        /// HTTP status, if any.
        status: Option<u16>,
        /// Why.
        reason: String,
    },
}

impl ApiClient {
    /// POSTs a JSON body once, retrying only when that cannot store it twice:
    /// a 429 or a refused connection always (the supplier did not act), a 5xx
    /// or a broken exchange only with an idempotency key (`idempotency` is the
    /// header and its value).
    pub async fn post(
        &self,
        url: &Url,
        endpoint: &str,
        body: &Value,
        idempotency: Option<(&str, &str)>,
        identity: Option<&Identity>,
    ) -> Posted {
        let mut failures = 0u32;
        let mut throttled = 0u32;
        let mut refreshed = false;
        loop {
            let Ok(_permit) = self.permits.acquire().await else {
                return Posted::Failed {
                    status: None,
                    reason: "client closed".into(),
                };
            };
            self.wait_for_slot().await;
            let mut request = match self.with_extra_headers(self.http.post(url.clone()).json(body))
            {
                Ok(request) => request,
                Err(reason) => {
                    return Posted::Failed {
                        status: None,
                        reason,
                    };
                }
            };
            if let Some((header, key)) = idempotency {
                request = request.header(header, key);
            }
            if let Some((header, value)) = identity {
                request = request.header(header, value);
            }
            let request = match self.authorise(request, false).await {
                Ok(r) => r,
                Err(e) => {
                    return Posted::Failed {
                        status: None,
                        reason: e.message,
                    };
                }
            };
            count_request();
            let outcome = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    let replayed = response
                        .headers()
                        .get("idempotent-replayed")
                        .or_else(|| response.headers().get("idempotency-replayed"))
                        .and_then(|v| v.to_str().ok())
                        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
                    let headers = response.headers().clone();
                    match response.bytes().await {
                        Ok(bytes) => Ok((status, headers, bytes, replayed)),
                        Err(e) => Err((false, format!("the answer was cut off: {}", chain(&e)))),
                    }
                }
                // Not connected: nothing reached the supplier.
                Err(e) if e.is_connect() => Err((true, format!("cannot connect: {}", chain(&e)))),
                Err(e) if e.is_timeout() => {
                    Err((false, "timed out waiting for the answer".to_string()))
                }
                Err(e) => Err((false, format!("the exchange broke: {}", chain(&e)))),
            };
            drop(_permit);
            let idempotent = idempotency.is_some();
            match outcome {
                Ok((status, _, bytes, replayed)) if status.is_success() => {
                    return Posted::Stored {
                        status: status.as_u16(),
                        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                        replayed,
                    };
                }
                Ok((StatusCode::TOO_MANY_REQUESTS, headers, _, _))
                    if throttled < self.retries + EXTRA_429_ATTEMPTS =>
                {
                    throttled += 1;
                    let wait = retry_after(&headers).unwrap_or_else(|| backoff(throttled));
                    tokio::time::sleep(wait).await;
                }
                Ok((StatusCode::UNAUTHORIZED, _, _, _))
                    if matches!(self.auth, AuthConfig::Oauth2 { .. }) && !refreshed =>
                {
                    refreshed = true;
                    if let Err(e) = self.oauth_token(true).await {
                        return Posted::Failed {
                            status: Some(401),
                            reason: e.message,
                        };
                    }
                }
                Ok((status, _, _, _))
                    if status.is_server_error() && idempotent && failures < self.retries =>
                {
                    failures += 1;
                    tokio::time::sleep(backoff(failures)).await;
                }
                Ok((status, _, bytes, _)) => {
                    let reason = self.redact(&format!(
                        "{endpoint}: HTTP {}: {}",
                        status.as_u16(),
                        reason_of(&bytes)
                    ));
                    let code = Some(status.as_u16());
                    return if status.is_server_error() && !idempotent {
                        Posted::Unknown {
                            status: code,
                            reason: format!(
                                "{reason} (the interface has no idempotency key, so it was not retried and may or may not have been stored)"
                            ),
                        }
                    } else if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
                        Posted::Failed {
                            status: code,
                            reason,
                        }
                    } else {
                        Posted::Rejected {
                            status: status.as_u16(),
                            reason,
                        }
                    };
                }
                Err((never_sent, cause))
                    if (never_sent || idempotent) && failures < self.retries =>
                {
                    failures += 1;
                    tracing::debug!("{endpoint}: {cause}; retrying");
                    tokio::time::sleep(backoff(failures)).await;
                }
                Err((true, cause)) => {
                    return Posted::Failed {
                        status: None,
                        reason: self.redact(&format!("{endpoint}: {cause}")),
                    };
                }
                Err((false, cause)) if idempotent => {
                    return Posted::Failed {
                        status: None,
                        reason: self.redact(&format!("{endpoint}: {cause}; retries exhausted (safe to send again: the idempotency key prevents a duplicate)")),
                    };
                }
                Err((false, cause)) => {
                    return Posted::Unknown {
                        status: None,
                        reason: self.redact(&format!("{endpoint}: {cause} (the interface has no idempotency key, so it was not retried and may or may not have been stored)")),
                    };
                }
            }
        }
    }
}

/// The supplier's reason from an error body: `error`/`message`, plus any
/// field-level reasons, else the start of the text.
fn reason_of(bytes: &[u8]) -> String {
    let Ok(value) = serde_json::from_slice::<Value>(bytes) else {
        return String::from_utf8_lossy(bytes).chars().take(200).collect();
    };
    let mut reason = value
        .get("error")
        .or_else(|| value.get("message"))
        .map(|m| m.as_str().map_or_else(|| m.to_string(), str::to_string))
        .unwrap_or_else(|| value.to_string().chars().take(200).collect());
    if let Some(fields) = value.get("fields").and_then(Value::as_array) {
        let details: Vec<String> = fields
            .iter()
            .map(|f| {
                format!(
                    "{} {}",
                    f.get("field").and_then(Value::as_str).unwrap_or("?"),
                    f.get("reason").and_then(Value::as_str).unwrap_or("")
                )
            })
            .collect();
        if !details.is_empty() {
            reason = format!("{reason}: {}", details.join("; "));
        }
    }
    reason
}

fn after(attempts: u32) -> String {
    if attempts > 1 {
        format!(" (after {attempts} attempts)")
    } else {
        String::new()
    }
}

/// Exponential backoff from 100 ms, capped at 5 s, with up to 50% jitter.
fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(100)
        .saturating_mul(1 << attempt.min(6))
        .min(Duration::from_secs(5));
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let jitter = base.mul_f64(f64::from(nanos % 1000) / 2000.0);
    base + jitter
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    let seconds: u64 = value.trim().parse().ok()?;
    Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER))
}

fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    bluelamp_engine::source::error_chain(error)
}

/// Shared handle.
pub type Client = Arc<ApiClient>;
