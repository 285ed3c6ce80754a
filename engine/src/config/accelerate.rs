//! `[source.accelerate]` (every table of a source) and
//! `[source.tables.NAME.accelerate]` (one table, over the source's
//! defaults): keep a local copy of a slow or rate-limited table, refreshed
//! in the background, and answer queries from it. The engine reads these
//! keys itself and takes them out of the source's options before the
//! connector sees them, so every connector can be accelerated.

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::duration::parse_duration;
use super::{ConfigError, Origin, find_key};

/// How one table is accelerated.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccelerateConfig {
    /// How a refresh fetches: `full` (the whole table, each time).
    #[serde(default)]
    pub mode: RefreshMode,
    /// How often the copy is refreshed, e.g. `"5m"` (required).
    #[serde(deserialize_with = "duration")]
    pub refresh: Duration,
    /// Where the copy is kept: `memory`.
    #[serde(default)]
    pub storage: Storage,
    /// How old the copy may be before [`AccelerateConfig::on_stale`]
    /// applies; none by default.
    #[serde(default, deserialize_with = "optional_duration")]
    pub max_staleness: Option<Duration>,
    /// What a query does with a copy older than `max_staleness`.
    #[serde(default)]
    pub on_stale: OnStale,
    /// The `[[user]]` the refreshes run as: the end user a source that
    /// forwards one (`on_behalf_of`) names to the supplier.
    pub as_user: Option<String>,
}

/// How a refresh fetches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RefreshMode {
    /// The whole table, each refresh.
    #[default]
    Full,
}

impl RefreshMode {
    /// As the configuration spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Full => "full",
        }
    }
}

/// Where a copy is kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Storage {
    /// In memory, as Arrow batches; gone when the process ends.
    #[default]
    Memory,
}

impl Storage {
    /// As the configuration spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Memory => "memory",
        }
    }
}

/// What a query does with a copy older than `max_staleness`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnStale {
    /// Fail, saying how old the copy is and why the refresh failed.
    #[default]
    Error,
    /// Answer from the copy, with a warning in the log.
    Warn,
    /// Read the source itself.
    Live,
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    let value = parse_duration(&text).map_err(serde::de::Error::custom)?;
    if value.is_zero() {
        return Err(serde::de::Error::custom("must be longer than 0s"));
    }
    Ok(value)
}

fn optional_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

/// One source's acceleration settings: the default for its tables, and
/// each named table's (the source's keys, overridden by the table's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceAcceleration {
    /// For every table of the source, where `[source.accelerate]` is given.
    pub every_table: Option<AccelerateConfig>,
    /// For each table with its own `[source.tables.NAME.accelerate]`.
    pub tables: BTreeMap<String, AccelerateConfig>,
}

impl SourceAcceleration {
    /// The settings for `table`, if it is accelerated.
    pub fn for_table(&self, table: &str) -> Option<&AccelerateConfig> {
        self.tables.get(table).or(self.every_table.as_ref())
    }

    /// Whether any table of the source is accelerated.
    pub fn is_empty(&self) -> bool {
        self.every_table.is_none() && self.tables.is_empty()
    }
}

/// Takes `accelerate` and `tables.NAME.accelerate` out of a source's
/// options (a `tables.NAME` left empty goes too, and then an empty
/// `tables`), and reads them.
pub(super) fn take(
    options: &mut toml::Table,
    origin: &Origin,
    span: &Range<usize>,
    key: &str,
) -> Result<SourceAcceleration, ConfigError> {
    let source_wide = match options.remove("accelerate") {
        None => None,
        Some(toml::Value::Table(table)) => Some(table),
        Some(_) => {
            return Err(ConfigError::invalid(
                origin,
                find_key(&origin.text, span, "accelerate"),
                format!("{key}.accelerate"),
                "must be a table: [source.accelerate] refresh = \"5m\"".into(),
            ));
        }
    };
    let mut per_table = BTreeMap::new();
    if let Some(toml::Value::Table(tables)) = options.get_mut("tables") {
        for (name, table) in tables.iter_mut() {
            let toml::Value::Table(table) = table else {
                continue;
            };
            match table.remove("accelerate") {
                None => {}
                Some(toml::Value::Table(settings)) => {
                    per_table.insert(name.clone(), settings);
                }
                Some(_) => {
                    return Err(ConfigError::invalid(
                        origin,
                        find_key(&origin.text, span, "accelerate"),
                        format!("{key}.tables.{name}.accelerate"),
                        "must be a table: [source.tables.NAME.accelerate] refresh = \"5m\"".into(),
                    ));
                }
            }
        }
        tables.retain(|_, table| !matches!(table, toml::Value::Table(t) if t.is_empty()));
        if tables.is_empty() {
            options.remove("tables");
        }
    }
    let read = |settings: toml::Table, path: String| -> Result<AccelerateConfig, ConfigError> {
        serde_path_to_error::deserialize(toml::Value::Table(settings)).map_err(|e| {
            let field = e.path().to_string();
            let message = e.into_inner().to_string();
            let at = find_key(&origin.text, span, field.split('.').next().unwrap_or(""))
                .or_else(|| find_key(&origin.text, span, "accelerate"));
            let path = if field == "." || field.is_empty() {
                path
            } else {
                format!("{path}.{field}")
            };
            ConfigError::invalid(origin, at, path, message)
        })
    };
    let every_table = match &source_wide {
        Some(settings) => Some(read(settings.clone(), format!("{key}.accelerate"))?),
        None => None,
    };
    let mut tables = BTreeMap::new();
    for (name, settings) in per_table {
        // The table's keys over the source's.
        let mut merged = source_wide.clone().unwrap_or_default();
        merged.extend(settings);
        let config = read(merged, format!("{key}.tables.{name}.accelerate"))?;
        tables.insert(name, config);
    }
    let acceleration = SourceAcceleration {
        every_table,
        tables,
    };
    // A source that names each query's end user to the supplier answers
    // each user with what the supplier lets that user see: the refreshes
    // must say whose view the one copy is.
    let anonymous = acceleration
        .every_table
        .iter()
        .chain(acceleration.tables.values())
        .any(|a| a.as_user.is_none());
    if anonymous && options.contains_key("on_behalf_of") {
        return Err(ConfigError::invalid(
            origin,
            find_key(&origin.text, span, "accelerate")
                .or_else(|| find_key(&origin.text, span, "on_behalf_of")),
            format!("{key}.accelerate"),
            "this source names each query's end user to the supplier (on_behalf_of), so its \
             copy must be fetched as someone: add `as_user = \"...\"` (a [[user]] whose view \
             of the supplier every reader of the copy may share)"
                .into(),
        ));
    }
    Ok(acceleration)
}
