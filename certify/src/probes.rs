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

use bluelamp_connectors::openapi::Opened;
use bluelamp_connectors::openapi::client::Probed;
use bluelamp_connectors::openapi::discovery::{FilterOp, RecordsAt, TableSpec};
use bluelamp_connectors::openapi::spec::{Document, Operation};
use bluelamp_connectors::openapi::write::{
    BodyField, Rule, WriteSpec, check_fields, compile_fields,
};
use bluelamp_engine::Session;
use bluelamp_engine::audit::ProbeGrant;
use reqwest::Method;
use reqwest::header::RETRY_AFTER;
use serde_json::{Map, Value, json};

use crate::live::{quoted, rows};
use crate::report::{Criterion, Outcome};

/// Most requests the burst that looks for the documented 429 sends.
const MOST_BURST: usize = 400;
/// Requests sent at once in that burst (outside the source's own pacing).
const BURST_WIDTH: usize = 100;
/// Longest `Retry-After` the check waits out.
const LONGEST_WAIT: u64 = 60;
/// Lists whose error answers are probed.
const MOST_PROBED: usize = 5;

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

    /// The first page of each list, read raw, each record checked against
    /// the documented item schema (types, formats, enums, required,
    /// nullability): the offending records, and the fields no schema names.
    pub(crate) async fn sample_schemas(&self, tables: &[&TableSpec]) -> (Vec<String>, Vec<String>) {
        let mut bad = Vec::new();
        let mut undocumented = Vec::new();
        let doc = &self.opened.doc;
        for table in tables {
            let Some(op) = self.operation("get", &table.path) else {
                continue;
            };
            let Some(schema) = crate::published::success(doc, &op.operation)
                .and_then(|(_, r)| crate::published::json_schema(doc, r))
            else {
                continue;
            };
            let items = match &table.records {
                RecordsAt::Root => doc.resolve(schema).ok().and_then(|(s, _)| s.get("items")),
                RecordsAt::Field(f) => doc
                    .resolve(schema)
                    .ok()
                    .and_then(|(s, _)| {
                        s.pointer(&format!(
                            "/properties/{}",
                            f.replace('~', "~0").replace('/', "~1")
                        ))
                    })
                    .and_then(|p| doc.resolve(p).ok())
                    .and_then(|(p, _)| p.get("items")),
                RecordsAt::Object => Some(schema),
            };
            let Some(items) = items else {
                continue;
            };
            let mut warnings = Vec::new();
            let fields = compile_fields(doc, items, &table.endpoint(), &mut warnings, 0);
            if fields.is_empty() {
                continue;
            }
            let Ok(url) = self.url(&table.path, &[]) else {
                continue;
            };
            if let Err(e) = self
                .recorded(&format!("{}: first page, raw", table.endpoint()), 1, false)
                .await
            {
                bad.push(e);
                continue;
            }
            let page = match self
                .opened
                .client
                .get_json(&url, &table.endpoint(), None)
                .await
            {
                Ok(page) => page.json,
                Err(e) => {
                    bad.push(e.message);
                    continue;
                }
            };
            let records: Vec<&Value> = match &table.records {
                RecordsAt::Root => page
                    .as_array()
                    .map(|a| a.iter().collect())
                    .unwrap_or_default(),
                RecordsAt::Field(f) => page
                    .get(f)
                    .and_then(Value::as_array)
                    .map(|a| a.iter().collect())
                    .unwrap_or_default(),
                RecordsAt::Object => vec![&page],
            };
            let known: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
            let mut extra: Vec<String> = Vec::new();
            let mut first_bad: Option<String> = None;
            let mut bad_count = 0usize;
            for (i, record) in records.iter().enumerate() {
                let Some(object) = record.as_object() else {
                    bad_count += 1;
                    first_bad.get_or_insert_with(|| format!("record {} is not an object", i + 1));
                    continue;
                };
                let problems = check_fields(&fields, object);
                if !problems.is_empty() {
                    bad_count += 1;
                    first_bad.get_or_insert_with(|| {
                        format!(
                            "record {} of the first page: {}",
                            i + 1,
                            problems.join("; ")
                        )
                    });
                }
                for key in object.keys() {
                    if !known.contains(&key.as_str()) && !extra.contains(key) {
                        extra.push(key.clone());
                    }
                }
            }
            if let Some(first) = first_bad {
                bad.push(format!(
                    "{}: {bad_count} of {} records on the first page do not match the documented schema; {first}",
                    table.endpoint(),
                    records.len()
                ));
            }
            if !extra.is_empty() {
                undocumented.push(format!(
                    "{}: fields the schema does not document: {}",
                    table.endpoint(),
                    extra.join(", ")
                ));
            }
        }
        (bad, undocumented)
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

    /// `security.transport`, after the other probes (whose error answers it
    /// checks for echoed credentials).
    pub(crate) async fn transport(&mut self, tables: &[&TableSpec]) -> Criterion {
        let mut ok = Vec::new();
        let mut bad = Vec::new();
        let base = self.opened.base.clone();
        let loopback = match base.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(d)) => d == "localhost",
            None => false,
        };
        match base.scheme() {
            "https" => {
                let client = reqwest::Client::builder()
                    .min_tls_version(reqwest::tls::Version::TLS_1_2)
                    .timeout(std::time::Duration::from_secs(30))
                    .build();
                let recorded = self
                    .recorded(&format!("GET {base}: TLS version"), 1, false)
                    .await;
                match client.map_err(|e| e.to_string()).and_then(|c| recorded.map(|()| c)) {
                    Ok(client) => match client.get(base.clone()).send().await {
                        Ok(_) => ok.push(format!(
                            "{base}: TLS 1.2 or later (the check offers nothing older)"
                        )),
                        Err(e) => bad.push(format!(
                            "{base}: no TLS 1.2 or later connection: {}",
                            bluelamp_engine::source::error_chain(&e)
                        )),
                    },
                    Err(e) => bad.push(format!("cannot probe TLS: {e}")),
                }
            }
            _ if loopback => ok.push(format!(
                "{base}: plain http on this machine (a test system); TLS is checked where the URL is https"
            )),
            scheme => bad.push(format!(
                "{base}: {scheme} across the network, so credentials and police data travel unencrypted"
            )),
        }
        // A credential in the query string must be refused.
        let credential = self.query_credential().await;
        let has_credential = credential.is_some();
        if let Some((param, value)) = credential
            && let Some(table) = tables.first()
        {
            match self.url(&table.path, &[(param.as_str(), value.as_str())]) {
                Ok(url) => match self.send(Method::GET, &url, None, &[], false).await {
                    Ok(a) if a.status < 300 => bad.push(format!(
                        "{}: a credential in the query string ({param}=...) was accepted ({})",
                        table.endpoint(),
                        a.status
                    )),
                    Ok(a) => ok.push(format!(
                        "{}: a credential in the query string ({param}=...) was refused ({})",
                        table.endpoint(),
                        a.status
                    )),
                    Err(e) => bad.push(e),
                },
                Err(e) => bad.push(e),
            }
        } else if !has_credential {
            ok.push("the source sends no credential, so none can be misplaced".into());
        }
        if self
            .opened
            .doc
            .root
            .pointer("/components/securitySchemes")
            .and_then(Value::as_object)
            .is_some_and(|s| {
                s.values()
                    .any(|v| v.get("in").and_then(Value::as_str) == Some("query"))
            })
        {
            bad.push("the document asks for an API key in the query string, where logs and proxies keep it".into());
        }
        // No error answer echoes a credential.
        let mut secrets: Vec<String> = self.opened.client.secrets().to_vec();
        if let Ok(token) = self.opened.client.access_token().await {
            secrets.push(token);
        }
        secrets.retain(|s| s.len() >= 4);
        let echoed: Vec<&String> = self
            .errors_seen
            .iter()
            .filter(|(_, body)| secrets.iter().any(|s| body.contains(s.as_str())))
            .map(|(what, _)| what)
            .collect();
        match echoed.first() {
            Some(what) => bad.push(format!("{what}: the error answer echoes a credential")),
            None => ok.push(format!(
                "{} error answers seen, none echoes a credential",
                self.errors_seen.len()
            )),
        }
        let (outcome, evidence) = if bad.is_empty() {
            (Outcome::Pass, ok)
        } else {
            (Outcome::Fail, bad)
        };
        Criterion::new(
            "security.transport",
            "TLS 1.2+ where the URL is https; no credentials in query strings; no secrets echoed",
            outcome,
            evidence,
        )
    }

    /// The source's credential as a query parameter would carry it.
    async fn query_credential(&self) -> Option<(String, String)> {
        use bluelamp_connectors::openapi::AuthConfig;
        match &self.opened.config.auth {
            AuthConfig::None | AuthConfig::Basic { .. } => None,
            AuthConfig::ApiKey { name, value, .. } => {
                Some((name.clone(), value.expose().to_string()))
            }
            AuthConfig::Bearer { token } => {
                Some(("access_token".into(), token.expose().to_string()))
            }
            AuthConfig::Oauth2 { .. } => self
                .opened
                .client
                .access_token()
                .await
                .ok()
                .map(|t| ("access_token".into(), t)),
        }
    }

    /// `deposit.round_trip` for the first table in `tables` that can be both
    /// deposited into and read.
    pub(crate) async fn round_trip(
        &mut self,
        session: &Session,
        source: &str,
        tables: &[TableSpec],
    ) -> Criterion {
        let title = "A deposited record is stored once and retrievable with the same values";
        let Some((table, write)) = tables.iter().find_map(|t| {
            let w = t.write.as_ref()?;
            (t.readable && t.path_params.is_empty() && w.path_params.is_empty())
                .then(|| (t.clone(), std::sync::Arc::clone(w)))
        }) else {
            return Criterion::new(
                "deposit.round_trip",
                title,
                Outcome::NotApplicable,
                vec!["no list can be both deposited into (POST on its path) and read back".into()],
            );
        };
        let Some(op) = self.operation("post", &write.path) else {
            return Criterion::new(
                "deposit.round_trip",
                title,
                Outcome::NotApplicable,
                vec![format!("{} is not in the document", write.endpoint())],
            );
        };
        let codes = documented(&op);
        let sample = sample_row(session, source, &table).await;
        let mut evidence = Vec::new();
        let mut bad = Vec::new();
        let built = build_record(&write, &sample);
        let (record, marker_field) = match built {
            Ok(r) => r,
            Err(e) => {
                return Criterion::new(
                    "deposit.round_trip",
                    title,
                    Outcome::NotApplicable,
                    vec![format!(
                        "{}: cannot build a valid record from the request schema: {e}",
                        write.endpoint()
                    )],
                );
            }
        };
        // 1. A valid record: accepted, then retrievable with the same values.
        match self.deposit(&write, &record, &codes, None).await {
            Err(e) => bad.push(e),
            Ok((status, answer)) => {
                evidence.push(format!(
                    "{} of {}: {status}",
                    write.endpoint(),
                    Value::Object(record.clone())
                ));
                match self
                    .read_back(
                        session,
                        source,
                        &table,
                        &write,
                        &record,
                        &answer,
                        &marker_field,
                    )
                    .await
                {
                    Ok(line) => evidence.push(line),
                    Err(e) => bad.push(e),
                }
            }
        }
        // 2. A record without a required field: refused, as documented.
        if let Some(required) = write
            .fields
            .iter()
            .find(|f| f.required && f.name != marker_field && record.contains_key(&f.name))
        {
            let mut invalid = record.clone();
            invalid.remove(&required.name);
            let url = self.url(&write.path, &[]);
            match url {
                Ok(url) => {
                    let headers = idempotency_headers(&write);
                    match self
                        .send(Method::POST, &url, Some(&Value::Object(invalid)), &headers, true)
                        .await
                    {
                        Ok(a) if (400..500).contains(&a.status) && a.status != 429 && listed(&codes, a.status) => {
                            evidence.push(format!(
                                "the same record without required '{}' was refused: {}, as documented",
                                required.name, a.status
                            ));
                        }
                        Ok(a) if a.status < 300 => bad.push(format!(
                            "{}: a record without required '{}' was accepted ({}); it may now be stored",
                            write.endpoint(),
                            required.name,
                            a.status
                        )),
                        Ok(a) => bad.push(format!(
                            "{}: a record without required '{}' answered {}, which the document does not list (it lists {})",
                            write.endpoint(),
                            required.name,
                            a.status,
                            codes.join(", ")
                        )),
                        Err(e) => bad.push(e),
                    }
                }
                Err(e) => bad.push(e),
            }
        }
        // 3. With a documented idempotency key, a replay stores nothing twice.
        if let Some(header) = write.idempotency_header.clone() {
            match build_record(&write, &sample) {
                Ok((again, _)) => {
                    let key = format!("bluelamp-certify-{}", marker());
                    let first = self
                        .deposit(&write, &again, &codes, Some((&header, &key)))
                        .await;
                    let second = self
                        .deposit(&write, &again, &codes, Some((&header, &key)))
                        .await;
                    match (first, second) {
                        (Ok(_), Ok(_)) => {
                            let marker_value = again
                                .get(&marker_field)
                                .and_then(Value::as_str)
                                .unwrap_or_default();
                            let sql = format!(
                                "SELECT count(*) FROM {}.{} WHERE {} = '{}'",
                                quoted(source),
                                quoted(&table.name),
                                quoted(&marker_field),
                                marker_value.replace('\'', "''")
                            );
                            match rows(session, &sql).await {
                                Ok(r) if r.first().and_then(|r| r.first()).map(String::as_str) == Some("1") => {
                                    evidence.push(format!(
                                        "the same record sent twice with {header}: {key}: stored once"
                                    ));
                                }
                                Ok(r) => bad.push(format!(
                                    "{}: the same record sent twice with {header}: {key} is stored {} times",
                                    write.endpoint(),
                                    r.first().and_then(|r| r.first()).cloned().unwrap_or_default()
                                )),
                                Err(e) => bad.push(format!("reading back the replayed record: {e}")),
                            }
                        }
                        (Err(e), _) | (_, Err(e)) => bad.push(format!("with {header}: {e}")),
                    }
                }
                Err(e) => bad.push(e),
            }
        } else {
            evidence.push(format!(
                "{} documents no idempotency key, so a retried deposit could be stored twice",
                write.endpoint()
            ));
        }
        if bad.is_empty() {
            evidence.insert(0, "records were deposited for real: run --allow-writes only against a test or sandbox system".into());
            Criterion::new("deposit.round_trip", title, Outcome::Pass, evidence)
        } else {
            Criterion::new("deposit.round_trip", title, Outcome::Fail, bad)
        }
    }

    /// POSTs `record`; its status and answer where the status is a
    /// documented success.
    async fn deposit(
        &mut self,
        write: &WriteSpec,
        record: &Map<String, Value>,
        codes: &[String],
        key: Option<(&str, &str)>,
    ) -> Result<(u16, Value), String> {
        let url = self.url(&write.path, &[])?;
        let headers: Vec<(&str, String)> = match key {
            Some((h, k)) => vec![(h, k.to_string())],
            None => idempotency_headers(write),
        };
        let answer = self
            .send(
                Method::POST,
                &url,
                Some(&Value::Object(record.clone())),
                &headers,
                true,
            )
            .await?;
        let body = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
        if answer.status >= 300 {
            let listed_note = if listed(codes, answer.status) {
                String::new()
            } else {
                format!(
                    ", which the document does not list (it lists {})",
                    codes.join(", ")
                )
            };
            return Err(format!(
                "{}: a valid record was not accepted: {}{listed_note}: {}",
                write.endpoint(),
                answer.status,
                String::from_utf8_lossy(&answer.body)
                    .chars()
                    .take(200)
                    .collect::<String>()
            ));
        }
        if !listed(codes, answer.status) {
            return Err(format!(
                "{}: answered {}, which the document does not list (it lists {})",
                write.endpoint(),
                answer.status,
                codes.join(", ")
            ));
        }
        Ok((answer.status, body))
    }

    /// Reads the deposited record back through SQL, by what the supplier
    /// assigned (where a filter reaches it) or by its unique marker, and
    /// compares every deposited field that the table has.
    #[allow(
        clippy::too_many_arguments,
        reason = "one call site; the parts of one check"
    )]
    async fn read_back(
        &self,
        session: &Session,
        source: &str,
        table: &TableSpec,
        write: &WriteSpec,
        record: &Map<String, Value>,
        answer: &Value,
        marker_field: &str,
    ) -> Result<String, String> {
        let assigned = write.identifier.as_ref().and_then(|f| {
            let value = answer.get(f)?.as_str()?.to_string();
            let trusted = !self
                .untrusted
                .iter()
                .any(|(t, c)| *t == table.name && c == f);
            (trusted
                && table
                    .filters
                    .iter()
                    .any(|p| p.column == *f && p.op == FilterOp::Eq))
            .then(|| (f.clone(), value))
        });
        let (key, value) = match assigned {
            Some(pair) => pair,
            None => (
                marker_field.to_string(),
                record
                    .get(marker_field)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            ),
        };
        let columns: Vec<&str> = table
            .columns
            .iter()
            .map(|(f, _)| f.name().as_str())
            .collect();
        let compared: Vec<(&String, &Value)> = record
            .iter()
            .filter(|(k, _)| columns.contains(&k.as_str()))
            .collect();
        let checks: Vec<String> = compared
            .iter()
            .map(|(k, v)| match v {
                Value::Null => format!("{} IS NULL", quoted(k)),
                Value::String(s) => format!("{} = '{}'", quoted(k), s.replace('\'', "''")),
                other => format!("{} = {other}", quoted(k)),
            })
            .collect();
        let sql = format!(
            "SELECT {}, {} FROM {}.{} WHERE {} = '{}'",
            checks
                .iter()
                .map(|c| format!("({c})"))
                .collect::<Vec<_>>()
                .join(", "),
            compared
                .iter()
                .map(|(k, _)| format!("CAST({} AS VARCHAR)", quoted(k)))
                .collect::<Vec<_>>()
                .join(", "),
            quoted(source),
            quoted(&table.name),
            quoted(&key),
            value.replace('\'', "''")
        );
        let found = rows(session, &sql)
            .await
            .map_err(|e| format!("reading back the deposit: {e}"))?;
        let retrieve = format!("{}?{key}={value}", table.endpoint());
        match found.as_slice() {
            [] => Err(format!(
                "{} accepted the record ({key} {value}) but {retrieve} does not return it",
                write.endpoint()
            )),
            [row] => {
                let n = compared.len();
                let differ: Vec<String> = compared
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| row[*i] != "true")
                    .map(|(i, (k, v))| format!("{k}: sent {v}, read back {}", row[n + i]))
                    .collect();
                if differ.is_empty() {
                    Ok(format!(
                        "{retrieve} returns it with the same values in all {n} fields the list has"
                    ))
                } else {
                    Err(format!(
                        "{retrieve} returns the record with other values: {}",
                        differ.join("; ")
                    ))
                }
            }
            more => Err(format!(
                "{retrieve} returns {} records for one deposit",
                more.len()
            )),
        }
    }
}

/// The idempotency header with a fresh key, where the write documents one.
fn idempotency_headers(write: &WriteSpec) -> Vec<(&str, String)> {
    write
        .idempotency_header
        .as_deref()
        .map(|h| vec![(h, format!("bluelamp-certify-{}", marker()))])
        .unwrap_or_default()
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

/// Eight random hex digits, to make a deposited record findable.
fn marker() -> String {
    let mut bytes = [0u8; 4];
    // Without randomness the time still makes it unique enough.
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        bytes = nanos.to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One record the list already holds, as column → text, to take values
/// whose pattern cannot be made up (a reference the system checks).
async fn sample_row(session: &Session, source: &str, table: &TableSpec) -> Vec<(String, String)> {
    let names: Vec<String> = table
        .columns
        .iter()
        .map(|(f, _)| f.name().clone())
        .collect();
    let sql = format!(
        "SELECT {} FROM {}.{} LIMIT 1",
        names
            .iter()
            .map(|n| format!("CAST({} AS VARCHAR)", quoted(n)))
            .collect::<Vec<_>>()
            .join(", "),
        quoted(source),
        quoted(&table.name)
    );
    match rows(session, &sql).await {
        Ok(found) => found
            .into_iter()
            .next()
            .map(|row| names.into_iter().zip(row).collect())
            .unwrap_or_default(),
        Err(_) => Vec::new(),
    }
}

/// A record valid under the request schema: enums take their first value,
/// dates now, patterned text a sample's value that matches, and one free
/// text field a unique marker (returned with the record) to find it again.
fn build_record(
    write: &WriteSpec,
    sample: &[(String, String)],
) -> Result<(Map<String, Value>, String), String> {
    let marker_field = write
        .fields
        .iter()
        .find(|f| {
            f.required
                && matches!(&f.rule, Rule::Text { format: None, values: None, pattern: None, max, .. } if max.is_none_or(|m| m >= 30))
        })
        .or_else(|| {
            write.fields.iter().find(|f| {
                matches!(&f.rule, Rule::Text { format: None, values: None, pattern: None, max, .. } if max.is_none_or(|m| m >= 30))
            })
        })
        .map(|f| f.name.clone())
        .ok_or("no free-text field to mark the record with, so it could not be found again")?;
    let mark = format!("Bluelamp certification {}", marker());
    let mut record = Map::new();
    for field in &write.fields {
        let value = if field.name == marker_field {
            Some(Value::String(mark.clone()))
        } else {
            value_for(field, sample)
        };
        match value {
            Some(v) => {
                record.insert(field.name.clone(), v);
            }
            None if field.required => {
                return Err(format!(
                    "no value can be made for required '{}'",
                    field.name
                ));
            }
            None => {}
        }
    }
    // Optional fields whose made-up value the schema refuses are left out.
    for problem in write.check(&record) {
        let field = problem.split(':').next().unwrap_or_default().to_string();
        let required = write.fields.iter().any(|f| f.name == field && f.required);
        if required {
            return Err(problem);
        }
        record.remove(&field);
    }
    let left = write.check(&record);
    if let Some(problem) = left.first() {
        return Err(problem.clone());
    }
    Ok((record, marker_field))
}

fn value_for(field: &BodyField, sample: &[(String, String)]) -> Option<Value> {
    let sampled = sample
        .iter()
        .find(|(k, v)| *k == field.name && v != "NULL")
        .map(|(_, v)| v.clone());
    match &field.rule {
        Rule::Text {
            values: Some(values),
            ..
        } => values.first().cloned().map(Value::String),
        Rule::Text {
            format: Some(f), ..
        } if f == "date-time" => Some(json!(
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )),
        Rule::Text {
            format: Some(f), ..
        } if f == "date" => Some(json!(chrono::Utc::now().date_naive().to_string())),
        Rule::Text {
            pattern: Some((_, regex)),
            ..
        } => sampled.filter(|s| regex.is_match(s)).map(Value::String),
        Rule::Text { min, max, .. } => {
            let mut text = sampled.unwrap_or_else(|| "certification".to_string());
            if let Some(max) = max {
                text = text.chars().take(*max).collect();
            }
            while min.is_some_and(|m| text.chars().count() < m) {
                text.push('x');
            }
            Some(Value::String(text))
        }
        Rule::Integer => Some(json!(
            sampled.and_then(|s| s.parse::<i64>().ok()).unwrap_or(1)
        )),
        Rule::Number => Some(json!(
            sampled.and_then(|s| s.parse::<f64>().ok()).unwrap_or(1.0)
        )),
        Rule::Boolean => Some(json!(false)),
        Rule::Array(_) => Some(json!([])),
        Rule::Object(fields) => {
            let mut object = Map::new();
            for f in fields {
                if let Some(v) = value_for(f, &[]) {
                    object.insert(f.name.clone(), v);
                } else if f.required {
                    return None;
                }
            }
            Some(Value::Object(object))
        }
        Rule::Any => None,
    }
}
