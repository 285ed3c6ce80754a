//! The statement side of the Flight SQL service: planning a statement and
//! issuing its tickets (one per output partition of a query), redeeming a
//! ticket in `DoGet` and streaming or cancelling its result, running
//! updates, prepared statements with their bound parameters, the
//! `CancelQuery`/`CancelFlightInfo` actions, and the handshake that trades
//! credentials for a bearer token.

use std::pin::Pin;
use std::sync::Arc;

use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::server::PeekableFlightDataStream;
use arrow_flight::sql::{
    ActionCancelQueryRequest, ActionCancelQueryResult, ActionClosePreparedStatementRequest,
    ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult, Any,
    CommandPreparedStatementQuery, CommandPreparedStatementUpdate, CommandStatementQuery,
    CommandStatementUpdate, DoPutPreparedStatementResult, ProstMessageExt, TicketStatementQuery,
};
use arrow_flight::{
    Action, CancelFlightInfoRequest, CancelFlightInfoResult, CancelStatus, FlightDescriptor,
    FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, IpcMessage, SchemaAsIpc,
    Ticket,
};
use bluelamp_engine::{Identity, Planned, QueryOutput, Session};
use datafusion::arrow::array::{RecordBatch, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::ipc::writer::IpcWriteOptions;
use datafusion::common::ScalarValue;
use futures::{Stream, StreamExt, TryStreamExt, stream};
use prost::Message;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};

use super::{
    Answer, Batches, BluelampFlightSql, DoGetStream, MAX_MESSAGE, flight_status, internal,
};
use crate::error::{status, stream_status};
use crate::tickets::{Cancelled, Work};

fn ipc_schema(schema: &Schema) -> Result<prost::bytes::Bytes, Status> {
    let message: IpcMessage = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e| internal("cannot encode a schema", e))?;
    Ok(message.0)
}

impl BluelampFlightSql {
    async fn plan(&self, session: &Session, sql: &str) -> Result<Planned, Status> {
        let mut statements = session.parse(sql).map_err(|e| status(&e))?;
        if statements.len() != 1 {
            return Err(Status::invalid_argument(format!(
                "expected exactly one SQL statement, found {}",
                statements.len()
            )));
        }
        let statement = statements.remove(0);
        session.plan(&statement).await.map_err(|e| status(&e))
    }

    /// Issues tickets for a planned statement and describes it. A query is
    /// started here, one ticket per output partition of its plan, so a client
    /// can read the partitions side by side; a statement that changes
    /// something runs only when its one ticket is read.
    async fn statement_info(
        &self,
        session: &Session,
        planned: Planned,
        descriptor: FlightDescriptor,
    ) -> Result<Response<FlightInfo>, Status> {
        let (schema, work) = if planned.is_write() {
            (
                planned.schema(),
                vec![Work::Planned(Box::new((session.clone(), planned)))],
            )
        } else {
            let output = session
                .execute_partitioned(planned)
                .await
                .map_err(|e| status(&e))?;
            let schema = output.schema;
            let work = output
                .streams
                .into_iter()
                .map(|stream| Work::Stream(Arc::clone(&schema), stream))
                .collect();
            (schema, work)
        };
        let ordered = work.len() == 1;
        // The schema as the stream will carry it (dictionaries as values).
        let mut info = FlightInfo::new()
            .try_with_schema(&crate::wire::wire_schema(&schema))
            .map_err(|e| internal("cannot encode a schema", e))?
            .with_descriptor(descriptor)
            .with_ordered(ordered);
        for work in work {
            let handle = self.tickets.issue(session.identity(), work)?;
            let ticket = TicketStatementQuery {
                statement_handle: handle.into_bytes().into(),
            };
            info = info.with_endpoint(
                FlightEndpoint::new().with_ticket(Ticket::new(ticket.as_any().encode_to_vec())),
            );
        }
        Ok(Response::new(info))
    }

    /// Runs a statement to completion and returns the rows it changed: the
    /// `count` DataFusion reports for DML, 0 for DDL.
    async fn run_update(session: &Session, planned: Planned) -> Result<i64, Status> {
        if !planned.is_write() {
            return Err(Status::invalid_argument(
                "this call runs INSERT, CREATE and other changes; run a SELECT as a query",
            ));
        }
        let output = session.execute(planned).await.map_err(|e| status(&e))?;
        let batches: Vec<RecordBatch> = output
            .stream
            .try_collect()
            .await
            .map_err(|e| stream_status(&e))?;
        let mut count = 0i64;
        for batch in &batches {
            if let Some(column) = batch
                .column_by_name("count")
                .and_then(|c| c.as_any().downcast_ref::<UInt64Array>())
            {
                count += column.iter().flatten().map(|v| v as i64).sum::<i64>();
            }
        }
        Ok(count)
    }

    /// What a `DoGet` ticket streams: a statement's batches, or (for
    /// metadata commands) ready-made Flight messages.
    pub(crate) async fn answer(&self, request: Request<Ticket>) -> Result<Answer, Status> {
        if let Some(handle) = statement_handle(&request.get_ref().ticket) {
            let (schema, batches) = self.statement_batches(handle, &request).await?;
            return Ok(Answer::Batches(schema, batches));
        }
        let flight = FlightService::do_get(self, request).await?;
        Ok(Answer::Flight(flight.into_inner()))
    }

    /// Redeems a statement ticket and starts (or resumes) its result. A
    /// cancelled query ends with CANCELLED, never a short answer that looks
    /// complete; either way the ticket is forgotten once the stream ends.
    async fn statement_batches<T>(
        &self,
        handle: String,
        request: &Request<T>,
    ) -> Result<(SchemaRef, Batches), Status> {
        let session = self.session(request).await?;
        let redeemed = self.tickets.redeem(session.identity(), &handle)?;
        let output = match redeemed.work {
            Work::Stream(schema, stream) => QueryOutput { schema, stream },
            // A change runs in the session that planned it, whichever
            // connection redeems the ticket.
            Work::Planned(work) => match work.0.execute(work.1).await {
                Ok(output) => output,
                Err(e) => {
                    self.tickets.finish(&handle);
                    return Err(status(&e));
                }
            },
        };
        let cancel = redeemed.cancel;
        let batches = output
            .stream
            .map_err(|e| stream_status(&e))
            .take_until(cancel.clone().cancelled_owned());
        let tickets = Arc::clone(&self.tickets);
        let tail = stream::once(async move {
            tickets.finish(&handle);
            cancel
                .is_cancelled()
                .then(|| Err(Status::cancelled("the query was cancelled")))
        })
        .filter_map(futures::future::ready);
        Ok((output.schema, Box::pin(batches.chain(tail))))
    }

    fn cancel_info(&self, identity: &Identity, info: &FlightInfo) -> Result<CancelStatus, Status> {
        let mut outcome = CancelStatus::NotCancellable;
        for endpoint in &info.endpoint {
            let Some(ticket) = &endpoint.ticket else {
                continue;
            };
            let Some(handle) = statement_handle(&ticket.ticket) else {
                continue;
            };
            if self.tickets.cancel(identity, &handle)? == Cancelled::Cancelled {
                outcome = CancelStatus::Cancelled;
            }
        }
        Ok(outcome)
    }

    pub(super) async fn handshake_reply(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>,
        Status,
    > {
        // A token is the caller's own: acting for someone is per call.
        let identity = self.auth.caller(request.metadata()).await?;
        let token = self.auth.issue_token(&identity);
        tracing::info!(target: "bluelamp::audit", user = %identity.user, "flight sql handshake");
        let response = HandshakeResponse {
            protocol_version: 0,
            payload: token.clone().into_bytes().into(),
        };
        let mut response: Response<Pin<Box<dyn Stream<Item = _> + Send>>> =
            Response::new(Box::pin(stream::iter([Ok(response)])));
        let header = MetadataValue::try_from(format!("Bearer {token}"))
            .map_err(|e| internal("cannot encode the token", e))?;
        response.metadata_mut().insert("authorization", header);
        Ok(response)
    }

    pub(super) async fn flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let session = self.session(&request).await?;
        let planned = self.plan(&session, &query.query).await?;
        self.statement_info(&session, planned, request.into_inner())
            .await
    }

    pub(super) async fn flight_info_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let session = self.session(&request).await?;
        let prepared = self
            .tickets
            .prepared(session.identity(), &query.prepared_statement_handle)?;
        let planned = match prepared.parameters.as_slice() {
            [] => prepared.planned.bind(Vec::new()).map_err(|e| status(&e))?,
            [row] => prepared.planned.bind(row.clone()).map_err(|e| status(&e))?,
            rows => {
                return Err(Status::invalid_argument(format!(
                    "{} parameter rows are bound; a query takes one row",
                    rows.len()
                )));
            }
        };
        self.statement_info(&session, planned, request.into_inner())
            .await
    }

    pub(super) async fn stream_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let handle = String::from_utf8(ticket.statement_handle.to_vec())
            .map_err(|_| Status::not_found("unknown ticket"))?;
        let (schema, batches) = self.statement_batches(handle, &request).await?;
        // The layout GetFlightInfo announced (see `wire::wire_schema`).
        let schema = Arc::new(crate::wire::wire_schema(&schema));
        let plain = Arc::clone(&schema);
        let batches = batches.map(move |batch| {
            batch.and_then(|b| {
                crate::wire::to_wire(&b, &plain, crate::wire::Strings::Utf8)
                    .map_err(|e| internal("encoding a result", e))
            })
        });
        let flight = FlightDataEncoderBuilder::new()
            .with_max_flight_data_size(MAX_MESSAGE)
            .with_schema(schema)
            .build(batches.map_err(|s| FlightError::Tonic(Box::new(s))))
            .map_err(flight_status);
        Ok(Response::new(Box::pin(flight)))
    }

    pub(super) async fn put_statement_update(
        &self,
        ticket: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let session = self.session(&request).await?;
        let planned = self.plan(&session, &ticket.query).await?;
        Self::run_update(&session, planned).await
    }

    pub(super) async fn put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let session = self.session(&request).await?;
        let handle = query.prepared_statement_handle;
        // Check ownership before reading the parameters.
        self.tickets.prepared(session.identity(), &handle)?;
        let rows = parameter_rows(request).await?;
        self.tickets.bind(session.identity(), &handle, rows)?;
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(handle),
        })
    }

    pub(super) async fn put_prepared_statement_update(
        &self,
        query: CommandPreparedStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let session = self.session(&request).await?;
        let handle = query.prepared_statement_handle;
        let prepared = self.tickets.prepared(session.identity(), &handle)?;
        let mut rows = parameter_rows(request).await?;
        if rows.is_empty() {
            rows = prepared.parameters.clone();
        }
        if rows.is_empty() {
            rows.push(Vec::new());
        }
        let mut total = 0;
        for row in rows {
            let planned = prepared.planned.bind(row).map_err(|e| status(&e))?;
            total += Self::run_update(&session, planned).await?;
        }
        Ok(total)
    }

    pub(super) async fn action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let session = self.session(&request).await?;
        let planned = self.plan(&session, &query.query).await?;
        let parameters = planned.parameters().map_err(|e| status(&e))?;
        let parameter_schema = Schema::new(
            parameters
                .iter()
                .map(|(name, t)| Field::new(name, t.clone().unwrap_or(DataType::Null), true))
                .collect::<Vec<_>>(),
        );
        let dataset_schema: SchemaRef = planned.schema();
        let handle = self.tickets.prepare(session.identity(), planned)?;
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle.into_bytes().into(),
            dataset_schema: ipc_schema(&dataset_schema)?,
            parameter_schema: ipc_schema(&parameter_schema)?,
        })
    }

    pub(super) async fn action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        let session = self.session(&request).await?;
        self.tickets
            .close(session.identity(), &query.prepared_statement_handle)
    }

    #[allow(deprecated, reason = "older clients still send CancelQuery")]
    pub(super) async fn action_cancel_query(
        &self,
        query: ActionCancelQueryRequest,
        request: Request<Action>,
    ) -> Result<ActionCancelQueryResult, Status> {
        let session = self.session(&request).await?;
        let info = FlightInfo::decode(query.info)
            .map_err(|e| Status::invalid_argument(format!("cannot read the FlightInfo: {e}")))?;
        let outcome = self.cancel_info(session.identity(), &info)?;
        let result = match outcome {
            CancelStatus::Cancelled => 1,
            _ => 3,
        };
        Ok(ActionCancelQueryResult { result })
    }

    pub(super) async fn action_fallback(
        &self,
        request: Request<Action>,
    ) -> Result<Response<<Self as FlightService>::DoActionStream>, Status> {
        if request.get_ref().r#type != "CancelFlightInfo" {
            return Err(Status::invalid_argument(format!(
                "unknown action '{}'",
                request.get_ref().r#type
            )));
        }
        let session = self.session(&request).await?;
        let cancel = CancelFlightInfoRequest::decode(request.get_ref().body.clone())
            .map_err(|e| Status::invalid_argument(format!("cannot read the request: {e}")))?;
        let info = cancel
            .info
            .ok_or_else(|| Status::invalid_argument("CancelFlightInfo needs the FlightInfo"))?;
        let outcome = self.cancel_info(session.identity(), &info)?;
        tracing::info!(target: "bluelamp::audit", user = %session.identity().user, ?outcome, "cancel");
        let result = CancelFlightInfoResult::new(outcome);
        let body = result.encode_to_vec();
        Ok(Response::new(Box::pin(stream::iter([Ok(
            arrow_flight::Result { body: body.into() },
        )]))))
    }
}

/// Our statement handle inside a ticket's bytes, if it is one of ours.
fn statement_handle(ticket: &[u8]) -> Option<String> {
    let any = Any::decode(ticket).ok()?;
    let query: TicketStatementQuery = any.unpack().ok()??;
    String::from_utf8(query.statement_handle.to_vec()).ok()
}

/// Parameter rows from a `DoPut` of Arrow record batches.
async fn parameter_rows(
    request: Request<PeekableFlightDataStream>,
) -> Result<Vec<Vec<ScalarValue>>, Status> {
    // Some clients send the command in a message of its own, with no Arrow
    // header; only messages that carry Arrow IPC are decoded.
    let flight = request
        .into_inner()
        .try_filter(|data| futures::future::ready(!data.data_header.is_empty()))
        .map_err(FlightError::from);
    let batches: Vec<RecordBatch> =
        arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(flight)
            .try_collect()
            .await
            .map_err(|e| {
                Status::invalid_argument(format!("cannot read the bound parameters: {e}"))
            })?;
    let mut rows = Vec::new();
    for batch in &batches {
        for row in 0..batch.num_rows() {
            let values = batch
                .columns()
                .iter()
                .map(|c| ScalarValue::try_from_array(c, row))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| Status::invalid_argument(format!("bad parameter value: {e}")))?;
            rows.push(values);
        }
    }
    Ok(rows)
}
