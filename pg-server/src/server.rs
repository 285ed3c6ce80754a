//! Binding and running the endpoint: TLS from the `[server]` certificate
//! settings (as Flight SQL uses them), the accept loop, and the registry of
//! running connections that `CancelRequest`s find their statement in.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

use bluelamp_engine::users::{UserError, Users};
use bluelamp_engine::{Engine, ServerSettings};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum PgServeError {
    /// A `[[user]]` entry is unusable.
    #[error(transparent)]
    User(#[from] UserError),
    /// No user has a SCRAM verifier, so nobody could connect.
    #[error(
        "no [[user]] has a scram_sha256 verifier, so nobody could connect over the PostgreSQL protocol: add one (`bluelamp hash-password --scram`)"
    )]
    NoUsers,
    /// Neither the config nor the command line gives an address.
    #[error("no address for the PostgreSQL protocol: set [server] postgres_listen or --pg-listen")]
    NoAddress,
    /// A TLS file cannot be read or used.
    #[error("cannot use {what} {path}: {message}")]
    TlsFile {
        /// Which file (`server.tls_cert`, ...).
        what: &'static str,
        /// Its path.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// rustls refused the certificate settings.
    #[error("cannot set up TLS for the PostgreSQL protocol: {0}")]
    Tls(String),
    /// The address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A running endpoint. Dropping it does not stop it; call
/// [`RunningPgServer::shutdown`].
pub struct RunningPgServer {
    /// The bound address (the real port when asked for port 0).
    pub addr: SocketAddr,
    /// Whether clients must use TLS (`sslmode=require`).
    pub tls: bool,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    audit: Option<bluelamp_engine::audit::AuditLog>,
}

impl RunningPgServer {
    /// Stops accepting connections, ends the open ones (their running
    /// statements are cancelled), then waits for the audit trail to hold
    /// every record they wrote.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Err(e) = (&mut self.task).await {
            tracing::warn!("PostgreSQL endpoint task failed: {e}");
        }
        if let Some(audit) = &self.audit
            && let Err(e) = audit.flush().await
        {
            tracing::error!(target: "bluelamp::audit", "{e}");
        }
    }
}

/// What every connection shares.
pub(crate) struct Shared {
    pub(crate) engine: Engine,
    pub(crate) users: Users,
    pub(crate) tls: Option<TlsAcceptor>,
    pub(crate) cancels: Cancels,
}

/// The running connections, by process id, for `CancelRequest`.
#[derive(Default)]
pub(crate) struct Cancels {
    next: AtomicI32,
    running: Mutex<HashMap<i32, (i32, CancelSlot)>>,
}

/// Where a connection keeps the token of the statement it is running.
#[derive(Clone, Default)]
pub(crate) struct CancelSlot(Arc<Mutex<Option<CancellationToken>>>);

impl CancelSlot {
    /// A token for a statement about to run; a cancel request cancels it.
    pub(crate) fn begin(&self) -> CancellationToken {
        let token = CancellationToken::new();
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(token.clone());
        }
        token
    }

    /// The statement ended: a cancel request now does nothing.
    pub(crate) fn end(&self) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = None;
        }
    }

    fn cancel(&self) {
        if let Ok(slot) = self.0.lock()
            && let Some(token) = slot.as_ref()
        {
            token.cancel();
        }
    }
}

impl Cancels {
    /// Registers a connection: its process id and secret key, as sent in
    /// `BackendKeyData`.
    pub(crate) fn register(&self, slot: CancelSlot) -> (i32, i32) {
        let mut secret = [0u8; 4];
        secret.copy_from_slice(&uuid::Uuid::new_v4().as_bytes()[..4]);
        let secret = i32::from_be_bytes(secret);
        let pid = loop {
            let pid = self.next.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
            if pid > 0 {
                break pid;
            }
        };
        if let Ok(mut running) = self.running.lock() {
            running.insert(pid, (secret, slot));
        }
        (pid, secret)
    }

    /// Forgets a closed connection.
    pub(crate) fn remove(&self, pid: i32) {
        if let Ok(mut running) = self.running.lock() {
            running.remove(&pid);
        }
    }

    /// Cancels the running statement of `pid`, when `secret` is its key.
    pub(crate) fn cancel(&self, pid: i32, secret: &[u8]) {
        let slot = self.running.lock().ok().and_then(|running| {
            running
                .get(&pid)
                .filter(|(key, _)| key.to_be_bytes().as_slice() == secret)
                .map(|(_, slot)| slot.clone())
        });
        match slot {
            Some(slot) => slot.cancel(),
            None => tracing::warn!("a cancel request named no running connection (pid {pid})"),
        }
    }
}

fn read(what: &'static str, path: &std::path::Path) -> Result<Vec<u8>, PgServeError> {
    std::fs::read(path).map_err(|e| PgServeError::TlsFile {
        what,
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

fn tls_acceptor(settings: &ServerSettings) -> Result<Option<TlsAcceptor>, PgServeError> {
    let (Some(cert_path), Some(key_path)) = (&settings.tls_cert, &settings.tls_key) else {
        return Ok(None);
    };
    let bad = |what: &'static str, path: &std::path::Path, message: String| PgServeError::TlsFile {
        what,
        path: path.display().to_string(),
        message,
    };
    let certs = CertificateDer::pem_slice_iter(&read("server.tls_cert", cert_path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad("server.tls_cert", cert_path, e.to_string()))?;
    if certs.is_empty() {
        return Err(bad(
            "server.tls_cert",
            cert_path,
            "no certificate in the file".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&read("server.tls_key", key_path)?)
        .map_err(|e| bad("server.tls_key", key_path, e.to_string()))?;
    let builder = rustls::ServerConfig::builder();
    let builder = match &settings.client_ca {
        Some(ca_path) => {
            let mut roots = rustls::RootCertStore::empty();
            for ca in CertificateDer::pem_slice_iter(&read("server.client_ca", ca_path)?) {
                let ca = ca.map_err(|e| bad("server.client_ca", ca_path, e.to_string()))?;
                roots
                    .add(ca)
                    .map_err(|e| bad("server.client_ca", ca_path, e.to_string()))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
                .build()
                .map_err(|e| PgServeError::Tls(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(certs, key)
        .map_err(|e| PgServeError::Tls(e.to_string()))?;
    Ok(Some(TlsAcceptor::from(Arc::new(config))))
}

/// Starts the PostgreSQL endpoint for `engine` on `addr` (or the config's
/// `[server] postgres_listen` when `None`), with the config's users and TLS
/// settings.
///
/// # Errors
/// [`PgServeError`] for no address, no users with a SCRAM verifier,
/// unusable TLS files, or an address that cannot be bound.
pub async fn serve(
    engine: Engine,
    addr: Option<SocketAddr>,
) -> Result<RunningPgServer, PgServeError> {
    // Two rustls crypto providers are linked (ring, and aws-lc via reqwest);
    // choose one for the whole process. A second install is a no-op error.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let settings = engine.config().server.clone();
    let addr = addr
        .or(settings.postgres_listen)
        .ok_or(PgServeError::NoAddress)?;
    let users = Users::new(&engine.config().users, settings.token_ttl)?;
    if !users.has_scram_users() {
        return Err(PgServeError::NoUsers);
    }
    let tls = tls_acceptor(&settings)?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| PgServeError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| PgServeError::Bind { addr, source })?;
    let audit = engine.audit_log().cloned();
    let uses_tls = tls.is_some();
    let shared = Arc::new(Shared {
        engine,
        users,
        tls,
        cancels: Cancels::default(),
    });
    let (tx, mut rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                _ = &mut rx => break,
                accepted = listener.accept() => match accepted {
                    Ok((socket, peer)) => {
                        connections.spawn(crate::connection::run(Arc::clone(&shared), socket, peer));
                    }
                    Err(e) => {
                        tracing::warn!("PostgreSQL endpoint: cannot accept a connection: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        connections.shutdown().await;
    });
    Ok(RunningPgServer {
        addr: local,
        tls: uses_tls,
        shutdown: Some(tx),
        task,
        audit,
    })
}
