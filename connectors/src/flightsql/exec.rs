//! How sub-plans reach a Flight SQL server: through datafusion-federation,
//! like the SQL databases, with two differences.
//!
//! - **What is sent** is what the server declared
//!   ([`super::capabilities`]), through the same plan hook and SQL repairs
//!   as every database (`crate::sql::exec::Repaired`).
//! - **Who asks.** The crate's planner hands every federated sub-plan one
//!   executor, fixed when the table was built, so it cannot know the end
//!   user. [`ActingPlanner`] plans each sub-plan with an executor bound to
//!   the session's principal, whose name goes to the server in the
//!   configured identity header; the crate's own planner does the rest.
//!
//! A table's own scan (where federation does not take the plan) is one
//! query too ([`RemoteQuery`]): the columns and row limit asked for, as the
//! session's user.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use bluelamp_engine::{Principal, SourceConfig};
use datafusion::catalog::Session;
use datafusion::common::tree_node::Transformed;
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Extension, LogicalPlan};
use datafusion::optimizer::optimizer::Optimizer;
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::sql::unparser::dialect::{CustomDialectBuilder, Dialect};
use datafusion_federation::sql::{SQLExecutor, SQLFederationPlanner, SQLFederationProvider};
use datafusion_federation::{FederatedPlanNode, FederationPlanner};
use futures::StreamExt;

use super::client::{Connection, RemoteTable};
use crate::sql::exec::{Remote, Repaired};
use crate::sql::functions::Database;

/// Runs SQL on one Flight SQL server, for one end user (or, unbound, as
/// the source's own account).
#[derive(Clone)]
pub(crate) struct FlightExecutor {
    pub(crate) connection: Connection,
    /// Which sub-plans may be sent together: one source's tables.
    pub(crate) context: String,
    pub(crate) quote: char,
    pub(crate) tables: Arc<Vec<RemoteTable>>,
    pub(crate) principal: Option<Principal>,
}

impl std::fmt::Debug for FlightExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlightExecutor")
            .field("context", &self.context)
            .finish()
    }
}

#[async_trait]
impl SQLExecutor for FlightExecutor {
    fn name(&self) -> &str {
        "flightsql"
    }

    fn compute_context(&self) -> Option<String> {
        Some(self.context.clone())
    }

    fn dialect(&self) -> Arc<dyn Dialect> {
        Arc::new(
            CustomDialectBuilder::new()
                .with_identifier_quote_style(self.quote)
                .build(),
        )
    }

    fn execute(
        &self,
        query: &str,
        schema: SchemaRef,
        _filters: &[Arc<dyn PhysicalExpr>],
    ) -> DFResult<SendableRecordBatchStream> {
        tracing::debug!(target: "bluelamp::flightsql", url = %self.connection.url, "{query}");
        Ok(self
            .connection
            .query(query.to_string(), schema, self.principal.clone()))
    }

    async fn table_names(&self) -> DFResult<Vec<String>> {
        Ok(self.tables.iter().map(|t| t.name.clone()).collect())
    }

    async fn get_table_schema(&self, table_name: &str) -> DFResult<SchemaRef> {
        self.tables
            .iter()
            .find(|t| t.name == table_name)
            .map(|t| Arc::clone(&t.columns))
            .ok_or_else(|| DataFusionError::Plan(format!("no remote table '{table_name}'")))
    }
}

/// The server's declared capabilities, as the shared plan hook reads them.
pub(crate) struct FlightRemote {
    pub(crate) database: Database,
}

impl Remote for FlightRemote {
    fn database(&self) -> Database {
        self.database.clone()
    }
}

/// Plans each federated sub-plan with an executor bound to the session's
/// principal.
pub(crate) struct ActingPlanner {
    pub(crate) executor: FlightExecutor,
    pub(crate) database: Database,
    pub(crate) source: SourceConfig,
}

impl ActingPlanner {
    /// The executor for `principal`, wrapped with the shared repairs.
    pub(crate) fn executor_for(&self, principal: Option<Principal>) -> Arc<dyn SQLExecutor> {
        Arc::new(Repaired {
            inner: Arc::new(FlightExecutor {
                principal,
                ..self.executor.clone()
            }),
            remote: FlightRemote {
                database: self.database.clone(),
            },
            source: self.source.clone(),
        })
    }
}

/// The principal a session runs as, from its configuration.
pub(crate) fn principal_of(session: &dyn Session) -> Option<Principal> {
    session
        .config()
        .get_extension::<Principal>()
        .map(|p| p.as_ref().clone())
}

#[async_trait]
impl FederationPlanner for ActingPlanner {
    async fn plan_federation(
        &self,
        node: &FederatedPlanNode,
        session: &dyn Session,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let executor = self.executor_for(principal_of(session));
        SQLFederationPlanner::new(executor)
            .plan_federation(node, session)
            .await
    }
}

/// Wraps a sub-plan the federation rule hands over in a federated node
/// planned by [`ActingPlanner`], then applies the executor's plan hook — as
/// the crate's own rule does with its planner.
#[derive(Debug)]
struct ActingRule {
    planner: Arc<ActingPlanner>,
    executor: Arc<dyn SQLExecutor>,
}

impl std::fmt::Debug for ActingPlanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActingPlanner")
            .field("source", &self.source.name)
            .finish()
    }
}

impl OptimizerRule for ActingRule {
    fn name(&self) -> &str {
        "federate_flightsql"
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> DFResult<Transformed<LogicalPlan>> {
        if let LogicalPlan::Extension(Extension { node }) = &plan
            && node.name() == "Federated"
        {
            return Ok(Transformed::no(plan));
        }
        let planner: Arc<dyn FederationPlanner> = Arc::clone(&self.planner) as _;
        let mut plan = LogicalPlan::Extension(Extension {
            node: Arc::new(FederatedPlanNode::new(plan, planner)),
        });
        if let Some(mut hook) = self.executor.logical_optimizer() {
            plan = hook(plan)?;
        }
        Ok(Transformed::yes(plan))
    }
}

/// The federation provider for one source: its sub-plans are planned by
/// `planner`.
pub(crate) fn provider(planner: Arc<ActingPlanner>) -> Arc<SQLFederationProvider> {
    let executor = planner.executor_for(None);
    let rule = ActingRule {
        planner,
        executor: Arc::clone(&executor),
    };
    Arc::new(SQLFederationProvider {
        optimizer: Arc::new(Optimizer::with_rules(vec![Arc::new(rule)])),
        executor,
    })
}

/// One query, run when the plan runs, as the session's principal.
#[derive(Debug)]
pub(super) struct RemoteQuery {
    pub(super) connection: Connection,
    pub(super) sql: String,
    /// What the server returns.
    pub(super) read: SchemaRef,
    /// What the scan returns: no columns where only rows are counted.
    pub(super) project: SchemaRef,
}

impl PartitionStream for RemoteQuery {
    fn schema(&self) -> &SchemaRef {
        &self.project
    }

    fn execute(&self, ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let principal = ctx
            .session_config()
            .get_extension::<bluelamp_engine::Principal>()
            .map(|p| p.as_ref().clone());
        let stream = self
            .connection
            .query(self.sql.clone(), Arc::clone(&self.read), principal);
        if self.project.fields().is_empty() {
            let project = Arc::clone(&self.project);
            Box::pin(
                datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(
                    Arc::clone(&self.project),
                    stream.map(move |batch| {
                        let batch = batch?;
                        Ok(RecordBatch::try_new_with_options(
                            Arc::clone(&project),
                            Vec::new(),
                            &arrow::array::RecordBatchOptions::new()
                                .with_row_count(Some(batch.num_rows())),
                        )?)
                    }),
                ),
            )
        } else {
            stream
        }
    }
}
