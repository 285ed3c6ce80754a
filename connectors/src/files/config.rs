//! `kind = "files"` options.

use std::collections::BTreeMap;
use std::str::FromStr;

use serde::Deserialize;

/// A folder (local path or object-store URL) whose files and sub-folders are tables.
///
/// ```toml
/// [[source]]
/// name = "anpr"
/// kind = "files"
/// location = "data/anpr"            # or "s3://bucket/anpr", "file:///srv/anpr"
/// [source.tables.reads]              # optional per-table overrides
/// path = "reads"                     # file or sub-folder, relative to location
/// format = "parquet"
/// schema = { plate = "Utf8", seen_at = "Timestamp(Millisecond, Some(\"UTC\"))" }
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesConfig {
    /// Local folder (relative to the config file) or object-store URL.
    pub location: String,
    /// Options for the object store (e.g. `aws_region`, `aws_endpoint`), passed to
    /// the `object_store` crate; credentials belong in `${ENV}` references.
    #[serde(default)]
    pub storage: BTreeMap<String, String>,
    /// CSV files have a header row (default true).
    #[serde(default = "default_true")]
    pub has_header: bool,
    /// CSV field delimiter (default `,`).
    #[serde(default = "default_delimiter")]
    pub delimiter: char,
    /// Per-table overrides, keyed by table name. A table named here that discovery
    /// did not find is added from its `path`.
    #[serde(default)]
    pub tables: BTreeMap<String, FileTableConfig>,
}

fn default_true() -> bool {
    true
}

fn default_delimiter() -> char {
    ','
}

/// Overrides for one table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTableConfig {
    /// File or sub-folder relative to the source's location (default: discovered).
    pub path: Option<String>,
    /// File format (default: from the file extension).
    pub format: Option<FileFormatKind>,
    /// Column names and types, in file order, replacing inference. Types are Arrow
    /// type names (`Int64`, `Utf8`, `Float64`, `Boolean`, `Date32`,
    /// `Timestamp(Microsecond, None)`) or SQL names (`bigint`, `text`, `double`,
    /// `boolean`, `date`, `timestamp`).
    pub schema: Option<toml::Table>,
    /// CSV header override for this table.
    pub has_header: Option<bool>,
    /// CSV delimiter override for this table.
    pub delimiter: Option<char>,
    /// Leave this table out.
    #[serde(default)]
    pub exclude: bool,
}

/// The file formats the connector reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileFormatKind {
    /// Comma (or other delimiter) separated values.
    Csv,
    /// Newline-delimited JSON, one object per line.
    Ndjson,
    /// Apache Parquet.
    Parquet,
}

impl FileFormatKind {
    /// The format a file name's extension implies.
    pub fn from_file_name(name: &str) -> Option<(Self, &'static str)> {
        let lower = name.to_ascii_lowercase();
        [
            (".csv", FileFormatKind::Csv),
            (".tsv", FileFormatKind::Csv),
            (".ndjson", FileFormatKind::Ndjson),
            (".jsonl", FileFormatKind::Ndjson),
            (".json", FileFormatKind::Ndjson),
            (".parquet", FileFormatKind::Parquet),
        ]
        .into_iter()
        .find(|(ext, _)| lower.ends_with(ext))
        .map(|(ext, kind)| (kind, ext))
    }
}

impl FromStr for FileFormatKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "csv" => Ok(Self::Csv),
            "ndjson" | "jsonl" | "json" => Ok(Self::Ndjson),
            "parquet" => Ok(Self::Parquet),
            other => Err(format!(
                "unknown file format '{other}' (use csv, ndjson or parquet)"
            )),
        }
    }
}
