//! `kind = "postgres"`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use bluelamp_engine::{
    ConfigError, ConnectedSource, Secret, SourceConfig, SourceError, SourceFactory,
};
use datafusion::common::TableReference;
use datafusion::common::{Constraints, Statistics};
use datafusion::datasource::TableProvider;
use datafusion::error::Result as DFResult;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect as ParsePostgres;
use datafusion::sql::unparser::dialect::PostgreSqlDialect;
use datafusion_federation::sql::SQLExecutor;
use datafusion_table_providers::UnsupportedTypeAction;
use datafusion_table_providers::postgres::write::PostgresTableWriter;
use datafusion_table_providers::postgres::{DynPostgresConnectionPool, Postgres};
use datafusion_table_providers::sql::db_connection_pool::DbConnectionPool;
use datafusion_table_providers::sql::db_connection_pool::dbconnection::get_tables;
use datafusion_table_providers::sql::db_connection_pool::postgrespool::PostgresConnectionPool;
use datafusion_table_providers::sql::sql_provider_datafusion::SqlTable;
use datafusion_table_providers::util::secrets::to_secret_map;
use futures::TryStreamExt;
use serde::Deserialize;

use super::executor::{Remote, Repaired, federated_read};
use super::functions::Database;
use super::{BoxError, SqlBackend, SqlSchemaProvider, connect_error};

/// Options for a PostgreSQL source; each remote table in `schema` becomes a table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// Host name or address (default `127.0.0.1`).
    #[serde(default = "default_host")]
    pub host: String,
    /// Port (default 5432).
    #[serde(default = "default_port")]
    pub port: u16,
    /// User name.
    pub user: String,
    /// Password; use `${ENV_VAR}` or `${file:PATH}`.
    pub password: Option<Secret>,
    /// Database name.
    pub database: String,
    /// The remote schema whose tables are exposed (default `public`).
    #[serde(default = "default_schema")]
    pub schema: String,
    /// TLS (default `prefer`).
    #[serde(default)]
    pub sslmode: PostgresSslMode,
    /// CA certificate file for `verify-ca`/`verify-full`.
    pub sslrootcert: Option<String>,
    /// Connections in the pool.
    pub pool_size: Option<std::num::NonZeroU32>,
    /// Columns of types with no Arrow mapping (e.g. `jsonb`): `string` (default)
    /// reads them as text, `error` fails the table.
    #[serde(default)]
    pub unsupported_types: UnsupportedTypes,
}

/// `sslmode` for PostgreSQL, as libpq names its modes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PostgresSslMode {
    /// No TLS.
    Disable,
    /// TLS where the server offers it.
    #[default]
    Prefer,
    /// TLS, without checking the certificate.
    Require,
    /// TLS with a certificate signed by `sslrootcert`.
    VerifyCa,
    /// As `verify-ca`, and the certificate names the host.
    VerifyFull,
}

impl PostgresSslMode {
    /// As libpq spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

/// What to do with a column whose database type has no Arrow mapping.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnsupportedTypes {
    /// Read it as text.
    #[default]
    String,
    /// Fail the table with an error naming the column.
    Error,
}

fn default_host() -> String {
    "127.0.0.1".into()
}
fn default_port() -> u16 {
    5432
}
fn default_schema() -> String {
    "public".into()
}

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
        let conn = pool
            .connect()
            .await
            .map_err(|e| connect_error(source, &hide, e.as_ref()))?;
        let tables = get_tables(conn, &config.schema)
            .await
            .map_err(|e| connect_error(source, &hide, &e))?;
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

/// PostgreSQL's differences from the crate's executor: scans narrowed by
/// join keys and read with a binary `COPY`, and PostgreSQL's own estimates.
struct PostgresRemote {
    pool: Arc<PostgresConnectionPool>,
}

/// How long planning waits for PostgreSQL's estimate of a sub-plan before
/// planning without it.
const ESTIMATE_TIMEOUT: Duration = Duration::from_secs(2);

impl PostgresRemote {
    /// PostgreSQL's own estimate of `plan`'s rows and width (see
    /// [`super::estimate`]), for the SQL `executor` would send.
    async fn estimate(
        &self,
        executor: &Repaired<Self>,
        plan: &LogicalPlan,
    ) -> Result<Option<Statistics>, BoxError> {
        let statement = super::estimate::remote_statement(plan, executor.dialect().as_ref())?;
        let statement = match executor.ast_analyzer() {
            Some(mut repair) => repair(statement)?,
            None => statement,
        };
        let sql = format!("EXPLAIN (FORMAT JSON) {statement}");
        let conn = tokio::time::timeout(ESTIMATE_TIMEOUT, self.pool.connect_direct()).await??;
        let row = tokio::time::timeout(ESTIMATE_TIMEOUT, conn.conn.query_one(sql.as_str(), &[]))
            .await??;
        let explain: serde_json::Value = row.try_get(0)?;
        Ok(super::estimate::postgres_explain(
            &explain,
            plan.schema().as_arrow(),
        ))
    }
}

#[async_trait]
impl Remote for PostgresRemote {
    fn database(&self) -> Database {
        Database::Postgres
    }

    /// Runs `query`, with the keys of the joins it feeds added to its
    /// `WHERE` clause (see [`super::dynamic`]), reading the result with a
    /// binary `COPY` where its column types allow (see [`super::pgcopy`]).
    /// Both happen when the stream is first polled: a hash join polls a
    /// side only after building from the other, so by then its keys are
    /// known.
    fn execute(
        &self,
        executor: &Repaired<Self>,
        query: &str,
        schema: SchemaRef,
        filters: &[Arc<dyn PhysicalExpr>],
    ) -> DFResult<SendableRecordBatchStream> {
        let inner = Arc::clone(&executor.inner);
        let pool = Arc::clone(&self.pool);
        let query = query.to_string();
        let filters = filters.to_vec();
        let output = Arc::clone(&schema);
        let run = async move {
            let dialect = inner.dialect();
            let narrowed = super::dynamic::narrow(
                &query,
                &ParsePostgres {},
                dialect.as_ref(),
                &output,
                &filters,
            );
            if let Some(sql) = &narrowed {
                tracing::debug!("PostgreSQL scan narrowed by join keys: {sql}");
            }
            let sql = narrowed.as_deref().unwrap_or(&query);
            // The join keys only add WHERE conditions: the columns are the
            // original query's, whose (short) text is prepared to learn them.
            match super::pgcopy::copy_stream(&pool, sql, &query, Arc::clone(&output)).await? {
                Some(stream) => Ok(stream),
                None => inner.execute(sql, output, &[]),
            }
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            schema,
            futures::stream::once(run).try_flatten(),
        )))
    }

    /// PostgreSQL's estimate, so joins with database tables are planned
    /// knowing their size; unknown (as DataFusion expects) when the estimate
    /// cannot be had — it only guides planning, the query itself still runs
    /// and reports its own errors.
    async fn statistics(
        &self,
        executor: &Repaired<Self>,
        plan: &LogicalPlan,
    ) -> DFResult<Statistics> {
        match self.estimate(executor, plan).await {
            Ok(Some(statistics)) => Ok(statistics),
            Ok(None) => Ok(Statistics::new_unknown(plan.schema().as_arrow())),
            Err(e) => {
                tracing::debug!("no PostgreSQL estimate for a federated sub-plan: {e}");
                Ok(Statistics::new_unknown(plan.schema().as_arrow()))
            }
        }
    }
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
    /// [`super::key_constraints`]).
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
        Ok(super::key_constraints(schema, keys))
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
        Ok(super::with_writer(read, writer))
    }
}
