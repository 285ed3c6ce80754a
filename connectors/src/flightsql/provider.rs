//! A Flight SQL server's tables as DataFusion tables: each is read through
//! federation (whole sub-plans sent as SQL, [`super::exec`]), and its own
//! scan — used where federation does not take the plan — sends the columns
//! and row limit asked for and no filter; `INSERT` sends a prepared
//! `INSERT ... VALUES ($1, ...)`, bound to each batch of rows.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use bluelamp_engine::SourceConfig;
use datafusion::catalog::Session;
use datafusion::common::TableReference;
use datafusion::datasource::sink::{DataSink, DataSinkExec};
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan};
use datafusion_federation::FederatedTableProviderAdaptor;
use datafusion_federation::sql::{RemoteTableRef, SQLTableSource};
use futures::StreamExt;

use super::client::{Connection, RemoteTable};
use super::exec::ActingPlanner;
use crate::sql::BoxError;

/// Builds each table of one source on first use.
#[derive(Debug)]
pub(crate) struct FlightBackend {
    pub(crate) connection: Connection,
    pub(crate) planner: Arc<ActingPlanner>,
    /// Local table name → the remote table.
    pub(crate) tables: Vec<(String, RemoteTable)>,
}

/// The remote table's name as its server's SQL spells it.
pub(crate) fn reference(table: &RemoteTable) -> TableReference {
    match (&table.catalog, &table.schema) {
        (Some(catalog), Some(schema)) => {
            TableReference::full(catalog.as_str(), schema.as_str(), table.name.as_str())
        }
        (None, Some(schema)) => TableReference::partial(schema.as_str(), table.name.as_str()),
        _ => TableReference::bare(table.name.as_str()),
    }
}

/// `reference` written out with `quote` around each part.
fn quoted(reference: &TableReference, quote: char) -> String {
    let part = |p: &str| {
        format!(
            "{quote}{}{quote}",
            p.replace(quote, &format!("{quote}{quote}"))
        )
    };
    let mut parts = Vec::new();
    if let Some(catalog) = reference.catalog() {
        parts.push(part(catalog));
    }
    if let Some(schema) = reference.schema() {
        parts.push(part(schema));
    }
    parts.push(part(reference.table()));
    parts.join(".")
}

#[async_trait]
impl crate::sql::SqlBackend for FlightBackend {
    async fn table_provider(
        &self,
        _source: &SourceConfig,
        table: &str,
    ) -> Result<Arc<dyn TableProvider>, BoxError> {
        let Some((_, remote)) = self.tables.iter().find(|(local, _)| local == table) else {
            return Err(format!("no table '{table}'").into());
        };
        let reference = reference(remote);
        let source = Arc::new(SQLTableSource::new_with_schema(
            super::exec::provider(Arc::clone(&self.planner)),
            RemoteTableRef::from(reference.clone()),
            Arc::clone(&remote.columns),
        ));
        let scan = Arc::new(FlightTable {
            connection: self.connection.clone(),
            name: quoted(&reference, self.planner.executor.quote),
            columns: Arc::clone(&remote.columns),
        });
        Ok(Arc::new(FederatedTableProviderAdaptor::new_with_provider(
            source, scan,
        )))
    }
}

/// One remote table's own scan and writer.
#[derive(Debug)]
struct FlightTable {
    connection: Connection,
    /// The table's name as the server's SQL spells it.
    name: String,
    columns: SchemaRef,
}

impl FlightTable {
    fn column_list(&self, schema: &SchemaRef, quote: char) -> String {
        schema
            .fields()
            .iter()
            .map(|f| {
                format!(
                    "{quote}{}{quote}",
                    f.name().replace(quote, &format!("{quote}{quote}"))
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[async_trait]
impl TableProvider for FlightTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.columns)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DFResult<Vec<TableProviderFilterPushDown>> {
        Ok(vec![
            TableProviderFilterPushDown::Unsupported;
            filters.len()
        ])
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let schema = match projection {
            Some(p) => Arc::new(self.columns.project(p)?),
            None => Arc::clone(&self.columns),
        };
        let columns = if schema.fields().is_empty() {
            // A count of rows: any column will do, as its values go unread.
            "1 AS one".to_string()
        } else {
            self.column_list(&schema, '"')
        };
        let mut sql = format!("SELECT {columns} FROM {}", self.name);
        if let Some(limit) = limit {
            sql.push_str(&format!(" LIMIT {limit}"));
        }
        let read_schema = if schema.fields().is_empty() {
            Arc::new(arrow::datatypes::Schema::new(vec![
                arrow::datatypes::Field::new("one", arrow::datatypes::DataType::Int64, false),
            ]))
        } else {
            Arc::clone(&schema)
        };
        let partition = Arc::new(RemoteQuery {
            connection: self.connection.clone(),
            sql,
            read: read_schema,
            project: Arc::clone(&schema),
        });
        Ok(Arc::new(StreamingTableExec::try_new(
            schema,
            vec![partition],
            None,
            Vec::new(),
            false,
            limit,
        )?))
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        if insert_op != InsertOp::Append {
            return Err(DataFusionError::NotImplemented(format!(
                "{insert_op} into a Flight SQL table: only INSERT INTO (appending rows) is sent"
            )));
        }
        let sink = InsertSink {
            connection: self.connection.clone(),
            name: self.name.clone(),
            schema: input.schema(),
        };
        Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
    }
}

/// One query, run when the plan runs, as the session's principal.
#[derive(Debug)]
struct RemoteQuery {
    connection: Connection,
    sql: String,
    /// What the server returns.
    read: SchemaRef,
    /// What the scan returns: no columns where only rows are counted.
    project: SchemaRef,
}

impl PartitionStream for RemoteQuery {
    fn schema(&self) -> &SchemaRef {
        &self.project
    }

    fn execute(&self, ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let principal = ctx
            .session_config()
            .get_extension::<bluelamp_engine::Principal>()
            .map(|p| p.as_ref().clone());
        let stream = self
            .connection
            .query(self.sql.clone(), Arc::clone(&self.read), principal);
        if self.project.fields().is_empty() {
            let project = Arc::clone(&self.project);
            Box::pin(
                datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(
                    Arc::clone(&self.project),
                    stream.map(move |batch| {
                        let batch = batch?;
                        Ok(RecordBatch::try_new_with_options(
                            Arc::clone(&project),
                            Vec::new(),
                            &arrow::array::RecordBatchOptions::new()
                                .with_row_count(Some(batch.num_rows())),
                        )?)
                    }),
                ),
            )
        } else {
            stream
        }
    }
}

/// Sends inserted rows as a prepared `INSERT`, one batch at a time.
#[derive(Debug)]
struct InsertSink {
    connection: Connection,
    name: String,
    schema: SchemaRef,
}

impl DisplayAs for InsertSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FlightSqlInsert: {}", self.name)
    }
}

#[async_trait]
impl DataSink for InsertSink {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    async fn write_all(
        &self,
        mut data: SendableRecordBatchStream,
        context: &Arc<TaskContext>,
    ) -> DFResult<u64> {
        let principal = context
            .session_config()
            .get_extension::<bluelamp_engine::Principal>()
            .map(|p| p.as_ref().clone());
        let names = self
            .schema
            .fields()
            .iter()
            .map(|f| format!("\"{}\"", f.name().replace('"', "\"\"")))
            .collect::<Vec<_>>();
        let placeholders = (1..=names.len())
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>();
        let sql = format!(
            "INSERT INTO {} ({}) VALUES ({})",
            self.name,
            names.join(", "),
            placeholders.join(", ")
        );
        let mut written = 0u64;
        while let Some(batch) = data.next().await {
            let batch = batch?;
            if batch.num_rows() == 0 {
                continue;
            }
            let changed = self
                .connection
                .prepared_update(&sql, batch, principal.as_ref())
                .await
                .map_err(bluelamp_engine::SourceError::into_datafusion)?;
            written += u64::try_from(changed).unwrap_or(0);
        }
        Ok(written)
    }
}
