//! One executor wrapper for every database.
//!
//! `datafusion-table-providers` gives each table an executor
//! (`SQLExecutor`): how the federation planner names the database, writes
//! SQL for it and runs that SQL. [`Repaired`] wraps it so every database's
//! plans and SQL go through our hooks ([`super::repair::plan_hook`],
//! [`super::repair::sql_hook`]), and a database's own differences — how a
//! query runs, what planning learns of its size, a last touch on the SQL —
//! are a [`Remote`]'s few methods instead of a wrapper of its own.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use bluelamp_engine::ops::RequestError;
use bluelamp_engine::{SourceConfig, SourceError};
use datafusion::common::{Statistics, TableReference};
use datafusion::datasource::TableProvider;
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion::sql::unparser::dialect::Dialect;
use datafusion_federation::FederatedTableProviderAdaptor;
use datafusion_federation::sql::{
    AstAnalyzer, LogicalOptimizer, RemoteTableRef, SQLExecutor, SQLFederationProvider,
    SQLTableSource,
};
use futures::{StreamExt, TryStreamExt};

use super::functions::Database;

/// What one database does differently from the crate's executor, beyond the
/// repairs every database gets. Each method's default is the crate's way.
#[async_trait]
pub(crate) trait Remote: Send + Sync + Sized + 'static {
    /// Which database this is: its function lists, marks and repairs.
    fn database(&self) -> Database;

    /// The last step on each statement sent, after the repairs.
    fn finish(&self) -> Box<dyn FnMut(&mut Statement)> {
        Box::new(|_| {})
    }

    /// Runs `query` (already repaired) for rows of `schema`.
    ///
    /// # Errors
    /// If the query cannot be started.
    fn execute(
        &self,
        executor: &Repaired<Self>,
        query: &str,
        schema: SchemaRef,
        filters: &[Arc<dyn PhysicalExpr>],
    ) -> DFResult<SendableRecordBatchStream> {
        executor.inner.execute(query, schema, filters)
    }

    /// What planning may know of `plan`'s result.
    ///
    /// # Errors
    /// As the crate's executor.
    async fn statistics(
        &self,
        executor: &Repaired<Self>,
        plan: &LogicalPlan,
    ) -> DFResult<Statistics> {
        executor.inner.statistics(plan).await
    }
}

/// The crate's executor for one table, with our repairs and `remote`'s
/// differences.
pub(crate) struct Repaired<R> {
    /// The crate's executor.
    pub(crate) inner: Arc<dyn SQLExecutor>,
    pub(crate) remote: R,
    /// The source, named in every error a query meets there.
    pub(crate) source: SourceConfig,
}

/// `error`, met by a query in `source`, as an error naming the source (one
/// that already names a source is kept).
fn naming(source: &SourceConfig, error: DataFusionError) -> DataFusionError {
    if let DataFusionError::External(e) = &error
        && e.downcast_ref::<SourceError>().is_some()
    {
        return error;
    }
    let message = bluelamp_engine::source::error_chain(&error);
    let lost = message.contains("connection") || message.contains("Timed out");
    if lost {
        SourceError::unavailable(source, message).into_datafusion()
    } else {
        SourceError::new(source, message).into_datafusion()
    }
}

#[async_trait]
impl<R: Remote> SQLExecutor for Repaired<R> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn compute_context(&self) -> Option<String> {
        self.inner.compute_context()
    }

    fn dialect(&self) -> Arc<dyn Dialect> {
        self.inner.dialect()
    }

    fn logical_optimizer(&self) -> Option<LogicalOptimizer> {
        super::repair::plan_hook(self.inner.logical_optimizer(), self.remote.database())
    }

    fn ast_analyzer(&self) -> Option<AstAnalyzer> {
        super::repair::sql_hook(
            self.inner.ast_analyzer(),
            self.remote.database(),
            self.remote.finish(),
        )
    }

    fn execute(
        &self,
        query: &str,
        schema: SchemaRef,
        filters: &[Arc<dyn PhysicalExpr>],
    ) -> DFResult<SendableRecordBatchStream> {
        if let Some(captured) = super::portable::capture(
            &self.source.name,
            &self.remote.database(),
            query,
            &schema,
            filters,
        ) {
            return Ok(captured);
        }
        #[cfg(debug_assertions)]
        super::portable::assert_would_cross(&self.source.name, &self.remote.database(), query);
        let source = self.source.clone();
        let metrics = source.metrics();
        let sent = std::time::Instant::now();
        let stream = self
            .remote
            .execute(self, query, Arc::clone(&schema), filters)
            .map_err(|e| {
                metrics.error(RequestError::Connect);
                naming(&source, e)
            })?;
        // One query is one request; its rows and their decoded size are
        // what the source sent.
        let mut counted = Counted {
            metrics,
            sent,
            open: true,
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            schema,
            stream
                .map_err(move |e| naming(&source, e))
                .inspect(move |item| counted.see(item)),
        )))
    }

    async fn statistics(&self, plan: &LogicalPlan) -> DFResult<Statistics> {
        self.remote.statistics(self, plan).await
    }

    async fn table_names(&self) -> DFResult<Vec<String>> {
        self.inner.table_names().await
    }

    async fn get_table_schema(&self, table_name: &str) -> DFResult<SchemaRef> {
        self.inner.get_table_schema(table_name).await
    }
}

/// Counts one query's answer into its source's metrics as it streams.
struct Counted {
    metrics: bluelamp_engine::ops::SourceMetrics,
    sent: std::time::Instant,
    open: bool,
}

impl Counted {
    fn see(&mut self, item: &DFResult<arrow::array::RecordBatch>) {
        match item {
            Ok(batch) => self.metrics.fetched(
                batch.num_rows() as u64,
                batch.get_array_memory_size() as u64,
            ),
            Err(_) if self.open => {
                self.open = false;
                self.metrics.error(RequestError::Connect);
                self.metrics.request(self.sent.elapsed(), None);
            }
            Err(_) => {}
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        if self.open {
            self.metrics.request(self.sent.elapsed(), None);
        }
    }
}

/// `table` (`reference` in the database, of `schema`) as DataFusion reads
/// it: sub-plans over it are federated to the database through
/// [`Repaired`] with `remote`, and what cannot be is scanned from `table`.
pub(super) fn federated_read<T, R>(
    source: &SourceConfig,
    table: Arc<T>,
    remote: R,
    reference: TableReference,
    schema: SchemaRef,
) -> Arc<dyn TableProvider>
where
    T: SQLExecutor + TableProvider + 'static,
    R: Remote,
{
    let database = remote.database();
    let executor = Arc::new(Repaired {
        inner: Arc::clone(&table) as Arc<dyn SQLExecutor>,
        remote,
        source: source.clone(),
    });
    let source = Arc::new(SQLTableSource::new_with_schema(
        Arc::new(SQLFederationProvider::new(executor)),
        RemoteTableRef::from(reference),
        schema,
    ));
    // The table's own scan pushes only the filters the database answers as
    // DataFusion would.
    let scan: Arc<dyn TableProvider> = Arc::new(super::guard::Guarded::new(table, database));
    Arc::new(FederatedTableProviderAdaptor::new_with_provider(
        source, scan,
    ))
}
