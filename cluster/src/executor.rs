//! [`run_executor`]: a Ballista executor that knows Bluelamp's sources.

use std::path::PathBuf;
use std::sync::Arc;

use ballista_core::registry::BallistaFunctionRegistry;
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use bluelamp_connectors::files::FilesTableProvider;
use bluelamp_engine::Engine;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::prelude::SessionConfig;

use crate::ClusterError;
use crate::codec::BluelampCodec;

/// Where an executor finds its scheduler and how it serves.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    /// The scheduler's host.
    pub scheduler_host: String,
    /// The scheduler's port.
    pub scheduler_port: u16,
    /// The host the executor listens on and tells the scheduler.
    pub host: String,
    /// Its Arrow Flight port (results and shuffles).
    pub flight_port: u16,
    /// Its gRPC port (tasks pushed by the scheduler).
    pub grpc_port: u16,
    /// Where it keeps shuffle files.
    pub work_dir: PathBuf,
    /// Tasks run at once.
    pub concurrent_tasks: usize,
}

/// Runs an executor until the process is stopped (Ctrl-C or SIGTERM).
/// Scans of `engine`'s sources are rebuilt here with this process's own
/// credentials; file tables' stores are registered under the URLs every
/// process with the same configuration uses.
///
/// # Errors
/// The executor cannot start or reach the scheduler.
pub async fn run_executor(engine: Engine, options: ExecutorOptions) -> Result<(), ClusterError> {
    let runtime = RuntimeEnvBuilder::new()
        .build_arc()
        .map_err(|e| ClusterError(format!("the executor's runtime: {e}")))?;
    for source in engine.config().sources.iter().filter(|s| s.kind == "files") {
        for table in engine.table_names(&source.name) {
            let provider = engine.live_table(&source.name, &table).await.map_err(|e| {
                ClusterError(format!("source '{}': table '{table}': {e}", source.name))
            })?;
            if let Some(files) = provider
                .as_deref()
                .and_then(|p| p.downcast_ref::<FilesTableProvider>())
            {
                let (url, store) = files.store();
                runtime.register_object_store(url.as_ref(), Arc::clone(store));
            }
        }
    }
    let functions = SessionStateBuilder::new().with_default_features().build();
    std::fs::create_dir_all(&options.work_dir).map_err(|e| {
        ClusterError(format!(
            "the executor's work folder {}: {e}",
            options.work_dir.display()
        ))
    })?;
    let config = ExecutorProcessConfig {
        scheduler_host: options.scheduler_host.clone(),
        scheduler_port: options.scheduler_port,
        scheduler_connect_timeout_seconds: 30,
        bind_host: options.host.clone(),
        external_host: Some(options.host.clone()),
        port: options.flight_port,
        grpc_port: options.grpc_port,
        vcores: options.concurrent_tasks,
        executor_heartbeat_interval_seconds: 5,
        work_dir: Some(options.work_dir.display().to_string()),
        override_physical_codec: Some(Arc::new(BluelampCodec::executing(engine))),
        override_runtime_producer: Some(Arc::new(move |_: &SessionConfig| {
            Ok(Arc::clone(&runtime))
        })),
        override_function_registry: Some(Arc::new(BallistaFunctionRegistry::from(&functions))),
        ..ExecutorProcessConfig::default()
    };
    start_executor_process(Arc::new(config))
        .await
        .map_err(|e| ClusterError(format!("the executor stopped: {e}")))
}
