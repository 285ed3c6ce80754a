//! What a session can see, for catalog browsers: BI tools and JDBC/ADBC drivers
//! list catalogs, schemas, tables, keys and functions before they run a query.
//! Everything here reads the session's own catalog, so it shows exactly what
//! the user could query.

use arrow::datatypes::SchemaRef;
use datafusion::catalog::information_schema::{INFORMATION_SCHEMA, INFORMATION_SCHEMA_TABLES};
use datafusion::common::{Constraint, TableReference};
use datafusion::logical_expr::TableType;

use crate::error::QueryError;
use crate::session::{CATALOG, Session};

/// One table or view a session can query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableEntry {
    /// Always [`CATALOG`].
    pub catalog: String,
    /// The schema: a source name, `bluelamp`, `public` or `information_schema`.
    pub schema: String,
    /// The table name.
    pub table: String,
    /// `BASE TABLE`, `VIEW` or `LOCAL TEMPORARY`, as `information_schema` says.
    pub table_type: &'static str,
}

/// The table types [`TableEntry::table_type`] takes.
pub const TABLE_TYPES: &[&str] = &["BASE TABLE", "LOCAL TEMPORARY", "VIEW"];

fn type_name(table_type: TableType) -> &'static str {
    match table_type {
        TableType::Base => "BASE TABLE",
        TableType::View => "VIEW",
        TableType::Temporary => "LOCAL TEMPORARY",
    }
}

impl Session {
    /// The catalogs this session sees (one: [`CATALOG`]).
    pub fn catalog_names(&self) -> Vec<String> {
        vec![CATALOG.to_string()]
    }

    /// Schema names, sorted, including `information_schema`.
    pub fn schema_names(&self) -> Vec<String> {
        let mut names = self
            .ctx
            .catalog(CATALOG)
            .map(|c| c.schema_names())
            .unwrap_or_default();
        if !names.iter().any(|n| n == INFORMATION_SCHEMA) {
            names.push(INFORMATION_SCHEMA.to_string());
        }
        names.sort();
        names
    }

    /// Every table and view, sorted by schema and name. A source that is down
    /// contributes no tables.
    pub async fn tables(&self) -> Vec<TableEntry> {
        let mut out = Vec::new();
        if let Some(catalog) = self.ctx.catalog(CATALOG) {
            for schema_name in catalog.schema_names() {
                let Some(schema) = catalog.schema(&schema_name) else {
                    continue;
                };
                for table in schema.table_names() {
                    let table_type = schema
                        .table_type(&table)
                        .await
                        .ok()
                        .flatten()
                        .unwrap_or(TableType::Base);
                    out.push(TableEntry {
                        catalog: CATALOG.to_string(),
                        schema: schema_name.clone(),
                        table,
                        table_type: type_name(table_type),
                    });
                }
            }
        }
        for table in INFORMATION_SCHEMA_TABLES {
            out.push(TableEntry {
                catalog: CATALOG.to_string(),
                schema: INFORMATION_SCHEMA.to_string(),
                table: (*table).to_string(),
                table_type: "VIEW",
            });
        }
        out.sort_by(|a, b| (&a.schema, &a.table).cmp(&(&b.schema, &b.table)));
        self.audit_metadata("list tables", out.len());
        out
    }

    /// The Arrow schema of `schema.table`, names taken literally.
    ///
    /// # Errors
    /// [`crate::ErrorKind::NotFound`] if there is no such table.
    pub async fn table_schema(&self, schema: &str, table: &str) -> Result<SchemaRef, QueryError> {
        self.describe_qualified(schema, table).await
    }

    /// The primary-key columns of `schema.table`, in key order; empty where
    /// the source declares none.
    ///
    /// # Errors
    /// [`crate::ErrorKind::NotFound`] if there is no such table.
    pub async fn primary_key(&self, schema: &str, table: &str) -> Result<Vec<String>, QueryError> {
        let provider = self
            .ctx
            .table_provider(TableReference::partial(schema, table))
            .await
            .map_err(QueryError::from)?;
        let columns = provider.schema();
        let Some(constraints) = provider.constraints() else {
            return Ok(Vec::new());
        };
        Ok(constraints
            .iter()
            .find_map(|c| match c {
                Constraint::PrimaryKey(indices) => Some(
                    indices
                        .iter()
                        .filter_map(|i| columns.fields().get(*i).map(|f| f.name().clone()))
                        .collect(),
                ),
                Constraint::Unique(_) => None,
            })
            .unwrap_or_default())
    }

    /// Names of the SQL functions this session knows (scalar, aggregate and
    /// window), sorted.
    pub fn function_names(&self) -> Vec<String> {
        let state = self.ctx.state();
        let mut names: Vec<String> = state
            .scalar_functions()
            .keys()
            .chain(state.aggregate_functions().keys())
            .chain(state.window_functions().keys())
            .cloned()
            .collect();
        names.sort();
        names.dedup();
        names
    }
}
