//! `live.errors`: a request without credentials, and one with a value its
//! parameter's schema forbids, are answered with statuses the document
//! lists; a short burst meets the documented 429, which carries
//! `Retry-After`, and a request after waiting that long is served.

use bluelamp_connectors::openapi::discovery::TableSpec;
use bluelamp_connectors::openapi::spec::{Document, Operation};
use reqwest::Method;
use reqwest::header::RETRY_AFTER;
use serde_json::Value;

use super::{Probes, documented, listed, secured};
use crate::report::{Criterion, Outcome};

/// Most requests the burst that looks for the documented 429 sends.
const MOST_BURST: usize = 400;
/// Requests sent at once in that burst (outside the source's own pacing).
const BURST_WIDTH: usize = 100;
/// Longest `Retry-After` the check waits out.
const LONGEST_WAIT: u64 = 60;
/// Lists whose error answers are probed.
const MOST_PROBED: usize = 5;

impl Probes {
    /// `live.errors` over the lists in `tables`.
    pub(crate) async fn errors(&mut self, tables: &[&TableSpec]) -> Criterion {
        let mut ok = Vec::new();
        let mut bad = Vec::new();
        for table in tables.iter().take(MOST_PROBED) {
            let Some(op) = self.operation("get", &table.path) else {
                continue;
            };
            let codes = documented(&op);
            let name = op.name();
            // Without credentials.
            if secured(&self.opened.doc.root, &op) {
                match self.url(&table.path, &[]) {
                    Ok(url) => match self.send(Method::GET, &url, None, &[], false).await {
                        Ok(a) if a.status < 300 => bad.push(format!(
                            "{name} without credentials answered {}: the document requires them",
                            a.status
                        )),
                        Ok(a) if listed(&codes, a.status) && (a.status == 401 || a.status == 403) => {
                            ok.push(format!("{name} without credentials: {}, as documented", a.status));
                        }
                        Ok(a) => bad.push(format!(
                            "{name} without credentials answered {}, which the document does not list for it (it lists {})",
                            a.status,
                            codes.join(", ")
                        )),
                        Err(e) => bad.push(e),
                    },
                    Err(e) => bad.push(e),
                }
            }
            // A value the parameter's schema forbids.
            let Some((param, value)) = forbidden_value(&self.opened.doc, &op) else {
                continue;
            };
            if !codes.iter().any(|c| c.starts_with('4') || c == "default") {
                continue;
            }
            let url = match self.url(&table.path, &[(param.as_str(), value)]) {
                Ok(url) => url,
                Err(e) => {
                    bad.push(e);
                    continue;
                }
            };
            match self.send(Method::GET, &url, None, &[], true).await {
                Ok(a) if (400..500).contains(&a.status) && listed(&codes, a.status) => ok.push(
                    format!("{name}?{param}={value}: {}, as documented", a.status),
                ),
                Ok(a) if a.status == 429 => ok.push(format!(
                    "{name}?{param}={value}: rate limited (429), not checked"
                )),
                Ok(a) if a.status < 300 => bad.push(format!(
                    "{name}?{param}={value} was accepted ({}), though its schema forbids the value and the document lists {} for bad requests",
                    a.status,
                    codes.iter().filter(|c| c.starts_with('4')).cloned().collect::<Vec<_>>().join(", ")
                )),
                Ok(a) => bad.push(format!(
                    "{name}?{param}={value} answered {}, which the document does not list for it (it lists {})",
                    a.status,
                    codes.join(", ")
                )),
                Err(e) => bad.push(e),
            }
        }
        match self.rate_limit(tables).await {
            Ok(Some(line)) => ok.push(line),
            Ok(None) => {}
            Err(line) => bad.push(line),
        }
        let (outcome, evidence) = if !bad.is_empty() {
            (Outcome::Fail, bad)
        } else if ok.is_empty() {
            (
                Outcome::NotApplicable,
                vec!["the lists document no error answer that can be provoked".into()],
            )
        } else {
            (Outcome::Pass, ok)
        };
        Criterion::new(
            "live.errors",
            "Documented error answers, and 429 with Retry-After, behave as documented",
            outcome,
            evidence,
        )
    }

    /// The documented 429: a short burst on the first list that documents
    /// it, then a request after waiting `Retry-After`.
    async fn rate_limit(&mut self, tables: &[&TableSpec]) -> Result<Option<String>, String> {
        let target = tables.iter().find_map(|t| {
            let op = self.operation("get", &t.path)?;
            documented(&op)
                .iter()
                .any(|c| c == "429")
                .then(|| (t.path.clone(), op))
        });
        let Some((path, op)) = target else {
            return Ok(Some(
                "no list documents 429, so no burst was sent to look for it".into(),
            ));
        };
        let name = op.name();
        let promises_retry_after = self.documents_retry_after(&op);
        // The smallest page, so the burst asks for little.
        let small: Vec<(&str, &str)> = op
            .operation
            .get("parameters")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| self.opened.doc.resolve(p).ok())
            .filter_map(|(p, _)| p.get("name").and_then(Value::as_str))
            .filter(|n| ["limit", "page_size", "per_page", "pageSize", "size"].contains(n))
            .map(|n| (n, "1"))
            .take(1)
            .collect();
        let url = self.url(&path, &small)?;
        let mut sent = 0usize;
        while sent < MOST_BURST {
            self.recorded(
                &format!("{name}: a burst looking for 429"),
                BURST_WIDTH as u64,
                false,
            )
            .await?;
            let answers = self.opened.client.burst(&url, &name, BURST_WIDTH).await;
            sent += BURST_WIDTH;
            let Some(limited) = answers
                .into_iter()
                .filter_map(Result::ok)
                .find(|a| a.status == 429)
            else {
                continue;
            };
            let retry_after = limited
                .headers
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let Some(value) = retry_after else {
                return if promises_retry_after {
                    Err(format!(
                        "{name}: 429 after {sent} requests in a burst, without the Retry-After header its document promises"
                    ))
                } else {
                    Ok(Some(format!(
                        "{name}: 429 after {sent} requests in a burst (the document does not promise Retry-After, and none came)"
                    )))
                };
            };
            let Ok(seconds) = value.trim().parse::<u64>() else {
                return Err(format!(
                    "{name}: 429 with Retry-After '{value}', which is not a number of seconds"
                ));
            };
            tokio::time::sleep(std::time::Duration::from_secs(seconds.min(LONGEST_WAIT))).await;
            let after = self.send(Method::GET, &url, None, &[], true).await?;
            return if after.status < 300 {
                Ok(Some(format!(
                    "{name}: 429 with Retry-After: {value} after {sent} requests in a burst; after waiting {value} s the next request was served ({})",
                    after.status
                )))
            } else {
                Err(format!(
                    "{name}: after waiting the {value} s Retry-After asked for, the next request answered {}",
                    after.status
                ))
            };
        }
        Ok(Some(format!(
            "{name}: no 429 in a burst of {MOST_BURST} requests; the documented rate limit was not reached, so Retry-After was not checked"
        )))
    }

    /// Whether the operation's documented 429 names a `Retry-After` header.
    fn documents_retry_after(&self, op: &Operation) -> bool {
        op.operation
            .pointer("/responses/429")
            .and_then(|r| self.opened.doc.resolve(r).ok())
            .and_then(|(r, _)| r.get("headers").and_then(Value::as_object).cloned())
            .is_some_and(|h| h.keys().any(|k| k.eq_ignore_ascii_case("retry-after")))
    }
}

/// A query parameter with a value its schema forbids: an integer given
/// letters, or a number below its minimum.
fn forbidden_value(doc: &Document, op: &Operation) -> Option<(String, &'static str)> {
    let params = op.operation.get("parameters")?.as_array()?;
    params.iter().find_map(|p| {
        let (p, _) = doc.resolve(p).ok()?;
        if p.get("in").and_then(Value::as_str) != Some("query") {
            return None;
        }
        let schema = p.get("schema")?;
        let kind = schema.get("type").and_then(Value::as_str)?;
        let name = p.get("name")?.as_str()?.to_string();
        (kind == "integer" || kind == "number").then_some((name, "not-a-number"))
    })
}
