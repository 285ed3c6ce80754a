//! `REFRESH TABLE source.table`: refreshes an accelerated table now.
//!
//! The session plans the statement as a scan of [`RefreshTable`] named
//! after the table, so the statement passes through the session's audit
//! like any read of it; running the scan runs the refresh and returns one
//! row: the table, its mode, the rows fetched, the rows in the new copy and
//! the copy's time.

use std::fmt;
use std::sync::Arc;

use arrow::array::{RecordBatch, StringArray, TimestampMillisecondArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::TableProvider;
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};

use super::Acceleration;
use crate::catalog::SourceSchema;

/// The columns `REFRESH TABLE` returns.
fn refreshed_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("table", DataType::Utf8, false),
        Field::new("mode", DataType::Utf8, false),
        Field::new("fetched", DataType::UInt64, false),
        Field::new("rows", DataType::UInt64, false),
        Field::new(
            "as_of",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
    ]))
}

/// One accelerated table, as `REFRESH TABLE` scans it.
#[derive(Debug)]
pub(crate) struct RefreshTable {
    source: Arc<SourceSchema>,
    acceleration: Arc<Acceleration>,
}

impl RefreshTable {
    /// Refreshes `acceleration`, a table of `source`, when scanned.
    pub(crate) fn new(source: Arc<SourceSchema>, acceleration: Arc<Acceleration>) -> Self {
        Self {
            source,
            acceleration,
        }
    }
}

#[async_trait]
impl TableProvider for RefreshTable {
    fn schema(&self) -> SchemaRef {
        refreshed_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let schema = match projection {
            Some(columns) => Arc::new(refreshed_schema().project(columns)?),
            None => refreshed_schema(),
        };
        let properties = PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        Ok(Arc::new(RefreshExec {
            source: Arc::clone(&self.source),
            acceleration: Arc::clone(&self.acceleration),
            projection: projection.cloned(),
            properties: Arc::new(properties),
        }))
    }
}

/// Runs one refresh and returns its row.
#[derive(Debug)]
struct RefreshExec {
    source: Arc<SourceSchema>,
    acceleration: Arc<Acceleration>,
    projection: Option<Vec<usize>>,
    properties: Arc<PlanProperties>,
}

impl DisplayAs for RefreshExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "RefreshExec: table={}.{}",
            self.acceleration.source(),
            self.acceleration.table()
        )
    }
}

impl ExecutionPlan for RefreshExec {
    fn name(&self) -> &str {
        "RefreshExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DFResult<TreeNodeRecursion>,
    ) -> DFResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            Err(DataFusionError::Internal(
                "RefreshExec has no children".into(),
            ))
        }
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> DFResult<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!(
                "RefreshExec has one partition, not {partition}"
            )));
        }
        let source = Arc::clone(&self.source);
        let acceleration = Arc::clone(&self.acceleration);
        let projection = self.projection.clone();
        let refreshed = async move {
            let done = acceleration
                .refresh_from(&source)
                .await
                .map_err(DataFusionError::Execution)?;
            let columns: Vec<arrow::array::ArrayRef> = vec![
                Arc::new(StringArray::from(vec![format!(
                    "{}.{}",
                    acceleration.source(),
                    acceleration.table()
                )])),
                Arc::new(StringArray::from(vec![acceleration.config.mode.as_str()])),
                Arc::new(UInt64Array::from(vec![done.fetched])),
                Arc::new(UInt64Array::from(vec![done.rows])),
                Arc::new(
                    TimestampMillisecondArray::from(vec![crate::catalog::unix_millis(done.as_of)])
                        .with_timezone("UTC"),
                ),
            ];
            let batch = RecordBatch::try_new(refreshed_schema(), columns)?;
            match &projection {
                Some(columns) => Ok(batch.project(columns)?),
                None => Ok(batch),
            }
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema(),
            futures::stream::once(refreshed),
        )))
    }
}
