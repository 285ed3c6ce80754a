//! Reading PostgreSQL results with `COPY … TO STDOUT (FORMAT binary)`.
//!
//! The upstream reader fetches rows with the extended query protocol and
//! converts them value by value through `tokio-postgres` rows (and
//! `rust_decimal` for `numeric`); pulling TPC-H's 800,000 `partsupp` rows
//! spent more time there than PostgreSQL spent producing them. A binary
//! `COPY` of the same query streams the values in one framing with no
//! per-row messages, and the decoder (`decode.rs`) writes them straight
//! into Arrow builders.
//!
//! Only results whose every column is a type decoded there (integers,
//! floats, `numeric`, text types, `bool`, `date`, `timestamp[tz]`) take
//! this path — [`copy_stream`] asks PostgreSQL for the result's column
//! types first and answers `None` otherwise, and the caller reads the
//! usual way. A stream dropped before its end cancels the query in
//! PostgreSQL.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion_table_providers::sql::db_connection_pool::postgrespool::PostgresConnectionPool;
use futures::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use super::decode::{Decoder, decodes, fail};

/// A client error with the server's own message where PostgreSQL sent one
/// (`tokio_postgres` shows those only as "db error").
fn fail_pg(error: tokio_postgres::Error) -> DataFusionError {
    match error.as_db_error() {
        Some(db) => fail(db),
        None => fail(error),
    }
}

/// The result of `sql` as a stream of batches of `schema`, read with a
/// binary `COPY`; `None` when a column's type is not one decoded here.
/// The column types are learnt by preparing `shape`, a query with the same
/// result columns as `sql` (`sql` itself, or the query `sql` narrowed with
/// extra `WHERE` conditions, which are then not planned twice).
///
/// # Errors
/// When PostgreSQL cannot be reached or rejects the query.
pub async fn copy_stream(
    pool: &PostgresConnectionPool,
    sql: &str,
    shape: &str,
    schema: SchemaRef,
) -> DFResult<Option<SendableRecordBatchStream>> {
    let conn = pool.connect_direct().await.map_err(fail)?;
    let statement = conn.conn.prepare(shape).await.map_err(fail_pg)?;
    if statement.columns().len() != schema.fields().len() {
        return Ok(None);
    }
    let supported = statement
        .columns()
        .iter()
        .zip(schema.fields())
        .all(|(column, field)| decodes(column.type_(), field.data_type()));
    if !supported {
        return Ok(None);
    }
    let copy = format!("COPY ({sql}) TO STDOUT (FORMAT binary)");
    let (tx, rx) = tokio::sync::mpsc::channel::<DFResult<RecordBatch>>(2);
    let output = Arc::clone(&schema);
    tokio::spawn(async move {
        let stream = match conn.conn.copy_out(copy.as_str()).await {
            Ok(stream) => stream,
            Err(e) => {
                let _ = tx.send(Err(fail_pg(e))).await;
                return;
            }
        };
        let mut stream = std::pin::pin!(stream);
        let mut decoder = Decoder::new(output);
        while let Some(chunk) = stream.next().await {
            let batches = chunk.map_err(fail_pg).and_then(|c| decoder.push(c));
            match batches {
                Ok(batches) => {
                    for batch in batches {
                        if tx.send(Ok(batch)).await.is_err() {
                            // The query was dropped (cancelled, or a limit
                            // met above): stop PostgreSQL's work too, or it
                            // would produce the rest of the result for no one.
                            cancel(&conn.conn).await;
                            return;
                        }
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
        }
        match decoder.finish() {
            Ok(Some(batch)) => {
                let _ = tx.send(Ok(batch)).await;
            }
            Ok(None) => {}
            Err(e) => {
                let _ = tx.send(Err(e)).await;
            }
        }
    });
    Ok(Some(Box::pin(RecordBatchStreamAdapter::new(
        schema,
        ReceiverStream::new(rx),
    ))))
}

/// Asks PostgreSQL to stop the query `client` is running. Best effort: the
/// cancel request goes on a connection of its own, and a failure only means
/// the server finishes the query for no one.
async fn cancel(client: &tokio_postgres::Client) {
    if let Err(e) = client
        .cancel_token()
        .cancel_query(tokio_postgres::NoTls)
        .await
    {
        tracing::debug!("cancelling a dropped PostgreSQL query: {e}");
    }
}
