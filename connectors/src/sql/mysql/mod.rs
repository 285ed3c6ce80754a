//! `kind = "mysql"`: MySQL and MariaDB. The factory (connect, list the
//! database's tables, build one table's provider with its keys and writer)
//! is here; options are in `config.rs`, how a query runs in `exec.rs`.

mod config;
mod exec;

pub use config::{MySqlConfig, MySqlSslMode};

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use bluelamp_engine::{ConfigError, ConnectedSource, SourceConfig, SourceError, SourceFactory};
use datafusion::common::{Constraints, TableReference};
use datafusion::datasource::TableProvider;
use datafusion_table_providers::mysql::MySQLTableFactory;
use datafusion_table_providers::mysql::sql_table::MySQLTable;
use datafusion_table_providers::sql::db_connection_pool::DbConnectionPool;
use datafusion_table_providers::sql::db_connection_pool::dbconnection::get_tables;
use datafusion_table_providers::sql::db_connection_pool::mysqlpool::MySQLConnectionPool;
use datafusion_table_providers::util::secrets::to_secret_map;
use mysql_async::prelude::Queryable;

use super::exec::federated_read;
use super::{BoxError, SqlBackend, SqlSchemaProvider, connect_error};
use exec::{MySqlRemote, server_disables_backslash_escapes};

/// The factory for `kind = "mysql"`.
#[derive(Debug, Default)]
pub struct MySqlSourceFactory;

#[async_trait]
impl SourceFactory for MySqlSourceFactory {
    fn kind(&self) -> &'static str {
        "mysql"
    }

    fn validate(&self, source: &SourceConfig) -> Result<(), ConfigError> {
        source.options::<MySqlConfig>().map(|_| ())
    }

    async fn connect(&self, source: &SourceConfig) -> Result<ConnectedSource, SourceError> {
        let config: MySqlConfig = source
            .options()
            .map_err(|e| SourceError::new(source, e.to_string()))?;
        let hide: Vec<String> = config
            .password
            .iter()
            .map(|p| p.expose().to_string())
            .collect();
        let mut params = HashMap::from([
            ("host".to_string(), config.host.clone()),
            ("tcp_port".to_string(), config.port.to_string()),
            ("user".to_string(), config.user.clone()),
            ("db".to_string(), config.database.clone()),
            ("sslmode".to_string(), config.sslmode.as_str().to_string()),
        ]);
        if let Some(password) = &config.password {
            params.insert("pass".into(), password.expose().to_string());
        }
        if let Some(cert) = &config.sslrootcert {
            params.insert(
                "sslrootcert".into(),
                source.resolve_path(cert).display().to_string(),
            );
        }
        if let Some(size) = config.pool_size {
            params.insert("pool_max".into(), size.to_string());
        }
        let pool = MySQLConnectionPool::new(to_secret_map(params))
            .await
            .map_err(|e| connect_error(source, &hide, &e))?;
        let pool = Arc::new(pool);
        let conn = pool
            .connect()
            .await
            .map_err(|e| connect_error(source, &hide, e.as_ref()))?;
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
            insert_only: 0,
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
        f.debug_struct("MySqlBackend")
            .field("database", &self.database)
            .finish()
    }
}

#[async_trait]
impl SqlBackend for MySqlBackend {
    async fn table_provider(
        &self,
        source: &SourceConfig,
        table: &str,
    ) -> Result<Arc<dyn TableProvider>, BoxError> {
        let reference = TableReference::partial(self.database.as_str(), table);
        let table = Arc::new(MySQLTable::new(&self.pool, reference.clone()).await?);
        let remote = MySqlRemote {
            pool: Arc::clone(&self.pool),
            escape_backslashes: self.escape_backslashes,
        };
        let schema = table.schema();
        let read = federated_read(source, table, remote, reference.clone(), schema);
        // The writer names the table alone: the connection is already in the
        // database, and the crate would quote `db.table` as one identifier.
        let writer = MySQLTableFactory::new(Arc::clone(&self.pool))
            .read_write_table_provider(TableReference::bare(reference.table()))
            .await?;
        let constraints = self.constraints(&read.schema(), reference.table()).await?;
        let writer = Arc::new(super::guard::Guarded::keyed(writer, constraints));
        Ok(super::write::with_writer(read, writer))
    }
}

/// A table's primary key and unique constraints, one row per key column, as
/// the server's `information_schema` declares them.
const CONSTRAINTS_SQL: &str = "\
    SELECT tc.CONSTRAINT_TYPE = 'PRIMARY KEY', tc.CONSTRAINT_NAME, k.COLUMN_NAME \
    FROM information_schema.TABLE_CONSTRAINTS tc \
    JOIN information_schema.KEY_COLUMN_USAGE k \
      ON k.CONSTRAINT_SCHEMA = tc.CONSTRAINT_SCHEMA AND k.CONSTRAINT_NAME = tc.CONSTRAINT_NAME \
     AND k.TABLE_SCHEMA = tc.TABLE_SCHEMA AND k.TABLE_NAME = tc.TABLE_NAME \
    WHERE tc.TABLE_SCHEMA = ? AND tc.TABLE_NAME = ? \
      AND tc.CONSTRAINT_TYPE IN ('PRIMARY KEY', 'UNIQUE') \
    ORDER BY tc.CONSTRAINT_TYPE = 'PRIMARY KEY' DESC, tc.CONSTRAINT_NAME, k.ORDINAL_POSITION";

impl MySqlBackend {
    /// The table's primary key and unique constraints (see
    /// [`super::provider::key_constraints`]).
    async fn constraints(
        &self,
        schema: &arrow::datatypes::Schema,
        table: &str,
    ) -> Result<Constraints, BoxError> {
        let connection = self.pool.connect_direct().await?;
        let mut conn = connection.conn.lock().await;
        let rows: Vec<(i64, String, String)> = conn
            .exec(CONSTRAINTS_SQL, (self.database.as_str(), table))
            .await?;
        let mut keys: Vec<(bool, String, Vec<String>)> = Vec::new();
        for (primary, name, column) in rows {
            let primary = primary != 0;
            match keys.last_mut() {
                Some((p, n, columns)) if *p == primary && *n == name => columns.push(column),
                _ => keys.push((primary, name, vec![column])),
            }
        }
        Ok(super::provider::key_constraints(
            schema,
            keys.into_iter()
                .map(|(primary, _, columns)| (primary, columns)),
        ))
    }
}
