//! Binding and running the endpoint: plain gRPC, TLS, or mutual TLS, from
//! the `[server]` settings.

use std::net::SocketAddr;
use std::sync::Arc;

use arrow_flight::flight_service_server::FlightServiceServer;
use bluelamp_engine::{Engine, ServerSettings};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity as TlsIdentity, Server, ServerTlsConfig};

use crate::auth::{Authenticator, UserError};
use crate::direct::FlightEndpoint;
use crate::service::{BluelampFlightSql, MAX_MESSAGE};

/// HTTP/2 flow-control window per stream and per connection.
const WINDOW: u32 = 16 * 1024 * 1024;

/// Largest message a client may send (bound parameters, inserted rows).
const MAX_DECODING: usize = 64 * 1024 * 1024;

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A `[[user]]` entry is unusable.
    #[error(transparent)]
    User(#[from] UserError),
    /// No users are configured, so nobody could connect.
    #[error(
        "no [[user]] entries in the config: add one (make a hash with `bluelamp hash-password`)"
    )]
    NoUsers,
    /// A TLS file cannot be read.
    #[error("cannot read {what} {path}: {source}")]
    TlsFile {
        /// Which file (`server.tls_cert`, ...).
        what: &'static str,
        /// Its path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// tonic rejected the setup (for example a malformed certificate).
    #[error("cannot start the Flight SQL endpoint: {0}")]
    Transport(String),
}

/// A running endpoint. Dropping it does not stop it; call [`RunningServer::shutdown`].
pub struct RunningServer {
    /// The bound address (the real port when asked for port 0).
    pub addr: SocketAddr,
    /// Whether clients must use TLS.
    pub tls: bool,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
    /// Flushed once the endpoint has stopped, so the trail holds every call.
    audit: Option<bluelamp_engine::audit::AuditLog>,
}

impl RunningServer {
    /// Stops accepting calls, waits for the server task to end, then for the
    /// audit trail to hold every record its calls wrote.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match (&mut self.task).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("Flight SQL endpoint stopped with an error: {e}"),
            Err(e) => tracing::warn!("Flight SQL endpoint task failed: {e}"),
        }
        if let Some(audit) = &self.audit
            && let Err(e) = audit.flush().await
        {
            tracing::error!(target: "bluelamp::audit", "{e}");
        }
    }
}

fn read(what: &'static str, path: &std::path::Path) -> Result<Vec<u8>, ServeError> {
    std::fs::read(path).map_err(|source| ServeError::TlsFile {
        what,
        path: path.display().to_string(),
        source,
    })
}

fn tls_config(settings: &ServerSettings) -> Result<Option<ServerTlsConfig>, ServeError> {
    let (Some(cert), Some(key)) = (&settings.tls_cert, &settings.tls_key) else {
        return Ok(None);
    };
    let identity =
        TlsIdentity::from_pem(read("server.tls_cert", cert)?, read("server.tls_key", key)?);
    let mut config = ServerTlsConfig::new().identity(identity);
    if let Some(ca) = &settings.client_ca {
        config = config.client_ca_root(Certificate::from_pem(read("server.client_ca", ca)?));
    }
    Ok(Some(config))
}

/// Starts the Flight SQL endpoint for `engine` on `addr` (or the config's
/// `[server] listen` when `None`), with the config's users and TLS settings.
///
/// # Errors
/// [`ServeError`] for no or bad users, unreadable TLS files, or an address
/// that cannot be bound.
pub async fn serve(engine: Engine, addr: Option<SocketAddr>) -> Result<RunningServer, ServeError> {
    // Two rustls crypto providers are linked (ring here, aws-lc via reqwest);
    // choose one for the whole process. A second install is a no-op error.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let settings = engine.config().server.clone();
    if engine.config().users.is_empty() {
        return Err(ServeError::NoUsers);
    }
    let auth = Authenticator::new(&engine.config().users, settings.token_ttl)?;
    let tls = tls_config(&settings)?;
    let addr = addr.unwrap_or(settings.listen);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| ServeError::Bind { addr, source })?;
    let audit = engine.audit_log().cloned();
    let service = Arc::new(
        BluelampFlightSql::new(engine, auth)
            .map_err(|e| ServeError::Transport(e.message().to_string()))?,
    );
    let generated =
        FlightServiceServer::from_arc(Arc::clone(&service)).max_decoding_message_size(MAX_DECODING);
    let service = FlightEndpoint::new(service, generated, MAX_MESSAGE);
    // Results are large one-way streams: HTTP/2's default 64 KiB windows would
    // make the client acknowledge every few batches.
    let mut builder = Server::builder()
        .initial_stream_window_size(WINDOW)
        .initial_connection_window_size(WINDOW)
        .max_frame_size(1 << 20);
    let uses_tls = tls.is_some();
    if let Some(tls) = tls {
        builder = builder
            .tls_config(tls)
            .map_err(|e| ServeError::Transport(e.to_string()))?;
    }
    let (tx, rx) = oneshot::channel::<()>();
    let router = builder.add_service(service);
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let task = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async {
        let _ = rx.await;
    }));
    Ok(RunningServer {
        addr: local,
        tls: uses_tls,
        shutdown: Some(tx),
        task,
        audit,
    })
}
