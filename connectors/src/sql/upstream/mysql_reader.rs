//! Workaround for the MySQL connection of `datafusion-table-providers-mysql`
//! 0.15.1 (`src/conn.rs`, `MySQLConnection::query_arrow`): it deletes every
//! `"` from the SQL text before sending it (`sql.replace('"', "")`, to undo
//! ANSI identifier quoting). That also changes string literals
//! (`WHERE label = '"double" quotes'` finds `double quotes`) and column
//! aliases, so a query answered the wrong rows with no error.
//!
//! The crate's executor is therefore not used to run MySQL queries: this
//! reader sends the SQL as it is, streams the result set through a bounded
//! channel, and converts rows with the crate's own `rows_to_arrow`
//! ([`mysql_stream`]).
//!
//! Upstream issue: none found as of 2026-12; one should be filed against
//! datafusion-contrib/datafusion-table-providers (the dialect already quotes
//! identifiers with backticks, so the replacement is not needed).
//!
//! Remove when: `query_arrow` sends the SQL unchanged, which the test
//! `upstream_still_deletes_double_quotes` (against the machine's MariaDB)
//! notices by failing. Then `MySqlRemote::execute` can use the `Remote`
//! trait's default (the crate's executor), and this file goes, once the
//! crate's reader also stops the server's query when its stream is dropped
//! (ours does, [`kill_query`]; the conformance test
//! `a_cancelled_mariadb_scan_stops_the_query_in_mariadb` checks it).

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion_table_providers::sql::arrow_sql_gen::mysql::rows_to_arrow;
use datafusion_table_providers::sql::db_connection_pool::mysqlpool::MySQLConnectionPool;
use futures::StreamExt;
use mysql_async::prelude::Queryable;
use tokio_stream::wrappers::ReceiverStream;

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
pub(in crate::sql) fn mysql_stream(
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
        let id = conn.id();
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
                if tx.send(batch).await.is_err() {
                    // The query was dropped (cancelled, or a limit met
                    // above): stop the server's work too.
                    kill_query(&pool, id).await;
                    return;
                }
                if failed {
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

/// Asks the server to stop the query connection `id` is running. Best
/// effort, on a connection of its own: a failure only means the server
/// finishes the query for no one.
async fn kill_query(pool: &MySQLConnectionPool, id: u32) {
    let killed = match pool.connect_direct().await {
        Ok(connection) => connection
            .conn
            .lock()
            .await
            .query_drop(format!("KILL QUERY {id}"))
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = killed {
        tracing::debug!("stopping a dropped MySQL query: {e}");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
    use std::collections::HashMap;

    use datafusion_table_providers::sql::db_connection_pool::DbConnectionPool;
    use datafusion_table_providers::util::secrets::to_secret_map;
    use futures::TryStreamExt;

    use super::*;

    /// The machine's MariaDB (127.0.0.1:3306, `root`, no password); `None`,
    /// said loudly, where there is none, and a failure under `CI=true`.
    async fn mariadb() -> Option<MySQLConnectionPool> {
        let params = HashMap::from([
            ("host".to_string(), "127.0.0.1".to_string()),
            ("tcp_port".to_string(), "3306".to_string()),
            ("user".to_string(), "root".to_string()),
            ("db".to_string(), "information_schema".to_string()),
            ("sslmode".to_string(), "disabled".to_string()),
        ]);
        match MySQLConnectionPool::new(to_secret_map(params)).await {
            Ok(pool) => Some(pool),
            Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
                panic!("MariaDB is needed on 127.0.0.1:3306 under CI: {e}")
            }
            Err(e) => {
                eprintln!("!!!!!!!! SKIPPED: no MariaDB on 127.0.0.1:3306 ({e}) !!!!!!!!");
                None
            }
        }
    }

    #[tokio::test]
    async fn upstream_still_deletes_double_quotes() {
        let Some(pool) = mariadb().await else { return };
        let sql = "SELECT '\"double\" quotes' AS t";
        let conn = pool.connect().await.unwrap();
        let conn = conn.as_async().expect("an async connection");
        let batches: Vec<RecordBatch> = conn
            .query_arrow(sql, &[], None)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        let text = arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string();
        assert!(
            text.contains("| double quotes |"),
            "upstream fixed this: query_arrow kept the quotes ({text}); \
             delete upstream/mysql_reader.rs (see its doc)"
        );
        // Our reader keeps them.
        let schema = Arc::new(arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new("t", arrow::datatypes::DataType::Utf8, true),
        ]));
        let batches: Vec<RecordBatch> = mysql_stream(Arc::new(pool), sql.to_string(), schema)
            .try_collect()
            .await
            .unwrap();
        let text = arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string();
        assert!(text.contains("| \"double\" quotes |"), "{text}");
    }
}
