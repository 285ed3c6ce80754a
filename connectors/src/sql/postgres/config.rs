//! `kind = "postgres"`: the options, read and checked without I/O.

use bluelamp_engine::Secret;
use serde::Deserialize;

/// Options for a PostgreSQL source; each remote table in `schema` becomes a table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// Host name or address (default `127.0.0.1`).
    #[serde(default = "default_host")]
    pub host: String,
    /// Port (default 5432).
    #[serde(default = "default_port")]
    pub port: u16,
    /// User name.
    pub user: String,
    /// Password; use `${ENV_VAR}` or `${file:PATH}`.
    pub password: Option<Secret>,
    /// Database name.
    pub database: String,
    /// The remote schema whose tables are exposed (default `public`).
    #[serde(default = "default_schema")]
    pub schema: String,
    /// TLS (default `prefer`).
    #[serde(default)]
    pub sslmode: PostgresSslMode,
    /// CA certificate file for `verify-ca`/`verify-full`.
    pub sslrootcert: Option<String>,
    /// Connections in the pool.
    pub pool_size: Option<std::num::NonZeroU32>,
    /// Columns of types with no Arrow mapping (e.g. `jsonb`): `string` (default)
    /// reads them as text, `error` fails the table.
    #[serde(default)]
    pub unsupported_types: UnsupportedTypes,
}

/// `sslmode` for PostgreSQL, as libpq names its modes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PostgresSslMode {
    /// No TLS.
    Disable,
    /// TLS where the server offers it.
    #[default]
    Prefer,
    /// TLS, without checking the certificate.
    Require,
    /// TLS with a certificate signed by `sslrootcert`.
    VerifyCa,
    /// As `verify-ca`, and the certificate names the host.
    VerifyFull,
}

impl PostgresSslMode {
    /// As libpq spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

/// What to do with a column whose database type has no Arrow mapping.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnsupportedTypes {
    /// Read it as text.
    #[default]
    String,
    /// Fail the table with an error naming the column.
    Error,
}

fn default_host() -> String {
    "127.0.0.1".into()
}
fn default_port() -> u16 {
    5432
}
fn default_schema() -> String {
    "public".into()
}
