//! Acceleration: a local copy of a slow or rate-limited table, refreshed in
//! the background, that queries read instead of the source.
//!
//! - [`Acceleration`] holds one table's copy and how its refreshes went.
//!   A refresh reads the whole table from its source into Arrow batches and
//!   then swaps the copy in one step, so a query sees the old copy or the
//!   new one, never a mix. A refresh that fails keeps the old copy, records
//!   the error (`bluelamp.accelerations`) and is retried sooner, backing off
//!   up to the refresh interval.
//! - [`AcceleratedTable`] is what the catalog hands DataFusion for an
//!   accelerated table: scans read the copy, or the source itself before the
//!   first copy exists, under `SET bluelamp.live = true`, or when the copy is
//!   older than `max_staleness` with `on_stale = "live"`. `INSERT` goes to
//!   the source. Policies and the audit trail apply above the table, to the
//!   copy exactly as to the source.
//! - [`AccelerationsTable`] is `bluelamp.accelerations`.
//!
//! Settings: [`crate::config::AccelerateConfig`].

use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, SystemTime};

use arrow::array::{
    ArrayRef, RecordBatch, RecordBatchOptions, StringArray, TimestampMillisecondArray, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::Constraints;
use datafusion::common::stats::{Precision, Statistics};
use datafusion::datasource::{MemTable, TableProvider};
use datafusion::error::Result as DFResult;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::audit::{AuditLog, AuditRecord};
use crate::catalog::SourceSchema;
use crate::config::{AccelerateConfig, OnStale, SourceConfig};
use crate::deposits::BluelampOptions;
use crate::principal::Principal;
use crate::source::SourceError;

/// One accelerated table: its copy, and how its refreshes went.
pub struct Acceleration {
    source: SourceConfig,
    table: String,
    config: AccelerateConfig,
    copy: RwLock<Option<Arc<Snapshot>>>,
    /// The source's table as the last refresh read it, so the copy can
    /// answer while the source is down.
    last_read: RwLock<Option<Arc<dyn TableProvider>>>,
    status: Mutex<Refreshes>,
    /// Who the refreshes run as (`as_user`), for a source that names its
    /// end users to the supplier.
    principal: Option<Arc<Principal>>,
    /// The audit trail, where one is configured: each refresh is a read of
    /// the source, recorded as one.
    audit: Option<AuditLog>,
    /// One refresh at a time.
    refreshing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Acceleration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acceleration")
            .field("source", &self.source.name)
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

/// A table's rows as of one refresh.
#[derive(Debug)]
struct Snapshot {
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    /// When the refresh that made it started: the rows are at least this
    /// fresh.
    as_of: SystemTime,
    rows: u64,
    bytes: u64,
}

/// How the refreshes went.
#[derive(Debug, Clone, Default)]
struct Refreshes {
    started: Option<SystemTime>,
    ended: Option<SystemTime>,
    /// Rows the last successful refresh read.
    fetched: Option<u64>,
    next: Option<SystemTime>,
    last_error: Option<String>,
    /// Failures since the last success.
    failures: u32,
}

/// One accelerated table's state, as `bluelamp.accelerations` shows it.
#[derive(Debug, Clone)]
pub struct AccelerationStatus {
    /// The source's name.
    pub source: String,
    /// The table's name.
    pub table: String,
    /// `full`.
    pub mode: &'static str,
    /// `memory`.
    pub storage: &'static str,
    /// Rows in the copy (none before the first refresh).
    pub rows: Option<u64>,
    /// The copy's size in memory, in bytes.
    pub bytes: Option<u64>,
    /// When the refresh that made the copy started.
    pub as_of: Option<SystemTime>,
    /// When the last refresh started.
    pub refresh_started: Option<SystemTime>,
    /// When the last refresh ended, successfully or not.
    pub refresh_ended: Option<SystemTime>,
    /// Rows the last successful refresh read from the source.
    pub fetched: Option<u64>,
    /// When the next refresh is due.
    pub next_refresh: Option<SystemTime>,
    /// Why the last refresh failed, if it did.
    pub last_error: Option<String>,
}

/// The first retry after a failed refresh; each further failure doubles
/// it, up to the refresh interval.
const FIRST_RETRY: Duration = Duration::from_secs(1);

impl Acceleration {
    /// `table` of `source`, accelerated as `config` says, refreshed as
    /// `principal` (its `as_user`) where one is named and recorded in
    /// `audit`; no copy yet.
    pub fn new(
        source: SourceConfig,
        table: &str,
        config: AccelerateConfig,
        principal: Option<Principal>,
        audit: Option<AuditLog>,
    ) -> Self {
        Self {
            principal: principal.map(Arc::new),
            audit,
            source,
            table: table.to_string(),
            config,
            copy: RwLock::new(None),
            last_read: RwLock::new(None),
            status: Mutex::new(Refreshes::default()),
            refreshing: tokio::sync::Mutex::new(()),
        }
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The source's name.
    pub fn source(&self) -> &str {
        &self.source.name
    }

    fn refreshes(&self) -> std::sync::MutexGuard<'_, Refreshes> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The source's table as the last refresh read it, once there is a
    /// copy.
    pub(crate) fn last_read(&self) -> Option<Arc<dyn TableProvider>> {
        self.current()?;
        self.last_read
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn current(&self) -> Option<Arc<Snapshot>> {
        self.copy.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The state `bluelamp.accelerations` shows.
    pub fn status(&self) -> AccelerationStatus {
        let copy = self.current();
        let refreshes = self.refreshes().clone();
        AccelerationStatus {
            source: self.source.name.clone(),
            table: self.table.clone(),
            mode: self.config.mode.as_str(),
            storage: self.config.storage.as_str(),
            rows: copy.as_ref().map(|c| c.rows),
            bytes: copy.as_ref().map(|c| c.bytes),
            as_of: copy.as_ref().map(|c| c.as_of),
            refresh_started: refreshes.started,
            refresh_ended: refreshes.ended,
            fetched: refreshes.fetched,
            next_refresh: refreshes.next,
            last_error: refreshes.last_error,
        }
    }

    /// Reads the whole of `live` (the table as its source serves it) and
    /// makes it the copy, in one step; returns the rows read. On failure the
    /// copy is kept and the error recorded.
    ///
    /// # Errors
    /// Why the refresh failed, naming the source and table.
    pub async fn refresh(&self, live: Arc<dyn TableProvider>) -> Result<u64, String> {
        let _one_at_a_time = self.refreshing.lock().await;
        *self.last_read.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::clone(&live));
        let started = SystemTime::now();
        self.refreshes().started = Some(started);
        // Recorded before the source is read; a trail that cannot be
        // written stops the read.
        let outcome = match self.audit_refresh("statement", None).await {
            Err(e) => Err(e),
            Ok(()) => read_whole(live, self.principal.clone()).await,
        };
        let completed = match &outcome {
            Ok((_, batches)) => Ok(batches.iter().map(|b| b.num_rows() as u64).sum()),
            Err(e) => Err(e.clone()),
        };
        if let Err(e) = self.audit_refresh("completed", Some(completed)).await {
            tracing::warn!("{e}");
        }
        let outcome = outcome.map(|(schema, batches)| Snapshot {
            rows: batches.iter().map(|b| b.num_rows() as u64).sum(),
            bytes: batches
                .iter()
                .map(|b| b.get_array_memory_size() as u64)
                .sum(),
            schema,
            batches,
            as_of: started,
        });
        let mut refreshes = self.refreshes();
        refreshes.ended = Some(SystemTime::now());
        match outcome {
            Ok(copy) => {
                let rows = copy.rows;
                *self.copy.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(copy));
                refreshes.fetched = Some(rows);
                refreshes.last_error = None;
                refreshes.failures = 0;
                Ok(rows)
            }
            Err(e) => {
                let message = format!(
                    "refreshing {}.{} failed (the previous copy is kept): {e}",
                    self.source.name, self.table
                );
                tracing::warn!("{message}");
                refreshes.last_error = Some(message.clone());
                refreshes.failures = refreshes.failures.saturating_add(1);
                Err(message)
            }
        }
    }

    /// Writes one record of a refresh to the audit trail: `statement` as it
    /// starts, `completed` with its rows or error. The user is `as_user`, or
    /// `bluelamp` (the engine itself) where none is named.
    async fn audit_refresh(
        &self,
        event: &str,
        outcome: Option<Result<u64, String>>,
    ) -> Result<(), String> {
        let Some(log) = &self.audit else {
            return Ok(());
        };
        let mut record = AuditRecord {
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            event: event.to_string(),
            user: self
                .principal
                .as_ref()
                .map_or_else(|| "bluelamp".to_string(), |p| p.user.clone()),
            auth: "acceleration".into(),
            statement: format!(
                "refresh the local copy of {}.{}",
                self.source.name, self.table
            ),
            sources: vec![self.source.name.clone()],
            tables: vec![format!("{}.{}", self.source.name, self.table)],
            outcome: "ok".into(),
            ..AuditRecord::default()
        };
        match outcome {
            Some(Ok(rows)) => record.rows = Some(rows),
            Some(Err(e)) => {
                record.outcome = "error".into();
                record.error = Some(e);
            }
            None => {}
        }
        log.append(record)
            .await
            .map(|_| ())
            .map_err(|e| format!("{e}; the source was not read"))
    }

    /// Records a refresh that could not start (the source is down, or has
    /// no such table).
    fn failed(&self, error: String) {
        let message = format!(
            "refreshing {}.{} failed (the previous copy is kept): {error}",
            self.source.name, self.table
        );
        tracing::warn!("{message}");
        let mut refreshes = self.refreshes();
        refreshes.ended = Some(SystemTime::now());
        refreshes.last_error = Some(message);
        refreshes.failures = refreshes.failures.saturating_add(1);
    }

    /// How long until the next refresh: the interval after a success, a
    /// back-off (1 s, 2 s, 4 s, ... up to the interval) after failures.
    fn next_wait(&self) -> Duration {
        let mut refreshes = self.refreshes();
        let wait = if refreshes.failures == 0 {
            self.config.refresh
        } else {
            let doubled = FIRST_RETRY.saturating_mul(1u32 << (refreshes.failures.min(16) - 1));
            doubled.min(self.config.refresh)
        };
        refreshes.next = Some(SystemTime::now() + wait);
        wait
    }

    /// The copy a query should read, or `None` for the source itself.
    ///
    /// # Errors
    /// A copy older than `max_staleness` under `on_stale = "error"`.
    fn choose(&self, live: bool) -> DFResult<Option<Arc<Snapshot>>> {
        if live {
            return Ok(None);
        }
        // Before the first refresh, the source itself answers.
        let Some(copy) = self.current() else {
            return Ok(None);
        };
        let Some(max) = self.config.max_staleness else {
            return Ok(Some(copy));
        };
        let age = copy.as_of.elapsed().unwrap_or_default();
        if age <= max {
            return Ok(Some(copy));
        }
        let why = match &self.refreshes().last_error {
            Some(error) => format!("; {error}"),
            None => String::new(),
        };
        let message = format!(
            "table '{}.{}': the local copy is {} old, more than max_staleness ({}){why}. \
             `SET bluelamp.live = true` reads the source itself",
            self.source.name,
            self.table,
            seconds(age),
            seconds(max)
        );
        match self.config.on_stale {
            OnStale::Error => {
                Err(SourceError::unavailable(&self.source, message).into_datafusion())
            }
            OnStale::Warn => {
                tracing::warn!("{message} (answered from the copy: on_stale = \"warn\")");
                Ok(Some(copy))
            }
            OnStale::Live => Ok(None),
        }
    }
}

fn seconds(duration: Duration) -> String {
    format!("{}s", duration.as_secs())
}

/// Every row of `table`, in batches of its own schema, read as `principal`
/// where one is given (a connector that names the end user to its source
/// finds it in the session's configuration, as for any query).
async fn read_whole(
    table: Arc<dyn TableProvider>,
    principal: Option<Arc<Principal>>,
) -> Result<(SchemaRef, Vec<RecordBatch>), String> {
    let schema = table.schema();
    let mut config = SessionConfig::new();
    if let Some(principal) = principal {
        config = config.with_extension(principal);
    }
    let ctx = SessionContext::new_with_config(config);
    let batches = ctx
        .read_table(table)
        .map_err(|e| e.to_string())?
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    // The copy answers for the table: every batch must have its columns.
    let batches = batches
        .into_iter()
        .map(|batch| {
            RecordBatch::try_new_with_options(
                Arc::clone(&schema),
                batch.columns().to_vec(),
                &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
            )
            .map_err(|e| format!("the source's rows no longer match the table's columns: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((schema, batches))
}

/// Refreshes `acceleration` now and then every `refresh`, until the
/// engine that owns `source` is gone.
pub(crate) fn spawn_refresher(acceleration: Arc<Acceleration>, source: Weak<SourceSchema>) {
    tokio::spawn(async move {
        loop {
            let Some(schema) = source.upgrade() else {
                return;
            };
            match schema.live_table(acceleration.table()).await {
                Ok(Some(table)) => {
                    let _ = acceleration.refresh(table).await;
                }
                Ok(None) => acceleration.failed(format!(
                    "source '{}' has no table '{}'",
                    acceleration.source(),
                    acceleration.table()
                )),
                Err(e) => acceleration.failed(e.to_string()),
            }
            drop(schema);
            tokio::time::sleep(acceleration.next_wait()).await;
        }
    });
}

/// An accelerated table as DataFusion reads it.
#[derive(Debug)]
pub struct AcceleratedTable {
    live: Arc<dyn TableProvider>,
    acceleration: Arc<Acceleration>,
}

impl AcceleratedTable {
    /// `live` (the source's table), answered from `acceleration`'s copy.
    pub fn new(live: Arc<dyn TableProvider>, acceleration: Arc<Acceleration>) -> Self {
        Self { live, acceleration }
    }
}

#[async_trait]
impl TableProvider for AcceleratedTable {
    fn schema(&self) -> SchemaRef {
        self.live.schema()
    }

    fn constraints(&self) -> Option<&Constraints> {
        self.live.constraints()
    }

    fn table_type(&self) -> TableType {
        self.live.table_type()
    }

    /// What the source applies exactly, the copy does not apply at all: a
    /// filter the source takes is reported inexact, so DataFusion applies it
    /// again above either.
    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DFResult<Vec<TableProviderFilterPushDown>> {
        Ok(self
            .live
            .supports_filters_pushdown(filters)?
            .into_iter()
            .map(|pushdown| match pushdown {
                TableProviderFilterPushDown::Exact => TableProviderFilterPushDown::Inexact,
                other => other,
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let live = BluelampOptions::live(state.config_options());
        match self.acceleration.choose(live)? {
            None => self.live.scan(state, projection, filters, limit).await,
            Some(copy) => {
                // Spread the batches over the session's partitions.
                let partitions = state
                    .config()
                    .target_partitions()
                    .clamp(1, copy.batches.len().max(1));
                let mut parts = vec![Vec::new(); partitions];
                for (i, batch) in copy.batches.iter().enumerate() {
                    parts[i % partitions].push(batch.clone());
                }
                let table = MemTable::try_new(Arc::clone(&copy.schema), parts)?;
                table.scan(state, projection, filters, limit).await
            }
        }
    }

    fn statistics(&self) -> Option<Statistics> {
        let copy = self.acceleration.current()?;
        let mut statistics = Statistics::new_unknown(&copy.schema);
        statistics.num_rows = Precision::Exact(usize::try_from(copy.rows).unwrap_or(usize::MAX));
        statistics.total_byte_size =
            Precision::Inexact(usize::try_from(copy.bytes).unwrap_or(usize::MAX));
        Some(statistics)
    }

    /// Deposits go to the source; the copy has them after its next refresh.
    async fn insert_into(
        &self,
        state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        self.live.insert_into(state, input, insert_op).await
    }

    fn get_column_default(&self, column: &str) -> Option<&Expr> {
        self.live.get_column_default(column)
    }
}

/// `bluelamp.accelerations`: every accelerated table's state, read at scan
/// time.
#[derive(Debug)]
pub(crate) struct AccelerationsTable {
    pub(crate) accelerations: Vec<Arc<Acceleration>>,
}

fn accelerations_schema() -> SchemaRef {
    let time = || DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("source", DataType::Utf8, false),
        Field::new("table", DataType::Utf8, false),
        Field::new("mode", DataType::Utf8, false),
        Field::new("storage", DataType::Utf8, false),
        Field::new("rows", DataType::UInt64, true),
        Field::new("bytes", DataType::UInt64, true),
        Field::new("as_of", time(), true),
        Field::new("staleness_seconds", DataType::UInt64, true),
        Field::new("refresh_started", time(), true),
        Field::new("refresh_ended", time(), true),
        Field::new("fetched", DataType::UInt64, true),
        Field::new("next_refresh", time(), true),
        Field::new("last_error", DataType::Utf8, true),
    ]))
}

#[async_trait]
impl TableProvider for AccelerationsTable {
    fn schema(&self) -> SchemaRef {
        accelerations_schema()
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
        let statuses: Vec<AccelerationStatus> =
            self.accelerations.iter().map(|a| a.status()).collect();
        let time = |f: &dyn Fn(&AccelerationStatus) -> Option<SystemTime>| -> ArrayRef {
            Arc::new(
                TimestampMillisecondArray::from_iter(
                    statuses
                        .iter()
                        .map(|s| f(s).map(crate::catalog::unix_millis)),
                )
                .with_timezone("UTC"),
            )
        };
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(
                statuses.iter().map(|s| s.source.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                statuses.iter().map(|s| s.table.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                statuses.iter().map(|s| s.mode),
            )),
            Arc::new(StringArray::from_iter_values(
                statuses.iter().map(|s| s.storage),
            )),
            Arc::new(UInt64Array::from_iter(statuses.iter().map(|s| s.rows))),
            Arc::new(UInt64Array::from_iter(statuses.iter().map(|s| s.bytes))),
            time(&|s| s.as_of),
            Arc::new(UInt64Array::from_iter(statuses.iter().map(|s| {
                s.as_of.map(|t| t.elapsed().unwrap_or_default().as_secs())
            }))),
            time(&|s| s.refresh_started),
            time(&|s| s.refresh_ended),
            Arc::new(UInt64Array::from_iter(statuses.iter().map(|s| s.fetched))),
            time(&|s| s.next_refresh),
            Arc::new(StringArray::from_iter(
                statuses.iter().map(|s| s.last_error.as_deref()),
            )),
        ];
        let batch = RecordBatch::try_new(accelerations_schema(), columns)?;
        crate::catalog::scan_batch(state, batch, projection, filters, limit).await
    }
}
