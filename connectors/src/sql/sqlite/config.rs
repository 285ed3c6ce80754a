//! `kind = "sqlite"`: the options, read and checked without I/O.

use std::time::Duration;

use bluelamp_engine::config::deserialize_duration;
use serde::Deserialize;

/// Options for a SQLite source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqliteConfig {
    /// The database file, relative to the config file's folder. It must exist:
    /// a mistyped path must not silently create an empty database.
    pub path: String,
    /// How long to wait on a locked database (default `5s`).
    #[serde(
        default = "default_busy_timeout",
        deserialize_with = "deserialize_duration"
    )]
    pub busy_timeout: Duration,
}

fn default_busy_timeout() -> Duration {
    Duration::from_secs(5)
}
