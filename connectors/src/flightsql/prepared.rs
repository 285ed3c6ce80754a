//! Deposits: a prepared statement (`INSERT ... VALUES ($1, ...)`), bound
//! to each batch of rows, and closed after.

use arrow::array::RecordBatch;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, Any, CommandPreparedStatementUpdate, DoPutUpdateResult,
    ProstMessageExt,
};
use arrow_flight::{Action, FlightDescriptor};
use bluelamp_engine::{Principal, SourceError};
use futures::{TryStreamExt, stream};
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
