//! Writes: a POST is sent once and retried only where that cannot store it
//! twice, and every outcome is told apart ([`Posted`]): stored, rejected,
//! failed, or unknown when no answer says whether it was stored.

use reqwest::{StatusCode, Url};
use serde_json::Value;
use tracing::Instrument;

use super::pacing::{EXTRA_429_ATTEMPTS, backoff, retry_after};
use super::{ApiClient, Identity, chain, count_request};
use crate::openapi::config::AuthConfig;

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
        let span = self.request_span(endpoint);
        let mut attempts = 0u32;
        let posted = self
            .post_attempts(url, endpoint, body, idempotency, identity, &mut attempts)
            .instrument(span.clone())
            .await;
        let status = match &posted {
            Posted::Stored { status, .. } | Posted::Rejected { status, .. } => Some(*status),
            Posted::Failed { status, .. } | Posted::Unknown { status, .. } => *status,
        };
        bluelamp_engine::ops::trace::record_outcome(&span, status, Some(attempts));
        if matches!(posted, Posted::Stored { .. }) {
            bluelamp_engine::ops::trace::record_records(&span, 1);
        }
        posted
    }

    async fn post_attempts(
        &self,
        url: &Url,
        endpoint: &str,
        body: &Value,
        idempotency: Option<(&str, &str)>,
        identity: Option<&Identity>,
        attempts: &mut u32,
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
            if let Err(reason) = self.wait_for_slot().await {
                return Posted::Failed {
                    status: None,
                    reason,
                };
            }
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
            *attempts += 1;
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
