//! `bluelamp.accelerations`: every accelerated table's state.

use std::sync::Arc;
use std::time::SystemTime;

use arrow::array::{ArrayRef, RecordBatch, StringArray, TimestampMillisecondArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::datasource::TableProvider;
use datafusion::error::Result as DFResult;
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::ExecutionPlan;

use super::Acceleration;

/// One accelerated table's state, as `bluelamp.accelerations` shows it.
#[derive(Debug, Clone)]
pub struct AccelerationStatus {
    /// The source's name.
    pub source: String,
    /// The table's name.
    pub table: String,
    /// `full`, `append` or `window`.
    pub mode: &'static str,
    /// `memory` or `parquet`.
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
    /// Requests the last successful refresh made, where the connector
    /// counts them (REST sources).
    pub requests: Option<u64>,
    /// When the next refresh is due (none for tables refreshed on demand).
    pub next_refresh: Option<SystemTime>,
    /// Why the last refresh failed, if it did.
    pub last_error: Option<String>,
    /// How the source's columns last changed under the copy, if they did.
    pub schema_change: Option<String>,
}

impl Acceleration {
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
            requests: refreshes.requests,
            next_refresh: refreshes.next,
            last_error: refreshes.last_error,
            schema_change: refreshes.schema_change,
        }
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
        Field::new("requests", DataType::UInt64, true),
        Field::new("next_refresh", time(), true),
        Field::new("last_error", DataType::Utf8, true),
        Field::new("schema_change", DataType::Utf8, true),
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
            Arc::new(UInt64Array::from_iter(statuses.iter().map(|s| s.requests))),
            time(&|s| s.next_refresh),
            Arc::new(StringArray::from_iter(
                statuses.iter().map(|s| s.last_error.as_deref()),
            )),
            Arc::new(StringArray::from_iter(
                statuses.iter().map(|s| s.schema_change.as_deref()),
            )),
        ];
        let batch = RecordBatch::try_new(accelerations_schema(), columns)?;
        crate::catalog::scan_batch(state, batch, projection, filters, limit).await
    }
}
