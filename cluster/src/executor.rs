//! [`run_executor`]: a Ballista executor that knows Bluelamp's sources.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use ballista_core::registry::BallistaFunctionRegistry;
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use bluelamp_connectors::files::FilesTableProvider;
use bluelamp_engine::Engine;
use datafusion::error::DataFusionError;
use datafusion::execution::object_store::ObjectStoreRegistry;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::object_store::ObjectStore;
use datafusion::prelude::SessionConfig;
use url::Url;

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

/// An executor's object stores: the configured files tables' own, and
/// nothing else. DataFusion's default registry also reads the whole local
/// file system (`file://`), so a plan forged by something on the cluster's
/// network could name any file the executor can read (its own
/// configuration, say); here such a scan is refused.
#[derive(Debug, Default)]
pub(crate) struct ConfiguredStores {
    stores: RwLock<HashMap<String, Arc<dyn ObjectStore>>>,
}

/// The part of a store's URL that names the store.
fn store_key(url: &Url) -> String {
    format!("{}://{}", url.scheme(), url.authority())
}

impl ObjectStoreRegistry for ConfiguredStores {
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        let mut stores = self.stores.write().unwrap_or_else(|e| e.into_inner());
        stores.insert(store_key(url), store)
    }

    fn deregister_store(&self, url: &Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
        let mut stores = self.stores.write().unwrap_or_else(|e| e.into_inner());
        stores.remove(&store_key(url)).ok_or_else(|| {
            DataFusionError::Plan(format!("no object store is registered for {url}"))
        })
    }

    fn get_store(&self, url: &Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
        let stores = self.stores.read().unwrap_or_else(|e| e.into_inner());
        stores.get(&store_key(url)).cloned().ok_or_else(|| {
            DataFusionError::Plan(format!(
                "this executor reads files only from its configuration's files sources, and \
                 {} is not one of them",
                store_key(url)
            ))
        })
    }
}

/// Runs an executor until the process is stopped (Ctrl-C or SIGTERM).
/// Scans of `engine`'s sources are rebuilt here with this process's own
/// credentials; file tables' stores are registered under the URLs every
/// process with the same configuration uses, and no other store is
/// ([`ConfiguredStores`]).
///
/// # Errors
/// The executor cannot start or reach the scheduler.
pub async fn run_executor(engine: Engine, options: ExecutorOptions) -> Result<(), ClusterError> {
    let limit = usize::try_from(engine.memory_limit()).unwrap_or(usize::MAX);
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_limit(limit, 1.0)
        .with_object_store_registry(Arc::new(ConfiguredStores::default()))
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
    let mut functions = SessionStateBuilder::new().with_default_features().build();
    // Plans name their functions; the ones that make huge values resolve
    // here to the same guards the front end's sessions use.
    let guarded = bluelamp_engine::ops::values::guarded_functions(
        |name| datafusion::execution::FunctionRegistry::udf(&functions, name).ok(),
        engine.config().engine.max_value_size,
        Arc::clone(&runtime.memory_pool),
    );
    for function in guarded {
        datafusion::execution::FunctionRegistry::register_udf(&mut functions, Arc::new(function))
            .map_err(|e| ClusterError(format!("the executor's functions: {e}")))?;
    }
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

#[cfg(test)]
mod tests {
    use datafusion::object_store::memory::InMemory;

    use super::*;

    #[test]
    fn only_configured_stores_are_read() {
        let stores = ConfiguredStores::default();
        let ours = Url::parse("bluelamp-files://anpr.reads/").unwrap();
        assert!(stores.get_store(&ours).is_err());
        stores.register_store(&ours, Arc::new(InMemory::new()));
        let inside =
            Url::parse("bluelamp-files://anpr.reads/day=2026-10-01/reads.parquet").unwrap();
        assert!(stores.get_store(&inside).is_ok());
        for other in [
            "file:///etc/passwd",
            "file:///",
            "bluelamp-files://custody/x",
            "s3://b/k",
        ] {
            let error = stores
                .get_store(&Url::parse(other).unwrap())
                .unwrap_err()
                .to_string();
            assert!(
                error.contains("only from its configuration"),
                "{other}: {error}"
            );
        }
        assert!(stores.deregister_store(&ours).is_ok());
        assert!(stores.get_store(&inside).is_err());
    }
}
