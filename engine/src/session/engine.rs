//! Starting the [`Engine`] and making its sessions: connecting the sources,
//! the principal and local identity, and each session's DataFusion context
//! (its `SessionConfig`, catalog and optimizer rules, with federation placed
//! after filter and projection push-down).

use std::sync::Arc;

use datafusion::catalog::{
    CatalogProvider, MemoryCatalogProvider, MemorySchemaProvider, SchemaProvider,
};
use datafusion::common::tree_node::Transformed;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::LogicalPlan;
use datafusion::logical_expr::Projection;
use datafusion::optimizer::OptimizerConfig;
use datafusion::optimizer::optimize_projections::OptimizeProjections;
use datafusion::optimizer::{Optimizer, OptimizerRule};
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_federation::{FederatedQueryPlanner, FederationOptimizerRule, get_table_source};
use futures::future::join_all;

use super::{CATALOG, Identity, SCRATCH_SCHEMA, SYSTEM_SCHEMA, Session};
use crate::catalog::{SourceSchema, SourceStatus, SystemSchema};
use crate::config::{Config, ConfigError};
use crate::error::{ErrorKind, QueryError};
use crate::principal::Principal;
use crate::source::FactoryRegistry;
use crate::source_joins::GroupSourceJoins;

/// Runs physical plans somewhere other than this process: a cluster.
/// Plans arrive checked, rewritten by policy and audited; the runner only
/// executes them.
#[async_trait::async_trait]
pub trait PlanRunner: Send + Sync + std::fmt::Debug {
    /// Starts `plan` and streams its one output.
    ///
    /// # Errors
    /// The plan cannot be sent or started.
    async fn run(
        &self,
        plan: Arc<dyn datafusion::physical_plan::ExecutionPlan>,
        task: Arc<datafusion::execution::TaskContext>,
    ) -> datafusion::error::Result<datafusion::execution::SendableRecordBatchStream>;

    /// Whether `plan` runs here rather than in this process. A plan that
    /// reads no source (`SELECT 1`, `information_schema`, `SHOW TABLES`)
    /// is better run where it was planned; so is one that needs state only
    /// one process shares (a scan driven by a join's keys), which the
    /// engine then plans again for itself.
    fn accepts(&self, _plan: &Arc<dyn datafusion::physical_plan::ExecutionPlan>) -> bool {
        true
    }

    /// Whether a plan this runner declines must be planned again for one
    /// process before it runs here (a scan only a join's keys can drive,
    /// which the runner's settings planned without them). Other declined
    /// plans run as planned.
    fn needs_local_plan(&self, _plan: &Arc<dyn datafusion::physical_plan::ExecutionPlan>) -> bool {
        false
    }
}

/// The running engine: connected sources and shared settings. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<EngineInner>,
}

pub(crate) struct EngineInner {
    config: Config,
    /// Where query plans run, when not in this process (a cluster).
    pub(crate) runner: std::sync::OnceLock<Arc<dyn PlanRunner>>,
    /// Whether read policy is configured (then sessions are governed).
    pub(crate) policy_active: bool,
    audit: Option<crate::audit::AuditLog>,
    pub(crate) sources: Vec<Arc<SourceSchema>>,
    system: Arc<dyn SchemaProvider>,
    /// The memory pool and spill files every session shares
    /// (`[engine] memory_limit`).
    runtime: Arc<RuntimeEnv>,
    /// Running statements and metrics.
    pub(crate) ops: Arc<crate::ops::Operations>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("sources", &self.inner.sources.len())
            .finish()
    }
}

impl Engine {
    /// Validates the config against the known connector kinds, then connects every
    /// source concurrently. A source that fails to connect is recorded as down; it
    /// does not stop the engine.
    ///
    /// # Errors
    /// [`ConfigError`] for an unknown kind, options a connector rejects, or
    /// an audit trail that cannot be opened.
    pub async fn start(config: Config, factories: &FactoryRegistry) -> Result<Self, ConfigError> {
        let ops = Arc::new(crate::ops::Operations {
            operator_role: config.engine.operator_role.clone(),
            ..crate::ops::Operations::default()
        });
        let mut pending = Vec::new();
        for source in &config.sources {
            let factory = factories.get(&source.kind).ok_or_else(|| {
                source.error(
                    "kind",
                    format!(
                        "unknown kind '{}'; known kinds: {}",
                        source.kind,
                        factories.kinds().join(", ")
                    ),
                )
            })?;
            factory.validate(source)?;
            let mut source = source.clone();
            source.metrics = Some(ops.metrics.source(&source.name));
            pending.push((source, Arc::clone(factory)));
        }
        // An audit trail that cannot be opened stops the engine before any
        // source is contacted.
        let audit = match &config.audit.path {
            Some(path) => Some(
                crate::audit::AuditLog::open(path, config.audit.rotate_bytes).map_err(|e| {
                    ConfigError::Invalid {
                        file: path.display().to_string(),
                        line: None,
                        key: "audit.path".into(),
                        message: e.message,
                    }
                })?,
            ),
            None => None,
        };
        let settings = config.engine.clone();
        let sources = join_all(pending.into_iter().map(|(source, factory)| {
            SourceSchema::connect(
                source,
                factory,
                settings.connect_timeout,
                settings.reconnect_after,
            )
        }))
        .await
        .into_iter()
        .map(Arc::new)
        .collect::<Vec<_>>();
        for warning in crate::policy::validate(&config.policy, &sources, &config.users).await? {
            tracing::warn!("{warning}");
        }
        let system = Arc::new(
            SystemSchema::new(sources.clone())
                .with_queries(Arc::new(crate::ops::QueriesTable::new(Arc::clone(&ops)))),
        );
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(usize_of(settings.memory_limit_bytes()), 1.0)
            .build_arc()
            .map_err(|e| ConfigError::Invalid {
                file: "[engine]".into(),
                line: None,
                key: "engine.memory_limit".into(),
                message: format!("the memory pool cannot be made: {e}"),
            })?;
        let engine = Self {
            inner: Arc::new(EngineInner {
                runtime,
                ops,
                policy_active: config.policy.read.is_active(),
                audit,
                config,
                sources,
                system,
                runner: std::sync::OnceLock::new(),
            }),
        };
        for source in &engine.inner.sources {
            source
                .start_accelerations(
                    |user| engine.principal(&Identity::new(user, "acceleration as_user")),
                    engine.audit_log(),
                    engine.inner.config.engine.data_dir.as_deref(),
                )
                .await;
        }
        Ok(engine)
    }

    /// Runs every query's plan through `runner` from now on (a cluster's
    /// scheduler), rather than in this process. Set once.
    ///
    /// # Errors
    /// A runner is already set.
    pub fn set_plan_runner(&self, runner: Arc<dyn PlanRunner>) -> Result<(), QueryError> {
        self.inner.runner.set(runner).map_err(|_| {
            QueryError::new(
                ErrorKind::InvalidQuery,
                "this engine already runs its plans on a cluster",
            )
        })
    }

    /// The table `source.table` as the source serves it: no policy, no
    /// acceleration. For a process that runs plans made and checked
    /// elsewhere (a cluster executor) to find its own copy of a table,
    /// with its own credentials.
    ///
    /// # Errors
    /// The source is down, or could not build the table.
    pub async fn live_table(
        &self,
        source: &str,
        table: &str,
    ) -> datafusion::error::Result<Option<Arc<dyn datafusion::datasource::TableProvider>>> {
        match self.inner.sources.iter().find(|s| s.name() == source) {
            Some(schema) => schema.live_table(table).await,
            None => Ok(None),
        }
    }

    /// Running and recent statements, and the metrics.
    pub fn operations(&self) -> &Arc<crate::ops::Operations> {
        &self.inner.ops
    }

    /// The metrics in Prometheus's text format, with every source's state
    /// and the memory pool's use read now.
    pub fn metrics_text(&self) -> String {
        let metrics = &self.inner.ops.metrics;
        for status in self.sources() {
            metrics.source_state(&status.name, status.state == crate::SourceState::Up);
        }
        metrics.memory(
            self.inner.runtime.memory_pool.reserved(),
            self.memory_limit(),
        );
        metrics.text()
    }

    /// Checks every source now, concurrently (each within the connect
    /// timeout): `(name, Ok)` for one that answers, else why not. For
    /// readiness probes; the sources' recorded states are left as they are.
    pub async fn check_sources(&self) -> Vec<(String, Result<(), String>)> {
        join_all(
            self.inner
                .sources
                .iter()
                .map(|source| async move { (source.name().to_string(), source.check().await) }),
        )
        .await
    }

    /// The most memory this process's statements may hold at once, in
    /// bytes (`[engine] memory_limit`, or half the machine's memory).
    pub fn memory_limit(&self) -> u64 {
        self.inner.config.engine.memory_limit_bytes()
    }

    /// `[policy] mask_key`, for a process that runs plans with `hash`
    /// masks made elsewhere (a cluster executor).
    pub fn mask_key(&self) -> Option<&[u8]> {
        self.inner.config.policy.mask_key.as_deref()
    }

    /// Every table of `source` (empty for an unknown or down source).
    pub fn table_names(&self, source: &str) -> Vec<String> {
        self.inner
            .sources
            .iter()
            .find(|s| s.name() == source)
            .map(|s| SchemaProvider::table_names(s.as_ref()))
            .unwrap_or_default()
    }

    /// Every source's status, in config order.
    pub fn sources(&self) -> Vec<SourceStatus> {
        self.inner.sources.iter().map(|s| s.status()).collect()
    }

    /// Every accelerated table's state, as `bluelamp.accelerations` shows
    /// it to an administrator.
    pub fn accelerations(&self) -> Vec<crate::accelerate::AccelerationStatus> {
        self.inner
            .sources
            .iter()
            .flat_map(|s| s.accelerations())
            .map(|a| a.status())
            .collect()
    }

    /// Refreshes accelerated table `source.table` now (as its schedule
    /// would), outside any session: what `REFRESH TABLE` does for a user.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`] if the table is not accelerated;
    /// [`ErrorKind::Unavailable`] if the refresh failed (the previous copy
    /// is kept).
    pub async fn refresh(
        &self,
        source: &str,
        table: &str,
    ) -> Result<crate::accelerate::Refreshed, QueryError> {
        let (schema, acceleration) = self.accelerated(source, table)?;
        acceleration
            .refresh_from(&schema)
            .await
            .map_err(|e| QueryError::new(ErrorKind::Unavailable, e))
    }

    /// The source schema and acceleration of accelerated table
    /// `source.table`.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`] if there is no such accelerated table.
    pub(crate) fn accelerated(
        &self,
        source: &str,
        table: &str,
    ) -> Result<(Arc<SourceSchema>, Arc<crate::accelerate::Acceleration>), QueryError> {
        let not_accelerated = || {
            QueryError::new(
                ErrorKind::NotFound,
                format!(
                    "table '{source}.{table}' is not accelerated: REFRESH TABLE applies to \
                     tables with [source.accelerate] or [source.tables.NAME.accelerate] \
                     (see bluelamp.accelerations)"
                ),
            )
        };
        let schema = self
            .inner
            .sources
            .iter()
            .find(|s| s.name() == source)
            .ok_or_else(not_accelerated)?;
        let acceleration = schema.acceleration(table).ok_or_else(not_accelerated)?;
        Ok((Arc::clone(schema), acceleration))
    }

    /// The configuration the engine runs with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The principal for an authenticated identity: the `[[user]]` entry of
    /// the same name supplies roles, force, clearance, teams and attributes;
    /// an identity with no entry has none of them.
    pub fn principal(&self, identity: &Identity) -> Principal {
        let mut principal = Principal::bare(&identity.user, &identity.authenticated_by);
        if let Some(user) = self
            .inner
            .config
            .users
            .iter()
            .find(|u| u.name == identity.user)
        {
            principal.roles = user.roles.clone();
            principal.force = user.force.clone();
            principal.clearance = user.clearance;
            principal.teams = user.teams.clone();
            principal.attributes = user.attributes.clone();
        }
        principal
    }

    /// Who the REPL and scripts run as: `as_user` (`--as`), else `[local]
    /// user`, else the operating system's user.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`] if the named user has no `[[user]]` entry.
    pub fn local_identity(&self, as_user: Option<&str>) -> Result<Identity, QueryError> {
        let named = as_user.or(self.inner.config.local.user.as_deref());
        match named {
            Some(name) if self.inner.config.users.iter().any(|u| u.name == name) => {
                Ok(Identity::new(name, "local"))
            }
            Some(name) => Err(QueryError::new(
                ErrorKind::NotFound,
                format!("there is no [[user]] named '{name}' in the configuration to run as"),
            )),
            None => Ok(Identity::local()),
        }
    }

    /// The audit trail, where one is configured.
    pub fn audit_log(&self) -> Option<&crate::audit::AuditLog> {
        self.inner.audit.as_ref()
    }

    /// A session for `identity`. Sessions share sources but have their own
    /// settings and scratch schema.
    pub fn session(&self, identity: Identity) -> Session {
        self.session_from(identity, None)
    }

    /// A session for `identity` calling from network address `client`,
    /// which the audit trail records.
    pub fn session_from(&self, identity: Identity, client: Option<String>) -> Session {
        self.session_for(identity, "embedded", client)
    }

    /// A session for `identity` using front end `front_end` (`repl`,
    /// `script`, `flight-sql`, `postgres`), from network address `client`
    /// where there is one: `bluelamp.queries` and the metrics name the
    /// front end, the audit trail the address.
    pub fn session_for(
        &self,
        identity: Identity,
        front_end: &str,
        client: Option<String>,
    ) -> Session {
        let principal = Arc::new(self.principal(&identity));
        let catalog = MemoryCatalogProvider::new();
        // Registering into a fresh memory catalog cannot fail.
        let _ = catalog.register_schema(SCRATCH_SCHEMA, Arc::new(MemorySchemaProvider::new()));
        let governed = self.inner.policy_active;
        let policy = &self.inner.config.policy;
        if governed {
            let system = SystemSchema::governed(
                self.inner.sources.clone(),
                Arc::clone(&policy.read),
                Arc::clone(&principal),
            );
            let system = system.with_queries(Arc::new(crate::ops::QueriesTable::new(Arc::clone(
                &self.inner.ops,
            ))));
            let _ = catalog.register_schema(SYSTEM_SCHEMA, Arc::new(system));
        } else {
            let _ = catalog.register_schema(SYSTEM_SCHEMA, Arc::clone(&self.inner.system));
        }
        for source in &self.inner.sources {
            let schema: Arc<dyn SchemaProvider> = if !governed {
                Arc::clone(source) as Arc<dyn SchemaProvider>
            } else if policy.read.sees_source(&principal, source.name()) {
                Arc::new(crate::policy::governed::GovernedSchema::new(
                    Arc::clone(source),
                    Arc::clone(&policy.read),
                    Arc::clone(&principal),
                    policy.mask_key.clone(),
                ))
            } else {
                continue;
            };
            let _ = catalog.register_schema(source.name(), schema);
        }
        let config = SessionConfig::new()
            .with_default_catalog_and_schema(CATALOG, SCRATCH_SCHEMA)
            .with_create_default_catalog_and_schema(false)
            .with_information_schema(true)
            .with_batch_size(self.inner.config.engine.batch_size)
            .with_option_extension(crate::deposits::BluelampOptions::default())
            .with_extension(Arc::new(crate::deposits::DepositJournal::default()))
            .with_extension(Arc::clone(&principal))
            // A join's build-side keys travel to remote sources as IN lists
            // (batched API lookups, SQL IN): allow far more than DataFusion's
            // local-scan default of 150 keys before falling back to hashes.
            .set_usize(
                "datafusion.optimizer.hash_join_inlist_pushdown_max_distinct_values",
                20_000,
            )
            .set_usize(
                "datafusion.optimizer.hash_join_inlist_pushdown_max_size",
                4 * 1024 * 1024,
            )
            // A join whose smaller side (by the sources' estimates) is up to
            // a few million rows builds one shared hash table and streams
            // the larger side through it, rather than hash-repartitioning
            // both: repartitioning millions of probe rows costs more than a
            // parallel build saves on a server's few cores. DataFusion's
            // defaults (1 MiB, 128K rows) repartition TPC-H's lineitem to
            // join it with 230K customer orders.
            .set_usize(
                "datafusion.optimizer.hash_join_single_partition_threshold",
                JOIN_BROADCAST_BYTES,
            )
            .set_usize(
                "datafusion.optimizer.hash_join_single_partition_threshold_rows",
                JOIN_BROADCAST_ROWS,
            );
        let config = if self.inner.runner.get().is_some() {
            cluster_settings(config)
        } else {
            config
        };
        let mut builder = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features()
            .with_optimizer_rules(optimizer_rules(governed));
        if governed {
            builder = builder.with_physical_optimizer_rules(governed_physical_rules());
        }
        let state = builder
            .with_runtime_env(Arc::clone(&self.inner.runtime))
            .with_physical_optimizer_rule(Arc::new(crate::prefilter::PrefilterAggregates))
            .with_query_planner(Arc::new(FederatedQueryPlanner::new()))
            .build();
        let ctx = SessionContext::new_with_state(state);
        ctx.register_catalog(CATALOG, Arc::new(catalog));
        let guarded = crate::ops::values::guarded_functions(
            |name| datafusion::execution::FunctionRegistry::udf(&ctx, name).ok(),
            self.inner.config.engine.max_value_size,
            Arc::clone(&self.inner.runtime.memory_pool),
        );
        for function in guarded {
            ctx.register_udf(function);
        }
        ctx.register_udf(crate::ops::cancel_query_function(
            Arc::clone(&self.inner.ops),
            Arc::clone(&principal),
        ));
        Session {
            ctx,
            identity,
            principal,
            client,
            engine: self.clone(),
            provenance: Arc::default(),
            added_schemas: Arc::default(),
            front_end: Arc::from(front_end),
            _open: Arc::new(self.inner.ops.metrics.session_opened(front_end)),
            latest: Arc::default(),
        }
    }
}

/// A context that reads sources as sessions do — federation after filter
/// push-down, each source's sub-plan sent through its own executor (with
/// its repairs and readers) — for the engine's own reads of its sources
/// (acceleration refreshes).
pub(crate) fn federated_context(config: SessionConfig) -> SessionContext {
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_default_features()
        .with_optimizer_rules(optimizer_rules(false))
        .with_query_planner(Arc::new(FederatedQueryPlanner::new()))
        .build();
    SessionContext::new_with_state(state)
}

/// What a plan that runs on a cluster must not contain: state shared
/// between operators in one process (a join's dynamic filter, which a
/// cluster's stage planner cannot carry and refuses to reorder), or
/// round-robin repartitions and physical scalar subqueries, which Ballista's
/// stage planner does not split.
///
/// Nor a join that collects its build side in one partition
/// (`CollectLeft`) where DataFusion chose it: Ballista 55's stage planner
/// turns such a join whose build side it cannot size into a partitioned
/// one without re-checking the operators above, so a global aggregate over
/// it answered one row per partition (a C&C ⨝ RMS `count(*)` gave nine
/// partial counts). Planned partitioned here, with at least two partitions,
/// every operator above is planned for it; Ballista may still broadcast a
/// side it knows is small, which keeps the partitioning above correct.
fn cluster_settings(config: SessionConfig) -> SessionConfig {
    let partitions = config.target_partitions().max(2);
    config
        .with_target_partitions(partitions)
        .set_usize(
            "datafusion.optimizer.hash_join_single_partition_threshold",
            0,
        )
        .set_usize(
            "datafusion.optimizer.hash_join_single_partition_threshold_rows",
            0,
        )
        .with_round_robin_repartition(false)
        .set_bool("datafusion.optimizer.enable_dynamic_filter_pushdown", false)
        .set_bool(
            "datafusion.optimizer.enable_physical_uncorrelated_scalar_subquery",
            false,
        )
        .set_bool(
            "datafusion.execution.parquet.schema_force_view_types",
            false,
        )
        .set_bool("datafusion.sql_parser.map_string_types_to_utf8view", false)
}

/// Undoes, in `config`, what [`cluster_settings`] changes for the physical
/// plan, for a statement a cluster engine runs in its own process (a scan
/// that only a join's keys can drive, through a dynamic filter). Logical
/// settings (string and Parquet types) stay, since the statement's logical
/// plan was made with them.
pub(crate) fn local_settings(config: &mut SessionConfig) {
    let options = config.options_mut();
    options.optimizer.enable_round_robin_repartition = true;
    // Through `set`, which turns on the join, TopK and aggregate filters too.
    if let Err(e) = options.set(
        "datafusion.optimizer.enable_dynamic_filter_pushdown",
        "true",
    ) {
        tracing::warn!("dynamic filters stay off for a statement run here: {e}");
    }
    options.optimizer.hash_join_single_partition_threshold = JOIN_BROADCAST_BYTES;
    options.optimizer.hash_join_single_partition_threshold_rows = JOIN_BROADCAST_ROWS;
}

/// Largest join side (estimated bytes) built once and shared, not repartitioned.
const JOIN_BROADCAST_BYTES: usize = 64 * 1024 * 1024;

/// Largest join side (estimated rows) built once and shared, not repartitioned.
const JOIN_BROADCAST_ROWS: usize = 4_000_000;

/// DataFusion's optimizer rules with federation placed after filter, limit
/// and projection push-down. `datafusion-federation`'s default places it
/// first: a filter written above a cross-source join then stays outside the
/// sub-plan sent to the database, and so does the projection, so the database
/// returns every row and every column and DataFusion throws most away.
///
/// DataFusion runs `optimize_projections` near the end of its list, after
/// rules (common sub-expression elimination, distinct-aggregate rewrites)
/// whose output the SQL unparser renders wrongly; so federation goes right
/// after `push_down_filter`, preceded by [`GroupSourceJoins`] (joins of one
/// database's tables brought together) and its own projection push-down.
fn optimizer_rules(governed: bool) -> Vec<Arc<dyn OptimizerRule + Send + Sync>> {
    let mut rules = Optimizer::new().rules;
    let federation: Arc<dyn OptimizerRule + Send + Sync> = Arc::new(FederationOptimizerRule::new());
    match rules.iter().position(|r| r.name() == "push_down_filter") {
        Some(position) => {
            rules.insert(position + 1, federation);
            rules.insert(position + 1, Arc::new(FederateLoneScans));
            rules.insert(position + 1, Arc::new(OptimizeProjections::new()));
            rules.insert(position + 1, Arc::new(GroupSourceJoins));
            if governed {
                // Before anything is federated: user predicates beside a
                // row filter are guarded while they can still be seen.
                rules.insert(
                    position + 1,
                    Arc::new(crate::policy::rewrite::GuardUserPredicates),
                );
            }
        }
        None => rules.push(federation),
    }
    rules
}

/// DataFusion's physical optimizer rules, with projection pushdown guarded
/// so that it cannot move a user's computation below a row filter (see
/// [`crate::policy::rewrite::GuardedProjectionPushdown`]).
fn governed_physical_rules()
-> Vec<Arc<dyn datafusion::physical_optimizer::PhysicalOptimizerRule + Send + Sync>> {
    datafusion::physical_optimizer::optimizer::PhysicalOptimizer::new()
        .rules
        .into_iter()
        .map(|rule| {
            if rule.name() == "ProjectionPushdown" {
                Arc::new(crate::policy::rewrite::GuardedProjectionPushdown::new(rule))
                    as Arc<dyn datafusion::physical_optimizer::PhysicalOptimizerRule + Send + Sync>
            } else {
                rule
            }
        })
        .collect()
}

/// Puts a projection of every column over a query that is one federated table
/// scan and nothing else. `datafusion-federation` leaves such a scan to the
/// table provider's own reader, which bypasses the source's SQL executor (and
/// so the dialect repairs and escaping our connectors add there); above a
/// projection, the scan is federated like any other sub-plan.
#[derive(Debug)]
struct FederateLoneScans;

impl OptimizerRule for FederateLoneScans {
    fn name(&self) -> &str {
        "bluelamp_federate_lone_scans"
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> datafusion::error::Result<Transformed<LogicalPlan>> {
        let LogicalPlan::TableScan(scan) = &plan else {
            return Ok(Transformed::no(plan));
        };
        if !matches!(get_table_source(&scan.source), Ok(Some(_))) {
            return Ok(Transformed::no(plan));
        }
        let schema = Arc::clone(plan.schema());
        let projection = Projection::new_from_schema(Arc::new(plan), schema);
        Ok(Transformed::yes(LogicalPlan::Projection(projection)))
    }
}

/// `bytes` as a `usize`, saturating (a 32-bit machine's limit).
fn usize_of(bytes: u64) -> usize {
    usize::try_from(bytes).unwrap_or(usize::MAX)
}
