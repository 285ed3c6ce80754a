//! The tier 2 criteria that probe the live system with requests of their
//! own, beyond reading it through SQL:
//!
//! - `live.errors`: a request without credentials, and one with a value its
//!   parameter's schema forbids, are answered with statuses the document
//!   lists; a short burst meets the documented 429, which carries
//!   `Retry-After`, and a request after waiting that long is served.
//! - `deposit.round_trip` (only with `--allow-writes`, against a test or
//!   sandbox system): a record built from the documented request schema is
//!   accepted with a documented status and can then be retrieved with the
//!   same values; a record missing a required field is refused with a
//!   documented error; with a documented idempotency key, a replay stores
//!   nothing twice.
//! - `security.transport`: TLS 1.2 or later where the URL is https (plain
//!   http only on a loopback test system); a credential sent in the query
//!   string is refused; no error answer echoes a credential.
//!
//! This module holds [`Probes`] and the plumbing every probe shares (the
//! audit record before each request, the request itself, the document's
//! operations and statuses); each criterion's probe lives in a child
//! module: [`errors`], [`schemas`], [`transport`] and [`deposit`].

use bluelamp_connectors::openapi::Opened;
use bluelamp_connectors::openapi::client::Probed;
use bluelamp_connectors::openapi::spec::Operation;
use bluelamp_engine::audit::ProbeGrant;
use reqwest::Method;
use serde_json::Value;

mod deposit;
mod errors;
mod schemas;
mod transport;

/// The live system as the probes see it: the source's document, client and
/// base URL, and every answer that was an error (checked for echoed
/// credentials at the end).
pub(crate) struct Probes {
    opened: Opened,
    /// Leave from the certifying user's session; every request is recorded
    /// in the audit trail through it before it is sent.
    grant: ProbeGrant,
    /// Why a request was not sent: its audit record could not be written.
    /// The run is then refused rather than reported.
    unrecorded: std::sync::Mutex<Option<String>>,
    errors_seen: Vec<(String, String)>,
    /// (table, column) of the filters `live.filters` found wrong: a deposit
    /// is not read back through them.
    untrusted: Vec<(String, String)>,
}

/// The statuses an operation documents (`"200"`, `"4XX"`, `"default"`).
fn documented(op: &Operation) -> Vec<String> {
    op.operation
        .get("responses")
        .and_then(Value::as_object)
        .map(|r| r.keys().cloned().collect())
        .unwrap_or_default()
}

/// Whether `status` is one of `codes` (exactly, by class, or as `default`).
fn listed(codes: &[String], status: u16) -> bool {
    codes.iter().any(|c| {
        c == &status.to_string()
            || c.eq_ignore_ascii_case(&format!("{}XX", status / 100))
            || c == "default"
    })
}

/// Whether `op` needs credentials: its own `security`, or the document's.
fn secured(root: &Value, op: &Operation) -> bool {
    let requirement = op
        .operation
        .get("security")
        .or_else(|| root.get("security"))
        .and_then(Value::as_array);
    // An empty requirement object (`- {}`) makes credentials optional.
    requirement.is_some_and(|list| {
        !list.is_empty()
            && !list
                .iter()
                .any(|r| r.as_object().is_some_and(serde_json::Map::is_empty))
    })
}

impl Probes {
    pub(crate) fn new(opened: Opened, grant: ProbeGrant, untrusted: Vec<(String, String)>) -> Self {
        Self {
            opened,
            grant,
            unrecorded: std::sync::Mutex::new(None),
            errors_seen: Vec::new(),
            untrusted,
        }
    }

    fn operation(&self, method: &'static str, path: &str) -> Option<Operation> {
        self.opened
            .doc
            .operations(&[method])
            .into_iter()
            .find(|o| o.path == path)
    }

    fn url(&self, path: &str, query: &[(&str, &str)]) -> Result<reqwest::Url, String> {
        let mut base = self.opened.base.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let mut url = base
            .join(path.trim_start_matches('/'))
            .map_err(|e| format!("{path}: {e}"))?;
        for (k, v) in query {
            url.query_pairs_mut().append_pair(k, v);
        }
        Ok(url)
    }

    async fn send(
        &mut self,
        method: Method,
        url: &reqwest::Url,
        body: Option<&Value>,
        headers: &[(&str, String)],
        credentials: bool,
    ) -> Result<Probed, String> {
        let endpoint = format!("{method} {}", url.path());
        let described = format!(
            "{endpoint}{}{}",
            url.query()
                .map(|_| " with a query string")
                .unwrap_or_default(),
            if credentials {
                ""
            } else {
                " without credentials"
            }
        );
        self.recorded(&described, 1, method != Method::GET).await?;
        let answer = self
            .opened
            .client
            .probe(method, url, &endpoint, body, headers, credentials)
            .await?;
        if answer.status >= 400 {
            self.errors_seen.push((
                format!("{endpoint} → {}", answer.status),
                String::from_utf8_lossy(&answer.body).to_string(),
            ));
        }
        Ok(answer)
    }

    /// Records `requests` requests described by `what` in the audit trail,
    /// before they are sent; an error if they must not be.
    async fn recorded(&self, what: &str, requests: u64, write: bool) -> Result<(), String> {
        if let Some(why) = self.unrecorded() {
            return Err(why);
        }
        self.grant
            .record(&format!("certify: {what}"), requests, write)
            .await
            .map_err(|e| {
                if let Ok(mut slot) = self.unrecorded.lock() {
                    *slot = Some(e.message.clone());
                }
                e.message
            })
    }

    /// Why a probe was not sent, if one was not: its audit record could
    /// not be written.
    pub(crate) fn unrecorded(&self) -> Option<String> {
        self.unrecorded.lock().ok().and_then(|slot| slot.clone())
    }
}
