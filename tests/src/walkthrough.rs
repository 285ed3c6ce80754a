//! The connector that `docs/connectors.md`'s walk-through builds, step by
//! step, from an empty file to passing the conformance suite:
//! `kind = "ipc"`, a folder of Arrow IPC files (`NAME.arrow`), each file a
//! table. It is small on purpose, but it is a whole connector: typed options
//! checked without I/O, tables listed at connect, a scan that streams,
//! stops when its reader goes away and fails naming the source, filters
//! applied in the scan and shown by `EXPLAIN`.
//!
//! The steps are marked `Step N` below, as the guide numbers them. It is
//! not registered in Bluelamp itself (the `files` connector reads Arrow IPC
//! too); the suite's `suite!(ipc, ...)` registers it for its tests.

use std::fmt;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::{BooleanArray, RecordBatch};
use arrow::compute::{and, filter_record_batch};
use arrow::datatypes::SchemaRef;
use arrow::ipc::reader::FileReader;
use async_trait::async_trait;
use bluelamp_engine::{ConfigError, ConnectedSource, SourceConfig, SourceError, SourceFactory};
use datafusion::catalog::{SchemaProvider, Session};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema};
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use serde::Deserialize;
use tokio_stream::wrappers::ReceiverStream;

// Step 1: the factory. `kind` is what `[[source]] kind = "..."` names.

/// `kind = "ipc"`.
#[derive(Debug, Default)]
pub struct IpcSourceFactory;

#[async_trait]
impl SourceFactory for IpcSourceFactory {
    fn kind(&self) -> &'static str {
        "ipc"
    }

    // Step 2: options, checked without I/O.
    fn validate(&self, source: &SourceConfig) -> Result<(), ConfigError> {
        IpcConfig::read(source).map(|_| ())
    }

    // Step 3: connect, listing the tables.
    async fn connect(&self, source: &SourceConfig) -> Result<ConnectedSource, SourceError> {
        let config =
            IpcConfig::read(source).map_err(|e| SourceError::new(source, e.to_string()))?;
        let folder = source.resolve_path(&config.folder);
        let entries = std::fs::read_dir(&folder).map_err(|e| {
            SourceError::unavailable(source, format!("cannot read {}: {e}", folder.display()))
        })?;
        let mut tables = Vec::new();
        for entry in entries {
            let path = entry
                .map_err(|e| SourceError::unavailable(source, e.to_string()))?
                .path();
            if path.extension().is_some_and(|e| e == "arrow")
                && let Some(name) = path.file_stem().and_then(|s| s.to_str())
            {
                tables.push((name.to_string(), path.clone()));
            }
        }
        tables.sort();
        let mut connected = ConnectedSource::new(Arc::new(IpcSchema {
            source: source.clone(),
            tables,
        }));
        if connected.schema.table_names().is_empty() {
            connected
                .warnings
                .push(format!("{} has no .arrow files", folder.display()));
        }
        Ok(connected)
    }
}

/// The options of an `ipc` source.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IpcConfig {
    /// The folder of `.arrow` files, relative to the config file.
    folder: String,
}

impl IpcConfig {
    /// The options, with each mistake naming the file, line and key.
    fn read(source: &SourceConfig) -> Result<Self, ConfigError> {
        let config: Self = source.options()?;
        if config.folder.trim().is_empty() {
            return Err(source.error("folder", "give the folder of .arrow files"));
        }
        Ok(config)
    }
}

/// One source's tables: a file each.
#[derive(Debug)]
struct IpcSchema {
    source: SourceConfig,
    tables: Vec<(String, PathBuf)>,
}

#[async_trait]
impl SchemaProvider for IpcSchema {
    fn table_names(&self) -> Vec<String> {
        self.tables.iter().map(|(name, _)| name.clone()).collect()
    }

    async fn table(&self, name: &str) -> DFResult<Option<Arc<dyn TableProvider>>> {
        let Some((_, path)) = self.tables.iter().find(|(n, _)| n == name) else {
            return Ok(None);
        };
        // The schema is in the file's header: no rows are read here.
        let schema = File::open(path)
            .map_err(DataFusionError::from)
            .and_then(|file| Ok(FileReader::try_new(file, None)?.schema()))
            .map_err(|e| {
                SourceError::unavailable(&self.source, format!("table '{name}': {e}"))
                    .into_datafusion()
            })?;
        Ok(Some(Arc::new(IpcTable {
            source: self.source.clone(),
            name: name.to_string(),
            path: path.clone(),
            schema,
        })))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.tables.iter().any(|(n, _)| n == name)
    }
}

/// One `.arrow` file as a table.
#[derive(Debug)]
struct IpcTable {
    source: SourceConfig,
    name: String,
    path: PathBuf,
    schema: SchemaRef,
}

#[async_trait]
impl TableProvider for IpcTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    // Step 5: filters. The scan evaluates each filter with DataFusion's own
    // physical expressions, so its answer is DataFusion's by construction,
    // and `Exact` is the truth. A source that evaluates filters itself may
    // claim `Exact` only for what the suite proves it evaluates the same.
    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DFResult<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Exact; filters.len()])
    }

    // Step 4: the scan.
    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let table = DFSchema::try_from(self.schema.as_ref().clone())?;
        let predicates = filters
            .iter()
            .map(|filter| state.create_physical_expr(unqualified(filter.clone())?, &table))
            .collect::<DFResult<Vec<_>>>()?;
        let output = match projection {
            Some(columns) => Arc::new(self.schema.project(columns)?),
            None => Arc::clone(&self.schema),
        };
        Ok(Arc::new(IpcScanExec {
            source: self.source.clone(),
            table: self.name.clone(),
            path: self.path.clone(),
            projection: projection.cloned(),
            shown: filters.iter().map(ToString::to_string).collect(),
            predicates,
            limit,
            properties: Arc::new(PlanProperties::new(
                EquivalenceProperties::new(Arc::clone(&output)),
                Partitioning::UnknownPartitioning(1),
                EmissionType::Incremental,
                Boundedness::Bounded,
            )),
            output,
        }))
    }
}

/// `expr` with its columns named without the table's qualifier, as this
/// table's own schema names them.
fn unqualified(expr: Expr) -> DFResult<Expr> {
    expr.transform(|e| match e {
        Expr::Column(c) => Ok(Transformed::yes(Expr::Column(Column::new_unqualified(
            c.name,
        )))),
        other => Ok(Transformed::no(other)),
    })
    .map(|t| t.data)
}

/// Reads one file: its batches, filtered, projected and cut at the limit.
#[derive(Debug)]
struct IpcScanExec {
    source: SourceConfig,
    table: String,
    path: PathBuf,
    projection: Option<Vec<usize>>,
    /// The filters as `EXPLAIN` shows them (Step 6).
    shown: Vec<String>,
    predicates: Vec<Arc<dyn PhysicalExpr>>,
    limit: Option<usize>,
    output: SchemaRef,
    properties: Arc<PlanProperties>,
}

// Step 6: EXPLAIN shows what the scan does.
impl DisplayAs for IpcScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "IpcScanExec: source={} table={}",
            self.source.name, self.table
        )?;
        if !self.shown.is_empty() {
            write!(f, " filters=[{}]", self.shown.join(", "))?;
        }
        if let Some(limit) = self.limit {
            write!(f, " limit={limit}")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for IpcScanExec {
    fn name(&self) -> &str {
        "IpcScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DFResult<TreeNodeRecursion>,
    ) -> DFResult<TreeNodeRecursion> {
        for predicate in &self.predicates {
            if f(predicate)? == TreeNodeRecursion::Stop {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
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
                "IpcScanExec has no children".into(),
            ))
        }
    }

    fn execute(
        &self,
        _partition: usize,
        _context: Arc<TaskContext>,
    ) -> DFResult<SendableRecordBatchStream> {
        // The file is read on a blocking thread, a batch at a time, into a
        // channel of two: memory stays bounded, and when the query is
        // cancelled (the stream dropped) the next send fails and reading
        // stops.
        let (tx, rx) = tokio::sync::mpsc::channel::<DFResult<RecordBatch>>(2);
        let read = Read {
            source: self.source.clone(),
            table: self.table.clone(),
            path: self.path.clone(),
            projection: self.projection.clone(),
            predicates: self.predicates.clone(),
            limit: self.limit,
        };
        tokio::task::spawn_blocking(move || {
            if let Err(e) = read.run(&tx) {
                let _ = tx.blocking_send(Err(e));
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.output),
            ReceiverStream::new(rx),
        )))
    }
}

/// What one scan reads, moved to its thread.
struct Read {
    source: SourceConfig,
    table: String,
    path: PathBuf,
    projection: Option<Vec<usize>>,
    predicates: Vec<Arc<dyn PhysicalExpr>>,
    limit: Option<usize>,
}

impl Read {
    /// Sends each batch; an error names the source (Step 7).
    fn run(&self, tx: &tokio::sync::mpsc::Sender<DFResult<RecordBatch>>) -> DFResult<()> {
        let fail = |e: &dyn fmt::Display| {
            SourceError::unavailable(
                &self.source,
                format!("table '{}': {}: {e}", self.table, self.path.display()),
            )
            .into_datafusion()
        };
        let file = File::open(&self.path).map_err(|e| fail(&e))?;
        let reader = FileReader::try_new(file, None).map_err(|e| fail(&e))?;
        let mut left = self.limit.unwrap_or(usize::MAX);
        for batch in reader {
            if left == 0 {
                break;
            }
            let mut batch = self.keep(batch.map_err(|e| fail(&e))?)?;
            if let Some(columns) = &self.projection {
                batch = batch.project(columns)?;
            }
            if batch.num_rows() > left {
                batch = batch.slice(0, left);
            }
            left -= batch.num_rows();
            if tx.blocking_send(Ok(batch)).is_err() {
                break; // The query was cancelled.
            }
        }
        Ok(())
    }

    /// The rows of `batch` for which every filter is true (NULL is not).
    fn keep(&self, batch: RecordBatch) -> DFResult<RecordBatch> {
        let mut mask: Option<BooleanArray> = None;
        for predicate in &self.predicates {
            let values = predicate.evaluate(&batch)?.into_array(batch.num_rows())?;
            let values = values
                .as_any()
                .downcast_ref::<BooleanArray>()
                .ok_or_else(|| DataFusionError::Internal("a filter that is not boolean".into()))?
                .clone();
            mask = Some(match mask {
                Some(m) => and(&m, &values)?,
                None => values,
            });
        }
        match mask {
            Some(mask) => Ok(filter_record_batch(&batch, &mask)?),
            None => Ok(batch),
        }
    }
}
