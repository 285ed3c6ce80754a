//! `kind = "sqlite"`: a SQLite database file. The factory (open the file,
//! list its tables, build one table's provider with its declared types,
//! keys and writer) is here; options are in `config.rs`, how a query runs in
//! `exec.rs`.

mod config;
mod exec;

pub use config::SqliteConfig;

use std::sync::Arc;

use async_trait::async_trait;
use bluelamp_engine::{ConfigError, ConnectedSource, SourceConfig, SourceError, SourceFactory};
use datafusion::common::TableReference;
use datafusion::datasource::TableProvider;
use datafusion_table_providers::sql::db_connection_pool::dbconnection::get_schema;
use datafusion_table_providers::sql::db_connection_pool::sqlitepool::{
    SqliteConnectionPool, SqliteConnectionPoolFactory,
};
use datafusion_table_providers::sql::db_connection_pool::{DbConnectionPool, Mode};
use datafusion_table_providers::sqlite::DynSqliteConnectionPool;
use datafusion_table_providers::sqlite::Sqlite;
use datafusion_table_providers::sqlite::sql_table::SQLiteTable;
use datafusion_table_providers::sqlite::write::SqliteTableWriter;

use super::exec::federated_read;
use super::upstream::sqlite_declared_types::{booleans_as_declared, declared_schema};
use super::upstream::views::sqlite_relations;
use super::{BoxError, SqlBackend, SqlSchemaProvider, connect_error};
use exec::SqliteRemote;

/// The factory for `kind = "sqlite"`.
#[derive(Debug, Default)]
pub struct SqliteSourceFactory;

#[async_trait]
impl SourceFactory for SqliteSourceFactory {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    fn validate(&self, source: &SourceConfig) -> Result<(), ConfigError> {
        source.options::<SqliteConfig>().map(|_| ())
    }

    async fn connect(&self, source: &SourceConfig) -> Result<ConnectedSource, SourceError> {
        let config: SqliteConfig = source
            .options()
            .map_err(|e| SourceError::new(source, e.to_string()))?;
        let path = source.resolve_path(&config.path);
        if !path.is_file() {
            return Err(SourceError::unavailable(
                source,
                format!("database file {} does not exist", path.display()),
            ));
        }
        let path_text = path.display().to_string();
        let pool = SqliteConnectionPoolFactory::new(&path_text, Mode::File, config.busy_timeout)
            .build()
            .await
            .map_err(|e| connect_error(source, &[], e.as_ref()))?;
        let pool = Arc::new(pool);
        let file = path.clone();
        let tables = tokio::task::spawn_blocking(move || -> Result<_, BoxError> {
            let conn = rusqlite::Connection::open_with_flags(
                &file,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )?;
            sqlite_relations(&conn)
        })
        .await
        .map_err(|e| connect_error(source, &[], &e))?
        .map_err(|e| connect_error(source, &[], e.as_ref()))?;
        let backend = Arc::new(SqliteBackend {
            pool,
            path: path.clone(),
        });
        let mut warnings = Vec::new();
        if tables.is_empty() {
            warnings.push(format!("{} has no tables", path.display()));
        }
        Ok(ConnectedSource {
            schema: Arc::new(SqlSchemaProvider::new(source, Vec::new(), tables, backend)),
            warnings,
            insert_only: 0,
        })
    }
}

#[derive(Debug)]
struct SqliteBackend {
    pool: Arc<SqliteConnectionPool>,
    path: std::path::PathBuf,
}

/// The table's primary key (columns in key order) and its unique indexes —
/// `UNIQUE` constraints and `CREATE UNIQUE INDEX` alike, but not partial
/// indexes or indexes over expressions, which are not keys of the table.
fn declared_keys(
    conn: &rusqlite::Connection,
    table: &str,
) -> Result<Vec<(bool, Vec<String>)>, BoxError> {
    let mut keys = Vec::new();
    let primary: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_info(?1) WHERE pk > 0 ORDER BY pk")?
        .query_map([table], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    if !primary.is_empty() {
        keys.push((true, primary));
    }
    let indexes: Vec<String> = conn
        .prepare(
            "SELECT name FROM pragma_index_list(?1) \
             WHERE \"unique\" = 1 AND origin <> 'pk' AND partial = 0 ORDER BY seq",
        )?
        .query_map([table], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    let mut columns_of = conn.prepare("SELECT name FROM pragma_index_info(?1) ORDER BY seqno")?;
    for index in indexes {
        let columns: Vec<Option<String>> = columns_of
            .query_map([index], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        if let Some(columns) = columns.into_iter().collect::<Option<Vec<_>>>() {
            keys.push((false, columns));
        }
    }
    Ok(keys)
}

#[async_trait]
impl SqlBackend for SqliteBackend {
    async fn table_provider(
        &self,
        source: &SourceConfig,
        table: &str,
    ) -> Result<Arc<dyn TableProvider>, BoxError> {
        // The crate's own SQLite factory returns a table without federation; build
        // the federated one so joins and aggregates run inside SQLite, through
        // our repairs of the SQL DataFusion's unparser writes.
        let reference = TableReference::bare(table);
        let conn = self.pool.connect().await?;
        let mut schema = get_schema(conn, &reference).await?;
        // The file's own catalog, read once: the table's keys and its
        // declared columns (the crate infers types from a row, and finds
        // none in an empty table).
        let inferred = !schema.fields().is_empty();
        let path = self.path.clone();
        let name = table.to_string();
        let (declared, keys) = tokio::task::spawn_blocking(move || -> Result<_, BoxError> {
            let conn = rusqlite::Connection::open_with_flags(
                &path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )?;
            Ok((declared_schema(&conn, &name)?, declared_keys(&conn, &name)?))
        })
        .await??;
        schema = if inferred {
            booleans_as_declared(&schema, &declared)
        } else {
            declared
        };
        let pool: Arc<DynSqliteConnectionPool> =
            Arc::clone(&self.pool) as Arc<DynSqliteConnectionPool>;
        let table = Arc::new(SQLiteTable::new_with_schema(
            &pool,
            Arc::clone(&schema),
            reference.clone(),
        ));
        let read = federated_read(
            source,
            table,
            SqliteRemote {
                pool: Arc::clone(&self.pool),
            },
            reference.clone(),
            Arc::clone(&schema),
        );
        let constraints = super::provider::key_constraints(&schema, keys);
        let sqlite = Sqlite::new(reference, schema, Arc::clone(&self.pool), constraints);
        let writer = SqliteTableWriter::create(Arc::clone(&read), sqlite, None);
        Ok(super::write::with_writer(read, writer))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn keys_are_the_primary_key_and_whole_column_unique_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.sqlite");
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE calls (a int, b int, c text UNIQUE, d text, e text, f text, PRIMARY KEY (b, a));
             CREATE UNIQUE INDEX calls_d_e ON calls (e, d);
             CREATE UNIQUE INDEX calls_open ON calls (f) WHERE f IS NOT NULL;
             CREATE UNIQUE INDEX calls_lower ON calls (lower(f));
             CREATE INDEX calls_plain ON calls (d);
             CREATE TABLE plain (x int);",
        )
        .unwrap();
        let mut keys = declared_keys(&conn, "calls").unwrap();
        keys[1..].sort();
        assert_eq!(
            keys,
            vec![
                (true, vec!["b".to_string(), "a".to_string()]),
                (false, vec!["c".to_string()]),
                (false, vec!["e".to_string(), "d".to_string()]),
            ]
        );
        assert!(declared_keys(&conn, "plain").unwrap().is_empty());
    }
}
