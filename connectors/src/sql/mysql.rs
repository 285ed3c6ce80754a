//! `kind = "mysql"`: MySQL and MariaDB.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use bluelamp_engine::{ConfigError, ConnectedSource, Secret, SourceConfig, SourceError, SourceFactory};
use datafusion::common::TableReference;
use datafusion::datasource::TableProvider;
use std::ops::ControlFlow;

use arrow::datatypes::SchemaRef;
use datafusion::common::Statistics;
use datafusion::error::Result as DFResult;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::sql::sqlparser::ast::{self, ValueWithSpan, visit_expressions_mut};
use datafusion::sql::unparser::dialect::Dialect;
use datafusion_federation::FederatedTableProviderAdaptor;
use datafusion_federation::sql::{
    AstAnalyzer, LogicalOptimizer, RemoteTableRef, SQLExecutor, SQLFederationProvider, SQLTableSource,
};
use datafusion_table_providers::mysql::sql_table::MySQLTable;
use futures::TryStreamExt;
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
        let escape_backslashes = !server_disables_backslash_escapes(&pool)
            .await
            .map_err(|e| connect_error(source, &hide, e.as_ref()))?;
        let backend = Arc::new(MySqlBackend {
            pool,
            database: config.database.clone(),
            escape_backslashes,
        });
        Ok(ConnectedSource {
            schema: Arc::new(SqlSchemaProvider::new(source, hide, tables, backend)),
            warnings,
        })
    }
}

struct MySqlBackend {
    pool: Arc<MySQLConnectionPool>,
    database: String,
    escape_backslashes: bool,
}

impl std::fmt::Debug for MySqlBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MySqlBackend").field("database", &self.database).finish()
    }
}

#[async_trait]
impl SqlBackend for MySqlBackend {
    async fn table_provider(&self, table: &str) -> Result<Arc<dyn TableProvider>, BoxError> {
        let reference = TableReference::partial(self.database.as_str(), table);
        let table = Arc::new(MySQLTable::new(&self.pool, reference.clone()).await?);
        let executor = Arc::new(MySqlExecutor {
            inner: Arc::clone(&table),
            escape_backslashes: self.escape_backslashes,
        });
        let source = Arc::new(SQLTableSource::new_with_schema(
            Arc::new(SQLFederationProvider::new(executor)),
            RemoteTableRef::from(reference),
            table.schema(),
        ));
        Ok(Arc::new(FederatedTableProviderAdaptor::new_with_provider(source, table)))
    }
}

/// Whether the server already treats `\` in string literals as an ordinary
/// character (`sql_mode` has `NO_BACKSLASH_ESCAPES`).
async fn server_disables_backslash_escapes(pool: &Arc<MySQLConnectionPool>) -> Result<bool, BoxError> {
    let conn = pool.connect().await?;
    let Some(conn) = conn.as_async() else {
        return Ok(false);
    };
    let mut stream = conn.query_arrow("SELECT @@SESSION.sql_mode AS sql_mode", &[], None).await?;
    let mut modes = String::new();
    while let Some(batch) = stream.try_next().await? {
        let text = arrow::util::pretty::pretty_format_batches(&[batch])?.to_string();
        modes.push_str(&text);
    }
    Ok(modes.contains("NO_BACKSLASH_ESCAPES"))
}

/// MySQL's executor with one correction. DataFusion writes string literals the
/// standard way (`'a\b'` is three characters), but MySQL by default reads a
/// backslash as an escape, so a filter on `'back\slash'` would silently match
/// other rows. This doubles backslashes in every string literal sent to MySQL,
/// unless the server's `sql_mode` already disables backslash escapes.
struct MySqlExecutor {
    inner: Arc<MySQLTable>,
    escape_backslashes: bool,
}

#[async_trait]
impl SQLExecutor for MySqlExecutor {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn compute_context(&self) -> Option<String> {
        self.inner.compute_context()
    }

    fn dialect(&self) -> Arc<dyn Dialect> {
        self.inner.dialect()
    }

    fn logical_optimizer(&self) -> Option<LogicalOptimizer> {
        self.inner.logical_optimizer()
    }

    fn ast_analyzer(&self) -> Option<AstAnalyzer> {
        let mut inner = self.inner.ast_analyzer();
        let escape = self.escape_backslashes;
        Some(Box::new(move |statement| {
            let mut statement = match inner.as_mut() {
                Some(analyze) => analyze(statement)?,
                None => statement,
            };
            if escape {
                let _ = visit_expressions_mut(&mut statement, |expr| {
                    if let ast::Expr::Value(ValueWithSpan {
                        value: ast::Value::SingleQuotedString(text),
                        ..
                    }) = expr
                    {
                        if text.contains('\\') {
                            *text = text.replace('\\', "\\\\");
                        }
                    }
                    ControlFlow::<()>::Continue(())
                });
            }
            Ok(statement)
        }))
    }

    fn execute(
        &self,
        query: &str,
        schema: SchemaRef,
        filters: &[Arc<dyn PhysicalExpr>],
    ) -> DFResult<SendableRecordBatchStream> {
        self.inner.execute(query, schema, filters)
    }

    async fn statistics(&self, plan: &LogicalPlan) -> DFResult<Statistics> {
        SQLExecutor::statistics(self.inner.as_ref(), plan).await
    }

    async fn table_names(&self) -> DFResult<Vec<String>> {
        self.inner.table_names().await
    }

    async fn get_table_schema(&self, table_name: &str) -> DFResult<SchemaRef> {
        self.inner.get_table_schema(table_name).await
    }
}
