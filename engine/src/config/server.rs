//! The network endpoints' settings (`[server]`): where `bluelamp serve`
//! listens for Flight SQL and (optionally) the PostgreSQL wire protocol, its TLS and mutual-TLS files, how long tokens, tickets and idle
//! sessions last, and how many rows go in each batch it sends. The table is
//! optional; [`ServerSettings::default`] is a plain-text endpoint on
//! `127.0.0.1:50051`. Relative certificate paths are resolved against the
//! config file's folder, and combinations that cannot work are refused with
//! a located error when the file is loaded.

use std::path::PathBuf;
use std::time::Duration;

use super::{ConfigError, Origin, deserialize_duration, find_key};
use serde::Deserialize;

/// The Flight SQL endpoint (`bluelamp serve`), from the optional `[server]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Address to listen on; `--listen` overrides it.
    pub listen: std::net::SocketAddr,
    /// Address for the PostgreSQL wire protocol (`psql`, BI tools); off
    /// unless set here or by `--pg-listen`. The same users (each with a
    /// `scram_sha256` verifier) and the same TLS files as Flight SQL.
    pub postgres_listen: Option<std::net::SocketAddr>,
    /// Address for operations over plain HTTP: `/metrics` (Prometheus),
    /// `/healthz` and `/readyz`; off unless set here or by
    /// `--metrics-listen`. Keep it on a network only operators reach.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// PEM certificate chain for TLS; with `tls_key`, the endpoint speaks TLS only.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// PEM CA bundle: when set, clients must present a certificate it signed
    /// (mutual TLS) in addition to their password.
    pub client_ca: Option<PathBuf>,
    /// How long a bearer token from the handshake stays valid.
    #[serde(deserialize_with = "deserialize_duration")]
    pub token_ttl: Duration,
    /// How long a query's ticket can be redeemed after `GetFlightInfo`.
    #[serde(deserialize_with = "deserialize_duration")]
    pub ticket_ttl: Duration,
    /// Rows per Arrow batch in results served over Flight SQL. Each batch is
    /// one message to the client; larger ones cost clients and the server
    /// less per row than the engine's own `batch_size`.
    pub batch_size: usize,
    /// How long a client connection's session (its `SET`s, views, stated
    /// purpose) is kept without a call before it is dropped.
    #[serde(deserialize_with = "deserialize_duration")]
    pub session_idle: Duration,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 50051)),
            postgres_listen: None,
            metrics_listen: None,
            tls_cert: None,
            tls_key: None,
            client_ca: None,
            token_ttl: Duration::from_secs(3600),
            ticket_ttl: Duration::from_secs(600),
            batch_size: 65_536,
            session_idle: Duration::from_secs(30 * 60),
        }
    }
}

/// Resolves the `[server]` table's relative paths against the config file's
/// folder and refuses settings that cannot work together.
pub(super) fn resolve_server(
    origin: &Origin,
    mut server: ServerSettings,
) -> Result<ServerSettings, ConfigError> {
    for path in [
        &mut server.tls_cert,
        &mut server.tls_key,
        &mut server.client_ca,
    ]
    .into_iter()
    .flatten()
    {
        if path.is_relative() {
            *path = origin.base_dir.join(&*path);
        }
    }
    if server.tls_cert.is_some() != server.tls_key.is_some() {
        let at = find_key(&origin.text, &(0..origin.text.len()), "tls_cert")
            .or_else(|| find_key(&origin.text, &(0..origin.text.len()), "tls_key"));
        return Err(ConfigError::invalid(
            origin,
            at,
            "server".into(),
            "`tls_cert` and `tls_key` go together: set both for TLS, or neither".into(),
        ));
    }
    if server.batch_size == 0 {
        let table = origin.text.find("[server]").unwrap_or(0);
        let at = find_key(&origin.text, &(table..origin.text.len()), "batch_size");
        return Err(ConfigError::invalid(
            origin,
            at,
            "server.batch_size".into(),
            "a batch holds at least one row".into(),
        ));
    }
    if server.client_ca.is_some() && server.tls_cert.is_none() {
        let at = find_key(&origin.text, &(0..origin.text.len()), "client_ca");
        return Err(ConfigError::invalid(
            origin,
            at,
            "server.client_ca".into(),
            "mutual TLS needs TLS: set `tls_cert` and `tls_key` too".into(),
        ));
    }
    Ok(server)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
    use std::path::PathBuf;

    use crate::config::{Config, ConfigError};

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, "bluelamp.toml", PathBuf::from("/etc/bluelamp"))
    }

    #[test]
    fn server_batches_hold_rows() {
        let config = parse("[engine]\nbatch_size = 100\n").unwrap();
        assert_eq!(config.server.batch_size, 65_536);
        let err = parse("[engine]\nbatch_size = 0\n\n[server]\nbatch_size = 0\n").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("bluelamp.toml:5:"), "{text}");
        assert!(text.contains("server.batch_size"), "{text}");
    }
}
