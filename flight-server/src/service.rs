//! The Flight SQL service: every RPC authenticates its caller, then runs
//! through that user's engine [`Session`] — the engine's one entry point, so
//! policy and audit apply to BI tools exactly as to the REPL.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::metadata::{
    GetCatalogsBuilder, GetTablesBuilder, SqlInfoData, XdbcTypeInfoData,
};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionCancelQueryRequest, ActionCancelQueryResult, ActionClosePreparedStatementRequest,
    ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult, Any,
    CommandGetCatalogs, CommandGetCrossReference, CommandGetDbSchemas, CommandGetExportedKeys,
    CommandGetImportedKeys, CommandGetPrimaryKeys, CommandGetSqlInfo, CommandGetTableTypes,
    CommandGetTables, CommandGetXdbcTypeInfo, CommandPreparedStatementQuery,
    CommandPreparedStatementUpdate, CommandStatementQuery, CommandStatementUpdate,
    DoPutPreparedStatementResult, ProstMessageExt, SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    Action, CancelFlightInfoRequest, CancelFlightInfoResult, CancelStatus, FlightDescriptor,
    FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, IpcMessage, SchemaAsIpc,
    Ticket,
};
use bluelamp_engine::{Engine, Identity, Planned, QueryError, QueryOutput, Session, TABLE_TYPES};
use datafusion::arrow::array::{Int32Array, RecordBatch, StringArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::ipc::writer::IpcWriteOptions;
use datafusion::common::ScalarValue;
use futures::{Stream, StreamExt, TryStreamExt, stream};
use prost::Message;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::Authenticator;
use crate::error::{status, stream_status};
use crate::metadata::{foreign_keys_schema, primary_keys_schema, sql_info, xdbc_type_info};
use crate::tickets::{Cancelled, Tickets, Work};

type DoGetStream = <BluelampFlightSql as FlightService>::DoGetStream;

/// A statement's result batches, ending with an error status if it fails.
pub(crate) type Batches = Pin<Box<dyn Stream<Item = Result<RecordBatch, Status>> + Send>>;

/// What a `DoGet` streams (see [`BluelampFlightSql::answer`]).
pub(crate) enum Answer {
    /// A statement's result.
    Batches(SchemaRef, Batches),
    /// Metadata answers, already as Flight messages.
    Flight(DoGetStream),
}

/// The Flight SQL service over an engine.
pub struct BluelampFlightSql {
    engine: Engine,
    auth: Authenticator,
    tickets: Arc<Tickets>,
    sessions: Mutex<Sessions>,
    sql_info: SqlInfoData,
    xdbc: XdbcTypeInfoData,
}

fn internal(context: &str, e: impl std::fmt::Display) -> Status {
    tracing::error!("{context}: {e}");
    Status::internal(format!("{context}: {e}"))
}

fn ipc_schema(schema: &Schema) -> Result<prost::bytes::Bytes, Status> {
    let message: IpcMessage = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e| internal("cannot encode a schema", e))?;
    Ok(message.0)
}

impl BluelampFlightSql {
    /// A service over `engine`, authenticating with `auth`.
    ///
    /// # Errors
    /// Only if the static metadata cannot be built (a bug).
    pub fn new(engine: Engine, auth: Authenticator) -> Result<Self, Status> {
        let ticket_ttl = engine.config().server.ticket_ttl;
        let probe = engine.session(Identity::new("bluelamp", "internal"));
        let sql_info =
            sql_info(&probe.function_names()).map_err(|e| internal("cannot build SQL info", e))?;
        let xdbc = xdbc_type_info().map_err(|e| internal("cannot build type info", e))?;
        Ok(Self {
            engine,
            auth,
            tickets: Arc::new(Tickets::new(ticket_ttl)),
            sessions: Mutex::new(Sessions {
                by_key: HashMap::new(),
                swept: Instant::now(),
            }),
            sql_info,
            xdbc,
        })
    }

    /// The caller and their session. A session belongs to one client
    /// connection — the bearer token from its handshake, or (for clients
    /// that send basic credentials on every call) the user and the TCP peer
    /// — so two tools of the same user never share `SET`s, views or a
    /// stated purpose. Sessions idle for `[server] session_idle` are dropped.
    async fn session<T>(&self, request: &Request<T>) -> Result<Session, Status> {
        let identity = self.auth.authenticate(request.metadata()).await?;
        let key = connection_key(request, &identity);
        let client = request.remote_addr().map(|a| a.to_string());
        let new_session = || {
            let session = self.engine.session_from(identity.clone(), client.clone());
            session.set_batch_size(self.engine.config().server.batch_size);
            session
        };
        let Some(key) = key else {
            // No way to tell this connection again: a session for this call only.
            return Ok(new_session());
        };
        let now = Instant::now();
        let idle = self.engine.config().server.session_idle;
        let mut store = self
            .sessions
            .lock()
            .map_err(|_| Status::internal("session store unavailable"))?;
        // Idle sessions are swept now and then, not on every call.
        if now.duration_since(store.swept) >= idle.min(SWEEP_EVERY) {
            store
                .by_key
                .retain(|_, (_, used)| now.duration_since(*used) < idle);
            store.swept = now;
        }
        let sessions = &mut store.by_key;
        if sessions
            .get(&key)
            .is_some_and(|(_, used)| now.duration_since(*used) >= idle)
        {
            sessions.remove(&key);
        }
        if !sessions.contains_key(&key)
            && sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone())
        {
            sessions.remove(&oldest);
        }
        let entry = sessions.entry(key).or_insert_with(|| (new_session(), now));
        entry.1 = now;
        Ok(entry.0.clone())
    }

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

    /// A `FlightInfo` whose one endpoint's ticket is `ticket`.
    fn info(
        schema: &Schema,
        descriptor: FlightDescriptor,
        ticket: Vec<u8>,
    ) -> Result<Response<FlightInfo>, Status> {
        let info = FlightInfo::new()
            .try_with_schema(schema)
            .map_err(|e| internal("cannot encode a schema", e))?
            .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(ticket)))
            .with_descriptor(descriptor);
        Ok(Response::new(info))
    }

    /// A `FlightInfo` for a metadata command: the ticket is the command itself.
    fn command_info(
        schema: &Schema,
        descriptor: FlightDescriptor,
        command: &impl ProstMessageExt,
    ) -> Result<Response<FlightInfo>, Status> {
        Self::info(schema, descriptor, command.as_any().encode_to_vec())
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

    /// Streams a batch as a `DoGet` response.
    fn batch_stream(batch: RecordBatch) -> Response<DoGetStream> {
        let schema = batch.schema();
        let batches = stream::iter([Ok(batch)]);
        let flight = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(batches)
            .map_err(flight_status);
        Response::new(Box::pin(flight))
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
}

/// Most client sessions kept at once; the least recently used goes first.
const MAX_SESSIONS: usize = 10_000;

/// How often idle sessions are swept out at most.
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Client connections' sessions, each with when it was last used.
struct Sessions {
    by_key: HashMap<String, (Session, Instant)>,
    swept: Instant,
}

/// Which client connection a request comes from, if that can be told: the
/// bearer token it authenticated with (hashed), else its user and TCP peer.
fn connection_key<T>(request: &Request<T>, identity: &Identity) -> Option<String> {
    use sha2::{Digest, Sha256};
    let header = request
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if let Some((scheme, token)) = header.split_once(' ')
        && scheme.eq_ignore_ascii_case("bearer")
    {
        let digest = Sha256::digest(token.trim().as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        // One token may carry calls for several users it acts for: each
        // has a session of their own.
        return Some(format!("bearer:{hex}:{}", identity.user));
    }
    request
        .remote_addr()
        .map(|peer| format!("peer:{}:{peer}", identity.user))
}

/// Largest Flight message; larger batches are split.
pub(crate) const MAX_MESSAGE: usize = 8 * 1024 * 1024;

fn flight_status(error: FlightError) -> Status {
    match error {
        FlightError::Tonic(status) => *status,
        FlightError::ExternalError(e) => match e.downcast::<QueryError>() {
            Ok(q) => status(&q),
            Err(e) => Status::internal(crate::error::scrub(&e.to_string())),
        },
        other => Status::internal(crate::error::scrub(&other.to_string())),
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

#[tonic::async_trait]
impl FlightSqlService for BluelampFlightSql {
    type FlightService = BluelampFlightSql;

    async fn do_handshake(
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

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let session = self.session(&request).await?;
        let planned = self.plan(&session, &query.query).await?;
        self.statement_info(&session, planned, request.into_inner())
            .await
    }

    async fn get_flight_info_prepared_statement(
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

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.session(&request).await?;
        let schema = GetCatalogsBuilder::new().schema();
        Self::command_info(&schema, request.into_inner(), &query)
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.session(&request).await?;
        let schema = query.clone().into_builder().schema();
        Self::command_info(&schema, request.into_inner(), &query)
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.session(&request).await?;
        let schema = query.clone().into_builder().schema();
        Self::command_info(&schema, request.into_inner(), &query)
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.session(&request).await?;
        let schema = query.into_builder().schema();
        Self::command_info(&schema, request.into_inner(), &query)
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.session(&request).await?;
        let schema = query.clone().into_builder(&self.sql_info).schema();
        Self::command_info(&schema, request.into_inner(), &query)
    }

    async fn get_flight_info_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.session(&request).await?;
        Self::command_info(&primary_keys_schema(), request.into_inner(), &query)
    }

    async fn get_flight_info_exported_keys(
        &self,
        query: CommandGetExportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.session(&request).await?;
        Self::command_info(&foreign_keys_schema(), request.into_inner(), &query)
    }

    async fn get_flight_info_imported_keys(
        &self,
        query: CommandGetImportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.session(&request).await?;
        Self::command_info(&foreign_keys_schema(), request.into_inner(), &query)
    }

    async fn get_flight_info_cross_reference(
        &self,
        query: CommandGetCrossReference,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.session(&request).await?;
        Self::command_info(&foreign_keys_schema(), request.into_inner(), &query)
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.session(&request).await?;
        let schema = query.into_builder(&self.xdbc).schema();
        Self::command_info(&schema, request.into_inner(), &query)
    }

    async fn do_get_statement(
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

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let session = self.session(&request).await?;
        let mut builder = query.into_builder();
        for catalog in session.catalog_names() {
            builder.append(catalog);
        }
        let batch = builder.build().map_err(|e| internal("catalogs", e))?;
        Ok(Self::batch_stream(batch))
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let session = self.session(&request).await?;
        let mut builder = query.into_builder();
        for catalog in session.catalog_names() {
            for schema in session.schema_names() {
                builder.append(&catalog, schema);
            }
        }
        let batch = builder.build().map_err(|e| internal("schemas", e))?;
        Ok(Self::batch_stream(batch))
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let session = self.session(&request).await?;
        let include_schema = query.include_schema;
        let mut builder: GetTablesBuilder = query.into_builder();
        for entry in session.tables().await {
            let schema = if include_schema {
                match session.table_schema(&entry.schema, &entry.table).await {
                    Ok(schema) => schema,
                    // A source that went down since listing: skip its table.
                    Err(_) => continue,
                }
            } else {
                Arc::new(Schema::empty())
            };
            builder
                .append(
                    &entry.catalog,
                    &entry.schema,
                    &entry.table,
                    entry.table_type,
                    &schema,
                )
                .map_err(|e| internal("tables", e))?;
        }
        let batch = builder.build().map_err(|e| internal("tables", e))?;
        Ok(Self::batch_stream(batch))
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.session(&request).await?;
        let mut builder = query.into_builder();
        for table_type in TABLE_TYPES {
            builder.append(table_type);
        }
        let batch = builder.build().map_err(|e| internal("table types", e))?;
        Ok(Self::batch_stream(batch))
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.session(&request).await?;
        let batch = query
            .into_builder(&self.sql_info)
            .build()
            .map_err(|e| internal("sql info", e))?;
        Ok(Self::batch_stream(batch))
    }

    async fn do_get_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let session = self.session(&request).await?;
        let catalog = query
            .catalog
            .clone()
            .unwrap_or_else(|| bluelamp_engine::session::CATALOG.to_string());
        let mut rows: Vec<(String, String, String, i32)> = Vec::new();
        if session.catalog_names().contains(&catalog) {
            let schemas = match &query.db_schema {
                Some(s) => vec![s.clone()],
                None => session.schema_names(),
            };
            for schema in schemas {
                match session.primary_key(&schema, &query.table).await {
                    Ok(columns) => rows.extend(
                        columns
                            .into_iter()
                            .enumerate()
                            .map(|(i, c)| (schema.clone(), query.table.clone(), c, i as i32 + 1)),
                    ),
                    Err(e) if query.db_schema.is_some() => return Err(status(&e)),
                    Err(_) => {}
                }
            }
        }
        let n = rows.len();
        let batch = RecordBatch::try_new(
            primary_keys_schema(),
            vec![
                Arc::new(StringArray::from(vec![Some(catalog.as_str()); n])),
                Arc::new(StringArray::from_iter(
                    rows.iter().map(|r| Some(r.0.as_str())),
                )),
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| r.1.as_str()),
                )),
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| r.2.as_str()),
                )),
                Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.3))),
                Arc::new(StringArray::from(vec![None::<&str>; n])),
            ],
        )
        .map_err(|e| internal("primary keys", e))?;
        Ok(Self::batch_stream(batch))
    }

    async fn do_get_exported_keys(
        &self,
        _query: CommandGetExportedKeys,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.session(&request).await?;
        Ok(Self::batch_stream(RecordBatch::new_empty(
            foreign_keys_schema(),
        )))
    }

    async fn do_get_imported_keys(
        &self,
        _query: CommandGetImportedKeys,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.session(&request).await?;
        Ok(Self::batch_stream(RecordBatch::new_empty(
            foreign_keys_schema(),
        )))
    }

    async fn do_get_cross_reference(
        &self,
        _query: CommandGetCrossReference,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.session(&request).await?;
        Ok(Self::batch_stream(RecordBatch::new_empty(
            foreign_keys_schema(),
        )))
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.session(&request).await?;
        let batch = query
            .into_builder(&self.xdbc)
            .build()
            .map_err(|e| internal("type info", e))?;
        Ok(Self::batch_stream(batch))
    }

    async fn do_put_statement_update(
        &self,
        ticket: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let session = self.session(&request).await?;
        let planned = self.plan(&session, &ticket.query).await?;
        Self::run_update(&session, planned).await
    }

    async fn do_put_prepared_statement_query(
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

    async fn do_put_prepared_statement_update(
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

    async fn do_action_create_prepared_statement(
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

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        let session = self.session(&request).await?;
        self.tickets
            .close(session.identity(), &query.prepared_statement_handle)
    }

    #[allow(deprecated, reason = "older clients still send CancelQuery")]
    async fn do_action_cancel_query(
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

    async fn do_action_fallback(
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

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
