//! SQL databases — `kind = "postgres"`, `"mysql"` (MySQL and MariaDB) and `"sqlite"` —
//! through `datafusion-table-providers` with federation on, so filters, projections,
//! limits, aggregates and joins between tables of the same source run inside the
//! database. `EXPLAIN` shows the SQL each database receives (`VirtualExecutionNode`
//! / `SQLFederationExec ... sql=`). The SQL DataFusion's unparser writes is
//! repaired first (`repair`), a call to a function the database lacks, or
//! means differently, stays in DataFusion (`functions`), and text is compared
//! by its bytes as DataFusion compares it (`bytes`).
//!
//! Each backend module only knows how to open a pool and build one table provider,
//! and what its database does differently from the crate's executor (`executor`
//! wraps every database's the same way); the schema (table listing, lazy and
//! cached table creation, errors naming the source) is shared here.

mod bytes;
mod dry_run;
mod dynamic;
mod estimate;
pub(crate) mod executor;
pub(crate) mod functions;
mod guard;
mod mysql;
mod pgcopy;
mod postgres;
mod repair;
mod sqlite;
mod upstream;

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::Schema;
use async_trait::async_trait;
use bluelamp_engine::{SourceConfig, SourceError};
use datafusion::catalog::SchemaProvider;
use datafusion::common::{Constraint, Constraints};
use datafusion::datasource::TableProvider;
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion_federation::FederatedTableProviderAdaptor;
use tokio::sync::Mutex;

pub use mysql::{MySqlConfig, MySqlSourceFactory, MySqlSslMode};
pub use postgres::{PostgresConfig, PostgresSourceFactory, PostgresSslMode};
pub use sqlite::{SqliteConfig, SqliteSourceFactory};

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a database backend provides to the shared schema.
#[async_trait]
pub(crate) trait SqlBackend: Send + Sync + std::fmt::Debug {
    /// Builds the (federated) provider for one remote table of `source`.
    async fn table_provider(
        &self,
        source: &SourceConfig,
        table: &str,
    ) -> Result<Arc<dyn TableProvider>, BoxError>;
}

/// A table that reads through federation (whole sub-plans run in the
/// database) and writes through `writer` (`INSERT`). The federation rule finds
/// the table by its federated source, so the adaptor keeps `read`'s source and
/// only swaps the provider that `insert_into` reaches.
fn with_writer(
    read: Arc<dyn TableProvider>,
    writer: Arc<dyn TableProvider>,
) -> Arc<dyn TableProvider> {
    let any: &dyn std::any::Any = read.as_ref();
    match any.downcast_ref::<FederatedTableProviderAdaptor>() {
        Some(adaptor) => Arc::new(FederatedTableProviderAdaptor::new_with_provider(
            Arc::clone(&adaptor.source),
            writer,
        )),
        None => read,
    }
}

/// `table` with its writer wrapped so that `SET bluelamp.deposit_mode =
/// 'validate'` makes an `INSERT` a dry run ([`dry_run`]).
fn dry_runnable(table: Arc<dyn TableProvider>, target: String) -> Arc<dyn TableProvider> {
    let Some(adaptor) = table.downcast_ref::<FederatedTableProviderAdaptor>() else {
        return Arc::new(dry_run::DryRunnable {
            inner: table,
            target,
        });
    };
    match &adaptor.table_provider {
        Some(writer) => Arc::new(FederatedTableProviderAdaptor::new_with_provider(
            Arc::clone(&adaptor.source),
            Arc::new(dry_run::DryRunnable {
                inner: Arc::clone(writer),
                target,
            }),
        )),
        None => table,
    }
}

/// A table's primary key and unique constraints as DataFusion constraints over
/// `schema`, from the database's catalog: each key is whether it is the
/// primary key, and its column names in key order. They tell the planner
/// which joins cannot multiply rows (see `bluelamp_engine::source_joins`) and
/// answer Flight SQL's `GetPrimaryKeys`. A key naming a column the table does
/// not expose is skipped.
fn key_constraints(
    schema: &Schema,
    keys: impl IntoIterator<Item = (bool, Vec<String>)>,
) -> Constraints {
    let constraints = keys
        .into_iter()
        .filter_map(|(primary, columns)| {
            let indices: Option<Vec<usize>> = columns
                .iter()
                .map(|name| schema.index_of(name).ok())
                .collect();
            indices.filter(|i| !i.is_empty()).map(|indices| {
                if primary {
                    Constraint::PrimaryKey(indices)
                } else {
                    Constraint::Unique(indices)
                }
            })
        })
        .collect();
    Constraints::new_unverified(constraints)
}

/// One SQL source's tables: listed at connect time, built on first use.
#[derive(Debug)]
pub(crate) struct SqlSchemaProvider {
    source: SourceConfig,
    /// Remote secrets (e.g. a literal password) to strip from error text.
    hide: Vec<String>,
    tables: Vec<String>,
    backend: Arc<dyn SqlBackend>,
    cache: Mutex<HashMap<String, Arc<dyn TableProvider>>>,
}

impl SqlSchemaProvider {
    pub(crate) fn new(
        source: &SourceConfig,
        hide: Vec<String>,
        mut tables: Vec<String>,
        backend: Arc<dyn SqlBackend>,
    ) -> Self {
        tables.sort();
        tables.dedup();
        Self {
            source: source.clone(),
            hide,
            tables,
            backend,
            cache: Mutex::new(HashMap::new()),
        }
    }
}

#[async_trait]
impl SchemaProvider for SqlSchemaProvider {
    fn table_names(&self) -> Vec<String> {
        self.tables.clone()
    }

    async fn table(&self, name: &str) -> DFResult<Option<Arc<dyn TableProvider>>> {
        if !self.table_exist(name) {
            return Ok(None);
        }
        let mut cache = self.cache.lock().await;
        if let Some(table) = cache.get(name) {
            return Ok(Some(Arc::clone(table)));
        }
        let table = self
            .backend
            .table_provider(&self.source, name)
            .await
            .map_err(|e| {
                let message = hide(
                    &format!("cannot read table '{name}': {}", describe(e.as_ref())),
                    &self.hide,
                );
                DataFusionError::External(Box::new(SourceError::new(&self.source, message)))
            })?;
        let table = dry_runnable(table, format!("{}.{name}", self.source.name));
        cache.insert(name.to_string(), Arc::clone(&table));
        Ok(Some(table))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.tables.iter().any(|t| t == name)
    }
}

/// One line for an error and its causes, without repeating nested messages.
fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    bluelamp_engine::source::error_chain(error)
}

fn hide(message: &str, secrets: &[String]) -> String {
    bluelamp_engine::config::redact(message, secrets)
}

/// Turns a connection failure into an "unavailable" source error with a hint.
fn connect_error(
    source: &SourceConfig,
    hide_values: &[String],
    error: &(dyn std::error::Error + 'static),
) -> SourceError {
    let text = hide(&describe(error), hide_values);
    let lower = text.to_ascii_lowercase();
    let hint = if lower.contains("password")
        || lower.contains("access denied")
        || lower.contains("authentication")
    {
        " (check user and password)"
    } else if lower.contains("refused") || lower.contains("timed out") || lower.contains("no route")
    {
        " (is the server running and reachable?)"
    } else if lower.contains("does not exist") || lower.contains("unknown database") {
        " (check the database name)"
    } else {
        ""
    };
    SourceError::unavailable(source, format!("cannot connect: {text}{hint}"))
}
