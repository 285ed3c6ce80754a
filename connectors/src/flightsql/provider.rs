//! A Flight SQL server's tables as DataFusion tables: each is read through
//! federation (whole sub-plans sent as SQL, [`super::exec`]), and its own
//! scan — used where federation does not take the plan — sends the columns
//! and row limit asked for and no filter; `INSERT` sends a prepared
//! `INSERT ... VALUES ($1, ...)`, bound to each batch of rows.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use bluelamp_engine::SourceConfig;
use datafusion::catalog::Session;
use datafusion::common::TableReference;
use datafusion::datasource::sink::DataSinkExec;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::streaming::StreamingTableExec;
use datafusion_federation::FederatedTableProviderAdaptor;
use datafusion_federation::sql::{RemoteTableRef, SQLTableSource};

use super::client::{Connection, RemoteTable};
use super::exec::{ActingPlanner, RemoteQuery};
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
        let sink = super::write::InsertSink {
            connection: self.connection.clone(),
            name: self.name.clone(),
            schema: input.schema(),
        };
        Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
    }
}
