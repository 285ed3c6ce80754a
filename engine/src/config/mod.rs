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

use std::collections::HashSet;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

mod access;

pub use access::{LocalSettings, UserConfig};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

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
    /// One entry per `[[source]]`, in file order.
    pub sources: Vec<SourceConfig>,
}

/// The Flight SQL endpoint (`bluelamp serve`), from the optional `[server]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Address to listen on; `--listen` overrides it.
    pub listen: std::net::SocketAddr,
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
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            reconnect_after: Duration::from_secs(5),
            batch_size: 8192,
        }
    }
}

/// One `[[source]]`: a supplier system that becomes a SQL schema.
#[derive(Clone)]
pub struct SourceConfig {
    /// The SQL schema name, e.g. `rms` for `rms.crimes`.
    pub name: String,
    /// The connector kind, e.g. `postgres`, `files`.
    pub kind: String,
    options: toml::Table,
    origin: Arc<Origin>,
    index: usize,
    span: Range<usize>,
}

impl fmt::Debug for SourceConfig {
    // Options may hold interpolated secrets, so they are never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceConfig")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
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

/// A secret string from the config (password, token). Its `Debug` and `Display`
/// never show the value; call [`Secret::expose`] at the one place it is sent.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret value itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
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
    source: Vec<toml::Spanned<toml::Table>>,
}

impl Config {
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
            pending.push((name, kind, table, index, span));
        }

        let users = access::parse_users(&mut origin, raw.user)?;
        let mut server = raw.server;
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
                &origin,
                at,
                "server".into(),
                "`tls_cert` and `tls_key` go together: set both for TLS, or neither".into(),
            ));
        }
        if server.batch_size == 0 {
            let table = origin.text.find("[server]").unwrap_or(0);
            let at = find_key(&origin.text, &(table..origin.text.len()), "batch_size");
            return Err(ConfigError::invalid(
                &origin,
                at,
                "server.batch_size".into(),
                "a batch holds at least one row".into(),
            ));
        }
        if server.client_ca.is_some() && server.tls_cert.is_none() {
            let at = find_key(&origin.text, &(0..origin.text.len()), "client_ca");
            return Err(ConfigError::invalid(
                &origin,
                at,
                "server.client_ca".into(),
                "mutual TLS needs TLS: set `tls_cert` and `tls_key` too".into(),
            ));
        }

        check_engine_settings(&origin, &raw.engine, &server)?;
        access::check_local(&origin, &raw.local, &users)?;
        let source_names: Vec<&str> = pending.iter().map(|(n, ..)| n.as_str()).collect();
        let policy = access::resolve_policies(&mut origin, raw.policy, &users, &source_names)?;
        let audit = access::resolve_audit(&origin, raw.audit, &policy, &source_names)?;

        let origin = Arc::new(origin);
        let sources = pending
            .into_iter()
            .map(|(name, kind, options, index, span)| SourceConfig {
                name,
                kind,
                options,
                origin: Arc::clone(&origin),
                index,
                span,
            })
            .collect();
        Ok(Config {
            engine: raw.engine,
            server,
            users,
            local: raw.local,
            policy,
            audit,
            sources,
        })
    }
}

impl SourceConfig {
    /// Builds a source config in code (tests, the demo force). `options` is the
    /// kind-specific part of the table, as it would appear in the file.
    ///
    /// # Errors
    /// [`ConfigError`] if `name` is not a usable schema name.
    pub fn new(
        name: impl Into<String>,
        kind: impl Into<String>,
        options: toml::Table,
    ) -> Result<Self, ConfigError> {
        let name = name.into();
        let origin = Arc::new(Origin {
            file: "<built-in>".into(),
            text: String::new(),
            base_dir: PathBuf::from("."),
            secrets: Vec::new(),
        });
        validate_identifier(&name)
            .map_err(|m| ConfigError::invalid(&origin, None, format!("source[{name}].name"), m))?;
        Ok(Self {
            name,
            kind: kind.into(),
            options,
            origin,
            index: 0,
            span: 0..0,
        })
    }

    /// Deserializes the kind-specific options into the connector's typed config.
    /// Connector configs should use `#[serde(deny_unknown_fields)]`.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the file, line and key path of the first
    /// unknown key or bad value.
    pub fn options<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        let value = toml::Value::Table(self.options.clone());
        serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            let message = e.into_inner().to_string();
            // serde names an unknown field only in its message; point the line at it.
            let first = unknown_field(&message)
                .or_else(|| path.split(['.', '[']).next().map(str::to_string))
                .unwrap_or_default();
            let key = if path.is_empty() {
                format!("source[{}]", self.name)
            } else {
                format!("source[{}].{path}", self.name)
            };
            let at = find_key(&self.origin.text, &self.span, &first).or(if self.span.is_empty() {
                None
            } else {
                Some(self.span.start)
            });
            ConfigError::invalid(&self.origin, at, key, message)
        })
    }

    /// An error about this source's option `key`, located in the file.
    pub fn error(&self, key: &str, message: impl Into<String>) -> ConfigError {
        let first = key.split(['.', '[']).next().unwrap_or_default();
        let at = find_key(&self.origin.text, &self.span, first)
            .or((!self.span.is_empty()).then_some(self.span.start));
        ConfigError::invalid(
            &self.origin,
            at,
            format!("source[{}].{key}", self.name),
            message.into(),
        )
    }

    /// Resolves a path option relative to the config file's folder.
    pub fn resolve_path(&self, path: &str) -> PathBuf {
        let p = Path::new(path);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.origin.base_dir.join(p)
        }
    }

    /// A copy with one option set, for a tool that reads the source another
    /// way (certification walks a list again in smaller pages).
    pub fn with_option(&self, key: &str, value: toml::Value) -> Self {
        let mut copy = self.clone();
        copy.options.insert(key.to_string(), value);
        copy
    }

    /// Removes every interpolated secret from a message (for connector errors).
    pub fn redact(&self, message: &str) -> String {
        redact(message, &self.origin.secrets)
    }

    /// Position of this source in the file (0-based), for stable ordering.
    pub fn index(&self) -> usize {
        self.index
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
    let checks: [(&str, &str, bool, &str); 5] = [
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

fn take_string(table: &mut toml::Table, key: &str) -> Option<String> {
    match table.remove(key) {
        Some(toml::Value::String(s)) => Some(s),
        _ => None,
    }
}

/// Whether SQL reads `name` as written without quotes: lower case letters,
/// digits and `_`, not starting with a digit.
pub fn is_plain_identifier(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Source names become unquoted SQL identifiers, so keep them simple and lower case.
fn validate_identifier(name: &str) -> Result<(), String> {
    if !is_plain_identifier(name) {
        return Err(format!(
            "'{name}' is not a valid source name: use lower-case letters, digits and _, starting with a letter"
        ));
    }
    if RESERVED_SCHEMAS.contains(&name) {
        return Err(format!(
            "'{name}' is reserved by the engine; choose another source name"
        ));
    }
    Ok(())
}

/// Replaces `${VAR}` and `${file:PATH}` in every string of the table, recording the
/// substituted values so they can be redacted later. Returns the key path on error.
fn interpolate_table(
    table: &mut toml::Table,
    secrets: &mut Vec<String>,
) -> Result<(), (String, String)> {
    for (key, value) in table.iter_mut() {
        interpolate_value(value, secrets).map_err(|(sub, m)| {
            let path = if sub.is_empty() {
                key.clone()
            } else if sub.starts_with('[') {
                format!("{key}{sub}")
            } else {
                format!("{key}.{sub}")
            };
            (path, m)
        })?;
    }
    Ok(())
}

fn interpolate_value(
    value: &mut toml::Value,
    secrets: &mut Vec<String>,
) -> Result<(), (String, String)> {
    match value {
        toml::Value::String(s) => {
            *s = interpolate(s, secrets).map_err(|m| (String::new(), m))?;
            Ok(())
        }
        toml::Value::Table(t) => interpolate_table(t, secrets),
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate_value(item, secrets).map_err(|(sub, m)| {
                    let sub = if sub.is_empty() || sub.starts_with('[') {
                        sub
                    } else {
                        format!(".{sub}")
                    };
                    (format!("[{i}]{sub}"), m)
                })?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Expands `${NAME}`, `${file:PATH}` and the escape `$${` in one string.
pub fn interpolate(input: &str, secrets: &mut Vec<String>) -> Result<String, String> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(stripped) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = stripped;
            continue;
        }
        let Some(body) = after.strip_prefix("${") else {
            out.push('$');
            rest = &after[1..];
            continue;
        };
        let Some(end) = body.find('}') else {
            return Err("unterminated `${` (write `$${` for a literal `${`)".into());
        };
        let reference = &body[..end];
        let value = if let Some(path) = reference.strip_prefix("file:") {
            std::fs::read_to_string(path)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
                .map_err(|e| format!("cannot read secret file {path}: {e}"))?
        } else {
            let valid = !reference.is_empty()
                && reference
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(format!(
                    "`${{{reference}}}` is not a valid reference: use ${{ENV_VAR}} or ${{file:PATH}}"
                ));
            }
            std::env::var(reference).map_err(|_| {
                format!("environment variable {reference} is not set (it is referenced as ${{{reference}}})")
            })?
        };
        if !value.is_empty() {
            secrets.push(value.clone());
        }
        out.push_str(&value);
        rest = &body[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn redact(message: &str, secrets: &[String]) -> String {
    let mut out = message.to_string();
    for secret in secrets {
        if !secret.is_empty() {
            out = out.replace(secret.as_str(), "***");
        }
    }
    out
}

/// TOML spans an `[[source]]` entry by its header only; its body runs until the
/// next header that is not one of its own sub-tables (`[source.tables.x]`).
fn source_body(text: &str, header: Range<usize>) -> Range<usize> {
    let mut offset = header.end;
    for line in text
        .get(header.end..)
        .unwrap_or_default()
        .split_inclusive('\n')
    {
        let trimmed = line.trim_start();
        let own = trimmed.starts_with("[source.") || trimmed.starts_with("[[source.");
        if trimmed.starts_with('[') && !own && offset > header.end {
            break;
        }
        offset += line.len();
    }
    header.start..offset
}

fn line_of(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    text.as_bytes()[..offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Finds the line where `key` is assigned inside a source's span, so errors from a
/// connector's typed config still point at the right line.
fn find_key(text: &str, span: &Range<usize>, key: &str) -> Option<usize> {
    if key.is_empty() || span.end > text.len() || span.is_empty() {
        return None;
    }
    let body = text.get(span.clone())?;
    let mut offset = span.start;
    for line in body.split_inclusive('\n') {
        let trimmed = line.trim_start();
        let candidate = trimmed
            .strip_prefix(key)
            .or_else(|| trimmed.strip_prefix(&format!("\"{key}\"")));
        if let Some(after) = candidate {
            let after = after.trim_start();
            if after.starts_with('=') || after.starts_with('.') {
                return Some(offset);
            }
        }
        // A nested table header such as `[source.tables.x]` also counts.
        if trimmed.starts_with('[') && trimmed.contains(&format!(".{key}")) {
            return Some(offset);
        }
        offset += line.len();
    }
    None
}

fn unknown_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.find('`').map(|end| rest[..end].to_string())
}

/// Parses durations written as `"500ms"`, `"10s"`, `"2m"`, `"1h"` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (number, unit) = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map_or((t, "s"), |i| (&t[..i], t[i..].trim()));
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a duration (try \"500ms\", \"10s\", \"2m\")"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" | "" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "unknown duration unit '{other}' in '{text}' (use ms, s, m or h)"
            ));
        }
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(format!("'{text}' is not a valid duration"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Serde adapter for durations given as strings (`"10s"`) or integer seconds.
///
/// # Errors
/// A serde error if the value is neither.
pub fn deserialize_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Seconds(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Seconds(s) => Ok(Duration::from_secs(s)),
        Raw::Text(t) => parse_duration(&t).map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, "bluelamp.toml", PathBuf::from("/etc/bluelamp"))
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code, reason = "fields are read by Debug in assertions")]
    struct PgOptions {
        host: String,
        port: u16,
        password: Option<Secret>,
    }

    #[test]
    fn parses_sources_and_engine_settings() {
        let config = parse(
            "[engine]\nconnect_timeout = \"3s\"\n\n[[source]]\nname = \"rms\"\nkind = \"postgres\"\nhost = \"db\"\nport = 5432\n",
        )
        .unwrap();
        assert_eq!(config.engine.connect_timeout, Duration::from_secs(3));
        assert_eq!(config.sources.len(), 1);
        let pg: PgOptions = config.sources[0].options().unwrap();
        assert_eq!(pg.port, 5432);
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

    #[test]
    fn unknown_source_key_names_line_and_path() {
        let config = parse(
            "[[source]]\nname = \"a\"\nkind = \"files\"\n\n[[source]]\nname = \"rms\"\nkind = \"postgres\"\nhost = \"db\"\nport = 5432\nprot = 1\n",
        )
        .unwrap();
        let err = config.sources[1].options::<PgOptions>().unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("bluelamp.toml:10: source[rms]"), "{text}");
        assert!(text.contains("unknown field `prot`"), "{text}");
    }

    #[test]
    fn bad_value_names_key_path() {
        let config =
            parse("[[source]]\nname = \"rms\"\nkind = \"postgres\"\nhost = \"db\"\nport = \"x\"\n")
                .unwrap();
        let text = config.sources[0]
            .options::<PgOptions>()
            .unwrap_err()
            .to_string();
        assert!(
            text.starts_with("bluelamp.toml:5: source[rms].port:"),
            "{text}"
        );
    }

    #[test]
    fn env_interpolation_and_redaction() {
        // SAFETY-free: set_var is unsafe in edition 2024; use a unique variable read only here.
        let var = "BLUELAMP_TEST_SECRET_CFG";
        // Tests run in threads; a variable unique to this test avoids races.
        unsafe_env_set(var, "s3cr3t-value");
        let config = parse(&format!(
            "[[source]]\nname = \"rms\"\nkind = \"postgres\"\nhost = \"db\"\nport = \"${{{var}}}\"\n"
        ))
        .unwrap();
        let text = config.sources[0]
            .options::<PgOptions>()
            .unwrap_err()
            .to_string();
        assert!(!text.contains("s3cr3t-value"), "{text}");
        assert!(text.contains("***"), "{text}");
    }

    #[test]
    fn missing_env_var_is_an_error() {
        let err = parse(
            "[[source]]\nname = \"rms\"\nkind = \"postgres\"\npassword = \"${BLUELAMP_TEST_NOT_SET_ANYWHERE}\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("BLUELAMP_TEST_NOT_SET_ANYWHERE is not set"),
            "{err}"
        );
        assert!(err.contains("source[rms].password"), "{err}");
        assert!(err.starts_with("bluelamp.toml:4:"), "{err}");
    }

    #[test]
    fn literal_dollar_brace_escape() {
        let mut secrets = Vec::new();
        assert_eq!(interpolate("a$${b}c$d", &mut secrets).unwrap(), "a${b}c$d");
    }

    #[test]
    fn rejects_duplicate_reserved_and_bad_names() {
        let dup = "[[source]]\nname = \"a\"\nkind = \"files\"\n[[source]]\nname = \"a\"\nkind = \"files\"\n";
        assert!(parse(dup).unwrap_err().to_string().contains("unique"));
        let reserved = "[[source]]\nname = \"bluelamp\"\nkind = \"files\"\n";
        assert!(
            parse(reserved)
                .unwrap_err()
                .to_string()
                .contains("reserved")
        );
        let bad = "[[source]]\nname = \"Rms-1\"\nkind = \"files\"\n";
        assert!(
            parse(bad)
                .unwrap_err()
                .to_string()
                .contains("not a valid source name")
        );
        let missing = "[[source]]\nkind = \"files\"\n";
        assert!(
            parse(missing)
                .unwrap_err()
                .to_string()
                .contains("needs `name")
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("2 weeks").is_err());
    }

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** Secret(***)");
    }

    fn unsafe_env_set(key: &str, value: &str) {
        // SAFETY: the variable is unique to one test and read only by it.
        #[allow(unsafe_code, reason = "edition 2024 marks set_var unsafe; test-only")]
        unsafe {
            std::env::set_var(key, value);
        }
    }
}
