//! What a statement touched, and a result stream that reports when it ends.

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::common::TableReference;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::Result as DFResult;
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream};
use datafusion::logical_expr::{DmlStatement, LogicalPlan};
use futures::Stream;

use super::{AuditLog, AuditRecord};

/// Sources, tables and columns, as [`touched`] returns them.
pub type Touched = (Vec<String>, Vec<String>, Vec<String>);

/// Sources, tables (`source.table`) and columns (`source.table.column`) a
/// plan reads or writes. Columns are matched by name against every column
/// the plan refers to, so where two tables share a column name both are
/// named: the trail may over-report a consultation, never miss one.
pub fn touched(
    plan: &LogicalPlan,
    default_schema: &str,
) -> (Vec<String>, Vec<String>, Vec<String>) {
    let mut tables: BTreeSet<(String, String)> = BTreeSet::new();
    let mut table_columns: Vec<((String, String), Vec<String>)> = Vec::new();
    let mut referenced: BTreeSet<String> = BTreeSet::new();
    let _ = plan.apply_with_subqueries(|node| {
        let mut add = |name: &TableReference, fields: Vec<String>| {
            let schema = name.schema().unwrap_or(default_schema).to_string();
            let key = (schema, name.table().to_string());
            if tables.insert(key.clone()) {
                table_columns.push((key, fields));
            }
        };
        match node {
            LogicalPlan::TableScan(scan) => add(
                &scan.table_name,
                scan.source
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .collect(),
            ),
            LogicalPlan::Dml(DmlStatement {
                table_name, target, ..
            }) => add(
                table_name,
                target
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .collect(),
            ),
            _ => {}
        }
        for expr in node.expressions() {
            for column in expr.column_refs() {
                referenced.insert(column.name.clone());
            }
        }
        if let LogicalPlan::Dml(dml) = node {
            for field in dml.input.schema().fields() {
                referenced.insert(field.name().clone());
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    let sources: BTreeSet<String> = tables.iter().map(|(s, _)| s.clone()).collect();
    let mut columns = Vec::new();
    for ((schema, table), fields) in &table_columns {
        for field in fields {
            if referenced.contains(field) {
                columns.push(format!("{schema}.{table}.{field}"));
            }
        }
    }
    columns.sort();
    (
        sources.into_iter().collect(),
        tables
            .into_iter()
            .map(|(s, t)| format!("{s}.{t}"))
            .collect(),
        columns,
    )
}

/// Reads a statement's deposit outcomes, counted by kind, when it completes.
pub type DepositCounts = Box<dyn Fn() -> std::collections::BTreeMap<String, u64> + Send + Sync>;

/// Counts what a statement's streams deliver and appends its `completed`
/// record once all of them have ended or been dropped.
pub struct Completion {
    log: AuditLog,
    record: Mutex<Option<AuditRecord>>,
    started: Instant,
    rows: AtomicU64,
    failed: Mutex<Option<String>>,
    /// Streams handed out, and those read to their end.
    streams: AtomicU64,
    ended: AtomicU64,
    /// Reads the deposit outcomes of the statement when it completes.
    deposits: Option<DepositCounts>,
}

impl Completion {
    /// A completion for the statement whose `completed` record is `record`.
    pub fn new(
        log: AuditLog,
        record: AuditRecord,
        started: Instant,
        deposits: Option<DepositCounts>,
    ) -> Arc<Self> {
        Arc::new(Self {
            log,
            record: Mutex::new(Some(record)),
            started,
            rows: AtomicU64::new(0),
            failed: Mutex::new(None),
            streams: AtomicU64::new(0),
            ended: AtomicU64::new(0),
            deposits,
        })
    }

    /// Records that the statement failed before any stream was handed out
    /// and writes its `completed` record now, waiting until it is on disk, so
    /// the trail holds the failure before the client hears of it.
    pub async fn fail(&self, message: &str) {
        if let Ok(mut failed) = self.failed.lock() {
            failed.get_or_insert_with(|| message.to_string());
        }
        if let Some(record) = self.take_record()
            && let Err(e) = self.log.append(record).await
        {
            tracing::error!(target: "bluelamp::audit", "{e}");
        }
    }

    /// The `completed` record, filled in, the first time it is asked for.
    fn take_record(&self) -> Option<AuditRecord> {
        let mut record = self.record.lock().ok().and_then(|mut r| r.take())?;
        record.rows = Some(self.rows.load(Ordering::Relaxed));
        record.duration_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let failed = self.failed.lock().ok().and_then(|mut f| f.take());
        let (outcome, error) = match failed {
            Some(message) => ("error", Some(message)),
            None if self.ended.load(Ordering::Relaxed) == self.streams.load(Ordering::Relaxed) => {
                ("ok", None)
            }
            None => (
                "cancelled",
                Some("the client stopped reading before the end".to_string()),
            ),
        };
        record.outcome = outcome.to_string();
        record.error = error;
        if let Some(deposits) = &self.deposits {
            record.deposits = deposits();
        }
        Some(record)
    }

    /// Wraps one of the statement's streams.
    pub fn wrap(self: &Arc<Self>, inner: SendableRecordBatchStream) -> SendableRecordBatchStream {
        self.streams.fetch_add(1, Ordering::Relaxed);
        Box::pin(Audited {
            inner,
            completion: Arc::clone(self),
            ended: false,
        })
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        if let Some(record) = self.take_record() {
            self.log.append_detached(record);
        }
    }
}

struct Audited {
    inner: SendableRecordBatchStream,
    completion: Arc<Completion>,
    ended: bool,
}

impl Stream for Audited {
    type Item = DFResult<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = self.inner.as_mut().poll_next(cx);
        match &polled {
            Poll::Ready(Some(Ok(batch))) => {
                self.completion
                    .rows
                    .fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
            }
            Poll::Ready(Some(Err(e))) => {
                if let Ok(mut failed) = self.completion.failed.lock() {
                    failed.get_or_insert_with(|| crate::error::classify(e).message);
                }
            }
            Poll::Ready(None) if !self.ended => {
                self.ended = true;
                self.completion.ended.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
        polled
    }
}

impl RecordBatchStream for Audited {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }
}
