//! Read and write policy: grants on sources, tables and columns, row filters
//! and column masks, as written in `[[policy.grant]]`, `[[policy.row_filter]]`
//! and `[[policy.mask]]`, and what they add up to for one principal on one
//! table ([`TableAccess`]).
//!
//! Once any of the three is configured, access is denied by default: a
//! principal reads a table only through a grant that covers it, sees only the
//! columns some such grant does not hide, sees only rows every applicable row
//! filter lets through, and sees masked columns only masked.
//!
//! Entries are checked twice: when the file is loaded (who they name, that
//! filters and masks parse, that a mask kind is known) and again when the
//! sources have connected ([`super::validate`]: that tables and columns
//! exist, that a filter type-checks as a boolean), each with `file:line`.
//!
//! - `entries`: `[[policy.grant]]`, `[[policy.row_filter]]` and
//!   `[[policy.mask]]` as written, and resolved ([`Grant::resolve`] and the
//!   like).
//! - `markings`: `[[policy.marking]]`, and the [`Marking`] of some data.
//! - `access`: the resolved [`ReadPolicy`] and what it allows one principal
//!   on one table ([`ReadPolicy::access`]).

mod access;
mod entries;
mod markings;

pub use access::{ReadPolicy, TableAccess};
pub(crate) use entries::parse_sql_expr;
pub use entries::{Grant, GrantConfig, Mask, MaskConfig, MaskKind, RowFilter, RowFilterConfig};
pub use markings::{Marking, MarkingConfig, MarkingRule};

use crate::principal::Principal;

/// Where an entry was written, for errors found after loading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// The configuration file.
    pub file: String,
    /// 1-based line of the entry.
    pub line: Option<usize>,
    /// The entry's key, e.g. `policy.row_filter[1]`.
    pub key: String,
}

impl Located {
    /// A configuration error about `field` of this entry.
    pub fn error(&self, field: &str, message: impl Into<String>) -> crate::ConfigError {
        crate::ConfigError::Invalid {
            file: self.file.clone(),
            line: self.line,
            key: if field.is_empty() {
                self.key.clone()
            } else {
                format!("{}.{field}", self.key)
            },
            message: message.into(),
        }
    }
}

/// Who an entry applies to: principals holding any of `roles`, and `users`.
/// Row filters and masks with neither apply to everyone; grants must name
/// someone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Who {
    /// Roles.
    pub roles: Vec<String>,
    /// User names.
    pub users: Vec<String>,
}

impl Who {
    /// Whether the entry names no one in particular (so applies to all).
    pub fn is_everyone(&self) -> bool {
        self.roles.is_empty() && self.users.is_empty()
    }

    /// Whether the entry applies to `principal`.
    pub fn applies_to(&self, principal: &Principal) -> bool {
        self.is_everyone()
            || self.users.contains(&principal.user)
            || self.roles.iter().any(|r| principal.has_role(r))
    }

    /// Whether some principal could be named by both `self` and `other`.
    pub fn overlaps(&self, other: &Who) -> bool {
        self.is_everyone()
            || other.is_everyone()
            || self.roles.iter().any(|r| other.roles.contains(r))
            || self.users.iter().any(|u| other.users.contains(u))
            // A user named by one may hold a role named by the other.
            || (!self.users.is_empty() && !other.roles.is_empty())
            || (!self.roles.is_empty() && !other.users.is_empty())
    }
}

/// `source.table`, or `source.*` for every table of a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TablePattern {
    /// The source (SQL schema).
    pub source: String,
    /// The table, or `None` for all of the source's tables.
    pub table: Option<String>,
}

impl TablePattern {
    fn parse(text: &str) -> Result<Self, String> {
        match text.split('.').collect::<Vec<_>>().as_slice() {
            [source, "*"] if !source.is_empty() => Ok(Self {
                source: (*source).to_string(),
                table: None,
            }),
            [source, table] if !source.is_empty() && !table.is_empty() => Ok(Self {
                source: (*source).to_string(),
                table: Some((*table).to_string()),
            }),
            _ => Err(format!(
                "'{text}' is not a table: write `source.table`, or `source.*` for all of a source's tables"
            )),
        }
    }

    /// Whether the pattern covers `source.table`.
    pub fn covers(&self, source: &str, table: &str) -> bool {
        self.source == source && self.table.as_deref().is_none_or(|t| t == table)
    }
}

impl std::fmt::Display for TablePattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}.{}",
            self.source,
            self.table.as_deref().unwrap_or("*")
        )
    }
}

/// `source.table.column`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ColumnRef {
    /// The source.
    pub source: String,
    /// The table.
    pub table: String,
    /// The column.
    pub column: String,
}

impl ColumnRef {
    fn parse(text: &str) -> Result<Self, String> {
        match text.split('.').collect::<Vec<_>>().as_slice() {
            [source, table, column]
                if !source.is_empty() && !table.is_empty() && !column.is_empty() =>
            {
                Ok(Self {
                    source: (*source).to_string(),
                    table: (*table).to_string(),
                    column: (*column).to_string(),
                })
            }
            _ => Err(format!(
                "'{text}' is not a column: write `source.table.column`"
            )),
        }
    }

    fn is(&self, source: &str, table: &str) -> bool {
        self.source == source && self.table == table
    }
}

impl std::fmt::Display for ColumnRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.source, self.table, self.column)
    }
}
