//! Catalog assembly: one SQL schema per source, each wrapped so that a source that
//! is down does not stop the others, and the `bluelamp` system schema.
//!
//! [`SourceSchema`] holds a source's live state. While the source is down its
//! schema lists no tables, and any query that names one of its tables fails with an
//! error naming the source; at most once per `reconnect_after` such a query tries
//! to connect again, so a source that comes back is picked up without a restart.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arrow::array::{ArrayRef, RecordBatch, StringArray, TimestampMillisecondArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use async_trait::async_trait;
use datafusion::catalog::{SchemaProvider, Session, TableProvider};
use datafusion::datasource::MemTable;
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::ExecutionPlan;
use tokio::sync::Mutex;

use crate::accelerate::{AcceleratedTable, Acceleration, AccelerationsTable};
use crate::config::SourceConfig;
use crate::principal::Principal;
use crate::source::{ConnectedSource, SourceError, SourceFactory};

/// Whether a source is usable right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceState {
    /// Connected; its tables are listed.
    Up,
    /// The last connection attempt failed.
    Down,
}

impl SourceState {
    /// `up` or `down`.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceState::Up => "up",
            SourceState::Down => "down",
        }
    }
}

/// A snapshot of one source's status, as `bluelamp check` and `bluelamp.sources` show it.
#[derive(Debug, Clone)]
pub struct SourceStatus {
    /// Source name (the SQL schema).
    pub name: String,
    /// Connector kind.
    pub kind: String,
    /// Up or down.
    pub state: SourceState,
    /// Number of tables (0 while down).
    pub tables: usize,
    /// The last connection error, if any.
    pub last_error: Option<String>,
    /// Warnings from the connector that did not stop the source.
    pub warnings: Vec<String>,
    /// Of `tables`, those that can only be inserted into.
    pub insert_only: usize,
    /// When the state was last determined.
    pub checked_at: SystemTime,
}

enum Live {
    Up {
        schema: Arc<dyn SchemaProvider>,
        warnings: Vec<String>,
        insert_only: usize,
    },
    Down {
        error: SourceError,
        attempted: Instant,
    },
}

/// One source's SQL schema: forwards to the connector's schema while it is up.
pub struct SourceSchema {
    config: SourceConfig,
    factory: Arc<dyn SourceFactory>,
    connect_timeout: Duration,
    reconnect_after: Duration,
    live: std::sync::RwLock<(Live, SystemTime)>,
    reconnecting: Mutex<()>,
    /// The source's accelerated tables, by name.
    accelerations: std::sync::RwLock<HashMap<String, Arc<Acceleration>>>,
}

impl std::fmt::Debug for SourceSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceSchema")
            .field("source", &self.config.name)
            .finish_non_exhaustive()
    }
}

impl SourceSchema {
    /// Connects to the source once (bounded by `connect_timeout`) and records the
    /// outcome; never fails, since a down source must not stop the engine.
    pub async fn connect(
        config: SourceConfig,
        factory: Arc<dyn SourceFactory>,
        connect_timeout: Duration,
        reconnect_after: Duration,
    ) -> Self {
        let live = attempt(&config, factory.as_ref(), connect_timeout).await;
        Self {
            config,
            factory,
            connect_timeout,
            reconnect_after,
            live: std::sync::RwLock::new((live, SystemTime::now())),
            reconnecting: Mutex::new(()),
            accelerations: std::sync::RwLock::new(HashMap::new()),
        }
    }

    /// Checks that the source answers now (within the connect timeout),
    /// without changing its recorded state: a readiness probe's question.
    ///
    /// # Errors
    /// A sentence saying why it cannot be reached.
    pub async fn check(&self) -> Result<(), String> {
        match tokio::time::timeout(self.connect_timeout, self.factory.check(&self.config)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "source '{}' did not answer within {:?} (connect_timeout)",
                self.config.name, self.connect_timeout
            )),
        }
    }

    /// Starts refreshing the source's accelerated tables: those named in
    /// `[source.tables.NAME.accelerate]`, and with `[source.accelerate]`
    /// every table the source lists now. Each is refreshed at once, in the
    /// background, and then every `refresh`, as `principal(as_user)` where
    /// the settings name a user, each refresh recorded in `audit`.
    pub(crate) async fn start_accelerations(
        self: &Arc<Self>,
        principal: impl Fn(&str) -> Principal,
        audit: Option<&crate::audit::AuditLog>,
        data_dir: Option<&std::path::Path>,
    ) {
        let settings = self.config.acceleration();
        if settings.is_empty() {
            return;
        }
        let mut names: Vec<String> = settings.tables.keys().cloned().collect();
        if settings.every_table.is_some() {
            if self.status().state == SourceState::Down {
                tracing::warn!(
                    source = %self.config.name,
                    "[source.accelerate] applies to the tables the source lists at start, \
                     and it is down: only tables named in [source.tables.NAME.accelerate] \
                     are accelerated until Bluelamp restarts"
                );
            }
            for name in self.table_names() {
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        for name in names {
            let Some(config) = settings.for_table(&name) else {
                continue;
            };
            let acceleration = Arc::new(Acceleration::new(
                self.config.clone(),
                &name,
                config.clone(),
                config.as_user.as_deref().map(&principal),
                audit.cloned(),
                data_dir,
            ));
            // A copy a previous run stored answers from the start, unless
            // the source's columns have changed since: then it is refreshed
            // at once.
            let mut loaded = acceleration.load().await;
            if loaded.is_some()
                && let Ok(Some(live)) = self.live_table(&name).await
                && acceleration.columns_changed(&live.schema()).is_some()
            {
                loaded = None;
            }
            crate::accelerate::spawn_refresher(
                Arc::clone(&acceleration),
                Arc::downgrade(self),
                loaded,
            );
            self.accelerations
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(name, acceleration);
        }
    }

    /// The source's accelerated tables, by name.
    pub fn accelerations(&self) -> Vec<Arc<Acceleration>> {
        let accelerations = self.accelerations.read().unwrap_or_else(|p| p.into_inner());
        let mut list: Vec<Arc<Acceleration>> = accelerations.values().cloned().collect();
        list.sort_by(|a, b| a.table().cmp(b.table()));
        list
    }

    pub(crate) fn acceleration(&self, table: &str) -> Option<Arc<Acceleration>> {
        self.accelerations
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(table)
            .cloned()
    }

    /// The source's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The source's connector kind.
    pub fn kind(&self) -> &str {
        &self.config.kind
    }

    /// The current status snapshot.
    pub fn status(&self) -> SourceStatus {
        let guard = self.live.read().unwrap_or_else(|p| p.into_inner());
        let (live, checked_at) = &*guard;
        let (state, tables, last_error, warnings, insert_only) = match live {
            Live::Up {
                schema,
                warnings,
                insert_only,
            } => (
                SourceState::Up,
                schema.table_names().len(),
                None,
                warnings.clone(),
                *insert_only,
            ),
            Live::Down { error, .. } => {
                (SourceState::Down, 0, Some(error.message.clone()), vec![], 0)
            }
        };
        SourceStatus {
            name: self.config.name.clone(),
            kind: self.config.kind.clone(),
            state,
            tables,
            last_error,
            warnings,
            insert_only,
            checked_at: *checked_at,
        }
    }

    fn current(&self) -> Result<Arc<dyn SchemaProvider>, (SourceError, Instant)> {
        let guard = self.live.read().unwrap_or_else(|p| p.into_inner());
        match &guard.0 {
            Live::Up { schema, .. } => Ok(Arc::clone(schema)),
            Live::Down { error, attempted } => Err((error.clone(), *attempted)),
        }
    }

    /// The connector's schema, reconnecting first if the source is down and the
    /// back-off has passed.
    async fn schema(&self) -> Result<Arc<dyn SchemaProvider>, SourceError> {
        match self.current() {
            Ok(schema) => Ok(schema),
            Err((error, attempted)) if attempted.elapsed() < self.reconnect_after => Err(error),
            Err(_) => {
                let _one_at_a_time = self.reconnecting.lock().await;
                // Another query may have reconnected while this one waited.
                if let Ok(schema) = self.current() {
                    return Ok(schema);
                }
                let live = attempt(&self.config, self.factory.as_ref(), self.connect_timeout).await;
                let result = match &live {
                    Live::Up { schema, .. } => Ok(Arc::clone(schema)),
                    Live::Down { error, .. } => Err(error.clone()),
                };
                *self.live.write().unwrap_or_else(|p| p.into_inner()) = (live, SystemTime::now());
                result
            }
        }
    }
}

async fn attempt(config: &SourceConfig, factory: &dyn SourceFactory, timeout: Duration) -> Live {
    let outcome = tokio::time::timeout(timeout, factory.connect(config)).await;
    match outcome {
        Ok(Ok(ConnectedSource {
            schema,
            warnings,
            insert_only,
        })) => {
            // Once, briefly: `bluelamp check` (and `bluelamp.sources`) list them.
            for warning in &warnings {
                tracing::debug!(source = %config.name, "{warning}");
            }
            if !warnings.is_empty() {
                tracing::warn!(
                    source = %config.name,
                    "connected with {} warning{} (`bluelamp check` lists them)",
                    warnings.len(),
                    if warnings.len() == 1 { "" } else { "s" }
                );
            }
            Live::Up {
                schema,
                warnings,
                insert_only,
            }
        }
        Ok(Err(error)) => {
            tracing::info!(source = %config.name, "{error}");
            Live::Down {
                error,
                attempted: Instant::now(),
            }
        }
        Err(_) => Live::Down {
            error: SourceError::unavailable(
                config,
                format!(
                    "did not answer within {:?} (connect_timeout in [engine]); is it running?",
                    timeout
                ),
            ),
            attempted: Instant::now(),
        },
    }
}

#[async_trait]
impl SchemaProvider for SourceSchema {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.current().map(|s| s.table_names()).unwrap_or_default();
        names.sort();
        names
    }

    async fn table(&self, name: &str) -> DFResult<Option<Arc<dyn TableProvider>>> {
        let Some(acceleration) = self.acceleration(name) else {
            return self.live_table(name).await;
        };
        match self.live_table(name).await {
            Ok(Some(live)) => Ok(Some(Arc::new(AcceleratedTable::new(live, acceleration)))),
            Ok(None) => Ok(None),
            // The source is down: the copy still answers, through the
            // table the last refresh read.
            Err(e) => match acceleration.last_read() {
                Some(live) => Ok(Some(Arc::new(AcceleratedTable::new(live, acceleration)))),
                None => Err(e),
            },
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        self.current().map(|s| s.table_exist(name)).unwrap_or(false)
    }
}

impl SourceSchema {
    /// The table as the source serves it, not accelerated.
    ///
    /// # Errors
    /// The source is down, or failed to build the table.
    pub(crate) async fn live_table(&self, name: &str) -> DFResult<Option<Arc<dyn TableProvider>>> {
        let schema = self.schema().await.map_err(|e| {
            DataFusionError::External(Box::new(SourceError {
                message: format!(
                    "unavailable, so table '{}.{name}' cannot be read: {}",
                    self.config.name, e.message
                ),
                unavailable: true,
                ..e
            }))
        })?;
        match schema.table(name).await {
            Ok(Some(table)) => Ok(Some(table)),
            Ok(None) => {
                let mut names = schema.table_names();
                names.sort();
                let list = if names.is_empty() {
                    "it has no tables".to_string()
                } else if names.len() <= 20 {
                    format!("its tables are: {}", names.join(", "))
                } else {
                    format!(
                        "it has {} tables; run \\d {} to list them",
                        names.len(),
                        self.config.name
                    )
                };
                Err(DataFusionError::Plan(format!(
                    "table '{}.{name}' not found: source '{}' ({}) has no table '{name}'; {list}",
                    self.config.name, self.config.name, self.config.kind
                )))
            }
            Err(e) => Err(e),
        }
    }
}

/// The `bluelamp` system schema: `bluelamp.sources`, `bluelamp.deposits`
/// and `bluelamp.accelerations`.
#[derive(Debug)]
pub struct SystemSchema {
    sources: Vec<Arc<SourceSchema>>,
    viewer: Option<Viewer>,
    /// `bluelamp.queries`, where the engine keeps a registry.
    queries: Option<Arc<dyn TableProvider>>,
}

/// Whose view of the sources a governed session's system schema shows.
#[derive(Debug, Clone)]
struct Viewer {
    policy: Arc<crate::policy::ReadPolicy>,
    principal: Arc<crate::Principal>,
}

impl SystemSchema {
    /// A system schema reporting on these sources.
    pub fn new(sources: Vec<Arc<SourceSchema>>) -> Self {
        Self {
            sources,
            viewer: None,
            queries: None,
        }
    }

    /// This schema with `bluelamp.queries` served by `table`.
    #[must_use]
    pub fn with_queries(mut self, table: Arc<dyn TableProvider>) -> Self {
        self.queries = Some(table);
        self
    }

    /// A system schema for a governed principal: it reports only the
    /// sources they have some grant on, counting only tables they may see.
    pub fn governed(
        sources: Vec<Arc<SourceSchema>>,
        policy: Arc<crate::policy::ReadPolicy>,
        principal: Arc<crate::Principal>,
    ) -> Self {
        let sources = sources
            .into_iter()
            .filter(|s| policy.sees_source(&principal, s.name()))
            .collect();
        Self {
            sources,
            viewer: Some(Viewer { policy, principal }),
            queries: None,
        }
    }
}

#[async_trait]
impl SchemaProvider for SystemSchema {
    fn table_names(&self) -> Vec<String> {
        let mut names = vec![
            "accelerations".to_string(),
            "deposits".to_string(),
            "sources".to_string(),
        ];
        if self.queries.is_some() {
            names.insert(2, "queries".to_string());
        }
        names
    }

    async fn table(&self, name: &str) -> DFResult<Option<Arc<dyn TableProvider>>> {
        Ok(match name {
            "sources" => Some(Arc::new(SourcesTable {
                sources: self.sources.clone(),
                viewer: self.viewer.clone(),
            }) as Arc<dyn TableProvider>),
            "deposits" => Some(Arc::new(crate::deposits::DepositsTable) as Arc<dyn TableProvider>),
            "queries" => self.queries.clone(),
            "accelerations" => {
                let accelerations = self
                    .sources
                    .iter()
                    .flat_map(|source| source.accelerations())
                    .filter(|a| match &self.viewer {
                        None => true,
                        Some(viewer) => viewer
                            .policy
                            .access(&viewer.principal, a.source(), a.table(), &[])
                            .visible(),
                    })
                    .collect();
                Some(Arc::new(AccelerationsTable { accelerations }) as Arc<dyn TableProvider>)
            }
            _ => None,
        })
    }

    fn table_exist(&self, name: &str) -> bool {
        matches!(name, "sources" | "deposits" | "accelerations")
            || (name == "queries" && self.queries.is_some())
    }
}

/// `bluelamp.sources`: a live view of every source's status, read at scan time.
#[derive(Debug)]
struct SourcesTable {
    sources: Vec<Arc<SourceSchema>>,
    viewer: Option<Viewer>,
}

fn sources_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("tables", DataType::UInt64, false),
        Field::new("last_error", DataType::Utf8, true),
        Field::new("warnings", DataType::UInt64, false),
        Field::new(
            "checked_at",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
    ]))
}

#[async_trait]
impl TableProvider for SourcesTable {
    fn schema(&self) -> SchemaRef {
        sources_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let statuses: Vec<SourceStatus> = self
            .sources
            .iter()
            .map(|source| {
                let mut status = source.status();
                if let Some(viewer) = &self.viewer {
                    status.tables = source
                        .table_names()
                        .iter()
                        .filter(|t| {
                            viewer
                                .policy
                                .access(&viewer.principal, source.name(), t, &[])
                                .visible()
                        })
                        .count();
                }
                status
            })
            .collect();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(
                statuses.iter().map(|s| s.name.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                statuses.iter().map(|s| s.kind.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                statuses.iter().map(|s| s.state.as_str()),
            )),
            Arc::new(UInt64Array::from_iter_values(
                statuses.iter().map(|s| s.tables as u64),
            )),
            Arc::new(StringArray::from_iter(
                statuses.iter().map(|s| s.last_error.as_deref()),
            )),
            Arc::new(UInt64Array::from_iter_values(
                statuses.iter().map(|s| s.warnings.len() as u64),
            )),
            Arc::new(
                TimestampMillisecondArray::from_iter_values(
                    statuses.iter().map(|s| unix_millis(s.checked_at)),
                )
                .with_timezone("UTC"),
            ),
        ];
        let batch = RecordBatch::try_new(sources_schema(), columns)?;
        scan_batch(state, batch, projection, filters, limit).await
    }
}

/// `t` as milliseconds since 1970, as the system tables' timestamps hold it.
pub(crate) fn unix_millis(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Scans one in-memory batch: how the system tables answer, read at scan time.
pub(crate) async fn scan_batch(
    state: &dyn Session,
    batch: RecordBatch,
    projection: Option<&Vec<usize>>,
    filters: &[Expr],
    limit: Option<usize>,
) -> DFResult<Arc<dyn ExecutionPlan>> {
    let table = MemTable::try_new(batch.schema(), vec![vec![batch]])?;
    table.scan(state, projection, filters, limit).await
}
