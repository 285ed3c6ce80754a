//! Reads: GETs retried with backoff on 5xx, 429 (honouring `Retry-After`),
//! connection errors and, for JSON, a garbled body; a refused OAuth2 token is
//! refreshed once. Errors name the endpoint and never a credential.

use reqwest::{StatusCode, Url};
use serde_json::Value;

use bluelamp_engine::ops::trace;
use tracing::Instrument;

use super::pacing::{EXTRA_429_ATTEMPTS, backoff, retry_after};
use super::{ApiClient, FetchError, Fetched, Identity, chain, count_request};
use crate::openapi::config::AuthConfig;
use bluelamp_engine::ops::RequestError;

impl ApiClient {
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

    /// One request, traced as a span under the current one (its scan's)
    /// that covers its retries.
    async fn fetch(
        &self,
        url: &Url,
        endpoint: &str,
        identity: Option<&Identity>,
        json: bool,
    ) -> Result<Fetched, FetchError> {
        let span = self.request_span(endpoint);
        let fetched = self
            .attempts(url, endpoint, identity, json, &span)
            .instrument(span.clone())
            .await;
        match &fetched {
            Ok(fetched) => {
                trace::record_outcome(&span, Some(fetched.status), Some(fetched.attempts))
            }
            Err(e) => trace::record_outcome(&span, e.status, None),
        }
        fetched
    }

    async fn attempts(
        &self,
        url: &Url,
        endpoint: &str,
        identity: Option<&Identity>,
        json: bool,
        span: &tracing::Span,
    ) -> Result<Fetched, FetchError> {
        let mut attempts = 0u32;
        let mut failures = 0u32;
        let mut throttled = 0u32;
        let mut refreshed = false;
        loop {
            attempts += 1;
            if attempts > 1 {
                self.metrics.retry();
            }
            let _permit = self.permits.acquire().await.map_err(|_| FetchError {
                status: None,
                message: "client closed".into(),
                unavailable: true,
            })?;
            self.wait_for_slot().await.map_err(|message| FetchError {
                status: None,
                message,
                unavailable: true,
            })?;
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
            let sent = std::time::Instant::now();
            let outcome = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    let headers = response.headers().clone();
                    match response.bytes().await {
                        Ok(body) => Ok((status, headers, body)),
                        Err(e) => {
                            self.metrics.error(RequestError::Connect);
                            Err(format!("the response body was cut off: {}", chain(&e)))
                        }
                    }
                }
                Err(e) if e.is_timeout() => {
                    self.metrics.error(RequestError::Timeout);
                    Err("timed out (timeout in the source config)".to_string())
                }
                Err(e) => {
                    self.metrics.error(RequestError::Connect);
                    Err(format!("request failed: {}", chain(&e)))
                }
            };
            self.metrics.request(
                sent.elapsed(),
                outcome.as_ref().ok().map(|(status, _, _)| status.as_u16()),
            );
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
                            status: status.as_u16(),
                            span: span.clone(),
                        });
                    }
                    match serde_json::from_slice::<Value>(&body) {
                        Ok(parsed) => {
                            return Ok(Fetched {
                                headers,
                                body,
                                json: parsed,
                                attempts,
                                status: status.as_u16(),
                                span: span.clone(),
                            });
                        }
                        Err(e) if failures < self.retries => {
                            self.metrics.error(RequestError::Decode);
                            failures += 1;
                            tracing::debug!(
                                "{endpoint}: the answer is not valid JSON ({e}); asking again"
                            );
                            tokio::time::sleep(retry_in(failures)).await;
                        }
                        Err(e) => {
                            self.metrics.error(RequestError::Decode);
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

fn after(attempts: u32) -> String {
    if attempts > 1 {
        format!(" (after {attempts} attempts)")
    } else {
        String::new()
    }
}
