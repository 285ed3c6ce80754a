//! `kind = "mysql"`: MySQL and MariaDB.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use bluelamp_engine::{
    ConfigError, ConnectedSource, Secret, SourceConfig, SourceError, SourceFactory,
};
use datafusion::common::{Constraints, TableReference};
use datafusion::datasource::TableProvider;
use std::ops::ControlFlow;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::error::DataFusionError;
use datafusion::error::Result as DFResult;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::sql::sqlparser::ast::{self, ValueWithSpan, visit_expressions_mut};
use datafusion_table_providers::mysql::MySQLTableFactory;
use datafusion_table_providers::mysql::sql_table::MySQLTable;
use datafusion_table_providers::sql::arrow_sql_gen::mysql::rows_to_arrow;
use datafusion_table_providers::sql::db_connection_pool::DbConnectionPool;
use datafusion_table_providers::sql::db_connection_pool::dbconnection::get_tables;
use datafusion_table_providers::sql::db_connection_pool::mysqlpool::MySQLConnectionPool;
use datafusion_table_providers::util::secrets::to_secret_map;
use futures::{StreamExt, TryStreamExt};
use mysql_async::prelude::Queryable;
use serde::Deserialize;
use tokio_stream::wrappers::ReceiverStream;

use super::executor::{Remote, Repaired, federated_read};
use super::functions::Database;
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
    /// TLS (default `preferred`).
    #[serde(default)]
    pub sslmode: MySqlSslMode,
    /// CA certificate file for `required`.
    pub sslrootcert: Option<String>,
    /// Most connections in the pool (`pool_max` is read as the same).
    #[serde(alias = "pool_max")]
    pub pool_size: Option<std::num::NonZeroU32>,
}

/// `sslmode` for MySQL and MariaDB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MySqlSslMode {
    /// No TLS.
    Disabled,
    /// TLS where the server offers it.
    #[default]
    Preferred,
    /// TLS or no connection.
    Required,
}

impl MySqlSslMode {
    /// As the driver's option spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disabled => "disabled",
            Self::Preferred => "preferred",
            Self::Required => "required",
        }
    }
}

fn default_host() -> String {
    "127.0.0.1".into()
}
fn default_port() -> u16 {
    3306
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
        Ok(super::with_writer(read, writer))
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
    /// [`super::key_constraints`]).
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
        Ok(super::key_constraints(
            schema,
            keys.into_iter()
                .map(|(primary, _, columns)| (primary, columns)),
        ))
    }
}

/// Whether the server already treats `\` in string literals as an ordinary
/// character (`sql_mode` has `NO_BACKSLASH_ESCAPES`).
async fn server_disables_backslash_escapes(
    pool: &Arc<MySQLConnectionPool>,
) -> Result<bool, BoxError> {
    let conn = pool.connect().await?;
    let Some(conn) = conn.as_async() else {
        return Ok(false);
    };
    let mut stream = conn
        .query_arrow("SELECT @@SESSION.sql_mode AS sql_mode", &[], None)
        .await?;
    let mut modes = String::new();
    while let Some(batch) = stream.try_next().await? {
        let text = arrow::util::pretty::pretty_format_batches(&[batch])?.to_string();
        modes.push_str(&text);
    }
    Ok(modes.contains("NO_BACKSLASH_ESCAPES"))
}

/// MySQL's differences from the crate's executor: two corrections, both of
/// which otherwise make a query silently return the wrong rows:
///
/// - DataFusion writes string literals the standard way (`'a\b'` is three
///   characters), but MySQL by default reads a backslash as an escape. This doubles
///   backslashes in every string literal, unless the server's `sql_mode` already
///   disables backslash escapes.
/// - The upstream connection deletes every `"` from the SQL text before sending it
///   (to undo ANSI identifier quoting), which also corrupts string literals such
///   as `'"double" quotes'` and column aliases. Queries here are sent as they are.
struct MySqlRemote {
    pool: Arc<MySQLConnectionPool>,
    escape_backslashes: bool,
}

fn fail(error: &dyn std::fmt::Display) -> DataFusionError {
    DataFusionError::Execution(format!("MySQL query failed: {error}"))
}

/// Converts rows to a batch of the planned schema. The select list is generated
/// from the plan, so columns match by position; MySQL names unaliased expressions
/// after their text, so names are matched positionally rather than by name.
fn rows_to_batch(rows: &[mysql_async::Row], schema: &SchemaRef) -> DFResult<RecordBatch> {
    let Some(first) = rows.first() else {
        return Ok(RecordBatch::new_empty(Arc::clone(schema)));
    };
    let names: Vec<String> = first
        .columns_ref()
        .iter()
        .map(|c| c.name_str().into_owned())
        .collect();
    if names.len() != schema.fields().len() {
        return Err(fail(&format!(
            "the server returned {} columns where the plan expects {}",
            names.len(),
            schema.fields().len()
        )));
    }
    let same_names = names
        .iter()
        .zip(schema.fields())
        .all(|(n, f)| n == f.name());
    let unique = names.iter().collect::<std::collections::HashSet<_>>().len() == names.len();
    if same_names || !unique {
        return rows_to_arrow(rows, &Some(Arc::clone(schema))).map_err(|e| fail(&e));
    }
    let wire_schema = Arc::new(arrow::datatypes::Schema::new(
        schema
            .fields()
            .iter()
            .zip(&names)
            .map(|(field, name)| field.as_ref().clone().with_name(name.as_str()))
            .collect::<Vec<_>>(),
    ));
    let batch = rows_to_arrow(rows, &Some(wire_schema)).map_err(|e| fail(&e))?;
    // MySQL has no boolean type: comparisons come back as integers.
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| {
            if column.data_type() == field.data_type() {
                Ok(Arc::clone(column))
            } else {
                arrow::compute::cast(column, field.data_type()).map_err(|e| fail(&e))
            }
        })
        .collect::<DFResult<Vec<_>>>()?;
    RecordBatch::try_new(Arc::clone(schema), columns).map_err(|e| fail(&e))
}

/// Rows per Arrow batch read from MySQL.
const MYSQL_BATCH_ROWS: usize = 4_000;

/// Runs `sql` and streams its rows as Arrow batches of `schema`. A task reads the
/// server's result set into a bounded channel, so memory stays bounded and
/// dropping the stream stops the read.
fn mysql_stream(
    pool: Arc<MySQLConnectionPool>,
    sql: String,
    schema: SchemaRef,
) -> SendableRecordBatchStream {
    let (tx, rx) = tokio::sync::mpsc::channel::<DFResult<RecordBatch>>(2);
    let projected = Arc::clone(&schema);
    tokio::spawn(async move {
        let connection = match pool.connect_direct().await {
            Ok(c) => c,
            Err(e) => {
                let _ = tx.send(Err(fail(&e))).await;
                return;
            }
        };
        let mut conn = connection.conn.lock().await;
        let mut result = match conn
            .exec_iter(sql.as_str(), mysql_async::Params::Empty)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.send(Err(fail(&e))).await;
                return;
            }
        };
        let rows = match result.stream::<mysql_async::Row>().await {
            Ok(Some(rows)) => rows,
            Ok(None) => return,
            Err(e) => {
                let _ = tx.send(Err(fail(&e))).await;
                return;
            }
        };
        let mut rows = rows;
        let mut buffer = Vec::with_capacity(MYSQL_BATCH_ROWS);
        loop {
            let next = rows.next().await;
            let done = next.is_none();
            match next {
                Some(Ok(row)) => buffer.push(row),
                Some(Err(e)) => {
                    let _ = tx.send(Err(fail(&e))).await;
                    return;
                }
                None => {}
            }
            if buffer.len() >= MYSQL_BATCH_ROWS || (done && !buffer.is_empty()) {
                let batch = rows_to_batch(&buffer, &projected);
                buffer.clear();
                let failed = batch.is_err();
                if tx.send(batch).await.is_err() || failed {
                    return;
                }
            }
            if done {
                return;
            }
        }
    });
    Box::pin(RecordBatchStreamAdapter::new(
        schema,
        ReceiverStream::new(rx),
    ))
}

#[async_trait]
impl Remote for MySqlRemote {
    fn database(&self) -> Database {
        Database::MySql
    }

    fn finish(&self) -> Box<dyn FnMut(&mut ast::Statement)> {
        let escape = self.escape_backslashes;
        Box::new(move |statement| {
            if escape {
                let _ = visit_expressions_mut(statement, |expr| {
                    if let ast::Expr::Value(ValueWithSpan {
                        value: ast::Value::SingleQuotedString(text),
                        ..
                    }) = expr
                        && text.contains('\\')
                    {
                        *text = text.replace('\\', "\\\\");
                    }
                    ControlFlow::<()>::Continue(())
                });
            }
        })
    }

    fn execute(
        &self,
        _executor: &Repaired<Self>,
        query: &str,
        schema: SchemaRef,
        _filters: &[Arc<dyn PhysicalExpr>],
    ) -> DFResult<SendableRecordBatchStream> {
        Ok(mysql_stream(
            Arc::clone(&self.pool),
            query.to_string(),
            schema,
        ))
    }
}
