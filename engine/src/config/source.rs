//! One `[[source]]` table: [`SourceConfig`] keeps the connector's part of it
//! (everything but `name` and `kind`) together with where it came from, so a
//! connector can deserialize it into its own typed config, resolve paths
//! against the config file's folder, and raise errors that still name the
//! file, line and key path, with interpolated secrets redacted. Also here:
//! the rules for source names, which become unquoted SQL schema names.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{ConfigError, Origin, RESERVED_SCHEMAS, find_key, redact};
use serde::de::DeserializeOwned;

/// One `[[source]]`: a supplier system that becomes a SQL schema.
#[derive(Clone)]
pub struct SourceConfig {
    /// The SQL schema name, e.g. `rms` for `rms.crimes`.
    pub name: String,
    /// The connector kind, e.g. `postgres`, `files`.
    pub kind: String,
    pub(super) options: toml::Table,
    pub(super) origin: Arc<Origin>,
    pub(super) index: usize,
    pub(super) span: Range<usize>,
    /// `[source.accelerate]` and `[source.tables.NAME.accelerate]`, taken out
    /// of `options`: the engine's, not the connector's.
    pub(super) acceleration: super::accelerate::SourceAcceleration,
    /// Where a cluster executor takes rate-limit slots shared with the
    /// other executors ([`Config::with_shared_pacer`](super::Config::with_shared_pacer)).
    pub(super) pacer: Option<Arc<dyn crate::source::SharedPacer>>,
    /// The engine's metrics for this source, set when the engine starts.
    pub(crate) metrics: Option<crate::ops::SourceMetrics>,
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
            acceleration: super::accelerate::SourceAcceleration::default(),
            pacer: None,
            metrics: None,
        })
    }

    /// The rate budget this source shares with other processes (a cluster
    /// executor's), if any: a connector with a rate limit takes each slot
    /// there rather than only from its own.
    pub fn shared_pacer(&self) -> Option<&Arc<dyn crate::source::SharedPacer>> {
        self.pacer.as_ref()
    }

    /// Where the connector counts this source's requests, errors and
    /// records (the engine's Prometheus metrics); a source made outside an
    /// engine counts into a registry nobody reads.
    pub fn metrics(&self) -> crate::ops::SourceMetrics {
        self.metrics
            .clone()
            .unwrap_or_else(|| crate::ops::SourceMetrics::detached(&self.name))
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

    /// Which of the source's tables are accelerated, and how.
    pub fn acceleration(&self) -> &super::accelerate::SourceAcceleration {
        &self.acceleration
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

pub(super) fn take_string(table: &mut toml::Table, key: &str) -> Option<String> {
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
pub(super) fn validate_identifier(name: &str) -> Result<(), String> {
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

fn unknown_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.find('`').map(|end| rest[..end].to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
    use std::path::PathBuf;
    use std::time::Duration;

    use serde::Deserialize;

    use crate::config::{Config, ConfigError, Secret};

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

    fn unsafe_env_set(key: &str, value: &str) {
        // SAFETY: the variable is unique to one test and read only by it.
        #[allow(unsafe_code, reason = "edition 2024 marks set_var unsafe; test-only")]
        unsafe {
            std::env::set_var(key, value);
        }
    }
}
