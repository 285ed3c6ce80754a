//! `kind = "mysql"`: the options, read and checked without I/O.

use bluelamp_engine::Secret;
use serde::Deserialize;

/// Options for a MySQL or MariaDB source; every table of `database` becomes a table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MySqlConfig {
    /// Host name or address (default `127.0.0.1`).
    #[serde(default = "default_host")]
    pub host: String,
    /// Port (default 3306).
    #[serde(default = "default_port")]
    pub port: u16,
    /// User name.
    pub user: String,
    /// Password; use `${ENV_VAR}` or `${file:PATH}`.
    pub password: Option<Secret>,
    /// Database (schema) whose tables are exposed.
    pub database: String,
    /// TLS (default `preferred`).
    #[serde(default)]
    pub sslmode: MySqlSslMode,
    /// CA certificate file for `required`.
    pub sslrootcert: Option<String>,
    /// Most connections in the pool (`pool_max` is read as the same).
    #[serde(alias = "pool_max")]
    pub pool_size: Option<std::num::NonZeroU32>,
}

/// `sslmode` for MySQL and MariaDB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MySqlSslMode {
    /// No TLS.
    Disabled,
    /// TLS where the server offers it.
    #[default]
    Preferred,
    /// TLS or no connection.
    Required,
}

impl MySqlSslMode {
    /// As the driver's option spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disabled => "disabled",
            Self::Preferred => "preferred",
            Self::Required => "required",
        }
    }
}

fn default_host() -> String {
    "127.0.0.1".into()
}
fn default_port() -> u16 {
    3306
}
