//! `kind = "flightsql"`: any Arrow Flight SQL server as a source — another
//! force's Bluelamp (force-to-force federation), or a third-party server.
//!
//! The lifecycle every connector follows (see `docs/connectors.md`):
//!
//! 1. **Validate** ([`config`]): the URL's scheme, one way to authenticate,
//!    TLS files only with TLS, a well-formed identity header — no I/O.
//! 2. **Connect** ([`client`]): a tonic channel (plain, TLS, mutual TLS),
//!    the handshake, `GetSqlInfo` ([`capabilities`]: what may be sent) and
//!    `GetTables` with each table's schema.
//! 3. **Tables** ([`provider`]): each remote table, built on first use.
//! 4. **Scan** ([`exec`]; a table's own scan too): sub-plans over one server are sent to it as SQL
//!    through datafusion-federation, as the session's user; results
//!    ([`results`]) are read from every endpoint at once and checked against
//!    what was announced.
//! 5. **Insert** ([`write`]): a prepared `INSERT`, bound to each batch, as
//!    the session's user.

pub mod capabilities;
pub mod client;
pub mod config;
mod exec;
mod provider;
mod results;
mod write;

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use bluelamp_engine::{ConfigError, ConnectedSource, SourceConfig, SourceError, SourceFactory};

pub use config::FlightSqlConfig;

use crate::sql::functions::Database;

/// Schemas no one means to federate: the server's own catalogs.
const SYSTEM_SCHEMAS: &[&str] = &["information_schema", "pg_catalog"];

/// A remote Bluelamp's own tables (its sources' status, its deposits),
/// left out unless `schemas` names it.
const BLUELAMP_SCHEMA: &str = "bluelamp";

/// The factory for `kind = "flightsql"`.
#[derive(Debug, Default)]
pub struct FlightSqlSourceFactory;

#[async_trait]
impl SourceFactory for FlightSqlSourceFactory {
    fn kind(&self) -> &'static str {
        "flightsql"
    }

    fn validate(&self, source: &SourceConfig) -> Result<(), ConfigError> {
        FlightSqlConfig::read(source).map(|_| ())
    }

    async fn connect(&self, source: &SourceConfig) -> Result<ConnectedSource, SourceError> {
        let config =
            FlightSqlConfig::read(source).map_err(|e| SourceError::new(source, e.to_string()))?;
        let connection = client::Connection::open(source, &config).await?;
        let declared = connection.declared().await?;
        let listed = connection.tables(config.catalog.as_deref()).await?;
        let mut warnings = Vec::new();
        let bluelamp = declared.server.starts_with("Bluelamp");
        let chosen: Vec<client::RemoteTable> = listed
            .into_iter()
            .filter(|t| {
                let schema = t.schema.as_deref().unwrap_or_default();
                if config.schemas.is_empty() {
                    !(SYSTEM_SCHEMAS.contains(&schema) || (bluelamp && schema == BLUELAMP_SCHEMA))
                } else {
                    config.schemas.iter().any(|s| s == schema)
                }
            })
            .collect();
        for wanted in &config.schemas {
            if !chosen.iter().any(|t| t.schema.as_deref() == Some(wanted)) {
                warnings.push(format!(
                    "schemas: the server lists no table in schema '{wanted}' that this user may see"
                ));
            }
        }
        let schemas: BTreeSet<&str> = chosen
            .iter()
            .map(|t| t.schema.as_deref().unwrap_or_default())
            .collect();
        let prefixed = schemas.len() > 1;
        let mut tables: Vec<(String, client::RemoteTable)> = Vec::new();
        for table in chosen {
            let local = match (&table.schema, prefixed) {
                (Some(schema), true) => format!("{schema}_{}", table.name),
                _ => table.name.clone(),
            };
            if tables.iter().any(|(name, _)| name == &local) {
                warnings.push(format!(
                    "table '{local}' is listed twice (catalog {}); the first is used: name the catalog in `catalog`",
                    table.catalog.as_deref().unwrap_or("none")
                ));
                continue;
            }
            tables.push((local, table));
        }
        if tables.is_empty() {
            warnings.push(format!(
                "{} lists no tables this source's account may see",
                config.url
            ));
        }
        tracing::info!(
            target: "bluelamp::flightsql",
            source = %source.name,
            "{}; {} tables",
            declared.summary(),
            tables.len()
        );
        let quote = declared.quote;
        let planner = Arc::new(exec::ActingPlanner {
            executor: exec::FlightExecutor {
                connection: connection.clone(),
                context: format!("{}@{}", source.name, config.url),
                quote,
                tables: Arc::new(tables.iter().map(|(_, t)| t.clone()).collect()),
                principal: None,
            },
            database: Database::FlightSql(Arc::new(declared)),
            source: source.clone(),
        });
        let names = tables.iter().map(|(name, _)| name.clone()).collect();
        let backend = Arc::new(provider::FlightBackend {
            connection,
            planner,
            tables,
        });
        let hide = [config.password.as_ref(), config.token.as_ref()]
            .into_iter()
            .flatten()
            .map(|s| s.expose().to_string())
            .collect();
        Ok(ConnectedSource {
            schema: Arc::new(crate::sql::SqlSchemaProvider::new(
                source, hide, names, backend,
            )),
            warnings,
            insert_only: 0,
        })
    }
}
