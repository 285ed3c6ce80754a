//! How a PostgreSQL query runs: scans narrowed by the keys of the joins
//! they feed, results read with a binary `COPY` (`copy.rs`), and
//! PostgreSQL's own estimates of a sub-plan's size for planning.

use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::common::Statistics;
use datafusion::error::Result as DFResult;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect as ParsePostgres;
use datafusion_federation::sql::SQLExecutor;
use datafusion_table_providers::sql::db_connection_pool::postgrespool::PostgresConnectionPool;
use futures::TryStreamExt;

use super::copy;
use crate::sql::BoxError;
use crate::sql::exec::{Remote, Repaired};
use crate::sql::functions::Database;

/// PostgreSQL's differences from the crate's executor: scans narrowed by
/// join keys and read with a binary `COPY`, and PostgreSQL's own estimates.
pub(super) struct PostgresRemote {
    pub(super) pool: Arc<PostgresConnectionPool>,
}

/// How long planning waits for PostgreSQL's estimate of a sub-plan before
/// planning without it.
const ESTIMATE_TIMEOUT: Duration = Duration::from_secs(2);

impl PostgresRemote {
    /// PostgreSQL's own estimate of `plan`'s rows and width (see
    /// [`crate::sql::estimate`]), for the SQL `executor` would send.
    async fn estimate(
        &self,
        executor: &Repaired<Self>,
        plan: &LogicalPlan,
    ) -> Result<Option<Statistics>, BoxError> {
        let statement = crate::sql::estimate::remote_statement(plan, executor.dialect().as_ref())?;
        let statement = match executor.ast_analyzer() {
            Some(mut repair) => repair(statement)?,
            None => statement,
        };
        let sql = format!("EXPLAIN (FORMAT JSON) {statement}");
        let conn = tokio::time::timeout(ESTIMATE_TIMEOUT, self.pool.connect_direct()).await??;
        let row = tokio::time::timeout(ESTIMATE_TIMEOUT, conn.conn.query_one(sql.as_str(), &[]))
            .await??;
        let explain: serde_json::Value = row.try_get(0)?;
        Ok(crate::sql::estimate::postgres_explain(
            &explain,
            plan.schema().as_arrow(),
        ))
    }
}

#[async_trait]
impl Remote for PostgresRemote {
    fn database(&self) -> Database {
        Database::Postgres
    }

    /// Runs `query`, with the keys of the joins it feeds added to its
    /// `WHERE` clause (see [`crate::sql::dynamic`]), reading the result with a
    /// binary `COPY` where its column types allow (see [`copy`]).
    /// Both happen when the stream is first polled: a hash join polls a
    /// side only after building from the other, so by then its keys are
    /// known.
    fn execute(
        &self,
        executor: &Repaired<Self>,
        query: &str,
        schema: SchemaRef,
        filters: &[Arc<dyn PhysicalExpr>],
    ) -> DFResult<SendableRecordBatchStream> {
        let inner = Arc::clone(&executor.inner);
        let pool = Arc::clone(&self.pool);
        let query = query.to_string();
        let filters = filters.to_vec();
        let output = Arc::clone(&schema);
        let run = async move {
            let dialect = inner.dialect();
            let narrowed = crate::sql::dynamic::narrow(
                &query,
                &ParsePostgres {},
                dialect.as_ref(),
                &output,
                &filters,
            );
            if let Some(sql) = &narrowed {
                tracing::debug!("PostgreSQL scan narrowed by join keys: {sql}");
            }
            let sql = narrowed.as_deref().unwrap_or(&query);
            // The join keys only add WHERE conditions: the columns are the
            // original query's, whose (short) text is prepared to learn them.
            match copy::copy_stream(&pool, sql, &query, Arc::clone(&output)).await? {
                Some(stream) => Ok(stream),
                None => inner.execute(sql, output, &[]),
            }
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            schema,
            futures::stream::once(run).try_flatten(),
        )))
    }

    /// PostgreSQL's estimate, so joins with database tables are planned
    /// knowing their size; unknown (as DataFusion expects) when the estimate
    /// cannot be had — it only guides planning, the query itself still runs
    /// and reports its own errors.
    async fn statistics(
        &self,
        executor: &Repaired<Self>,
        plan: &LogicalPlan,
    ) -> DFResult<Statistics> {
        match self.estimate(executor, plan).await {
            Ok(Some(statistics)) => Ok(statistics),
            Ok(None) => Ok(Statistics::new_unknown(plan.schema().as_arrow())),
            Err(e) => {
                tracing::debug!("no PostgreSQL estimate for a federated sub-plan: {e}");
                Ok(Statistics::new_unknown(plan.schema().as_arrow()))
            }
        }
    }
}
