//! `kind = "mysql"`: MySQL and MariaDB.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use bluelamp_engine::{ConfigError, ConnectedSource, Secret, SourceConfig, SourceError, SourceFactory};
use datafusion::common::TableReference;
use datafusion::datasource::TableProvider;
use datafusion_table_providers::mysql::MySQLTableFactory;
use datafusion_table_providers::sql::db_connection_pool::DbConnectionPool;
use datafusion_table_providers::sql::db_connection_pool::dbconnection::get_tables;
use datafusion_table_providers::sql::db_connection_pool::mysqlpool::MySQLConnectionPool;
use datafusion_table_providers::util::secrets::to_secret_map;
use serde::Deserialize;

use super::{BoxError, SqlBackend, SqlSchemaProvider, connect_error};

/// Options for a MySQL or MariaDB source; every table of `database` becomes a table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MySqlConfig {
    /// Host name or address (default `127.0.0.1`).
    #[serde(default = "default_host")]
    pub host: String,
    /// Port (default 3306).
    #[serde(default = "default_port")]
    pub port: u16,
    /// User name.
    pub user: String,
    /// Password; use `${ENV_VAR}` or `${file:PATH}`.
    pub password: Option<Secret>,
    /// Database (schema) whose tables are exposed.
    pub database: String,
    /// TLS: `disabled`, `preferred` (default) or `required`.
    #[serde(default = "default_sslmode")]
    pub sslmode: String,
    /// CA certificate file for `required`.
    pub sslrootcert: Option<String>,
    /// Most connections in the pool.
    pub pool_max: Option<u32>,
}

fn default_host() -> String {
    "127.0.0.1".into()
}
fn default_port() -> u16 {
    3306
}
fn default_sslmode() -> String {
    "preferred".into()
}

/// The factory for `kind = "mysql"`.
#[derive(Debug, Default)]
pub struct MySqlSourceFactory;

#[async_trait]
impl SourceFactory for MySqlSourceFactory {
    fn kind(&self) -> &'static str {
        "mysql"
    }

    fn validate(&self, source: &SourceConfig) -> Result<(), ConfigError> {
        let config: MySqlConfig = source.options()?;
        if !["disabled", "preferred", "required"].contains(&config.sslmode.as_str()) {
            return Err(source.error(
                "sslmode",
                format!("unknown sslmode '{}' (use disabled, preferred or required)", config.sslmode),
            ));
        }
        if config.pool_max == Some(0) {
            return Err(source.error("pool_max", "pool_max must be at least 1"));
        }
        Ok(())
    }

    async fn connect(&self, source: &SourceConfig) -> Result<ConnectedSource, SourceError> {
        let config: MySqlConfig = source
            .options()
            .map_err(|e| SourceError::new(source, e.to_string()))?;
        let hide: Vec<String> = config.password.iter().map(|p| p.expose().to_string()).collect();
        let mut params = HashMap::from([
            ("host".to_string(), config.host.clone()),
            ("tcp_port".to_string(), config.port.to_string()),
            ("user".to_string(), config.user.clone()),
            ("db".to_string(), config.database.clone()),
            ("sslmode".to_string(), config.sslmode.clone()),
        ]);
        if let Some(password) = &config.password {
            params.insert("pass".into(), password.expose().to_string());
        }
        if let Some(cert) = &config.sslrootcert {
            params.insert("sslrootcert".into(), source.resolve_path(cert).display().to_string());
        }
        if let Some(max) = config.pool_max {
            params.insert("pool_max".into(), max.to_string());
        }
        let pool = MySQLConnectionPool::new(to_secret_map(params))
            .await
            .map_err(|e| connect_error(source, &hide, &e))?;
        let pool = Arc::new(pool);
        let conn = pool.connect().await.map_err(|e| connect_error(source, &hide, e.as_ref()))?;
        let tables = get_tables(conn, &config.database)
            .await
            .map_err(|e| connect_error(source, &hide, &e))?;
        let mut warnings = Vec::new();
        if tables.is_empty() {
            warnings.push(format!("database '{}' has no tables", config.database));
        }
        let backend = Arc::new(MySqlBackend {
            factory: MySQLTableFactory::new(pool),
            database: config.database.clone(),
        });
        Ok(ConnectedSource {
            schema: Arc::new(SqlSchemaProvider::new(source, hide, tables, backend)),
            warnings,
        })
    }
}

struct MySqlBackend {
    factory: MySQLTableFactory,
    database: String,
}

impl std::fmt::Debug for MySqlBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MySqlBackend").field("database", &self.database).finish()
    }
}

#[async_trait]
impl SqlBackend for MySqlBackend {
    async fn table_provider(&self, table: &str) -> Result<Arc<dyn TableProvider>, BoxError> {
        self.factory
            .table_provider(TableReference::partial(self.database.as_str(), table))
            .await
    }
}
