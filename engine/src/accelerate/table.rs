//! [`AcceleratedTable`]: an accelerated table as DataFusion reads it.

use std::sync::Arc;

use arrow::array::{RecordBatch, RecordBatchOptions};
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::Constraints;
use datafusion::common::stats::{Precision, Statistics};
use datafusion::datasource::{MemTable, TableProvider};
use datafusion::error::Result as DFResult;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use std::time::SystemTime;

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::DataFusionError;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};

use super::Acceleration;
use crate::deposits::BluelampOptions;

/// An accelerated table as DataFusion reads it.
#[derive(Debug)]
pub struct AcceleratedTable {
    live: Arc<dyn TableProvider>,
    acceleration: Arc<Acceleration>,
}

impl AcceleratedTable {
    /// `live` (the source's table), answered from `acceleration`'s copy.
    pub fn new(live: Arc<dyn TableProvider>, acceleration: Arc<Acceleration>) -> Self {
        Self { live, acceleration }
    }
}

#[async_trait]
impl TableProvider for AcceleratedTable {
    fn schema(&self) -> SchemaRef {
        self.live.schema()
    }

    fn constraints(&self) -> Option<&Constraints> {
        self.live.constraints()
    }

    fn table_type(&self) -> TableType {
        self.live.table_type()
    }

    /// What the source applies exactly, the copy does not apply at all: a
    /// filter the source takes is reported inexact, so DataFusion applies it
    /// again above either.
    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DFResult<Vec<TableProviderFilterPushDown>> {
        Ok(self
            .live
            .supports_filters_pushdown(filters)?
            .into_iter()
            .map(|pushdown| match pushdown {
                TableProviderFilterPushDown::Exact => TableProviderFilterPushDown::Inexact,
                other => other,
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let live = BluelampOptions::live(state.config_options());
        match self.acceleration.choose(live, &self.live.schema())? {
            None => self.live.scan(state, projection, filters, limit).await,
            Some(copy) => {
                let schema = self.live.schema();
                let batches = aligned(&copy.batches, &copy.schema, &schema)?;
                // Spread the batches over the session's partitions.
                let partitions = state
                    .config()
                    .target_partitions()
                    .clamp(1, batches.len().max(1));
                let mut parts = vec![Vec::new(); partitions];
                for (i, batch) in batches.into_iter().enumerate() {
                    parts[i % partitions].push(batch);
                }
                let table = MemTable::try_new(schema, parts)?;
                let scan = table.scan(state, projection, filters, limit).await?;
                Ok(Arc::new(CopyExec {
                    properties: Arc::clone(scan.properties()),
                    inner: scan,
                    as_of: copy.as_of,
                }))
            }
        }
    }

    fn statistics(&self) -> Option<Statistics> {
        let copy = self.acceleration.current()?;
        let mut statistics = Statistics::new_unknown(&self.live.schema());
        // Inexact: a scan may read the source instead (`bluelamp.live`, a
        // stale copy), so no count may be answered from these alone.
        statistics.num_rows = Precision::Inexact(usize::try_from(copy.rows).unwrap_or(usize::MAX));
        statistics.total_byte_size =
            Precision::Inexact(usize::try_from(copy.bytes).unwrap_or(usize::MAX));
        Some(statistics)
    }

    /// Deposits go to the source; the copy has them after its next refresh.
    async fn insert_into(
        &self,
        state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        self.live.insert_into(state, input, insert_op).await
    }

    fn get_column_default(&self, column: &str) -> Option<&Expr> {
        self.live.get_column_default(column)
    }
}

/// `batches` (of the copy's `stored` columns) with `wanted`'s columns in
/// `wanted`'s order: a copy read back from storage, or made before the
/// source reordered its columns, is never read by position. The names and
/// types are the same (a copy whose columns differ is not served).
fn aligned(
    batches: &[RecordBatch],
    stored: &SchemaRef,
    wanted: &SchemaRef,
) -> DFResult<Vec<RecordBatch>> {
    if stored == wanted {
        return Ok(batches.to_vec());
    }
    let indices = wanted
        .fields()
        .iter()
        .map(|f| stored.index_of(f.name()))
        .collect::<Result<Vec<_>, _>>()?;
    batches
        .iter()
        .map(|batch| {
            let columns = indices
                .iter()
                .map(|&i| Arc::clone(batch.column(i)))
                .collect();
            Ok(RecordBatch::try_new_with_options(
                Arc::clone(wanted),
                columns,
                &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
            )?)
        })
        .collect()
}

/// A scan of a local copy: the copy's rows, marked with its time so a
/// statement's result can say how fresh it is ([`oldest_copy`]).
#[derive(Debug)]
struct CopyExec {
    inner: Arc<dyn ExecutionPlan>,
    as_of: SystemTime,
    properties: Arc<PlanProperties>,
}

impl DisplayAs for CopyExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "AcceleratedCopyExec: as_of={}",
            chrono::DateTime::<chrono::Utc>::from(self.as_of)
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        )
    }
}

impl ExecutionPlan for CopyExec {
    fn name(&self) -> &str {
        "AcceleratedCopyExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.inner]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DFResult<TreeNodeRecursion>,
    ) -> DFResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        match (children.pop(), children.is_empty()) {
            (Some(inner), true) => Ok(Arc::new(CopyExec {
                properties: Arc::clone(inner.properties()),
                inner,
                as_of: self.as_of,
            })),
            _ => Err(DataFusionError::Internal(
                "AcceleratedCopyExec has one child".into(),
            )),
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DFResult<SendableRecordBatchStream> {
        self.inner.execute(partition, context)
    }
}

/// The time of the oldest local copy `plan` reads, if it reads any: how
/// fresh its answer is at worst.
pub fn oldest_copy(plan: &Arc<dyn ExecutionPlan>) -> Option<SystemTime> {
    let here = plan.downcast_ref::<CopyExec>().map(|copy| copy.as_of);
    plan.children()
        .into_iter()
        .filter_map(oldest_copy)
        .chain(here)
        .min()
}
