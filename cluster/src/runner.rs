//! [`ClusterRunner`]: sends a front end's finished plans to the scheduler.

use std::sync::Arc;

use async_trait::async_trait;
use ballista_core::execution_plans::execute_physical_plan;
use ballista_core::extension::SessionConfigExt;
use bluelamp_engine::PlanRunner;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::prelude::SessionConfig;
use datafusion_proto::protobuf::PhysicalPlanNode;
use futures::TryStreamExt;

use crate::ClusterError;
use crate::codec::BluelampCodec;

/// Runs plans on the Ballista scheduler at a `df://host:port` address.
#[derive(Debug)]
pub struct ClusterRunner {
    /// The scheduler's gRPC address, `http://host:port`.
    scheduler: String,
}

impl ClusterRunner {
    /// A runner for the scheduler at `address` (`df://host:port`, or
    /// `host:port`; the port defaults to Ballista's 50050).
    ///
    /// # Errors
    /// The address is not a host and port.
    pub fn new(address: &str) -> Result<Self, ClusterError> {
        let (host, port) = Self::host_and_port(address)?;
        Ok(Self {
            scheduler: format!("http://{host}:{port}"),
        })
    }

    /// The host and port of a scheduler's address (`df://host:port`, or
    /// `host:port`; the port defaults to Ballista's 50050).
    ///
    /// # Errors
    /// The address is not a host and port.
    pub fn host_and_port(address: &str) -> Result<(String, u16), ClusterError> {
        let rest = address
            .strip_prefix("df://")
            .or_else(|| address.strip_prefix("http://"))
            .unwrap_or(address)
            .trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) => (
                host,
                port.parse::<u16>().map_err(|_| {
                    ClusterError(format!(
                        "cluster address \"{address}\": the port is not a number \
                         (expected df://HOST:PORT)"
                    ))
                })?,
            ),
            None => (rest, 50050),
        };
        if host.is_empty() || host.contains('/') {
            return Err(ClusterError(format!(
                "cluster address \"{address}\" is not a scheduler's address \
                 (expected df://HOST:PORT)"
            )));
        }
        Ok((host.to_string(), port))
    }
}

#[async_trait]
impl PlanRunner for ClusterRunner {
    /// Plans that read a source; those whose every leaf holds its rows in
    /// memory or makes them (`SELECT 1`, the catalog, `range()`) run where
    /// they were planned.
    fn accepts(&self, plan: &Arc<dyn ExecutionPlan>) -> bool {
        let mut reads = false;
        let _ = plan.apply(|node| {
            if node.children().is_empty() && !in_memory(node.as_ref()) {
                reads = true;
                return Ok(TreeNodeRecursion::Stop);
            }
            Ok(TreeNodeRecursion::Continue)
        });
        reads
    }

    async fn run(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        task: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let settings =
            SessionConfig::new_with_ballista().with_batch_size(task.session_config().batch_size());
        let ballista = settings.ballista_config();
        let codec = BluelampCodec::planning();
        let stream = execute_physical_plan::<PhysicalPlanNode>(
            self.scheduler.clone(),
            &ballista,
            plan,
            &codec,
            task.session_id(),
            settings,
        )
        .await
        .map_err(|e| {
            // A node that cannot cross is named (DataFusion's own error
            // would print the whole plan).
            codec.refusal().unwrap_or_else(|| {
                DataFusionError::Execution(format!(
                    "the cluster at {} could not run this query: {e}",
                    self.scheduler
                ))
            })
        })?;
        // A job that fails (an executor lost, a task failed) ends the
        // stream with an error; rows already sent are never the answer.
        let schema = stream.schema();
        let stream = stream.map_err(|e| {
            DataFusionError::Execution(format!(
                "the cluster could not finish this query, so it has no answer: {e}"
            ))
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}

/// A leaf that reads no source.
fn in_memory(leaf: &dyn ExecutionPlan) -> bool {
    if let Some(scan) = leaf.downcast_ref::<DataSourceExec>() {
        return scan
            .data_source()
            .downcast_ref::<FileScanConfig>()
            .is_none();
    }
    matches!(
        leaf.name(),
        "EmptyExec" | "PlaceholderRowExec" | "StreamingTableExec" | "LazyMemoryExec"
    )
}
