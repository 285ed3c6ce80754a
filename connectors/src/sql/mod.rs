//! SQL databases — `kind = "postgres"`, `"mysql"` (MySQL and MariaDB) and `"sqlite"` —
//! through `datafusion-table-providers` with federation on, so filters, projections,
//! limits, aggregates and joins between tables of the same source run inside the
//! database. `EXPLAIN` shows the SQL each database receives (`VirtualExecutionNode`
//! / `SQLFederationExec ... sql=`).
//!
//! The files follow every connector's lifecycle (see `docs/connectors.md`):
//!
//! - each backend is a folder (`postgres/`, `mysql/`, `sqlite/`) with its
//!   options (`config.rs`, validated without I/O), its factory (`mod.rs`:
//!   connect, list the tables, build one table's provider) and its queries
//!   (`exec.rs`: what its database does differently from the crate's
//!   executor; PostgreSQL also reads results with a binary `COPY`,
//!   `copy.rs`);
//! - shared by all three: the tables ([`provider`]: listed at connect, built
//!   on first use, errors naming the source; [`guard`]: filters a table's
//!   own scan may push), the scan ([`exec`]: one executor wrapper for every
//!   database, errors naming the source), and the writes ([`write`]: the
//!   crate's writers behind the federated read, and dry runs);
//! - the SQL each database is sent: [`repair`] applies our rules, a call to
//!   a function the database lacks or means differently stays in DataFusion
//!   ([`functions`]), text is compared by its bytes as DataFusion compares
//!   it ([`bytes`]), joins' keys narrow a scan ([`dynamic`]), PostgreSQL
//!   estimates a sub-plan's size ([`estimate`]), and each workaround for an
//!   upstream defect is a file of its own under [`upstream`], to be deleted
//!   when upstream is fixed;
//! - on a cluster, [`portable`] carries a federated sub-plan's final SQL to
//!   an executor, which runs it over its own connection.

mod bytes;
mod dynamic;
mod estimate;
pub(crate) mod exec;
pub(crate) mod functions;
mod guard;
mod mysql;
pub mod portable;
mod postgres;
mod provider;
mod repair;
mod sqlite;
mod upstream;
mod write;

use std::sync::Arc;

use async_trait::async_trait;
use bluelamp_engine::{SourceConfig, SourceError};
use datafusion::datasource::TableProvider;

pub use mysql::{MySqlConfig, MySqlSourceFactory, MySqlSslMode};
pub use postgres::{PostgresConfig, PostgresSourceFactory, PostgresSslMode};
pub(crate) use provider::SqlSchemaProvider;
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
