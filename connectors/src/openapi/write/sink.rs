//! `INSERT` into an OpenAPI table: the deposit. Every row is turned into the
//! request it would be and checked against the documented request schema;
//! if any row is invalid, nothing is sent. Rows are then sent one at a time,
//! in order (a system of record assigns references in the order it receives
//! them, and a fault can be pinned to a row), each with an idempotency key
//! derived from the target and the row where the interface supports one, so
//! re-running a statement never stores a row twice. Every row's outcome goes
//! to the session's [`DepositJournal`] (`bluelamp.deposits`).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use arrow::json::ArrayWriter;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use bluelamp_engine::{BluelampOptions, DepositJournal, DepositOutcome};
use datafusion::datasource::sink::DataSink;
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType};
use futures::TryStreamExt;
use reqwest::Url;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tracing::Instrument;

use super::WriteSpec;
use crate::openapi::client::{ApiClient, Posted};

/// The most rows one `INSERT` may deposit; all are held for validation.
const MAX_ROWS: usize = 100_000;

/// Deposits rows into one OpenAPI table.
pub struct OpenApiSink {
    /// The header naming the end user, where the source sends one.
    identity: Option<crate::openapi::client::Identity>,
    source: String,
    table: String,
    spec: Arc<WriteSpec>,
    client: Arc<ApiClient>,
    base: Url,
    schema: SchemaRef,
}

impl fmt::Debug for OpenApiSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenApiSink")
            .field("target", &self.target())
            .finish_non_exhaustive()
    }
}

impl OpenApiSink {
    /// A sink for `source.table`. `schema` is the table's; every column is
    /// made nullable here because columns the supplier assigns are left out of
    /// an `INSERT`, and the request schema, not the table's, says what is
    /// required.
    pub fn new(
        source: String,
        table: String,
        spec: Arc<WriteSpec>,
        client: Arc<ApiClient>,
        base: Url,
        schema: &Schema,
    ) -> Self {
        let fields: Vec<_> = schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect();
        Self {
            identity: None,
            source,
            table,
            spec,
            client,
            base,
            schema: Arc::new(Schema::new(fields)),
        }
    }

    /// Sends `identity` (the end user's header) with every request.
    pub fn with_identity(mut self, identity: Option<crate::openapi::client::Identity>) -> Self {
        self.identity = identity;
        self
    }

    fn target(&self) -> String {
        format!("{}.{}", self.source, self.table)
    }

    fn error(&self, message: String) -> DataFusionError {
        crate::openapi::source_error(&self.source, message, false)
    }

    /// One row as a request: path values and the body.
    fn request(&self, row: Map<String, Value>) -> Result<(String, Map<String, Value>), String> {
        let mut path = self.spec.path.clone();
        let mut body = Map::new();
        let mut problems = Vec::new();
        for (name, value) in row {
            if self.spec.path_params.contains(&name) {
                match value {
                    Value::String(s) if !s.is_empty() => {
                        let encoded: String =
                            url::form_urlencoded::byte_serialize(s.as_bytes()).collect();
                        path = path.replace(&format!("{{{name}}}"), &encoded);
                    }
                    Value::Null => {
                        problems.push(format!("{name}: is required (it is part of the path)"))
                    }
                    other => path = path.replace(&format!("{{{name}}}"), &other.to_string()),
                }
            } else if self.spec.fields.iter().any(|f| f.name == name) {
                body.insert(name, value);
            } else if !value.is_null() {
                problems.push(format!(
                    "{name}: is not part of the request (the supplier assigns it, or the interface does not take it); leave it out"
                ));
            }
        }
        for name in &self.spec.path_params {
            if path.contains(&format!("{{{name}}}"))
                && !problems.iter().any(|p| p.starts_with(name.as_str()))
            {
                problems.push(format!("{name}: is required (it is part of the path)"));
            }
        }
        problems.extend(self.spec.check(&body));
        if problems.is_empty() {
            Ok((path, body))
        } else {
            Err(problems.join("; "))
        }
    }

    fn describe(path: &str, body: &Map<String, Value>) -> String {
        format!("POST {path} {}", Value::Object(body.clone()))
    }
}

impl DisplayAs for OpenApiSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fields: Vec<String> = self
            .spec
            .fields
            .iter()
            .map(|b| {
                if b.required {
                    format!("{}*", b.name)
                } else {
                    b.name.clone()
                }
            })
            .collect();
        write!(
            f,
            "OpenApiSink: {} rows one by one as POST {}{} body={{{}}}",
            self.target(),
            self.base.as_str().trim_end_matches('/'),
            self.spec.path,
            fields.join(", ")
        )?;
        match &self.spec.idempotency_header {
            Some(h) => write!(
                f,
                ", {h}=sha256(target, row), retried on 5xx and broken connections"
            ),
            None => write!(
                f,
                ", no idempotency key: not retried after an unclear failure"
            ),
        }
    }
}

/// Rows of a batch as JSON objects (nulls omitted).
pub(crate) fn json_rows(batches: &[RecordBatch]) -> DFResult<Vec<Map<String, Value>>> {
    let mut writer = ArrayWriter::new(Vec::new());
    for batch in batches {
        writer.write(batch)?;
    }
    writer.finish()?;
    let bytes = writer.into_inner();
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<Map<String, Value>> = serde_json::from_slice(&bytes)
        .map_err(|e| DataFusionError::Execution(format!("cannot turn rows into JSON: {e}")))?;
    Ok(rows)
}

#[async_trait]
impl DataSink for OpenApiSink {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    async fn write_all(
        &self,
        data: SendableRecordBatchStream,
        context: &Arc<TaskContext>,
    ) -> DFResult<u64> {
        let span = bluelamp_engine::ops::trace::source_span(context, &self.source, &self.table);
        self.write_rows(data, context).instrument(span).await
    }
}

impl OpenApiSink {
    /// [`DataSink::write_all`] within the deposit's span.
    async fn write_rows(
        &self,
        data: SendableRecordBatchStream,
        context: &Arc<TaskContext>,
    ) -> DFResult<u64> {
        let target = self.target();
        let mut batches = Vec::new();
        let mut count = 0usize;
        let mut data = data;
        while let Some(batch) = data.try_next().await? {
            count += batch.num_rows();
            if count > MAX_ROWS {
                return Err(self.error(format!(
                    "{target}: more than {MAX_ROWS} rows in one INSERT; deposit in smaller statements"
                )));
            }
            batches.push(batch);
        }
        let config = context.session_config();
        let journal = config.get_extension::<DepositJournal>();
        let validate_only = BluelampOptions::validate_only(config).map_err(|m| self.error(m))?;
        let statement = journal.as_ref().map_or(0, |j| j.begin());
        let outcome = |row: usize, outcome: &str, request: String| DepositOutcome {
            statement,
            row: row as u64 + 1,
            target: target.clone(),
            outcome: outcome.to_string(),
            http_status: None,
            identifier: None,
            message: None,
            idempotency_key: None,
            request,
        };

        // Validate every row before sending any.
        let rows = json_rows(&batches)?;
        let mut requests = Vec::with_capacity(rows.len());
        let mut invalid = Vec::new();
        for (i, row) in rows.into_iter().enumerate() {
            let shown = Value::Object(row.clone()).to_string();
            match self.request(row) {
                Ok(request) => requests.push(Ok(request)),
                Err(reason) => {
                    invalid.push(format!("row {}: {reason}", i + 1));
                    requests.push(Err((reason, shown)));
                }
            }
        }
        if !invalid.is_empty() {
            let outcomes = requests
                .iter()
                .enumerate()
                .map(|(i, r)| match r {
                    Ok((path, body)) => DepositOutcome {
                        message: Some("not sent: other rows are invalid".into()),
                        ..outcome(i, "not sent", Self::describe(path, body))
                    },
                    Err((reason, shown)) => DepositOutcome {
                        message: Some(reason.clone()),
                        ..outcome(i, "invalid", shown.clone())
                    },
                })
                .collect();
            if let Some(j) = &journal {
                j.record(outcomes);
            }
            let shown: Vec<&String> = invalid.iter().take(10).collect();
            return Err(self.error(format!(
                "{target}: {} of {} rows are invalid, so nothing was sent: {}{} (every row: SELECT * FROM bluelamp.deposits)",
                invalid.len(),
                requests.len(),
                shown.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("; "),
                if invalid.len() > 10 { "; ..." } else { "" }
            )));
        }
        let requests: Vec<(String, Map<String, Value>)> =
            requests.into_iter().filter_map(Result::ok).collect();

        // Idempotency keys: the target, the body and which copy of an
        // identical body this is, so a re-run sends the same keys.
        let mut seen: HashMap<String, u64> = HashMap::new();
        let keys: Vec<Option<String>> = requests
            .iter()
            .map(|(path, body)| {
                self.spec.idempotency_header.as_ref().map(|_| {
                    let text = format!("{target}\n{path}\n{}", Value::Object(body.clone()));
                    let copy = seen.entry(text.clone()).or_insert(0);
                    *copy += 1;
                    let digest = Sha256::digest(format!("{text}\n{copy}").as_bytes());
                    format!("bluelamp-{}", hex(&digest[..16]))
                })
            })
            .collect();

        if validate_only {
            let outcomes = requests
                .iter()
                .zip(&keys)
                .enumerate()
                .map(|(i, ((path, body), key))| DepositOutcome {
                    idempotency_key: key.clone(),
                    message: Some(
                        "validated; not sent (bluelamp.deposit_mode = 'validate')".into(),
                    ),
                    ..outcome(i, "validated", Self::describe(path, body))
                })
                .collect();
            if let Some(j) = &journal {
                j.record(outcomes);
            }
            return Ok(0);
        }

        let base = self.base.as_str().trim_end_matches('/').to_string();
        let mut outcomes = Vec::with_capacity(requests.len());
        let mut stored = 0u64;
        let mut problems = Vec::new();
        for (i, ((path, body), key)) in requests.iter().zip(&keys).enumerate() {
            let described = Self::describe(path, body);
            let url = Url::parse(&format!("{base}{path}"))
                .map_err(|e| self.error(format!("{target}: bad URL {base}{path}: {e}")))?;
            let header = self.spec.idempotency_header.as_deref();
            let idempotency = header.zip(key.as_deref());
            let body = Value::Object(body.clone());
            let posted = self
                .client
                .post(
                    &url,
                    &self.spec.endpoint(),
                    &body,
                    idempotency,
                    self.identity.as_ref(),
                )
                .await;
            let mut row = DepositOutcome {
                idempotency_key: key.clone(),
                ..outcome(i, "stored", described)
            };
            match posted {
                Posted::Stored {
                    status,
                    body,
                    replayed,
                } => {
                    stored += 1;
                    row.http_status = Some(status);
                    row.identifier = self.spec.identifier.as_ref().and_then(|f| {
                        body.get(f)
                            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                    });
                    if replayed {
                        row.outcome = "replayed".into();
                        row.message = Some(
                            "already stored by an earlier attempt with this idempotency key".into(),
                        );
                    }
                }
                Posted::Rejected { status, reason } => {
                    row.outcome = "rejected".into();
                    row.http_status = Some(status);
                    problems.push(format!("row {}: rejected: {reason}", i + 1));
                    row.message = Some(reason);
                }
                Posted::Failed { status, reason } => {
                    row.outcome = "failed".into();
                    row.http_status = status;
                    problems.push(format!("row {}: failed: {reason}", i + 1));
                    row.message = Some(reason);
                }
                Posted::Unknown { status, reason } => {
                    row.outcome = "unknown".into();
                    row.http_status = status;
                    problems.push(format!("row {}: unknown: {reason}", i + 1));
                    row.message = Some(reason);
                }
            }
            outcomes.push(row);
        }
        if let Some(j) = &journal {
            j.record(outcomes);
        }
        if problems.is_empty() {
            Ok(stored)
        } else {
            Err(self.error(format!(
                "{target}: {stored} of {} rows stored; {}{} (every row: SELECT * FROM bluelamp.deposits)",
                requests.len(),
                problems.iter().take(5).cloned().collect::<Vec<_>>().join("; "),
                if problems.len() > 5 { "; ..." } else { "" }
            )))
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
