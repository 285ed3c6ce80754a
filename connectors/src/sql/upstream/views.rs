//! Workaround for `datafusion-table-providers` 0.15.1's table listing: its
//! PostgreSQL connection lists a schema's tables from `pg_tables` (ordinary
//! and partitioned tables only) and its SQLite connection from
//! `sqlite_master WHERE type = 'table'`, so neither lists a view, although
//! both read a view's schema and rows like a table's (the MySQL connection
//! lists views; `INFORMATION_SCHEMA.TABLES` has them). A force often gives
//! an integrator its data through views, and a source must not show fewer
//! of its relations on one database than on another.
//!
//! [`postgres_relations`] lists every relation a query can read
//! (`pg_class.relkind` in `r`, `p`, `v`, `m`, `f`: tables, partitioned
//! tables, views, materialized views, foreign tables); [`sqlite_relations`]
//! lists tables and views.
//!
//! Upstream issue: none found as of 2026-12; one should be filed against
//! datafusion-contrib/datafusion-table-providers (the PostgreSQL schema
//! query already accepts those five kinds).
//!
//! Remove when: the crate's `get_tables` lists views, which the test
//! `upstream_still_lists_no_sqlite_views` notices by failing (PostgreSQL's
//! listing is checked by `tests/tests/databases.rs`, against the machine's
//! server).

use datafusion_table_providers::sql::db_connection_pool::postgrespool::PostgresConnectionPool;

use crate::sql::BoxError;

/// Every relation of `schema` a query can read, by name.
pub(in crate::sql) async fn postgres_relations(
    pool: &PostgresConnectionPool,
    schema: &str,
) -> Result<Vec<String>, BoxError> {
    let conn = pool.connect_direct().await?;
    let rows = conn
        .conn
        .query(
            "SELECT c.relname::text FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'f') \
             ORDER BY 1",
            &[&schema],
        )
        .await?;
    rows.iter()
        .map(|row| row.try_get::<_, String>(0).map_err(BoxError::from))
        .collect()
}

/// The file's tables and views, by name (SQLite's own tables left out).
pub(in crate::sql) fn sqlite_relations(
    conn: &rusqlite::Connection,
) -> Result<Vec<String>, BoxError> {
    let mut statement = conn.prepare(
        "SELECT name FROM sqlite_master \
         WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%' ORDER BY name",
    )?;
    let names = statement
        .query_map([], |row| row.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    Ok(names)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use datafusion_table_providers::sql::db_connection_pool::DbConnectionPool;
    use datafusion_table_providers::sql::db_connection_pool::dbconnection::get_tables;

    use super::*;

    #[tokio::test]
    async fn upstream_still_lists_no_sqlite_views() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("views.sqlite");
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE calls (id INTEGER, grade TEXT);
             CREATE VIEW urgent AS SELECT id FROM calls WHERE grade = 'A';",
        )
        .unwrap();
        let pool = super::super::sqlite_pool(&path).await;
        let listed = get_tables(pool.connect().await.unwrap(), "main")
            .await
            .unwrap();
        assert_eq!(
            listed,
            vec!["calls".to_string()],
            "upstream fixed this: delete upstream/views.rs (see its doc)"
        );
        assert_eq!(
            sqlite_relations(&conn).unwrap(),
            vec!["calls".to_string(), "urgent".to_string()]
        );
    }
}
