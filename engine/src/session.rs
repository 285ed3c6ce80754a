//! The engine and its sessions: the one entry point every query goes through.
//!
//! [`Engine::start`] connects every source (concurrently, each bounded by the connect
//! timeout) and assembles the shared schemas. [`Engine::session`] gives a [`Session`]
//! bound to an [`Identity`]; the session owns its DataFusion `SessionContext`, which
//! no front end can reach, so policy and audit can be enforced here for every query.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::{
    CatalogProvider, MemoryCatalogProvider, MemorySchemaProvider, SchemaProvider,
};
use datafusion::common::config::ConfigNonZeroUsize;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{ScalarValue, TableReference};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::logical_expr::LogicalPlan;
use datafusion::logical_expr::Projection;
use datafusion::optimizer::OptimizerConfig;
use datafusion::optimizer::optimize_projections::OptimizeProjections;
use datafusion::optimizer::{Optimizer, OptimizerRule};
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::{DFParserBuilder, Statement as DFStatement};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion_federation::{FederatedQueryPlanner, FederationOptimizerRule, get_table_source};
use futures::future::join_all;

use crate::catalog::{SourceSchema, SourceStatus, SystemSchema};
use crate::config::{Config, ConfigError};
use crate::error::{ErrorKind, QueryError};
use crate::principal::Principal;
use crate::source::FactoryRegistry;
use crate::source_joins::GroupSourceJoins;

/// The catalog every source schema lives in (`bluelamp.rms.crimes` in full).
pub const CATALOG: &str = "bluelamp";
/// The schema for the engine's own tables (`bluelamp.sources`).
pub const SYSTEM_SCHEMA: &str = "bluelamp";
/// A per-session scratch schema for views and temporary tables.
pub const SCRATCH_SCHEMA: &str = "public";

/// Who is asking. Every statement runs as an identity, so that access policy and
/// audit can act on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user name.
    pub user: String,
    /// How the user was authenticated (`local`, `password`, ...).
    pub authenticated_by: String,
}

impl Identity {
    /// The operating-system user running the process, for the REPL and scripts.
    pub fn local() -> Self {
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("USERNAME"))
            .unwrap_or_else(|_| "local".to_string());
        Self {
            user,
            authenticated_by: "local".to_string(),
        }
    }

    /// A named user authenticated by `method`.
    pub fn new(user: impl Into<String>, method: impl Into<String>) -> Self {
        Self {
            user: user.into(),
            authenticated_by: method.into(),
        }
    }
}

/// The running engine: connected sources and shared settings. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<EngineInner>,
}

pub(crate) struct EngineInner {
    config: Config,
    /// Whether read policy is configured (then sessions are governed).
    pub(crate) policy_active: bool,
    audit: Option<crate::audit::AuditLog>,
    pub(crate) sources: Vec<Arc<SourceSchema>>,
    system: Arc<dyn SchemaProvider>,
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
            pending.push((source.clone(), Arc::clone(factory)));
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
        let system = Arc::new(SystemSchema::new(sources.clone()));
        Ok(Self {
            inner: Arc::new(EngineInner {
                policy_active: config.policy.read.is_active(),
                audit,
                config,
                sources,
                system,
            }),
        })
    }

    /// Every source's status, in config order.
    pub fn sources(&self) -> Vec<SourceStatus> {
        self.inner.sources.iter().map(|s| s.status()).collect()
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
        let mut builder = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features()
            .with_optimizer_rules(optimizer_rules(governed));
        if governed {
            builder = builder.with_physical_optimizer_rules(governed_physical_rules());
        }
        let state = builder
            .with_physical_optimizer_rule(Arc::new(crate::prefilter::PrefilterAggregates))
            .with_query_planner(Arc::new(FederatedQueryPlanner::new()))
            .build();
        let ctx = SessionContext::new_with_state(state);
        ctx.register_catalog(CATALOG, Arc::new(catalog));
        Session {
            ctx,
            identity,
            principal,
            client,
            engine: self.clone(),
            provenance: Arc::default(),
        }
    }
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

/// One user's conversation with the engine. Clones share settings and views.
#[derive(Clone)]
pub struct Session {
    pub(crate) ctx: SessionContext,
    pub(crate) identity: Identity,
    pub(crate) principal: Arc<Principal>,
    pub(crate) client: Option<String>,
    pub(crate) engine: Engine,
    /// What the session's own tables and views were made from.
    pub(crate) provenance: Arc<crate::policy::provenance::Provenance>,
}

/// One parsed SQL statement, ready to run.
#[derive(Debug, Clone)]
pub struct Statement {
    inner: DFStatement,
}

impl std::fmt::Display for Statement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.inner)
    }
}

impl Statement {
    /// Whether the statement is an `INSERT` (a deposit into a source).
    pub fn is_insert(&self) -> bool {
        matches!(
            &self.inner,
            DFStatement::Statement(s) if matches!(**s, datafusion::sql::sqlparser::ast::Statement::Insert(_))
        )
    }
}

/// Splits text into statements (`;`-separated) without running them, as
/// every front end parses SQL.
///
/// # Errors
/// [`ErrorKind::InvalidQuery`] for a syntax error, naming the position.
pub fn parse_statements(sql: &str) -> Result<Vec<Statement>, QueryError> {
    let dialect = GenericDialect {};
    let statements: VecDeque<DFStatement> = DFParserBuilder::new(sql)
        .with_dialect(&dialect)
        .build()
        .and_then(|mut p| p.parse_statements())
        .map_err(QueryError::from)?;
    Ok(statements
        .into_iter()
        .map(|inner| Statement { inner })
        .collect())
}

/// A planned statement: its result schema is known before any row is fetched.
/// Clones share nothing mutable, so a prepared statement can run many times.
#[derive(Clone)]
pub struct Planned {
    pub(crate) plan: LogicalPlan,
    pub(crate) sql: String,
    /// Sources, tables and columns the statement as written reads, for the
    /// audit trail (the plan itself reads through policy's rewrite).
    pub(crate) touched: Arc<crate::audit::trail::Touched>,
    /// Policies applied to the plan, for the audit trail.
    pub(crate) policies: Arc<Vec<String>>,
    /// The security marking of the result, where markings are configured.
    pub(crate) marking: Option<Arc<str>>,
    /// The same marking, as a value (for purposes required by marking).
    pub(crate) marking_value: Option<crate::policy::rules::Marking>,
}

/// The schema metadata key carrying a result's security marking.
pub const MARKING_KEY: &str = "bluelamp.marking";

/// `schema` with `marking` in its metadata under [`MARKING_KEY`].
fn marked(schema: SchemaRef, marking: Option<&str>) -> SchemaRef {
    match marking {
        None => schema,
        Some(marking) => {
            let mut metadata = schema.metadata().clone();
            metadata.insert(MARKING_KEY.to_string(), marking.to_string());
            Arc::new(schema.as_ref().clone().with_metadata(metadata))
        }
    }
}

impl Planned {
    /// The schema of the rows the statement will return, with its security
    /// marking in the metadata (`bluelamp.marking`) where markings are
    /// configured.
    pub fn schema(&self) -> SchemaRef {
        marked(
            Arc::clone(self.plan.schema().inner()),
            self.marking.as_deref(),
        )
    }

    /// The security marking of the statement's result, where markings are
    /// configured: the highest of the data it reads.
    pub fn marking(&self) -> Option<&str> {
        self.marking.as_deref()
    }

    /// The statement's SQL text.
    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// The statement's placeholders (`$1`, `$2`, ...) in order, each with the
    /// type planning inferred for it (`None` where the SQL does not say, as in
    /// `SELECT $1`).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidQuery`] if one placeholder is used with two types.
    pub fn parameters(&self) -> Result<Vec<(String, Option<DataType>)>, QueryError> {
        let mut parameters: Vec<(String, Option<DataType>)> = self
            .plan
            .get_parameter_types()
            .map_err(QueryError::from)?
            .into_iter()
            .collect();
        parameters.sort_by_key(|(name, _)| {
            (
                name.trim_start_matches('$')
                    .parse::<u64>()
                    .unwrap_or(u64::MAX),
                name.clone(),
            )
        });
        Ok(parameters)
    }

    /// The statement with `values` in place of its placeholders, in order, each
    /// cast to the placeholder's inferred type.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidQuery`] for the wrong number of values or a value
    /// that cannot be cast to its placeholder's type.
    pub fn bind(&self, values: Vec<ScalarValue>) -> Result<Planned, QueryError> {
        let parameters = self.parameters()?;
        if values.len() != parameters.len() {
            return Err(QueryError::new(
                ErrorKind::InvalidQuery,
                format!(
                    "the statement has {} parameter(s) but {} value(s) were bound",
                    parameters.len(),
                    values.len()
                ),
            ));
        }
        let mut cast = Vec::with_capacity(values.len());
        for ((name, data_type), value) in parameters.iter().zip(values) {
            let value = match data_type {
                Some(t) if value.data_type() != *t && !value.is_null() => {
                    value.cast_to(t).map_err(|e| {
                        QueryError::new(
                            ErrorKind::InvalidQuery,
                            format!(
                                "parameter {name}: cannot use {value:?} as {t}: {}",
                                e.message()
                            ),
                        )
                    })?
                }
                Some(t) if value.is_null() => ScalarValue::try_from(t).unwrap_or(value),
                _ => value,
            };
            cast.push(value);
        }
        let plan = self
            .plan
            .clone()
            .with_param_values(cast)
            .map_err(QueryError::from)?;
        Ok(Planned {
            plan,
            sql: self.sql.clone(),
            touched: Arc::clone(&self.touched),
            policies: Arc::clone(&self.policies),
            marking: self.marking.clone(),
            marking_value: self.marking_value.clone(),
        })
    }

    /// Whether the statement changes something (DDL, DML, COPY, SET) rather than
    /// only reading.
    pub fn is_write(&self) -> bool {
        matches!(
            self.plan,
            LogicalPlan::Dml(_)
                | LogicalPlan::Ddl(_)
                | LogicalPlan::Copy(_)
                | LogicalPlan::Statement(_)
        )
    }
}

/// A running statement's output as independent streams, one per partition.
/// Dropping them cancels the statement.
pub struct PartitionedOutput {
    /// Result schema, shared by every stream.
    pub schema: SchemaRef,
    /// The rows, partition by partition.
    pub streams: Vec<SendableRecordBatchStream>,
}

/// A running statement's output: a stream of record batches. Dropping it cancels
/// the statement.
pub struct QueryOutput {
    /// Result schema.
    pub schema: SchemaRef,
    /// The rows, batch by batch.
    pub stream: SendableRecordBatchStream,
}

impl Session {
    /// Who this session runs as.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The principal this session runs as, with its attributes.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// Sets the rows per Arrow batch this session's queries produce (at
    /// least one), e.g. larger batches for results sent over the network.
    pub fn set_batch_size(&self, rows: usize) {
        let Ok(rows) = ConfigNonZeroUsize::try_new(rows.max(1)) else {
            return;
        };
        let state = self.ctx.state_ref();
        let mut state = state.write();
        state.config_mut().options_mut().execution.batch_size = rows;
    }

    /// Splits text into statements (`;`-separated) without running them.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidQuery`] for a syntax error, naming the position.
    pub fn parse(&self, sql: &str) -> Result<Vec<Statement>, QueryError> {
        parse_statements(sql)
    }

    /// Plans one statement.
    ///
    /// # Errors
    /// A [`QueryError`] for unknown tables, type errors, or a source that is down.
    pub async fn plan(&self, statement: &Statement) -> Result<Planned, QueryError> {
        let state = self.ctx.state();
        let sql = statement.to_string();
        if let Err(e) = self.check_schemas(&state, statement) {
            return Err(self.audit_failure(&sql, e).await);
        }
        let plan = match state.statement_to_plan(statement.inner.clone()).await {
            Ok(plan) => plan,
            Err(e) => return Err(self.audit_failure(&sql, QueryError::from(e)).await),
        };
        if let Err(e) = crate::policy::guard::check_plan(
            &plan,
            &self.principal,
            &self.engine.config().policy,
            CATALOG,
            SCRATCH_SCHEMA,
            self.engine.audit_log().is_some(),
        ) {
            return Err(self.audit_failure(&sql, e).await);
        }
        // What the statement reads, through the session's own tables to
        // the sources they were made from.
        let touched = self
            .provenance
            .expand(&crate::audit::trail::touched(&plan, SCRATCH_SCHEMA));
        // A grant's required purpose, checked on everything the statement
        // reads: tables named directly, behind views (whose plans hold the
        // sources' tables) and behind the session's own tables.
        if self.engine.inner.policy_active && self.purpose().is_none() {
            let read_policy = &self.engine.config().policy.read;
            let needing: Vec<&str> = touched
                .1
                .iter()
                .filter(|table| {
                    table.split_once('.').is_some_and(|(source, table)| {
                        read_policy
                            .access(&self.principal, source, table, &[])
                            .require_purpose
                    })
                })
                .map(String::as_str)
                .collect();
            if !needing.is_empty() {
                let e = crate::audit::statements::purpose_needed(&needing);
                return Err(self.audit_failure(&sql, e).await);
            }
        }
        let (plan, policies) = if self.engine.inner.policy_active {
            let context = crate::policy::rewrite::Context {
                principal: &self.principal,
                mask_key: self.engine.config().policy.mask_key.as_deref(),
            };
            match crate::policy::rewrite::apply(plan, &context) {
                Ok(applied) => (applied.plan, applied.policies),
                Err(e) => return Err(self.audit_failure(&sql, e).await),
            }
        } else {
            (plan, Vec::new())
        };
        self.provenance.record(&plan, SCRATCH_SCHEMA, &touched);
        let touched = Arc::new(touched);
        let read = &self.engine.config().policy.read;
        let (plan, marking_value) = if read.markings.is_empty() {
            (plan, None)
        } else {
            let marking = crate::policy::marking::of_result(read, &touched);
            match crate::policy::marking::onto_copy(plan, &marking) {
                Ok(plan) => (plan, Some(marking)),
                Err(e) => return Err(self.audit_failure(&sql, e).await),
            }
        };
        let marking = marking_value.as_ref().map(|m| Arc::from(m.to_string()));
        Ok(Planned {
            plan,
            sql,
            touched,
            policies: Arc::new(policies),
            marking,
            marking_value,
        })
    }

    /// Starts executing a planned statement. DDL and `SET` take effect here; queries
    /// start streaming.
    ///
    /// # Errors
    /// A [`QueryError`] if execution cannot start, or if its audit record
    /// cannot be written (then nothing runs).
    pub async fn execute(&self, planned: Planned) -> Result<QueryOutput, QueryError> {
        let started = Instant::now();
        let completion = self.audit_statement(&planned, started).await?;
        let sql = planned.sql;
        let marking = planned.marking;
        let result = async {
            let df = self.ctx.execute_logical_plan(planned.plan).await?;
            let schema = marked(Arc::clone(df.schema().inner()), marking.as_deref());
            let stream = df.execute_stream().await?;
            Ok::<_, datafusion::error::DataFusionError>(QueryOutput { schema, stream })
        }
        .await;
        let mut output = self
            .audit_start(&sql, started, result, completion.as_deref())
            .await?;
        if let Some(completion) = completion {
            output.stream = completion.wrap(output.stream);
        }
        Ok(output)
    }

    /// Starts a statement as one stream per output partition of its physical
    /// plan, so a front end can send them to a client side by side (Flight
    /// SQL endpoints). A plan that must produce one ordered stream (`ORDER
    /// BY`) has one partition.
    ///
    /// # Errors
    /// A [`QueryError`] if execution cannot start, or if its audit record
    /// cannot be written (then nothing runs).
    pub async fn execute_partitioned(
        &self,
        planned: Planned,
    ) -> Result<PartitionedOutput, QueryError> {
        let started = Instant::now();
        let completion = self.audit_statement(&planned, started).await?;
        let sql = planned.sql;
        let marking = planned.marking;
        let result = async {
            let df = self.ctx.execute_logical_plan(planned.plan).await?;
            let schema = marked(Arc::clone(df.schema().inner()), marking.as_deref());
            let streams = df.execute_stream_partitioned().await?;
            Ok::<_, datafusion::error::DataFusionError>(PartitionedOutput { schema, streams })
        }
        .await;
        let mut output = self
            .audit_start(&sql, started, result, completion.as_deref())
            .await?;
        if let Some(completion) = completion {
            output.streams = output
                .streams
                .into_iter()
                .map(|stream| completion.wrap(stream))
                .collect();
        }
        Ok(output)
    }

    /// Logs a statement's start; a statement that fails to start is audited
    /// by its `completion` (its `statement` record is already written), or
    /// with a record of its own where there is none.
    async fn audit_start<T>(
        &self,
        sql: &str,
        started: Instant,
        result: Result<T, datafusion::error::DataFusionError>,
        completion: Option<&crate::audit::trail::Completion>,
    ) -> Result<T, QueryError> {
        match result {
            Ok(output) => {
                tracing::info!(
                    target: "bluelamp::audit",
                    user = %self.identity.user,
                    auth = %self.identity.authenticated_by,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    sql = %sql,
                    "statement started"
                );
                Ok(output)
            }
            Err(e) => match completion {
                Some(completion) => {
                    let error = QueryError::from(e);
                    completion.fail(&error.message).await;
                    Err(error)
                }
                None => Err(self.audit_failure(sql, QueryError::from(e)).await),
            },
        }
    }

    /// Parses, plans and starts exactly one statement.
    ///
    /// # Errors
    /// A [`QueryError`]; [`ErrorKind::InvalidQuery`] if `sql` holds no statement or more than one.
    pub async fn sql(&self, sql: &str) -> Result<QueryOutput, QueryError> {
        let mut statements = self.parse(sql)?;
        if statements.len() != 1 {
            return Err(QueryError::new(
                ErrorKind::InvalidQuery,
                format!(
                    "expected exactly one SQL statement, found {}",
                    statements.len()
                ),
            ));
        }
        let statement = statements.remove(0);
        let planned = self.plan(&statement).await?;
        self.execute(planned).await
    }

    /// Table and column names visible to this session, for completion and `\d`.
    pub async fn table_names(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(catalog) = self.ctx.catalog(CATALOG) {
            for schema_name in catalog.schema_names() {
                if let Some(schema) = catalog.schema(&schema_name) {
                    for table in schema.table_names() {
                        out.push((schema_name.clone(), table));
                    }
                }
            }
        }
        out.sort();
        out
    }

    /// Column names and types of one table (`schema.table` or `table`).
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`] if there is no such table.
    pub async fn describe(&self, table: &str) -> Result<SchemaRef, QueryError> {
        let provider = self
            .ctx
            .table_provider(table)
            .await
            .map_err(QueryError::from)?;
        Ok(provider.schema())
    }

    /// Column names and types of `schema.table`, with names taken literally.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`] if there is no such table.
    pub async fn describe_qualified(
        &self,
        schema: &str,
        table: &str,
    ) -> Result<SchemaRef, QueryError> {
        let reference = datafusion::common::TableReference::partial(schema, table);
        let provider = self
            .ctx
            .table_provider(reference)
            .await
            .map_err(QueryError::from)?;
        Ok(provider.schema())
    }

    /// Names an unknown source before DataFusion reports a bare "table not found".
    fn check_schemas(&self, state: &SessionState, statement: &Statement) -> Result<(), QueryError> {
        let Ok(references) = state.resolve_table_references(&statement.inner) else {
            return Ok(());
        };
        let Some(catalog) = self.ctx.catalog(CATALOG) else {
            return Ok(());
        };
        for reference in references {
            let schema = match &reference {
                TableReference::Partial { schema, .. } => schema.as_ref(),
                TableReference::Full {
                    catalog: c, schema, ..
                } if c.as_ref() == CATALOG => schema.as_ref(),
                _ => continue,
            };
            // information_schema is served by DataFusion beside the catalog.
            if schema != "information_schema" && catalog.schema(schema).is_none() {
                let mut sources: Vec<String> = catalog
                    .schema_names()
                    .into_iter()
                    .filter(|s| {
                        s != "information_schema" && s != SCRATCH_SCHEMA && s != SYSTEM_SCHEMA
                    })
                    .collect();
                sources.sort();
                let known = if sources.is_empty() {
                    "no sources are configured".to_string()
                } else {
                    format!("the sources are: {}", sources.join(", "))
                };
                return Err(QueryError::new(
                    ErrorKind::NotFound,
                    format!(
                        "table '{reference}' not found: there is no source named '{schema}'; {known}"
                    ),
                ));
            }
        }
        Ok(())
    }

    async fn audit_failure(&self, sql: &str, error: QueryError) -> QueryError {
        tracing::info!(
            target: "bluelamp::audit",
            user = %self.identity.user,
            auth = %self.identity.authenticated_by,
            error = %error.message,
            sql = %sql,
            "statement failed"
        );
        let Some(log) = self.engine.audit_log() else {
            return error;
        };
        let mut record = self.audit_record("statement", sql);
        record.outcome = if error.kind == ErrorKind::PermissionDenied {
            "refused".into()
        } else {
            "error".into()
        };
        record.error = Some(error.message.clone());
        match log.append(record).await {
            Ok(_) => error,
            Err(audit) => QueryError::new(
                ErrorKind::Unavailable,
                format!("{}; and {audit}", error.message),
            ),
        }
    }
}
