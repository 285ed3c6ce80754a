//! Deposits: `INSERT` into a remote table is sent as a prepared statement
//! (`INSERT ... VALUES ($1, ...)`, [`InsertSink`]), bound to each batch of
//! rows, and closed after, as the session's user.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, Any, CommandPreparedStatementUpdate, DoPutUpdateResult,
    ProstMessageExt,
};
use arrow_flight::{Action, FlightDescriptor};
use async_trait::async_trait;
use bluelamp_engine::{Principal, SourceError};
use datafusion::datasource::sink::DataSink;
use datafusion::error::Result as DFResult;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType};
use futures::{StreamExt, TryStreamExt, stream};
use prost::Message;
use tonic::Status;

use super::client::{Caller, Connection};

/// The action names Flight SQL defines for prepared statements.
const CREATE_PREPARED: &str = "CreatePreparedStatement";
const CLOSE_PREPARED: &str = "ClosePreparedStatement";

impl Connection {
    /// Prepares `sql` (with `$1`… parameters), runs it once for each row
    /// of `parameters`, and returns the rows the server says it changed.
    ///
    /// # Errors
    /// As the server answers, naming the source.
    pub async fn prepared_update(
        &self,
        sql: &str,
        parameters: RecordBatch,
        principal: Option<&Principal>,
    ) -> Result<i64, SourceError> {
        let create = ActionCreatePreparedStatementRequest {
            query: sql.to_string(),
            transaction_id: None,
        };
        let action = Action {
            r#type: CREATE_PREPARED.into(),
            body: create.as_any().encode_to_vec().into(),
        };
        let created = self
            .with_retry(
                "preparing",
                action,
                Caller::User(principal),
                |mut client, request| async move {
                    let mut results = client.do_action(request).await?.into_inner();
                    results
                        .message()
                        .await?
                        .ok_or_else(|| Status::internal("no answer to CreatePreparedStatement"))
                },
            )
            .await?;
        let result: ActionCreatePreparedStatementResult = Any::decode(&*created.body)
            .ok()
            .and_then(|any| any.unpack().ok().flatten())
            .ok_or_else(|| {
                SourceError::new(
                    &self.source,
                    "the server's prepared statement cannot be read",
                )
            })?;
        let handle = result.prepared_statement_handle.clone();
        let outcome = self
            .bound_update(handle.clone(), parameters, principal)
            .await;
        let close = ActionClosePreparedStatementRequest {
            prepared_statement_handle: handle,
        };
        let action = Action {
            r#type: CLOSE_PREPARED.into(),
            body: close.as_any().encode_to_vec().into(),
        };
        if let Ok(request) = self.request(action, Caller::User(principal))
            && let Err(e) = self.client.clone().do_action(request).await
        {
            tracing::debug!("closing a prepared statement on {}: {e}", self.url);
        }
        outcome
    }

    async fn bound_update(
        &self,
        handle: bytes::Bytes,
        parameters: RecordBatch,
        principal: Option<&Principal>,
    ) -> Result<i64, SourceError> {
        let command = CommandPreparedStatementUpdate {
            prepared_statement_handle: handle,
        };
        let descriptor = FlightDescriptor::new_cmd(command.as_any().encode_to_vec());
        let messages: Vec<_> = FlightDataEncoderBuilder::new()
            .with_flight_descriptor(Some(descriptor))
            .build(stream::iter([Ok(parameters)]))
            .try_collect()
            .await
            .map_err(|e| SourceError::new(&self.source, format!("encoding the rows: {e}")))?;
        let answer = self
            .with_retry(
                "depositing",
                messages,
                Caller::User(principal),
                |mut client, request| async move {
                    let request = request.map(stream::iter);
                    let mut results = client.do_put(request).await?.into_inner();
                    results
                        .message()
                        .await?
                        .ok_or_else(|| Status::internal("no answer to the update"))
                },
            )
            .await?;
        let result = DoPutUpdateResult::decode(&*answer.app_metadata).map_err(|e| {
            SourceError::new(
                &self.source,
                format!("the update's answer cannot be read: {e}"),
            )
        })?;
        Ok(result.record_count)
    }
}

/// Sends inserted rows as a prepared `INSERT`, one batch at a time.
#[derive(Debug)]
pub(super) struct InsertSink {
    pub(super) connection: Connection,
    pub(super) name: String,
    pub(super) schema: SchemaRef,
}

impl DisplayAs for InsertSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FlightSqlInsert: {}", self.name)
    }
}

#[async_trait]
impl DataSink for InsertSink {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    async fn write_all(
        &self,
        mut data: SendableRecordBatchStream,
        context: &Arc<TaskContext>,
    ) -> DFResult<u64> {
        let principal = context
            .session_config()
            .get_extension::<bluelamp_engine::Principal>()
            .map(|p| p.as_ref().clone());
        let names = self
            .schema
            .fields()
            .iter()
            .map(|f| format!("\"{}\"", f.name().replace('"', "\"\"")))
            .collect::<Vec<_>>();
        let placeholders = (1..=names.len())
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>();
        let sql = format!(
            "INSERT INTO {} ({}) VALUES ({})",
            self.name,
            names.join(", "),
            placeholders.join(", ")
        );
        let mut written = 0u64;
        while let Some(batch) = data.next().await {
            let batch = batch?;
            if batch.num_rows() == 0 {
                continue;
            }
            let changed = self
                .connection
                .prepared_update(&sql, batch, principal.as_ref())
                .await
                .map_err(bluelamp_engine::SourceError::into_datafusion)?;
            written += u64::try_from(changed).unwrap_or(0);
        }
        Ok(written)
    }
}
