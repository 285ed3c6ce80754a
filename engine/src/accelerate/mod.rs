//! Acceleration: a local copy of a slow or rate-limited table, refreshed in
//! the background, that queries read instead of the source.
//!
//! - [`Acceleration`] holds one table's copy and how its refreshes went.
//!   A refresh reads the table from its source into Arrow batches (the
//!   whole table in `full` mode; in `append` and `window` modes only rows
//!   whose key is at or past the copy's newest, through the source's own
//!   filter — [`increment`]) and then swaps the copy in one step, so a query
//!   sees the old copy or the new one, never a mix. A refresh that fails
//!   keeps the old copy, records the error (`bluelamp.accelerations`) and is
//!   retried sooner, backing off up to the refresh interval. With
//!   `storage = "parquet"` each new copy is also written to a file
//!   ([`store`]) that the next start serves from without fetching.
//! - [`AcceleratedTable`] ([`table`]) is what the catalog hands DataFusion
//!   for an accelerated table: scans read the copy, or the source itself
//!   before the first copy exists, under `SET bluelamp.live = true`, or when
//!   the copy is too old or its columns no longer match the source's, as
//!   `on_stale` says. `INSERT` goes to the source. Policies and the audit
//!   trail apply above the table, to the copy exactly as to the source.
//! - [`read`] is how a refresh reads its source: as a session would, and
//!   streaming into a few large batches.
//! - `REFRESH TABLE source.table` ([`statement`]) refreshes one now, through
//!   the session like any statement.
//! - [`status`] is `bluelamp.accelerations`.
//!
//! Settings: [`crate::config::AccelerateConfig`].

mod increment;
mod read;
pub(crate) mod statement;
mod status;
mod store;
mod table;

use std::path::Path;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, SystemTime};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;
use datafusion::common::TableReference;
use datafusion::datasource::TableProvider;
use datafusion::error::Result as DFResult;

use crate::audit::{AuditLog, AuditRecord};
use crate::catalog::SourceSchema;
use crate::config::{AccelerateConfig, OnStale, SourceConfig, Storage};
use crate::principal::Principal;
use crate::source::SourceError;

pub use status::AccelerationStatus;
pub(crate) use status::AccelerationsTable;
pub use table::{AcceleratedTable, oldest_copy};

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
    /// Where the copy is written, for `storage = "parquet"`.
    store: Option<store::Store>,
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
    /// The newest `key` value the copy holds (`append` and `window`).
    high_water: Option<ScalarValue>,
}

impl Snapshot {
    fn new(
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
        as_of: SystemTime,
        high_water: Option<ScalarValue>,
    ) -> Self {
        Self {
            rows: batches.iter().map(|b| b.num_rows() as u64).sum(),
            bytes: batches
                .iter()
                .map(|b| b.get_array_memory_size() as u64)
                .sum(),
            schema,
            batches,
            as_of,
            high_water,
        }
    }
}

/// How the refreshes went.
#[derive(Debug, Clone, Default)]
struct Refreshes {
    started: Option<SystemTime>,
    ended: Option<SystemTime>,
    /// Rows the last successful refresh read from the source.
    fetched: Option<u64>,
    /// Requests the last successful refresh made, where the connector
    /// counts them (REST sources).
    requests: Option<u64>,
    next: Option<SystemTime>,
    last_error: Option<String>,
    /// How the source's columns last changed under the copy.
    schema_change: Option<String>,
    /// Failures since the last success.
    failures: u32,
}

/// What one refresh did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refreshed {
    /// Rows read from the source.
    pub fetched: u64,
    /// Rows in the new copy.
    pub rows: u64,
    /// The new copy's time.
    pub as_of: SystemTime,
}

/// The first retry after a failed refresh; each further failure doubles
/// it, up to the refresh interval.
const FIRST_RETRY: Duration = Duration::from_secs(1);

impl Acceleration {
    /// `table` of `source`, accelerated as `config` says, refreshed as
    /// `principal` (its `as_user`) where one is named and recorded in
    /// `audit`; a `parquet` copy is kept under `data_dir`. No copy yet:
    /// [`Acceleration::load`] reads a stored one.
    pub fn new(
        source: SourceConfig,
        table: &str,
        config: AccelerateConfig,
        principal: Option<Principal>,
        audit: Option<AuditLog>,
        data_dir: Option<&Path>,
    ) -> Self {
        let store = match (config.storage, data_dir) {
            (Storage::Parquet, Some(dir)) => Some(store::Store::new(dir, &source.name, table)),
            _ => None,
        };
        Self {
            principal: principal.map(Arc::new),
            audit,
            store,
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

    /// Reads the copy a previous run wrote (`storage = "parquet"`), so it
    /// answers without fetching; a file that cannot be read is reported and
    /// the first refresh replaces it. Returns the copy's time.
    pub async fn load(&self) -> Option<SystemTime> {
        let store = self.store.clone()?;
        let loaded = tokio::task::spawn_blocking(move || store.read())
            .await
            .unwrap_or_else(|e| Err(format!("reading the stored copy stopped: {e}")));
        match loaded {
            Ok(None) => None,
            Ok(Some(stored)) => {
                let high_water =
                    increment::high_water(&self.config, &stored.schema, &stored.batches)
                        .unwrap_or(None);
                let copy = Snapshot::new(stored.schema, stored.batches, stored.as_of, high_water);
                tracing::info!(
                    source = %self.source.name,
                    table = %self.table,
                    rows = copy.rows,
                    "the stored copy is served until the next refresh"
                );
                let as_of = copy.as_of;
                *self.copy.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(copy));
                Some(as_of)
            }
            Err(e) => {
                let message = format!(
                    "the stored copy of {}.{} cannot be read ({e}); the first refresh replaces it",
                    self.source.name, self.table
                );
                tracing::warn!("{message}");
                self.refreshes().last_error = Some(message);
                None
            }
        }
    }

    /// How `columns` (the source's table as it is now) differ from the
    /// copy's, if they do; the change is recorded for
    /// `bluelamp.accelerations`.
    pub(crate) fn columns_changed(&self, columns: &SchemaRef) -> Option<String> {
        let copy = self.current()?;
        let change = increment::schema_change(&copy.schema, columns)?;
        self.refreshes().schema_change = Some(change.clone());
        Some(change)
    }

    /// Refreshes from `source` now: reads the table as the source serves
    /// it and makes the new copy.
    ///
    /// # Errors
    /// Why the refresh failed (the source is down, has no such table, or
    /// the read failed), naming the source and table; the copy is kept.
    pub(crate) async fn refresh_from(&self, source: &SourceSchema) -> Result<Refreshed, String> {
        match source.live_table(&self.table).await {
            Ok(Some(table)) => self.refresh(table).await,
            Ok(None) => Err(self.failed(format!(
                "source '{}' has no table '{}'",
                self.source.name, self.table
            ))),
            Err(e) => Err(self.failed(read::message(e))),
        }
    }

    /// Reads `live` (the table as its source serves it) as the mode says
    /// and makes the result the copy, in one step. On failure the copy is
    /// kept and the error recorded.
    ///
    /// # Errors
    /// Why the refresh failed, naming the source and table.
    pub async fn refresh(&self, live: Arc<dyn TableProvider>) -> Result<Refreshed, String> {
        let _one_at_a_time = self.refreshing.lock().await;
        *self.last_read.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::clone(&live));
        let started = SystemTime::now();
        self.refreshes().started = Some(started);
        // Recorded before the source is read; a trail that cannot be
        // written stops the read.
        let outcome = match self.audit_refresh("statement", None).await {
            Err(e) => Err(e),
            Ok(()) => self.fetch(live, started).await,
        };
        let completed = match &outcome {
            Ok(fetch) => Ok(fetch.fetched),
            Err(e) => Err(e.clone()),
        };
        if let Err(e) = self.audit_refresh("completed", Some(completed)).await {
            tracing::warn!("{e}");
        }
        let mut refreshes = self.refreshes();
        refreshes.ended = Some(SystemTime::now());
        match outcome {
            Ok(fetch) => {
                let refreshed = Refreshed {
                    fetched: fetch.fetched,
                    rows: fetch.copy.rows,
                    as_of: started,
                };
                if let Some(change) = fetch.schema_change {
                    tracing::warn!(
                        "{}.{}: {change}; the copy was fetched whole with the new columns",
                        self.source.name,
                        self.table
                    );
                    refreshes.schema_change = Some(change);
                }
                *self.copy.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(fetch.copy));
                refreshes.fetched = Some(fetch.fetched);
                refreshes.requests = fetch.requests;
                refreshes.last_error = None;
                refreshes.failures = 0;
                Ok(refreshed)
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

    /// Reads what this refresh needs from `live` and builds the new copy
    /// (and writes it, for `parquet` storage), without touching the
    /// current one.
    async fn fetch(
        &self,
        live: Arc<dyn TableProvider>,
        started: SystemTime,
    ) -> Result<Fetch, String> {
        let schema = live.schema();
        let previous = self.current();
        let schema_change = previous
            .as_ref()
            .and_then(|p| increment::schema_change(&p.schema, &schema));
        // A copy whose columns no longer match is fetched again whole.
        let previous = previous.filter(|_| schema_change.is_none());
        let increment = increment::Increment::new(
            &self.config,
            &schema,
            previous.as_ref().and_then(|p| p.high_water.clone()),
            started,
        )?;
        let name = TableReference::full(
            crate::session::CATALOG,
            self.source.name.as_str(),
            self.table.as_str(),
        );
        let read = read::read_table(name, live, self.principal.clone(), increment.filter()).await?;
        let fetched = read.batches.iter().map(|b| b.num_rows() as u64).sum();
        let kept: &[RecordBatch] = match &previous {
            Some(previous) => &previous.batches,
            None => &[],
        };
        let batches = increment.merge(&schema, kept, read.batches)?;
        let high_water = increment::high_water(&self.config, &schema, &batches)?;
        if let Some(store) = self.store.clone() {
            let (schema, batches) = (Arc::clone(&schema), batches.clone());
            tokio::task::spawn_blocking(move || store.write(&schema, &batches, started))
                .await
                .unwrap_or_else(|e| Err(format!("writing the copy stopped: {e}")))?;
        }
        Ok(Fetch {
            copy: Snapshot::new(schema, batches, started, high_water),
            fetched,
            requests: read.requests,
            schema_change,
        })
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
                "refresh the local copy of {}.{} ({})",
                self.source.name,
                self.table,
                self.config.mode.as_str()
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
    /// no such table), and returns the message.
    fn failed(&self, error: String) -> String {
        let message = format!(
            "refreshing {}.{} failed (the previous copy is kept): {error}",
            self.source.name, self.table
        );
        tracing::warn!("{message}");
        let mut refreshes = self.refreshes();
        refreshes.ended = Some(SystemTime::now());
        refreshes.last_error = Some(message.clone());
        refreshes.failures = refreshes.failures.saturating_add(1);
        message
    }

    /// How long until the next scheduled refresh: the interval after a
    /// success, a back-off (1 s, 2 s, 4 s, ... up to the interval) after
    /// failures.
    fn next_wait(&self, interval: Duration) -> Duration {
        let mut refreshes = self.refreshes();
        let wait = if refreshes.failures == 0 {
            interval
        } else {
            let doubled = FIRST_RETRY.saturating_mul(1u32 << (refreshes.failures.min(16) - 1));
            doubled.min(interval)
        };
        refreshes.next = Some(SystemTime::now() + wait);
        wait
    }

    /// The copy a query planned against `columns` (the source's table as it
    /// is now) should read, or `None` for the source itself.
    ///
    /// # Errors
    /// A copy older than `max_staleness`, or whose columns no longer match
    /// the source's, under `on_stale = "error"`.
    fn choose(&self, live: bool, columns: &SchemaRef) -> DFResult<Option<Arc<Snapshot>>> {
        if live {
            return Ok(None);
        }
        // Before the first refresh, the source itself answers.
        let Some(copy) = self.current() else {
            return Ok(None);
        };
        let why = || match &self.refreshes().last_error {
            Some(error) => format!("; {error}"),
            None => String::new(),
        };
        // A copy made under other columns cannot answer for these: it is
        // never read as if it could.
        if let Some(change) = self.columns_changed(columns) {
            let message = format!(
                "table '{}.{}': {change}, so the local copy cannot answer until it is \
                 refreshed (REFRESH TABLE {}.{}){}. `SET bluelamp.live = true` reads the \
                 source itself",
                self.source.name,
                self.table,
                self.source.name,
                self.table,
                why()
            );
            return match self.config.on_stale {
                OnStale::Error => {
                    Err(SourceError::unavailable(&self.source, message).into_datafusion())
                }
                OnStale::Warn | OnStale::Live => {
                    tracing::warn!("{message} (answered by the source)");
                    Ok(None)
                }
            };
        }
        let Some(max) = self.config.max_staleness else {
            return Ok(Some(copy));
        };
        let age = copy.as_of.elapsed().unwrap_or_default();
        if age <= max {
            return Ok(Some(copy));
        }
        let message = format!(
            "table '{}.{}': the local copy is {} old, more than max_staleness ({}){}. \
             `SET bluelamp.live = true` reads the source itself",
            self.source.name,
            self.table,
            seconds(age),
            seconds(max),
            why()
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

/// A refresh's result, before it becomes the copy.
struct Fetch {
    copy: Snapshot,
    fetched: u64,
    requests: Option<u64>,
    schema_change: Option<String>,
}

fn seconds(duration: Duration) -> String {
    format!("{}s", duration.as_secs())
}

/// Refreshes `acceleration` every `refresh` (first at once, or when a copy
/// loaded from storage is due), until the engine that owns `source` is
/// gone. Tables refreshed on demand only have no refresher.
pub(crate) fn spawn_refresher(
    acceleration: Arc<Acceleration>,
    source: Weak<SourceSchema>,
    loaded: Option<SystemTime>,
) {
    let Some(interval) = acceleration.config.refresh else {
        return;
    };
    // A stored copy is refreshed when it is due, not at once.
    let first = loaded.map(|as_of| {
        let wait = interval.saturating_sub(as_of.elapsed().unwrap_or_default());
        acceleration.refreshes().next = Some(SystemTime::now() + wait);
        wait
    });
    tokio::spawn(async move {
        if let Some(wait) = first {
            tokio::time::sleep(wait).await;
        }
        loop {
            let Some(schema) = source.upgrade() else {
                return;
            };
            let _ = acceleration.refresh_from(&schema).await;
            drop(schema);
            tokio::time::sleep(acceleration.next_wait(interval)).await;
        }
    });
}
