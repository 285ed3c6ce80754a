//! One client connection: TLS negotiation, the start-up message, the
//! SCRAM-SHA-256 exchange, then the message loop that hands statements to
//! [`crate::statements`]. A `CancelRequest` arrives on a connection of its
//! own and is answered by closing it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bluelamp_engine::Identity;
use bluelamp_engine::scram::{MECHANISM, ScramError};
use bytes::BytesMut;
use pgwire::messages::response::{ReadyForQuery, TransactionStatus};
use pgwire::messages::startup::{
    Authentication, BackendKeyData, NegotiateProtocolVersion, ParameterStatus, SecretKey, Startup,
};
use pgwire::messages::{
    DecodeContext, PgWireBackendMessage, PgWireFrontendMessage, SslNegotiationMetaMessage,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::errors::code;
use crate::server::{CancelSlot, Shared};
use crate::statements::Conn;
use crate::wire::{Io, PgError, Wire, WireError};

/// How long a client has to start up and authenticate.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// The database a client names: Bluelamp's one catalog.
pub(crate) const DATABASE: &str = bluelamp_engine::session::CATALOG;

/// Serves one accepted socket until it closes.
pub(crate) async fn run(shared: Arc<Shared>, socket: TcpStream, peer: SocketAddr) {
    let _ = socket.set_nodelay(true);
    let started = tokio::time::timeout(STARTUP_TIMEOUT, start(&shared, socket, peer)).await;
    let conn = match started {
        Ok(Ok(Some(conn))) => conn,
        Ok(Ok(None)) => return,
        Ok(Err(e)) => {
            tracing::debug!("PostgreSQL connection from {peer} ended during start-up: {e}");
            return;
        }
        Err(_) => {
            tracing::info!("PostgreSQL connection from {peer} did not start up within 60 s");
            return;
        }
    };
    let pid = conn.pid();
    if let Err(e) = conn.serve().await {
        tracing::debug!("PostgreSQL connection from {peer} ended: {e}");
    }
    shared.cancels.remove(pid);
}

/// Reads one message in the negotiation phase from a raw socket.
async fn read_negotiation(
    socket: &mut TcpStream,
    input: &mut BytesMut,
    context: &DecodeContext,
) -> Result<Option<PgWireFrontendMessage>, WireError> {
    loop {
        match PgWireFrontendMessage::decode(input, context) {
            Ok(Some(message)) => return Ok(Some(message)),
            Ok(None) => {}
            Err(e) => return Err(WireError::Protocol(e.to_string())),
        }
        if socket.read_buf(input).await? == 0 {
            return Ok(None);
        }
    }
}

/// Negotiates TLS: answers `SSLRequest` and `GSSENCRequest`, accepts a
/// direct TLS hello, and returns the stream with what has been read of the
/// start-up message.
async fn negotiate(
    shared: &Shared,
    mut socket: TcpStream,
) -> Result<Option<(Box<dyn Io>, BytesMut, bool)>, WireError> {
    let mut input = BytesMut::with_capacity(1024);
    let context = DecodeContext::default();
    // A TLS ClientHello first (PostgreSQL 17's sslnegotiation=direct).
    let mut first = [0u8; 1];
    if socket.peek(&mut first).await? == 0 {
        return Ok(None);
    }
    if first[0] == 0x16 {
        let Some(tls) = &shared.tls else {
            return Err(WireError::Protocol(
                "a TLS handshake arrived but this server has no TLS certificate".into(),
            ));
        };
        let stream = tls.accept(socket).await?;
        return Ok(Some((Box::new(stream), input, true)));
    }
    loop {
        let Some(message) = read_negotiation(&mut socket, &mut input, &context).await? else {
            return Ok(None);
        };
        match message {
            PgWireFrontendMessage::SslNegotiation(SslNegotiationMetaMessage::PostgresSsl(_)) => {
                let Some(tls) = &shared.tls else {
                    socket.write_all(b"N").await?;
                    continue;
                };
                if !input.is_empty() {
                    // Bytes sent before the handshake would be read as if
                    // they came over TLS.
                    return Err(WireError::Protocol(
                        "data arrived after SSLRequest before the TLS handshake".into(),
                    ));
                }
                socket.write_all(b"S").await?;
                let stream = tls.accept(socket).await?;
                return Ok(Some((Box::new(stream), input, true)));
            }
            PgWireFrontendMessage::SslNegotiation(SslNegotiationMetaMessage::PostgresGss(_)) => {
                socket.write_all(b"N").await?;
            }
            // A start-up or cancel request: read it in the next phase.
            _ => return Ok(Some((Box::new(socket), input, false))),
        }
    }
}

/// From an accepted socket to an authenticated connection, or `None` for a
/// cancel request or a client that gave up.
async fn start(
    shared: &Arc<Shared>,
    socket: TcpStream,
    peer: SocketAddr,
) -> Result<Option<Conn>, WireError> {
    let Some((io, input, secure)) = negotiate(shared, socket).await? else {
        return Ok(None);
    };
    let mut wire = Wire::new(io, input, secure);
    let startup = match wire.read().await? {
        Some(PgWireFrontendMessage::CancelRequest(cancel)) => {
            shared
                .cancels
                .cancel(cancel.pid, cancel.secret_key.to_bytes().as_ref());
            wire.close().await;
            return Ok(None);
        }
        Some(PgWireFrontendMessage::Startup(startup)) => startup,
        Some(_) => {
            wire.fail(&PgError::fatal(
                code::PROTOCOL_VIOLATION,
                "expected a start-up message",
            ))
            .await;
            return Ok(None);
        }
        None => return Ok(None),
    };
    wire.context.awaiting_frontend_startup = false;
    if shared.tls.is_some() && !wire.secure {
        wire.fail(&PgError::fatal(
            code::INVALID_AUTHORIZATION,
            "this server accepts only TLS connections: connect with sslmode=require",
        ))
        .await;
        return Ok(None);
    }
    let Some(user) = check_startup(&mut wire, &startup).await else {
        return Ok(None);
    };
    let Some(identity) = authenticate(shared, &mut wire, &user, peer).await? else {
        return Ok(None);
    };
    let slot = CancelSlot::default();
    let (pid, secret) = shared.cancels.register(slot.clone());
    let session = shared
        .engine
        .session_for(identity, "postgres", Some(peer.to_string()));
    let cursors = crate::catalog::OpenCursors::default();
    let system: [(&str, Arc<dyn datafusion::catalog::SchemaProvider>); 2] = [
        (
            crate::catalog::PG_CATALOG,
            Arc::new(crate::catalog::PgCatalogSchema::new(Arc::clone(&cursors))),
        ),
        (
            crate::catalog::INFORMATION_SCHEMA,
            Arc::new(crate::catalog::PgInformationSchema),
        ),
    ];
    for (name, schema) in system {
        if let Err(e) = session.add_schema(name, schema) {
            // A source of that name: clients then read it, not the catalog.
            tracing::warn!("PostgreSQL session without {name}: {e}");
        }
    }
    session.add_functions(crate::functions::all(&user, pid));
    let mut conn = Conn::new(wire, session, pid, slot, cursors, &startup.parameters);
    for (name, value) in conn.reported_parameters() {
        conn.wire
            .push(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(
                name, value,
            )));
    }
    conn.wire
        .push(PgWireBackendMessage::BackendKeyData(BackendKeyData::new(
            pid,
            SecretKey::I32(secret),
        )));
    conn.wire
        .push(PgWireBackendMessage::ReadyForQuery(ReadyForQuery::new(
            TransactionStatus::Idle,
        )));
    conn.wire.flush().await?;
    Ok(Some(conn))
}

/// Checks the start-up message: protocol version, user, database and
/// encoding. Returns the user, or `None` after telling the client why not.
async fn check_startup(wire: &mut Wire, startup: &Startup) -> Option<String> {
    let refuse = |code, message: String| PgError::fatal(code, message);
    if startup.protocol_number_major != 3 {
        let e = refuse(
            code::FEATURE_NOT_SUPPORTED,
            format!(
                "unsupported frontend protocol {}.{}: Bluelamp speaks protocol 3.0",
                startup.protocol_number_major, startup.protocol_number_minor
            ),
        );
        send_fatal(wire, &e).await;
        return None;
    }
    let unsupported: Vec<String> = startup
        .parameters
        .keys()
        .filter(|k| k.starts_with("_pq_."))
        .cloned()
        .collect();
    if startup.protocol_number_minor > 0 || !unsupported.is_empty() {
        wire.push(PgWireBackendMessage::NegotiateProtocolVersion(
            NegotiateProtocolVersion::new(0, unsupported),
        ));
    }
    let Some(user) = startup.parameters.get("user").filter(|u| !u.is_empty()) else {
        let e = refuse(
            code::INVALID_AUTHORIZATION,
            "no user name in the start-up message".into(),
        );
        send_fatal(wire, &e).await;
        return None;
    };
    let database = startup.parameters.get("database").unwrap_or(user);
    if database != DATABASE {
        let e = refuse(
            code::UNDEFINED_DATABASE,
            format!("database \"{database}\" does not exist: connect to database \"{DATABASE}\""),
        );
        send_fatal(wire, &e).await;
        return None;
    }
    if let Some(encoding) = startup.parameters.get("client_encoding")
        && let Err(why) = crate::statements::check_encoding(encoding)
    {
        send_fatal(wire, &refuse(code::INVALID_PARAMETER_VALUE, why)).await;
        return None;
    }
    Some(user.clone())
}

async fn send_fatal(wire: &mut Wire, error: &PgError) {
    wire.push_error(error);
    let _ = wire.flush().await;
}

/// Runs the SCRAM-SHA-256 exchange. Returns the identity, or `None` after
/// telling the client the password was wrong.
async fn authenticate(
    shared: &Shared,
    wire: &mut Wire,
    user: &str,
    peer: SocketAddr,
) -> Result<Option<Identity>, WireError> {
    let failed = PgError::fatal(
        code::INVALID_PASSWORD,
        format!("password authentication failed for user \"{user}\""),
    );
    let (mut exchange, known) = shared.users.scram_exchange(user);
    wire.push(PgWireBackendMessage::Authentication(Authentication::SASL(
        vec![MECHANISM.to_string()],
    )));
    let Some(PgWireFrontendMessage::PasswordMessageFamily(message)) = wire.read().await? else {
        return Ok(None);
    };
    let initial = match message.into_sasl_initial_response() {
        Ok(initial) if initial.auth_method == MECHANISM => initial,
        _ => {
            send_fatal(
                wire,
                &PgError::fatal(
                    code::INVALID_AUTHORIZATION,
                    format!("only {MECHANISM} authentication is offered"),
                ),
            )
            .await;
            return Ok(None);
        }
    };
    let malformed = |e: ScramError| PgError::fatal(code::PROTOCOL_VIOLATION, e.to_string());
    let first = match exchange.client_first(initial.data.as_deref().unwrap_or_default()) {
        Ok(first) => first,
        Err(e) => {
            send_fatal(wire, &malformed(e)).await;
            return Ok(None);
        }
    };
    wire.push(PgWireBackendMessage::Authentication(
        Authentication::SASLContinue(first.into_bytes().into()),
    ));
    let Some(PgWireFrontendMessage::PasswordMessageFamily(message)) = wire.read().await? else {
        return Ok(None);
    };
    let response = match message.into_sasl_response() {
        Ok(response) => response,
        Err(e) => {
            send_fatal(
                wire,
                &PgError::fatal(code::PROTOCOL_VIOLATION, e.to_string()),
            )
            .await;
            return Ok(None);
        }
    };
    match exchange.client_final(&response.data) {
        Ok(last) if known => {
            wire.push(PgWireBackendMessage::Authentication(
                Authentication::SASLFinal(last.into_bytes().into()),
            ));
            wire.push(PgWireBackendMessage::Authentication(Authentication::Ok));
            tracing::info!(target: "bluelamp::audit", user = %user, peer = %peer, "postgres login");
            Ok(Some(Identity::new(user, "scram-sha-256")))
        }
        Ok(_) | Err(ScramError::WrongProof) => {
            let why = shared
                .users
                .scram_unavailable(user)
                .unwrap_or_else(|| "wrong password".to_string());
            tracing::warn!(target: "bluelamp::audit", user = %user, peer = %peer, "postgres login refused: {why}");
            send_fatal(wire, &failed).await;
            Ok(None)
        }
        Err(e) => {
            send_fatal(wire, &malformed(e)).await;
            Ok(None)
        }
    }
}
