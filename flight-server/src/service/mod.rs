//! The Flight SQL service: every RPC authenticates its caller, then runs
//! through that user's engine [`Session`] — the engine's one entry point, so
//! policy and audit apply to BI tools exactly as to the REPL.
//!
//! This file holds the service itself — its state, its construction, the
//! per-connection sessions every call runs in — and the one
//! `FlightSqlService` impl, whose methods only hand each call on. The
//! handlers live along the protocol's seam: `statements` answers statement
//! queries and updates, prepared statements, cancellation, the handshake and
//! statement tickets; `metadata_calls` answers the metadata commands
//! (GetSqlInfo, catalogs, schemas, tables, table types, keys, cross
//! reference, Xdbc type info) from the data in [`crate::metadata`].

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::metadata::{SqlInfoData, XdbcTypeInfoData};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionCancelQueryRequest, ActionCancelQueryResult, ActionClosePreparedStatementRequest,
    ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult, CommandGetCatalogs,
    CommandGetCrossReference, CommandGetDbSchemas, CommandGetExportedKeys, CommandGetImportedKeys,
    CommandGetPrimaryKeys, CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables,
    CommandGetXdbcTypeInfo, CommandPreparedStatementQuery, CommandPreparedStatementUpdate,
    CommandStatementQuery, CommandStatementUpdate, DoPutPreparedStatementResult, SqlInfo,
    TicketStatementQuery,
};
use arrow_flight::{
    Action, FlightDescriptor, FlightInfo, HandshakeRequest, HandshakeResponse, Ticket,
};
use bluelamp_engine::{Engine, Identity, QueryError, Session};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use futures::Stream;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::Authenticator;
use crate::error::status;
use crate::metadata::{sql_info, xdbc_type_info};
use crate::tickets::Tickets;

mod metadata_calls;
mod statements;

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
            let session = self
                .engine
                .session_for(identity.clone(), "flight-sql", client.clone());
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
        self.handshake_reply(request).await
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.flight_info_statement(query, request).await
    }

    async fn get_flight_info_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.flight_info_prepared_statement(query, request).await
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.flight_info_catalogs(query, request).await
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.flight_info_schemas(query, request).await
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.flight_info_tables(query, request).await
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.flight_info_table_types(query, request).await
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.flight_info_sql_info(query, request).await
    }

    async fn get_flight_info_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.flight_info_primary_keys(query, request).await
    }

    async fn get_flight_info_exported_keys(
        &self,
        query: CommandGetExportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.flight_info_exported_keys(query, request).await
    }

    async fn get_flight_info_imported_keys(
        &self,
        query: CommandGetImportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.flight_info_imported_keys(query, request).await
    }

    async fn get_flight_info_cross_reference(
        &self,
        query: CommandGetCrossReference,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.flight_info_cross_reference(query, request).await
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.flight_info_xdbc_type_info(query, request).await
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.stream_statement(ticket, request).await
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.stream_catalogs(query, request).await
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.stream_schemas(query, request).await
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.stream_tables(query, request).await
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.stream_table_types(query, request).await
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.stream_sql_info(query, request).await
    }

    async fn do_get_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.stream_primary_keys(query, request).await
    }

    async fn do_get_exported_keys(
        &self,
        query: CommandGetExportedKeys,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.stream_exported_keys(query, request).await
    }

    async fn do_get_imported_keys(
        &self,
        query: CommandGetImportedKeys,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.stream_imported_keys(query, request).await
    }

    async fn do_get_cross_reference(
        &self,
        query: CommandGetCrossReference,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.stream_cross_reference(query, request).await
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.stream_xdbc_type_info(query, request).await
    }

    async fn do_put_statement_update(
        &self,
        ticket: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        self.put_statement_update(ticket, request).await
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        self.put_prepared_statement_query(query, request).await
    }

    async fn do_put_prepared_statement_update(
        &self,
        query: CommandPreparedStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        self.put_prepared_statement_update(query, request).await
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        self.action_create_prepared_statement(query, request).await
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        self.action_close_prepared_statement(query, request).await
    }

    #[allow(deprecated, reason = "older clients still send CancelQuery")]
    async fn do_action_cancel_query(
        &self,
        query: ActionCancelQueryRequest,
        request: Request<Action>,
    ) -> Result<ActionCancelQueryResult, Status> {
        self.action_cancel_query(query, request).await
    }

    async fn do_action_fallback(
        &self,
        request: Request<Action>,
    ) -> Result<Response<<Self as FlightService>::DoActionStream>, Status> {
        self.action_fallback(request).await
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
