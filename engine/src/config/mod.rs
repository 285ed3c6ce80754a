//! `bluelamp.toml`: the typed configuration model and its loader.
//!
//! The file has engine-wide settings and one `[[source]]` table per supplier system.
//! The engine only knows a source's `name` and `kind`; the rest of the table belongs
//! to the connector for that kind, which deserializes it into its own typed config
//! with [`SourceConfig::options`]. Both halves reject unknown keys, and every error
//! names the file, the line and the key path.
//!
//! Secrets never live in the file in a real deployment: any string value may be
//! `${ENV_VAR}` (or embed it, `postgres://u:${PGPASS}@h/db`), or `${file:/run/secrets/x}`
//! to read a file. `$${` writes a literal `${`. Interpolated values are redacted from
//! every error message this module produces.
//!
//! The `access` module holds the other half: users, `[local]`, policies and `[audit]`.
//!
//! The rest is split by topic: `server` (`[server]`, the Flight SQL endpoint),
//! `telemetry` (`[telemetry]`, where traces go),
//! `source` (one `[[source]]` and source names), [`accelerate`] (a source's
//! `accelerate` tables, which the engine takes for itself), `secrets` (`${...}`
//! interpolation, [`Secret`], redaction), `duration` (`"10s"` and friends) and
//! `locate` (byte offsets to lines and keys).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub mod accelerate;
mod access;
mod duration;
mod locate;
mod secrets;
mod server;
mod size;
mod source;
mod telemetry;

pub use accelerate::{AccelerateConfig, OnStale, RefreshMode, SourceAcceleration, Storage};
pub use access::{LocalSettings, UserConfig};
pub use duration::{deserialize_duration, parse_duration};
pub use secrets::{Secret, interpolate};
pub use server::ServerSettings;
pub use size::{deserialize_required_size, deserialize_size, parse_size};
pub use source::{SourceConfig, is_plain_identifier};
pub use telemetry::TelemetrySettings;

use locate::{find_key, line_of, source_body};
use secrets::interpolate_table;
pub use secrets::redact;
use source::{take_string, validate_identifier};

use serde::Deserialize;

/// Schema names a source may not take, because the engine itself uses them.
pub const RESERVED_SCHEMAS: &[&str] = &["bluelamp", "information_schema", "public"];

/// A whole configuration file, loaded and validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// Engine-wide settings (`[engine]`).
    pub engine: EngineSettings,
    /// The Flight SQL endpoint's settings (`[server]`).
    pub server: ServerSettings,
    /// Who may connect over Flight SQL (`[[user]]`), in file order.
    pub users: Vec<UserConfig>,
    /// Who the REPL and scripts run as (`[local]`).
    pub local: LocalSettings,
    /// Access policy (`[policy]`), resolved.
    pub policy: crate::policy::Policy,
    /// The audit trail (`[audit]`).
    pub audit: crate::audit::AuditSettings,
    /// Where traces go (`[telemetry]`); off by default.
    pub telemetry: TelemetrySettings,
    /// One entry per `[[source]]`, in file order.
    pub sources: Vec<SourceConfig>,
}

/// Engine-wide settings from the optional `[engine]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineSettings {
    /// How long connecting to one source may take at start-up, e.g. `"10s"`.
    #[serde(deserialize_with = "deserialize_duration")]
    pub connect_timeout: Duration,
    /// How long after a failed connection a query may try the source again.
    #[serde(deserialize_with = "deserialize_duration")]
    pub reconnect_after: Duration,
    /// Rows per Arrow record batch inside the engine.
    pub batch_size: usize,
    /// Where the engine keeps files of its own: accelerated tables with
    /// `storage = "parquet"` (under `accelerations/`). Relative to the
    /// configuration file's folder.
    pub data_dir: Option<PathBuf>,
    /// An Apache Ballista scheduler (`"df://host:50050"`) that runs
    /// queries on its executors: plans are made, checked and audited here,
    /// then executed there (`bluelamp scheduler`, `bluelamp executor`).
    pub cluster: Option<String>,
    /// The cluster service beside the scheduler, which keeps each source's
    /// rate budget for the whole cluster and counts lost executors
    /// (`"http://host:50051"`; default: the scheduler's host and the port
    /// after the scheduler's, where `bluelamp scheduler` serves it).
    pub cluster_service: Option<String>,
    /// The most memory statements may hold at once, all sessions together
    /// (`"8GiB"`): sorts, joins and grouping spill to disk where DataFusion
    /// can, and a statement that needs more fails naming the limit while
    /// the server carries on. Default: half the machine's memory.
    #[serde(deserialize_with = "deserialize_size")]
    pub memory_limit: Option<u64>,
    /// How long one statement may run before it is stopped with an error
    /// (`"10m"`; `"0s"` for no limit). Also the most a session may set
    /// with `SET bluelamp.statement_timeout`.
    #[serde(deserialize_with = "deserialize_duration")]
    pub statement_timeout: Duration,
    /// The largest value a function may make (`repeat`, `lpad`,
    /// `array_repeat`, `range`, ...), e.g. `"64MiB"`: such values are built
    /// outside the memory pool, so they are refused before they are made.
    #[serde(deserialize_with = "deserialize_required_size")]
    pub max_value_size: u64,
    /// The role whose users see every user's statements in
    /// `bluelamp.queries` and may cancel them; others see and cancel
    /// their own.
    pub operator_role: String,
}

impl EngineSettings {
    /// `statement_timeout`, where there is one (`"0s"` means none).
    pub fn statement_limit(&self) -> Option<Duration> {
        (!self.statement_timeout.is_zero()).then_some(self.statement_timeout)
    }

    /// `memory_limit`, or half the machine's memory (4 GiB where it cannot
    /// be read).
    pub fn memory_limit_bytes(&self) -> u64 {
        self.memory_limit
            .unwrap_or_else(|| machine_memory().map_or(4 * 1024 * 1024 * 1024, |total| total / 2))
    }
}

/// The machine's memory in bytes, from `/proc/meminfo` (Linux).
fn machine_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            reconnect_after: Duration::from_secs(5),
            batch_size: 8192,
            data_dir: None,
            cluster: None,
            cluster_service: None,
            memory_limit: None,
            statement_timeout: Duration::from_secs(600),
            max_value_size: 64 * 1024 * 1024,
            operator_role: "operator".to_string(),
        }
    }
}

/// Where a configuration came from, kept so that late errors (a connector rejecting
/// an option) can still point at a file and line.
#[derive(Debug)]
struct Origin {
    file: String,
    text: String,
    base_dir: PathBuf,
    secrets: Vec<String>,
}

/// A configuration error: which file, which line, which key, and why.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The path as given.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file was read but a value in it is wrong.
    #[error("{file}{}: {}{message}", line.map(|l| format!(":{l}")).unwrap_or_default(), if key.is_empty() { String::new() } else { format!("{key}: ") })]
    Invalid {
        /// The file name (or `<inline>`).
        file: String,
        /// 1-based line, when known.
        line: Option<usize>,
        /// Key path such as `source[rms].port`.
        key: String,
        /// What is wrong and, where possible, what to do.
        message: String,
    },
}

impl ConfigError {
    fn invalid(origin: &Origin, span: Option<usize>, key: String, message: String) -> Self {
        ConfigError::Invalid {
            file: origin.file.clone(),
            line: span.map(|offset| line_of(&origin.text, offset)),
            key,
            message: redact(&message, &origin.secrets),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    engine: EngineSettings,
    #[serde(default)]
    server: ServerSettings,
    #[serde(default)]
    user: Vec<toml::Spanned<UserConfig>>,
    #[serde(default)]
    local: LocalSettings,
    #[serde(default)]
    policy: access::RawPolicy,
    #[serde(default)]
    audit: crate::audit::AuditSettings,
    #[serde(default)]
    telemetry: TelemetrySettings,
    #[serde(default)]
    source: Vec<toml::Spanned<toml::Table>>,
}

impl Config {
    /// This configuration with every source taking its rate-limit slots
    /// from `pacer` too, shared with the other processes that scan it (a
    /// cluster's executors).
    #[must_use]
    pub fn with_shared_pacer(mut self, pacer: Arc<dyn crate::source::SharedPacer>) -> Self {
        for source in &mut self.sources {
            source.pacer = Some(Arc::clone(&pacer));
        }
        self
    }

    /// The configuration as a cluster executor runs it: the same sources
    /// and policy settings, but no audit trail (the front end audits every
    /// statement; an executor appending to the same file would break its
    /// chain) and no accelerations (executors run plans, they keep no
    /// copies, and refreshing from each would multiply a supplier's load).
    #[must_use]
    pub fn for_executor(mut self) -> Self {
        self.audit.path = None;
        for source in &mut self.sources {
            source.acceleration = accelerate::SourceAcceleration::default();
        }
        self
    }

    /// Reads and validates a configuration file. Relative paths inside it are
    /// resolved against the file's folder.
    ///
    /// # Errors
    /// [`ConfigError`] if the file cannot be read, is not valid TOML, has an unknown
    /// key or bad value, or names an environment variable that is not set.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let base_dir = path
            .parent()
            .map(Path::to_path_buf)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."));
        Self::parse(&text, &path.display().to_string(), base_dir)
    }

    /// Parses configuration text. `file` names it in errors; relative paths are
    /// resolved against `base_dir`.
    ///
    /// # Errors
    /// As for [`Config::load`].
    pub fn parse(text: &str, file: &str, base_dir: PathBuf) -> Result<Self, ConfigError> {
        let mut origin = Origin {
            file: file.to_string(),
            text: text.to_string(),
            base_dir,
            secrets: Vec::new(),
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            ConfigError::invalid(
                &origin,
                e.span().map(|s| s.start),
                String::new(),
                e.message().trim().to_string(),
            )
        })?;

        let mut pending = Vec::with_capacity(raw.source.len());
        let mut seen = HashSet::new();
        for (index, spanned) in raw.source.into_iter().enumerate() {
            let span = source_body(text, spanned.span());
            let mut table = spanned.into_inner();
            let at = |key: &str| find_key(&origin.text, &span, key).or(Some(span.start));
            let name = take_string(&mut table, "name").ok_or_else(|| {
                ConfigError::invalid(
                    &origin,
                    at("name"),
                    format!("source[{index}]"),
                    "every [[source]] needs `name = \"...\"` (a string): it becomes the SQL schema name".into(),
                )
            })?;
            let key = format!("source[{name}]");
            validate_identifier(&name)
                .map_err(|m| ConfigError::invalid(&origin, at("name"), format!("{key}.name"), m))?;
            if !seen.insert(name.clone()) {
                return Err(ConfigError::invalid(
                    &origin,
                    at("name"),
                    format!("{key}.name"),
                    format!("two sources are named '{name}'; source names must be unique"),
                ));
            }
            let kind = take_string(&mut table, "kind").ok_or_else(|| {
                ConfigError::invalid(
                    &origin,
                    at("kind"),
                    format!("{key}.kind"),
                    "missing `kind = \"...\"` (a string such as \"postgres\" or \"files\")".into(),
                )
            })?;
            interpolate_table(&mut table, &mut origin.secrets).map_err(|(path, m)| {
                let first = path.split('.').next().unwrap_or_default().to_string();
                ConfigError::invalid(&origin, at(&first), format!("{key}.{path}"), m)
            })?;
            let acceleration = accelerate::take(&mut table, &origin, &span, &key)?;
            pending.push((name, kind, table, index, span, acceleration));
        }

        let users = access::parse_users(&mut origin, raw.user)?;
        for (name, _, _, _, span, acceleration) in &pending {
            let named = acceleration
                .every_table
                .iter()
                .chain(acceleration.tables.values())
                .filter_map(|a| a.as_user.as_deref());
            for user in named {
                if !users.iter().any(|u| u.name == user) {
                    return Err(ConfigError::invalid(
                        &origin,
                        find_key(&origin.text, span, "as_user"),
                        format!("source[{name}].accelerate.as_user"),
                        format!("there is no [[user]] named '{user}'"),
                    ));
                }
            }
        }
        let server = server::resolve_server(&origin, raw.server)?;
        telemetry::check(&origin, &raw.telemetry)?;

        check_engine_settings(&origin, &raw.engine, &server)?;
        let mut engine = raw.engine;
        if let Some(dir) = &mut engine.data_dir {
            *dir = origin.base_dir.join(&*dir);
        }
        for (name, _, _, _, span, acceleration) in &pending {
            let parquet = acceleration
                .every_table
                .iter()
                .chain(acceleration.tables.values())
                .any(|a| a.storage == accelerate::Storage::Parquet);
            if parquet && engine.data_dir.is_none() {
                return Err(ConfigError::invalid(
                    &origin,
                    find_key(&origin.text, span, "storage"),
                    format!("source[{name}].accelerate.storage"),
                    "storage = \"parquet\" keeps copies under the engine's data folder: \
                     add `data_dir = \"...\"` to [engine]"
                        .into(),
                ));
            }
        }
        access::check_local(&origin, &raw.local, &users)?;
        let source_names: Vec<&str> = pending.iter().map(|(n, ..)| n.as_str()).collect();
        let policy = access::resolve_policies(&mut origin, raw.policy, &users, &source_names)?;
        let audit = access::resolve_audit(&origin, raw.audit, &policy, &source_names)?;

        let origin = Arc::new(origin);
        let sources = pending
            .into_iter()
            .map(
                |(name, kind, options, index, span, acceleration)| SourceConfig {
                    name,
                    kind,
                    options,
                    origin: Arc::clone(&origin),
                    index,
                    span,
                    acceleration,
                    pacer: None,
                    metrics: None,
                },
            )
            .collect();
        Ok(Config {
            engine,
            server,
            users,
            local: raw.local,
            policy,
            audit,
            telemetry: raw.telemetry,
            sources,
        })
    }
}

/// Settings that would crash DataFusion or quietly break every session.
fn check_engine_settings(
    origin: &Origin,
    engine: &EngineSettings,
    server: &ServerSettings,
) -> Result<(), ConfigError> {
    let at = |table: &str, key: &str| {
        let start = origin.text.find(&format!("[{table}]")).unwrap_or(0);
        find_key(&origin.text, &(start..origin.text.len()), key).or(Some(start))
    };
    let checks: [(&str, &str, bool, &str); 7] = [
        (
            "engine",
            "max_value_size",
            engine.max_value_size < 1024,
            "a value limit under 1KiB would refuse ordinary text; use e.g. \"64MiB\"",
        ),
        (
            "engine",
            "operator_role",
            engine.operator_role.trim().is_empty(),
            "name the role whose users may see and cancel every statement, e.g. \"operator\"",
        ),
        (
            "engine",
            "batch_size",
            engine.batch_size == 0,
            "a batch holds at least one row",
        ),
        (
            "engine",
            "connect_timeout",
            engine.connect_timeout.is_zero(),
            "a zero timeout would mark every source down; use e.g. \"10s\"",
        ),
        (
            "server",
            "token_ttl",
            server.token_ttl.is_zero(),
            "tokens that expire at once make every client fail after the handshake; use e.g. \"1h\"",
        ),
        (
            "server",
            "ticket_ttl",
            server.ticket_ttl.is_zero(),
            "tickets that expire at once can never be redeemed; use e.g. \"10m\"",
        ),
        (
            "server",
            "session_idle",
            server.session_idle.is_zero(),
            "sessions that expire at once lose every SET and view between calls; use e.g. \"30m\"",
        ),
    ];
    for (table, key, bad, message) in checks {
        if bad {
            return Err(ConfigError::invalid(
                origin,
                at(table, key),
                format!("{table}.{key}"),
                message.to_string(),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, "bluelamp.toml", PathBuf::from("/etc/bluelamp"))
    }

    #[test]
    fn settings_that_would_crash_or_misbehave_are_refused() {
        for (text, line, key) in [
            ("[engine]\nbatch_size = 0\n", 2, "engine.batch_size"),
            (
                "[engine]\nconnect_timeout = \"0s\"\n",
                2,
                "engine.connect_timeout",
            ),
            ("[server]\ntoken_ttl = 0\n", 2, "server.token_ttl"),
            ("[server]\n\nticket_ttl = \"0ms\"\n", 3, "server.ticket_ttl"),
            ("[server]\nsession_idle = 0\n", 2, "server.session_idle"),
        ] {
            let text_err = parse(text).unwrap_err().to_string();
            assert!(
                text_err.starts_with(&format!("bluelamp.toml:{line}: {key}:")),
                "{text_err}"
            );
        }
    }

    #[test]
    fn unknown_top_level_key_names_line() {
        let err = parse("[engine]\nbatch_size = 10\ncolour = 1\n").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("bluelamp.toml:3:"), "{text}");
        assert!(text.contains("colour"), "{text}");
    }
}
