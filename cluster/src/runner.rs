//! [`ClusterRunner`]: sends a front end's finished plans to the scheduler.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::RecordBatch;
use async_trait::async_trait;
use ballista_core::execution_plans::execute_physical_plan;
use ballista_core::extension::SessionConfigExt;
use bluelamp_connectors::openapi::exec::OpenApiExec;
use bluelamp_engine::PlanRunner;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::union::UnionExec;
use datafusion::prelude::SessionConfig;
use datafusion_proto::protobuf::PhysicalPlanNode;
use futures::{StreamExt, TryStreamExt};

use crate::ClusterError;
use crate::codec::BluelampCodec;
use crate::service::ServiceClient;

/// Runs plans on the Ballista scheduler at a `df://host:port` address.
#[derive(Debug)]
pub struct ClusterRunner {
    /// The scheduler's gRPC address, `http://host:port`.
    scheduler: String,
    /// The cluster service beside it, which counts lost executors.
    service: ServiceClient,
}

impl ClusterRunner {
    /// A runner for the scheduler at `address` (`df://host:port`, or
    /// `host:port`; the port defaults to Ballista's 50050) and its cluster
    /// service at `service` (default: beside the scheduler, see
    /// [`ServiceClient::beside`]).
    ///
    /// # Errors
    /// An address is not a host and port.
    pub fn new(address: &str, service: Option<&str>) -> Result<Self, ClusterError> {
        let (host, port) = Self::host_and_port(address)?;
        let service = match service {
            Some(url) => url.to_string(),
            None => ServiceClient::beside(address)?,
        };
        Ok(Self {
            scheduler: format!("http://{host}:{port}"),
            service: ServiceClient::new(&service)?,
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
        runs_on_cluster(plan)
    }

    fn needs_local_plan(&self, plan: &Arc<dyn ExecutionPlan>) -> bool {
        has_lookup(plan)
    }

    async fn run(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        task: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let stripes = task.session_config().target_partitions().max(2);
        let plan = sliced(plan, stripes).await?;
        let settings = cluster_settings(task.session_config())?;
        let before = losses(&self.service, &self.scheduler).await?;
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
        // The job has finished when its first rows (or its end) arrive:
        // if an executor was lost meanwhile, Ballista may have re-run
        // stages, which is not trusted to answer exactly (see `losses`).
        let (service, scheduler) = (self.service.clone(), self.scheduler.clone());
        let check = async move {
            if losses(&service, &scheduler).await? == before {
                Ok(())
            } else {
                Err(DataFusionError::Execution(format!(
                    "an executor of the cluster at {scheduler} was lost while this query ran, \
                     so it has no answer; run it again"
                )))
            }
        };
        let stream = checked_first(stream, check);
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}

/// `plan` with each OpenAPI scan that can be split replaced by its
/// single-partition parts side by side (a union): a scan of several
/// request series by its slices ([`OpenApiExec::slices`]); one whose
/// filters give a column a range by up to `stripes` windows of it
/// ([`OpenApiExec::windowed`]); and one offset-paged series whose first
/// page gives a total by up to `stripes` stripes of its pages
/// ([`OpenApiExec::striped`], which asks the source for that first page). Ballista hands each task a leaf's
/// partitions only for leaves it knows, and runs every partition of any
/// other in every task, which read a three-incident scan three times over
/// in a test.
///
/// # Errors
/// A scan's first page cannot be read, naming the source.
pub async fn sliced(
    plan: Arc<dyn ExecutionPlan>,
    stripes: usize,
) -> Result<Arc<dyn ExecutionPlan>> {
    let mut scans = Vec::new();
    plan.apply(|node| {
        if node.downcast_ref::<OpenApiExec>().is_some() {
            scans.push(Arc::clone(node));
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    // Each scan's parts, by the scan node's address in `plan`.
    let mut parts = HashMap::new();
    for node in scans {
        let Some(scan) = node.downcast_ref::<OpenApiExec>() else {
            continue;
        };
        let mut split = scan.slices();
        if split.len() <= 1 {
            split = scan.windowed(stripes);
        }
        if split.len() <= 1 {
            split = scan.striped(stripes).await?;
        }
        if split.len() > 1 {
            parts.insert(address(&node), split);
        }
    }
    if parts.is_empty() {
        return Ok(plan);
    }
    plan.transform_up(|node| {
        let Some(split) = parts.remove(&address(&node)) else {
            return Ok(Transformed::no(node));
        };
        let children = split
            .into_iter()
            .map(|part| Arc::new(part) as Arc<dyn ExecutionPlan>)
            .collect();
        let union = UnionExec::try_new(children)?;
        // The plan above was made for the scan's own partitions: a scan of
        // one partition split into windows or stripes is merged back into
        // one (a sort above it would otherwise read the first part only).
        // Ballista still runs the parts as tasks of their own stage.
        if node.properties().partitioning.partition_count() == 1 {
            Ok(Transformed::yes(Arc::new(CoalescePartitionsExec::new(
                union,
            ))))
        } else {
            Ok(Transformed::yes(union))
        }
    })
    .map(|done| done.data)
}

/// Where `node` is, to know it again in the same plan.
fn address(node: &Arc<dyn ExecutionPlan>) -> usize {
    Arc::as_ptr(node).cast::<()>() as usize
}

/// Executors lost so far, as the cluster service of the scheduler at
/// `scheduler` counts them.
async fn losses(service: &ServiceClient, scheduler: &str) -> Result<u64> {
    service.losses().await.map_err(|e| {
        DataFusionError::Execution(format!(
            "the cluster at {scheduler} cannot be trusted with this query: {e}"
        ))
    })
}

/// `stream`, with `check` run once before its first item (or its end)
/// is passed on; a failed check ends the stream with its error instead.
fn checked_first<'a>(
    stream: impl futures::Stream<Item = Result<RecordBatch>> + Send + 'a,
    check: impl std::future::Future<Output = Result<()>> + Send + 'a,
) -> impl futures::Stream<Item = Result<RecordBatch>> + Send + 'a {
    let state = (Box::pin(stream), Some(Box::pin(check)), false);
    futures::stream::unfold(state, |(mut stream, mut check, done)| async move {
        if done {
            return None;
        }
        let item = stream.next().await;
        if let Some(check) = check.take()
            && let Err(e) = check.await
        {
            return Some((Err(e), (stream, None, true)));
        }
        item.map(|item| (item, (stream, None, false)))
    })
}

/// Whether a cluster should run `plan`: it reads a source, and no scan in
/// it needs a join's keys while it runs (an OpenAPI path only a join
/// fills), which only one process can pass. Otherwise the front end runs it.
pub fn runs_on_cluster(plan: &Arc<dyn ExecutionPlan>) -> bool {
    let mut reads = false;
    let _ = plan.apply(|node| {
        reads |= node.children().is_empty() && !in_memory(node.as_ref());
        Ok(if reads {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    reads && !has_lookup(plan)
}

/// Whether `plan` has an OpenAPI scan whose path only a join's keys can
/// fill while it runs.
pub fn has_lookup(plan: &Arc<dyn ExecutionPlan>) -> bool {
    let mut lookup = false;
    let _ = plan.apply(|node| {
        lookup = node
            .downcast_ref::<OpenApiExec>()
            .is_some_and(OpenApiExec::needs_lookup);
        Ok(if lookup {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    lookup
}

/// The settings a job runs with on the cluster: every DataFusion option
/// of the session that planned it (partitions, join thresholds, batch
/// size), with Ballista's own. The scheduler re-plans the plan's stages
/// with them, so they must be those the plan was made for: with Ballista's
/// defaults (16 partitions where the session planned 2) the stage planner
/// re-partitioned one side of a partitioned join and a join's count came
/// out 329 for 299. Bluelamp's own options stay here, where statements are
/// checked.
fn cluster_settings(session: &SessionConfig) -> Result<SessionConfig> {
    let mut settings = SessionConfig::new_with_ballista();
    for entry in session.options().entries() {
        if let (true, Some(value)) = (entry.key.starts_with("datafusion."), &entry.value) {
            settings.options_mut().set(&entry.key, value)?;
        }
    }
    Ok(settings)
}

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
