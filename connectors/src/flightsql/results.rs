//! Reading a query's result: every endpoint of its `FlightInfo` at once
//! (each by a task of its own, in order where the server marks the
//! endpoints ordered), streamed and never collected whole, each batch
//! checked against the schema the server announced — a server that sends
//! something else is refused, not silently cast.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, SchemaRef};
use arrow_flight::FlightInfo;
use arrow_flight::sql::CommandStatementQuery;
use bluelamp_engine::{Principal, SourceConfig, SourceError};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::{StreamExt, TryStreamExt, stream};

use super::client::{Caller, Connection, flight_error};

impl Connection {
    /// Runs `sql` for `principal` and streams its result, which must have
    /// the columns of `expected` (names aside).
    pub fn query(
        &self,
        sql: String,
        expected: SchemaRef,
        principal: Option<Principal>,
    ) -> SendableRecordBatchStream {
        let connection = self.clone();
        let schema = Arc::clone(&expected);
        let batches = stream::once(async move {
            let info = connection
                .info(
                    "query",
                    CommandStatementQuery {
                        query: sql,
                        transaction_id: None,
                    },
                    Caller::User(principal.as_ref()),
                )
                .await
                .map_err(SourceError::into_datafusion)?;
            connection
                .read(info, expected, principal.as_ref())
                .await
                .map_err(SourceError::into_datafusion)
        })
        .try_flatten();
        Box::pin(RecordBatchStreamAdapter::new(schema, batches))
    }

    /// Every endpoint of `info`, read at once (in order where the server
    /// says the order matters), each batch checked against `expected`.
    async fn read(
        &self,
        info: FlightInfo,
        expected: SchemaRef,
        principal: Option<&Principal>,
    ) -> Result<
        futures::stream::BoxStream<'static, datafusion::error::Result<RecordBatch>>,
        SourceError,
    > {
        let ordered = info.ordered;
        // Some servers (ROAPI) announce an empty result with no columns at
        // all; that says nothing about the columns.
        if !info.schema.is_empty() {
            let announced = info.clone().try_decode_schema().map_err(|e| {
                SourceError::new(
                    &self.source,
                    format!("the query's announced schema cannot be read: {e}"),
                )
            })?;
            if !announced.fields().is_empty() {
                check_columns(
                    &self.source,
                    "the query's announced schema",
                    &announced
                        .fields()
                        .iter()
                        .map(|f| (f.name().clone(), f.data_type().clone()))
                        .collect::<Vec<_>>(),
                    &expected,
                )?;
            }
        }
        let mut streams = Vec::with_capacity(info.endpoint.len());
        for endpoint in info.endpoint {
            let elsewhere = endpoint
                .location
                .iter()
                .any(|l| !l.uri.is_empty() && !l.uri.starts_with("arrow-flight-reuse-connection:"));
            if elsewhere {
                return Err(SourceError::new(
                    &self.source,
                    "the server sends part of the result from another location, which this connector does not follow",
                ));
            }
            let Some(ticket) = endpoint.ticket else {
                continue;
            };
            let batches = self
                .read_ticket("reading the result", ticket, Caller::User(principal))
                .await?;
            let source = self.source.clone();
            let expected = Arc::clone(&expected);
            streams.push(
                batches
                    .map(move |batch| {
                        let batch = batch.map_err(|e| {
                            flight_error(&source, "reading the result", e).into_datafusion()
                        })?;
                        conform(&source, batch, &expected).map_err(SourceError::into_datafusion)
                    })
                    .boxed(),
            );
        }
        Ok(if ordered || streams.len() < 2 {
            stream::iter(streams).flatten().boxed()
        } else {
            side_by_side(streams)
        })
    }
}

/// Whether two column types hold the same values (string and binary
/// layouts, and dictionaries of a type, are one).
fn same_values(a: &DataType, b: &DataType) -> bool {
    let plain = |t: &DataType| match t {
        DataType::Dictionary(_, value) => value.as_ref().clone(),
        DataType::LargeUtf8 | DataType::Utf8View => DataType::Utf8,
        DataType::LargeBinary | DataType::BinaryView => DataType::Binary,
        other => other.clone(),
    };
    plain(a) == plain(b)
}

/// Checks `columns` (name, type) against `expected`, by position.
fn check_columns(
    source: &SourceConfig,
    what: &str,
    columns: &[(String, DataType)],
    expected: &SchemaRef,
) -> Result<(), SourceError> {
    if columns.len() != expected.fields().len() {
        return Err(SourceError::new(
            source,
            format!(
                "{what} has {} columns where {} were asked for: the server answered something other than the query",
                columns.len(),
                expected.fields().len()
            ),
        ));
    }
    for ((name, data_type), want) in columns.iter().zip(expected.fields()) {
        if !same_values(data_type, want.data_type()) {
            return Err(SourceError::new(
                source,
                format!(
                    "{what}: column '{name}' is {data_type} where the server announced {} for '{}'; refusing the result rather than converting it",
                    want.data_type(),
                    want.name()
                ),
            ));
        }
    }
    Ok(())
}

/// `batch` as the columns of `expected`: checked by type (and for NULLs
/// where a column is announced non-nullable), then cast only between
/// layouts of the same values.
fn conform(
    source: &SourceConfig,
    batch: RecordBatch,
    expected: &SchemaRef,
) -> Result<RecordBatch, SourceError> {
    if batch.num_columns() == 0 && batch.num_rows() == 0 {
        return Ok(RecordBatch::new_empty(Arc::clone(expected)));
    }
    let columns: Vec<(String, DataType)> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone()))
        .collect();
    check_columns(source, "a result batch", &columns, expected)?;
    let mut arrays = Vec::with_capacity(batch.num_columns());
    for (array, field) in batch.columns().iter().zip(expected.fields()) {
        if !field.is_nullable() && array.null_count() > 0 {
            return Err(SourceError::new(
                source,
                format!(
                    "column '{}' holds NULLs though the server announced it never does",
                    field.name()
                ),
            ));
        }
        let array = if array.data_type() == field.data_type() {
            Arc::clone(array)
        } else {
            arrow::compute::cast(array, field.data_type())
                .map_err(|e| SourceError::new(source, format!("column '{}': {e}", field.name())))?
        };
        arrays.push(array);
    }
    RecordBatch::try_new(Arc::clone(expected), arrays)
        .map_err(|e| SourceError::new(source, format!("a result batch: {e}")))
}

/// Batches read ahead per endpoint when endpoints are read side by side.
const READ_AHEAD: usize = 2;

/// `streams` each read (and decoded) by a task of its own, their batches
/// merged as they come. Dropping the result stops every task, and with it
/// every read.
fn side_by_side(
    streams: Vec<futures::stream::BoxStream<'static, datafusion::error::Result<RecordBatch>>>,
) -> futures::stream::BoxStream<'static, datafusion::error::Result<RecordBatch>> {
    let (sender, receiver) = tokio::sync::mpsc::channel(READ_AHEAD * streams.len());
    let mut tasks = tokio::task::JoinSet::new();
    for mut batches in streams {
        let sender = sender.clone();
        tasks.spawn(async move {
            while let Some(batch) = batches.next().await {
                let failed = batch.is_err();
                if sender.send(batch).await.is_err() || failed {
                    break;
                }
            }
        });
    }
    drop(sender);
    // The tasks live as long as the stream: a JoinSet aborts them when
    // dropped.
    stream::unfold((receiver, tasks), |(mut receiver, tasks)| async move {
        receiver
            .recv()
            .await
            .map(|batch| (batch, (receiver, tasks)))
    })
    .boxed()
}
