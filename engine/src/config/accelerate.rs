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
    /// How a refresh fetches: `full` (the whole table, each time),
    /// `append` (rows whose `key` is at or past the copy's newest) or
    /// `window` (as `append`, keeping only the last `window`).
    #[serde(default)]
    pub mode: RefreshMode,
    /// How often the copy is refreshed in the background, e.g. `"5m"`;
    /// without it (and `on_demand = true`) only `REFRESH TABLE` refreshes.
    #[serde(default, deserialize_with = "optional_duration")]
    pub refresh: Option<Duration>,
    /// Refreshed by `REFRESH TABLE` only, when `refresh` is not given.
    #[serde(default)]
    pub on_demand: bool,
    /// Where the copy is kept: `memory`, or `parquet` (also written under
    /// `[engine] data_dir`, and served from there after a restart).
    #[serde(default)]
    pub storage: Storage,
    /// The column `append` and `window` refreshes go by: a value that only
    /// grows as records are added (`recorded_at`, an id from a sequence).
    pub key: Option<String>,
    /// How far back a `window` copy reaches, e.g. `"90d"`, by `key` (a
    /// date or timestamp column).
    #[serde(default, deserialize_with = "optional_duration")]
    pub window: Option<Duration>,
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
    /// The first refresh reads the whole table; later ones read only rows
    /// whose `key` is at or past the newest the copy holds, through the
    /// source's own filter, and add them. For tables records are added
    /// to, not changed in.
    Append,
    /// As `append`, over the last `window` only: older rows are neither
    /// fetched nor kept.
    Window,
}

impl RefreshMode {
    /// As the configuration spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Append => "append",
            Self::Window => "window",
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
    /// In memory, and written to a Parquet file under `[engine] data_dir`
    /// after each refresh, so a restart serves the copy without fetching.
    Parquet,
}

impl Storage {
    /// As the configuration spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Parquet => "parquet",
        }
    }
}

impl AccelerateConfig {
    /// Keys that only make sense together.
    fn check(&self) -> Result<(), (&'static str, String)> {
        if self.refresh.is_none() && !self.on_demand {
            return Err((
                "refresh",
                "missing `refresh = \"5m\"` (how often the copy is refreshed), or \
                 `on_demand = true` to refresh only by REFRESH TABLE"
                    .into(),
            ));
        }
        match self.mode {
            RefreshMode::Full => {
                if self.window.is_some() {
                    return Err((
                        "window",
                        "`window` applies to mode = \"window\" only".into(),
                    ));
                }
            }
            RefreshMode::Append | RefreshMode::Window => {
                if self.key.as_deref().is_none_or(str::is_empty) {
                    return Err((
                        "key",
                        format!(
                            "mode = \"{}\" needs `key = \"COLUMN\"`: the column whose value \
                             only grows as records are added (such as recorded_at)",
                            self.mode.as_str()
                        ),
                    ));
                }
                match (self.mode, self.window) {
                    (RefreshMode::Window, None) => {
                        return Err((
                            "window",
                            "mode = \"window\" needs `window = \"90d\"`: how far back, by \
                             `key`, the copy reaches"
                                .into(),
                        ));
                    }
                    (RefreshMode::Append, Some(_)) => {
                        return Err((
                            "window",
                            "`window` applies to mode = \"window\" only".into(),
                        ));
                    }
                    _ => {}
                }
            }
        }
        Ok(())
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
        let config: AccelerateConfig =
            serde_path_to_error::deserialize(toml::Value::Table(settings)).map_err(|e| {
                let field = e.path().to_string();
                let message = e.into_inner().to_string();
                let at = find_key(&origin.text, span, field.split('.').next().unwrap_or(""))
                    .or_else(|| find_key(&origin.text, span, "accelerate"));
                let full = if field == "." || field.is_empty() {
                    path.clone()
                } else {
                    format!("{path}.{field}")
                };
                ConfigError::invalid(origin, at, full, message)
            })?;
        config.check().map_err(|(field, message)| {
            let at = find_key(&origin.text, span, field)
                .or_else(|| find_key(&origin.text, span, "accelerate"));
            ConfigError::invalid(origin, at, format!("{path}.{field}"), message)
        })?;
        Ok(config)
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
