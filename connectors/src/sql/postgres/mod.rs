//! `kind = "postgres"`: the factory (connect, list the tables of the
//! configured schema, build one table's provider with its keys and writer).
//! Options are in `config.rs`, how a query runs in `exec.rs`.

mod config;
mod copy;
mod decode;
mod exec;

pub use config::{PostgresConfig, PostgresSslMode, UnsupportedTypes};

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use bluelamp_engine::{ConfigError, ConnectedSource, SourceConfig, SourceError, SourceFactory};
use datafusion::common::{Constraints, TableReference};
use datafusion::datasource::TableProvider;
use datafusion::sql::unparser::dialect::PostgreSqlDialect;
use datafusion_table_providers::UnsupportedTypeAction;
use datafusion_table_providers::postgres::write::PostgresTableWriter;
use datafusion_table_providers::postgres::{DynPostgresConnectionPool, Postgres};
use datafusion_table_providers::sql::db_connection_pool::postgrespool::PostgresConnectionPool;
use datafusion_table_providers::sql::sql_provider_datafusion::SqlTable;
use datafusion_table_providers::util::secrets::to_secret_map;

use super::exec::federated_read;
use super::upstream::views::postgres_relations;
use super::{BoxError, SqlBackend, SqlSchemaProvider, connect_error};
use exec::PostgresRemote;

/// The factory for `kind = "postgres"`.
#[derive(Debug, Default)]
pub struct PostgresSourceFactory;

#[async_trait]
impl SourceFactory for PostgresSourceFactory {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn validate(&self, source: &SourceConfig) -> Result<(), ConfigError> {
        source.options::<PostgresConfig>().map(|_| ())
    }

    async fn connect(&self, source: &SourceConfig) -> Result<ConnectedSource, SourceError> {
        let config: PostgresConfig = source
            .options()
            .map_err(|e| SourceError::new(source, e.to_string()))?;
        let hide: Vec<String> = config
            .password
            .iter()
            .map(|p| p.expose().to_string())
            .collect();
        let mut params = HashMap::from([
            ("host".to_string(), config.host.clone()),
            ("port".to_string(), config.port.to_string()),
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
            params.insert("connection_pool_size".into(), size.to_string());
        }
        let pool = PostgresConnectionPool::new(to_secret_map(params))
            .await
            .map_err(|e| connect_error(source, &hide, &e))?;
        let action = match config.unsupported_types {
            UnsupportedTypes::String => UnsupportedTypeAction::String,
            UnsupportedTypes::Error => UnsupportedTypeAction::Error,
        };
        let pool = Arc::new(pool.with_unsupported_type_action(action));
        let tables = postgres_relations(&pool, &config.schema)
            .await
            .map_err(|e| connect_error(source, &hide, e.as_ref()))?;
        let mut warnings = Vec::new();
        if tables.is_empty() {
            warnings.push(format!(
                "schema '{}' of database '{}' has no tables (check `schema`)",
                config.schema, config.database
            ));
        }
        let backend = Arc::new(PostgresBackend {
            pool,
            schema: config.schema.clone(),
        });
        Ok(ConnectedSource {
            schema: Arc::new(SqlSchemaProvider::new(source, hide, tables, backend)),
            warnings,
            insert_only: 0,
        })
    }
}

struct PostgresBackend {
    pool: Arc<PostgresConnectionPool>,
    schema: String,
}

/// A table's primary key and unique constraints, by column, as PostgreSQL
/// declares them (`pg_constraint`); expressions and partial unique indexes
/// are not constraints and are not read.
const CONSTRAINTS_SQL: &str = "\
    SELECT c.contype = 'p', array_agg(a.attname::text ORDER BY k.ord) \
    FROM pg_constraint c \
    JOIN pg_class t ON t.oid = c.conrelid \
    JOIN pg_namespace n ON n.oid = t.relnamespace \
    CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord) \
    JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum \
    WHERE n.nspname = $1 AND t.relname = $2 AND c.contype IN ('p', 'u') \
    GROUP BY c.oid, c.contype \
    ORDER BY c.contype, c.oid";

impl PostgresBackend {
    /// The table's primary key and unique constraints (see
    /// [`super::provider::key_constraints`]).
    async fn constraints(
        &self,
        schema: &arrow::datatypes::Schema,
        table: &str,
    ) -> Result<Constraints, BoxError> {
        let conn = self.pool.connect_direct().await?;
        let rows = conn
            .conn
            .query(CONSTRAINTS_SQL, &[&self.schema.as_str(), &table])
            .await?;
        let mut keys = Vec::with_capacity(rows.len());
        for row in &rows {
            keys.push((
                row.try_get::<_, bool>(0)?,
                row.try_get::<_, Vec<String>>(1)?,
            ));
        }
        Ok(super::provider::key_constraints(schema, keys))
    }
}

impl std::fmt::Debug for PostgresBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresBackend")
            .field("schema", &self.schema)
            .finish()
    }
}

#[async_trait]
impl SqlBackend for PostgresBackend {
    async fn table_provider(
        &self,
        source: &SourceConfig,
        table: &str,
    ) -> Result<Arc<dyn TableProvider>, BoxError> {
        let reference = TableReference::partial(self.schema.as_str(), table);
        let pool: Arc<DynPostgresConnectionPool> =
            Arc::clone(&self.pool) as Arc<DynPostgresConnectionPool>;
        let table = Arc::new(
            SqlTable::new("postgres", &pool, reference.clone())
                .await?
                .with_dialect(Arc::new(PostgreSqlDialect {})),
        );
        let remote = PostgresRemote {
            pool: Arc::clone(&self.pool),
        };
        let schema = table.schema();
        let read = federated_read(source, table, remote, reference.clone(), schema);
        let schema = read.schema();
        let constraints = self.constraints(schema.as_ref(), reference.table()).await?;
        let writer = PostgresTableWriter::create(
            Arc::clone(&read),
            Postgres::new(reference, Arc::clone(&self.pool), schema, constraints),
            None,
        );
        Ok(super::write::with_writer(read, writer))
    }
}
