//! `[[source]] kind = "flightsql"` options, checked without any I/O.

use std::time::Duration;

use bluelamp_engine::config::deserialize_duration;
use bluelamp_engine::{ConfigError, Secret, SourceConfig};
use serde::Deserialize;

use crate::openapi::config::OnBehalfOf;

/// Options for a Flight SQL source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlightSqlConfig {
    /// `grpc://host:port` (plain, loopback or a trusted network only) or
    /// `grpc+tls://host:port`.
    pub url: String,
    /// User name for basic authentication (traded for a bearer token in
    /// the handshake).
    #[serde(default)]
    pub user: Option<String>,
    /// Password for `user`; use `${ENV_VAR}` or `${file:PATH}`.
    #[serde(default)]
    pub password: Option<Secret>,
    /// A bearer token, instead of `user` and `password`.
    #[serde(default)]
    pub token: Option<Secret>,
    /// PEM file of the certificate authority that signed the server's
    /// certificate (default: the system's roots).
    #[serde(default)]
    pub tls_ca: Option<String>,
    /// Mutual TLS: PEM file of this client's certificate chain.
    #[serde(default)]
    pub tls_cert: Option<String>,
    /// Mutual TLS: PEM file of this client's private key.
    #[serde(default)]
    pub tls_key: Option<String>,
    /// The name the server's certificate must carry, where it differs from
    /// the URL's host.
    #[serde(default)]
    pub tls_domain: Option<String>,
    /// Only tables of this catalog.
    #[serde(default)]
    pub catalog: Option<String>,
    /// Only tables of these schemas (exact names). With one schema (or a
    /// server with one), tables keep their own names; otherwise each is
    /// named `schema_table`.
    #[serde(default)]
    pub schemas: Vec<String>,
    /// Sends each request on behalf of its end user, in this header
    /// (`Header-Name: {user}`, `{force}` too), so the remote's own policy
    /// and audit trail see who asked. A remote Bluelamp reads
    /// `x-bluelamp-on-behalf-of` from a user it lets act for others.
    #[serde(default)]
    pub on_behalf_of: Option<String>,
    /// How long to wait to connect, and for each call to answer (default
    /// `30s`); a result that is streaming may take longer.
    #[serde(default = "default_timeout", deserialize_with = "deserialize_duration")]
    pub timeout: Duration,
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

/// Whether the URL asks for TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `grpc://` (or `http://`).
    Plain,
    /// `grpc+tls://` (or `https://`).
    Tls,
}

impl FlightSqlConfig {
    /// Reads and checks `source`'s options: a URL of a known scheme, one way
    /// to authenticate, TLS files only with TLS and the certificate and
    /// key together, and a well-formed `on_behalf_of`.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file, line and key.
    pub fn read(source: &SourceConfig) -> Result<Self, ConfigError> {
        let config: Self = source.options()?;
        config.transport().map_err(|m| source.error("url", m))?;
        if config.token.is_some() && (config.user.is_some() || config.password.is_some()) {
            return Err(source.error(
                "token",
                "give either `token` or `user` and `password`, not both",
            ));
        }
        if config.user.is_some() != config.password.is_some() {
            let key = if config.user.is_some() {
                "user"
            } else {
                "password"
            };
            return Err(source.error(key, "`user` and `password` go together"));
        }
        if config.tls_cert.is_some() != config.tls_key.is_some() {
            let key = if config.tls_cert.is_some() {
                "tls_cert"
            } else {
                "tls_key"
            };
            return Err(source.error(key, "mutual TLS needs both `tls_cert` and `tls_key`"));
        }
        if config.transport() == Ok(Transport::Plain) {
            for (key, set) in [
                ("tls_ca", config.tls_ca.is_some()),
                ("tls_cert", config.tls_cert.is_some()),
                ("tls_domain", config.tls_domain.is_some()),
            ] {
                if set {
                    return Err(source.error(
                        key,
                        format!(
                            "'{}' is plain grpc://; write grpc+tls:// to use TLS",
                            config.url
                        ),
                    ));
                }
            }
        }
        if let Some(text) = &config.on_behalf_of {
            OnBehalfOf::parse(text).map_err(|m| source.error("on_behalf_of", m))?;
        }
        if config.timeout.is_zero() {
            return Err(source.error("timeout", "must be more than 0s"));
        }
        Ok(config)
    }

    /// The transport the URL's scheme asks for.
    ///
    /// # Errors
    /// A message for a URL that is not `grpc://`, `grpc+tls://`, `http://`
    /// or `https://` with a host and port.
    pub fn transport(&self) -> Result<Transport, String> {
        let url = url::Url::parse(&self.url).map_err(|e| format!("'{}': {e}", self.url))?;
        let transport = match url.scheme() {
            "grpc" | "grpc+tcp" | "http" => Transport::Plain,
            "grpc+tls" | "https" => Transport::Tls,
            other => {
                return Err(format!(
                    "'{}': scheme '{other}' is not Flight SQL's; write grpc://host:port or grpc+tls://host:port",
                    self.url
                ));
            }
        };
        if url.host_str().is_none_or(str::is_empty) || url.port().is_none() {
            return Err(format!(
                "'{}' needs a host and a port (grpc://host:port)",
                self.url
            ));
        }
        Ok(transport)
    }

    /// The URL tonic connects to (`http://` or `https://`, host and port).
    ///
    /// # Errors
    /// As [`Self::transport`].
    pub fn endpoint_url(&self) -> Result<String, String> {
        let transport = self.transport()?;
        let url = url::Url::parse(&self.url).map_err(|e| e.to_string())?;
        let host = url.host_str().unwrap_or_default();
        let port = url.port().unwrap_or_default();
        let scheme = match transport {
            Transport::Plain => "http",
            Transport::Tls => "https",
        };
        Ok(format!("{scheme}://{host}:{port}"))
    }

    /// The header that carries each request's end user, if configured.
    pub fn identity_header(&self) -> Option<OnBehalfOf> {
        self.on_behalf_of
            .as_deref()
            .and_then(|t| OnBehalfOf::parse(t).ok())
    }
}
