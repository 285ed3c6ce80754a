//! How a refresh reads its source: as a session would (federation, each
//! source's executor and repairs, the table under its own name), as the
//! refresh's user, streaming, with the batches joined into a few large
//! ones as they arrive so a read never holds the table twice.

use std::sync::Arc;

use arrow::array::{RecordBatch, RecordBatchOptions};
use arrow::compute::concat_batches;
use arrow::datatypes::SchemaRef;
use datafusion::common::TableReference;
use datafusion::dataframe::DataFrame;
use datafusion::datasource::{TableProvider, provider_as_source};
use datafusion::logical_expr::LogicalPlanBuilder;
use datafusion::physical_plan::{ExecutionPlan, execute_stream};
use datafusion::prelude::SessionConfig;
use futures::StreamExt;

use crate::principal::Principal;

/// Rows per batch in a copy: a few buffers per column for a large table,
/// and still enough batches to spread a scan over the session's partitions.
const COPY_BATCH_ROWS: usize = 65_536;

/// Batches as they are kept: the source's many small batches (a page, or
/// 8,192 rows, each) joined into few of about [`COPY_BATCH_ROWS`], each in
/// buffers of exactly its size.
struct Compactor {
    schema: SchemaRef,
    done: Vec<RecordBatch>,
    group: Vec<RecordBatch>,
    rows: usize,
}

impl Compactor {
    fn new(schema: SchemaRef) -> Self {
        Self {
            schema,
            done: Vec::new(),
            group: Vec::new(),
            rows: 0,
        }
    }

    fn push(&mut self, batch: RecordBatch) -> Result<(), String> {
        self.rows += batch.num_rows();
        self.group.push(batch);
        if self.rows >= COPY_BATCH_ROWS {
            self.join()?;
        }
        Ok(())
    }

    fn join(&mut self) -> Result<(), String> {
        if self.rows > 0 {
            let joined = concat_batches(&self.schema, &self.group).map_err(|e| e.to_string())?;
            self.done.push(joined);
        }
        self.group.clear();
        self.rows = 0;
        Ok(())
    }

    fn finish(mut self) -> Result<Vec<RecordBatch>, String> {
        self.join()?;
        Ok(self.done)
    }
}

/// What [`read_table`] read.
pub(super) struct Read {
    pub(super) batches: Vec<RecordBatch>,
    /// Requests the source's scans made, where they count them.
    pub(super) requests: Option<u64>,
}

/// The rows of `table` that `filter` keeps (all, without one), in batches
/// of the table's schema, read as `principal` where one is given (a
/// connector that names the end user to its source finds it in the
/// session's configuration, as for any query).
pub(super) async fn read_table(
    name: TableReference,
    table: Arc<dyn TableProvider>,
    principal: Option<Arc<Principal>>,
    filter: Option<datafusion::prelude::Expr>,
) -> Result<Read, String> {
    let schema = table.schema();
    let mut config = SessionConfig::new();
    if let Some(principal) = principal {
        config = config.with_extension(principal);
    }
    // Read as a session reads it, under its own name: a database source's
    // SQL names its table, never an anonymous one.
    let ctx = crate::session::federated_context(config);
    let scan = LogicalPlanBuilder::scan(name, provider_as_source(table), None)
        .and_then(LogicalPlanBuilder::build)
        .map_err(message)?;
    let mut frame = DataFrame::new(ctx.state(), scan);
    if let Some(filter) = filter {
        frame = frame.filter(filter).map_err(message)?;
    }
    let plan = frame.create_physical_plan().await.map_err(message)?;
    let mut stream = execute_stream(Arc::clone(&plan), ctx.task_ctx()).map_err(message)?;
    // Kept as they arrive, joined into few large batches, so a read never
    // holds the table twice.
    let mut compactor = Compactor::new(Arc::clone(&schema));
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(message)?;
        // The copy answers for the table: every batch must have its columns.
        let batch = RecordBatch::try_new_with_options(
            Arc::clone(&schema),
            batch.columns().to_vec(),
            &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
        )
        .map_err(|e| format!("the source's rows no longer match the table's columns: {e}"))?;
        compactor.push(batch)?;
    }
    Ok(Read {
        batches: compactor.finish()?,
        requests: counted(&plan, "requests"),
    })
}

/// A DataFusion error as a user reads it (without "External error: ").
pub(super) fn message(error: datafusion::error::DataFusionError) -> String {
    crate::error::QueryError::from(error).message
}

/// The sum of the `name` counter over every node of `plan` that keeps
/// one, or `None` if none does.
fn counted(plan: &Arc<dyn ExecutionPlan>, name: &str) -> Option<u64> {
    let here = plan
        .metrics()
        .and_then(|m| m.sum_by_name(name))
        .map(|v| v.as_usize() as u64);
    plan.children()
        .into_iter()
        .filter_map(|child| counted(child, name))
        .chain(here)
        .reduce(|a, b| a + b)
}
