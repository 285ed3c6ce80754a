//! Executor losses, counted where the scheduler records them, so a query
//! whose job lived through one is refused rather than answered.
//!
//! Ballista 55 answers the loss of an executor by rolling finished stages
//! back and running them again. In a test that killed an executor in the
//! middle of a join, the job then finished "successfully" with a wrong
//! count (47,081,385 pairs for 20,838,447). So [`CountingState`] counts
//! every executor the scheduler removes, before the scheduler acts on it;
//! the cluster service serves the count (`GET /v1/losses`), and the front end
//! reads it before submitting a job and again when the job has finished,
//! before any row is passed on ([`crate::ClusterRunner`]). A different
//! count means the job lived through a loss: the query fails with a clear
//! error and is run again by its user. And since a rolled-back job may
//! also never finish, the scheduler cancels its running jobs on each loss
//! ([`cancel_jobs_on_loss`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use ballista_core::JobId;
use ballista_core::error::Result;
use ballista_core::serde::protobuf::ExecutorHeartbeat;
use ballista_core::serde::scheduler::{ExecutorData, ExecutorMetadata};
use ballista_scheduler::cluster::{BoundTask, ClusterState, ClusterStateEventStream, ExecutorSlot};
use ballista_scheduler::config::TaskDistributionPolicy;
use ballista_scheduler::scheduler_server::SchedulerServer;
use ballista_scheduler::state::task_manager::JobInfoCache;
use datafusion_proto::logical_plan::AsLogicalPlan;
use datafusion_proto::physical_plan::AsExecutionPlan;
use tokio::sync::Notify;

/// Executors removed from the cluster since the scheduler started.
#[derive(Debug, Clone, Default)]
pub struct Losses {
    count: Arc<AtomicU64>,
    changed: Arc<Notify>,
}

impl Losses {
    /// How many so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }

    pub(crate) fn record(&self) {
        self.count.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_one();
    }

    /// Waits for the next loss (or one recorded since the last wait).
    pub(crate) async fn next(&self) {
        self.changed.notified().await;
    }
}

/// Cancels every running job of `scheduler` each time an executor is
/// lost: Ballista would otherwise roll stages back, which in a test hung
/// the job or answered wrongly. The front end reports the cancelled job as
/// failed; [`Losses`] catches a job that finished first. Returns the task,
/// which [`crate::Scheduler`] aborts when it stops.
pub(crate) fn cancel_jobs_on_loss<T, U>(
    scheduler: SchedulerServer<T, U>,
    losses: Losses,
) -> tokio::task::JoinHandle<()>
where
    T: 'static + AsLogicalPlan,
    U: 'static + AsExecutionPlan,
{
    tokio::spawn(async move {
        loop {
            losses.next().await;
            let running = scheduler.state.task_manager.get_running_job_cache();
            for job in running.keys() {
                tracing::warn!("cancelling job {job}: an executor was lost while it ran");
                if let Err(e) = scheduler.cancel_job(job.clone()).await {
                    tracing::error!("job {job} could not be cancelled: {e}");
                }
            }
        }
    })
}

/// Ballista's cluster state, counting each removal of an executor first.
pub(crate) struct CountingState {
    pub(crate) inner: Arc<dyn ClusterState>,
    pub(crate) losses: Losses,
}

#[async_trait]
impl ClusterState for CountingState {
    async fn init(&self) -> Result<()> {
        self.inner.init().await
    }

    async fn bind_schedulable_tasks(
        &self,
        distribution: TaskDistributionPolicy,
        active_jobs: Arc<HashMap<JobId, JobInfoCache>>,
        executors: Option<HashSet<String>>,
    ) -> Result<Vec<BoundTask>> {
        self.inner
            .bind_schedulable_tasks(distribution, active_jobs, executors)
            .await
    }

    async fn unbind_tasks(&self, executor_slots: Vec<ExecutorSlot>) -> Result<()> {
        self.inner.unbind_tasks(executor_slots).await
    }

    async fn register_executor(
        &self,
        metadata: ExecutorMetadata,
        spec: ExecutorData,
    ) -> Result<()> {
        self.inner.register_executor(metadata, spec).await
    }

    async fn save_executor_metadata(&self, metadata: ExecutorMetadata) -> Result<()> {
        self.inner.save_executor_metadata(metadata).await
    }

    async fn get_executor_metadata(&self, executor_id: &str) -> Result<ExecutorMetadata> {
        self.inner.get_executor_metadata(executor_id).await
    }

    async fn registered_executor_metadata(&self) -> Vec<ExecutorMetadata> {
        self.inner.registered_executor_metadata().await
    }

    async fn save_executor_heartbeat(&self, heartbeat: ExecutorHeartbeat) -> Result<()> {
        self.inner.save_executor_heartbeat(heartbeat).await
    }

    async fn remove_executor(&self, executor_id: &str) -> Result<()> {
        // Counted before the scheduler can roll a stage back.
        self.losses.record();
        self.inner.remove_executor(executor_id).await
    }

    fn executor_heartbeats(&self) -> HashMap<String, ExecutorHeartbeat> {
        self.inner.executor_heartbeats()
    }

    fn get_executor_heartbeat(&self, executor_id: &str) -> Option<ExecutorHeartbeat> {
        self.inner.get_executor_heartbeat(executor_id)
    }

    async fn cluster_state_events(&self) -> Result<ClusterStateEventStream> {
        self.inner.cluster_state_events().await
    }
}
