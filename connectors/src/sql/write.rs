//! Writing to a database: `INSERT` into a PostgreSQL, MariaDB/MySQL or
//! SQLite table.
//!
//! Rows are written by the crate's own writer for the database
//! (`datafusion-table-providers`), which [`with_writer`] puts behind the
//! table's federated read, so reads go to the database as whole sub-plans
//! and `INSERT` reaches the writer.
//!
//! Dry runs: `SET bluelamp.deposit_mode = 'validate'` makes an `INSERT`
//! check its rows and record their outcomes in `bluelamp.deposits` without
//! sending anything, as it does for suppliers' HTTP interfaces
//! ([`dry_runnable`]). What can be checked without the database: every
//! value already has the column's type (DataFusion casts before the sink),
//! no NULL goes into a `NOT NULL` column, and no two rows of the statement
//! share a primary or unique key. The database's own checks (a key already
//! stored, foreign keys, triggers) happen only when the rows are sent; the
//! outcome message says so.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use async_trait::async_trait;
use bluelamp_engine::{BluelampOptions, DepositJournal, DepositOutcome};
use datafusion::catalog::Session;
use datafusion::common::{Constraint, Constraints, Statistics};
use datafusion::datasource::TableProvider;
use datafusion::datasource::sink::{DataSink, DataSinkExec};
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan};
use datafusion_federation::FederatedTableProviderAdaptor;
use futures::TryStreamExt;

/// A table that reads through federation (whole sub-plans run in the
/// database) and writes through `writer` (`INSERT`). The federation rule finds
/// the table by its federated source, so the adaptor keeps `read`'s source and
/// only swaps the provider that `insert_into` reaches.
pub(super) fn with_writer(
    read: Arc<dyn TableProvider>,
    writer: Arc<dyn TableProvider>,
) -> Arc<dyn TableProvider> {
    let any: &dyn std::any::Any = read.as_ref();
    match any.downcast_ref::<FederatedTableProviderAdaptor>() {
        Some(adaptor) => Arc::new(FederatedTableProviderAdaptor::new_with_provider(
            Arc::clone(&adaptor.source),
            writer,
        )),
        None => read,
    }
}

/// `table` with its writer wrapped so that `SET bluelamp.deposit_mode =
/// 'validate'` makes an `INSERT` a dry run (see the module doc).
pub(super) fn dry_runnable(
    table: Arc<dyn TableProvider>,
    target: String,
) -> Arc<dyn TableProvider> {
    let Some(adaptor) = table.downcast_ref::<FederatedTableProviderAdaptor>() else {
        return Arc::new(DryRunnable {
            inner: table,
            target,
        });
    };
    match &adaptor.table_provider {
        Some(writer) => Arc::new(FederatedTableProviderAdaptor::new_with_provider(
            Arc::clone(&adaptor.source),
            Arc::new(DryRunnable {
                inner: Arc::clone(writer),
                target,
            }),
        )),
        None => table,
    }
}

/// A database table's writer that turns `INSERT` into a dry run when the
/// session asks for one; otherwise the writer itself.
#[derive(Debug)]
struct DryRunnable {
    inner: Arc<dyn TableProvider>,
    /// `source.table`, as `bluelamp.deposits` names it.
    target: String,
}

#[async_trait]
impl TableProvider for DryRunnable {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn constraints(&self) -> Option<&Constraints> {
        self.inner.constraints()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    fn get_column_default(&self, column: &str) -> Option<&Expr> {
        self.inner.get_column_default(column)
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        self.inner.scan(state, projection, filters, limit).await
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DFResult<Vec<TableProviderFilterPushDown>> {
        self.inner.supports_filters_pushdown(filters)
    }

    fn statistics(&self) -> Option<Statistics> {
        self.inner.statistics()
    }

    async fn insert_into(
        &self,
        state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let validate = BluelampOptions::validate_only(state.config())
            .map_err(|m| DataFusionError::Plan(format!("{}: {m}", self.target)))?;
        if !validate {
            return self.inner.insert_into(state, input, insert_op).await;
        }
        let keys = self
            .inner
            .constraints()
            .map(|c| {
                c.iter()
                    .map(|k| match k {
                        Constraint::PrimaryKey(i) | Constraint::Unique(i) => i.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let sink = DryRunSink {
            target: self.target.clone(),
            schema: self.inner.schema(),
            keys,
        };
        Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
    }
}

/// Checks rows for a database table and records them as `validated` or
/// `invalid`; sends nothing.
#[derive(Debug)]
struct DryRunSink {
    target: String,
    schema: SchemaRef,
    /// Column indices of each primary or unique key.
    keys: Vec<Vec<usize>>,
}

impl DisplayAs for DryRunSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "DryRunSink: {} rows checked, not sent (bluelamp.deposit_mode = 'validate')",
            self.target
        )
    }
}

/// One cell as text, for key comparison and messages.
fn cell(batch: &RecordBatch, column: usize, row: usize) -> DFResult<Option<String>> {
    let array = batch.column(column);
    if array.is_null(row) {
        return Ok(None);
    }
    let formatter = ArrayFormatter::try_new(array.as_ref(), &FormatOptions::default())?;
    Ok(Some(formatter.value(row).to_string()))
}

impl DryRunSink {
    /// Why row `row` of `batch` would be refused, if it would.
    fn problem(
        &self,
        batch: &RecordBatch,
        row: usize,
        seen: &mut [HashMap<Vec<String>, u64>],
        number: u64,
    ) -> DFResult<Option<String>> {
        for (index, field) in self.schema.fields().iter().enumerate() {
            if !field.is_nullable() && batch.column(index).is_null(row) {
                return Ok(Some(format!("column {} is NOT NULL", field.name())));
            }
        }
        for (key, earlier) in self.keys.iter().zip(seen.iter_mut()) {
            let mut values = Vec::with_capacity(key.len());
            for &i in key {
                match cell(batch, i, row)? {
                    Some(v) => values.push(v),
                    // SQL keys do not compare NULLs equal.
                    None => {
                        values.clear();
                        break;
                    }
                }
            }
            if values.is_empty() {
                continue;
            }
            if let Some(first) = earlier.get(&values) {
                let names: Vec<&str> = key
                    .iter()
                    .map(|&i| self.schema.field(i).name().as_str())
                    .collect();
                return Ok(Some(format!(
                    "key ({}) = ({}) repeats row {first} of this statement",
                    names.join(", "),
                    values.join(", ")
                )));
            }
            earlier.insert(values, number);
        }
        Ok(None)
    }
}

#[async_trait]
impl DataSink for DryRunSink {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    async fn write_all(
        &self,
        data: SendableRecordBatchStream,
        context: &Arc<TaskContext>,
    ) -> DFResult<u64> {
        let batches: Vec<RecordBatch> = data.try_collect().await?;
        let journal = context.session_config().get_extension::<DepositJournal>();
        let statement = journal.as_ref().map_or(0, |j| j.begin());
        let rows = crate::openapi::write::sink::json_rows(&batches)?;
        let mut seen: Vec<HashMap<Vec<String>, u64>> = vec![HashMap::new(); self.keys.len()];
        let mut outcomes = Vec::with_capacity(rows.len());
        let mut invalid = Vec::new();
        let mut number = 0u64;
        let mut shown = rows.into_iter();
        for batch in &batches {
            for row in 0..batch.num_rows() {
                number += 1;
                let request = shown
                    .next()
                    .map(|r| serde_json::Value::Object(r).to_string())
                    .unwrap_or_default();
                let problem = self.problem(batch, row, &mut seen, number)?;
                let (outcome, message) = match &problem {
                    Some(reason) => {
                        invalid.push(format!("row {number}: {reason}"));
                        ("invalid", reason.clone())
                    }
                    None => (
                        "validated",
                        "validated; not sent (bluelamp.deposit_mode = 'validate'); the database's own constraints are checked when sent".to_string(),
                    ),
                };
                outcomes.push(DepositOutcome {
                    statement,
                    row: number,
                    target: self.target.clone(),
                    outcome: outcome.to_string(),
                    http_status: None,
                    identifier: None,
                    message: Some(message),
                    idempotency_key: None,
                    request,
                });
            }
        }
        if let Some(journal) = &journal {
            journal.record(outcomes);
        }
        if !invalid.is_empty() {
            let first: Vec<&str> = invalid.iter().take(10).map(String::as_str).collect();
            return Err(DataFusionError::Execution(format!(
                "{}: {} of {} rows are invalid (nothing was sent; this was a dry run): {}{} (every row: SELECT * FROM bluelamp.deposits)",
                self.target,
                invalid.len(),
                number,
                first.join("; "),
                if invalid.len() > 10 { "; ..." } else { "" }
            )));
        }
        Ok(0)
    }
}
