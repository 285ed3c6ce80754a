//! Grants, row filters and masks: the entries as written in
//! `[[policy.grant]]`, `[[policy.row_filter]]` and `[[policy.mask]]`, and
//! resolved from them, each checked with the field at fault.

use datafusion::sql::sqlparser::ast::Expr as SqlExpr;
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;
use serde::Deserialize;

use super::{ColumnRef, Located, TablePattern, Who};
use crate::principal::Principal;

/// A `[[policy.grant]]` entry as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantConfig {
    /// A name for the audit trail (default `grant[N]`).
    #[serde(default)]
    pub name: Option<String>,
    /// Principals holding any of these roles get the grant.
    #[serde(default)]
    pub roles: Vec<String>,
    /// These users get the grant.
    #[serde(default)]
    pub users: Vec<String>,
    /// `source.table` or `source.*`.
    #[serde(default)]
    pub tables: Vec<String>,
    /// Whether the grant allows reading (default true).
    #[serde(default = "yes")]
    pub read: bool,
    /// Whether the grant allows depositing (`INSERT`).
    #[serde(default)]
    pub write: bool,
    /// Columns (`source.table.column`) this grant does not show.
    #[serde(default)]
    pub hide: Vec<String>,
    /// Whether reading through this grant needs a stated purpose.
    #[serde(default)]
    pub require_purpose: bool,
}

fn yes() -> bool {
    true
}

/// A `[[policy.row_filter]]` entry as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RowFilterConfig {
    /// A name for the audit trail (default `row_filter[N]`).
    #[serde(default)]
    pub name: Option<String>,
    /// Roles it applies to (with `users` empty too: everyone).
    #[serde(default)]
    pub roles: Vec<String>,
    /// Users it applies to.
    #[serde(default)]
    pub users: Vec<String>,
    /// `source.table`.
    pub table: String,
    /// A SQL predicate over the table's columns and `principal('key')`,
    /// `x = ANY(principal_teams())`, `x = ANY(principal_roles())`.
    pub filter: String,
}

/// A `[[policy.mask]]` entry as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskConfig {
    /// A name for the audit trail (default `mask[N]`).
    #[serde(default)]
    pub name: Option<String>,
    /// Roles it applies to (with `users` empty too: everyone).
    #[serde(default)]
    pub roles: Vec<String>,
    /// Users it applies to.
    #[serde(default)]
    pub users: Vec<String>,
    /// `source.table.column` entries.
    pub columns: Vec<String>,
    /// `null`, `redact`, `hash`, `keep_last`, `year` or `sql`.
    pub mask: String,
    /// Characters `keep_last` keeps.
    #[serde(default)]
    pub keep: Option<usize>,
    /// The expression `sql` computes (over the table's columns).
    #[serde(default)]
    pub expr: Option<String>,
}

/// How a masked column is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MaskKind {
    /// Always NULL.
    Null,
    /// Text becomes `[REDACTED]`; other types NULL.
    Redact,
    /// A keyed hash (HMAC-SHA-256 with `[policy] mask_key`), hex: equal
    /// values stay equal, so joins and counts of distinct values still work.
    Hash,
    /// All but the last N characters become `*`.
    KeepLast(usize),
    /// A date or timestamp truncated to 1 January of its year.
    Year,
    /// A SQL expression over the table's columns.
    Sql(String),
}

/// A resolved grant.
#[derive(Debug, Clone)]
pub struct Grant {
    /// Its name in the audit trail.
    pub name: String,
    /// Who holds it.
    pub who: Who,
    /// Tables it covers.
    pub tables: Vec<TablePattern>,
    /// Allows reading.
    pub read: bool,
    /// Allows depositing.
    pub write: bool,
    /// Columns it does not show.
    pub hide: Vec<ColumnRef>,
    /// Reading through it needs a purpose.
    pub require_purpose: bool,
    /// Where it was written.
    pub at: Located,
}

/// A resolved row filter.
#[derive(Debug, Clone)]
pub struct RowFilter {
    /// Its name in the audit trail.
    pub name: String,
    /// Who it applies to.
    pub who: Who,
    /// The table (a pattern with a table).
    pub source: String,
    /// The table's name.
    pub table: String,
    /// The predicate, parsed.
    pub filter: SqlExpr,
    /// Where it was written.
    pub at: Located,
}

/// A resolved mask.
#[derive(Debug, Clone)]
pub struct Mask {
    /// Its name in the audit trail.
    pub name: String,
    /// Who it applies to.
    pub who: Who,
    /// The columns it masks.
    pub columns: Vec<ColumnRef>,
    /// How.
    pub kind: MaskKind,
    /// Where it was written.
    pub at: Located,
}

/// Parses a SQL expression as the policy language uses it.
pub(crate) fn parse_sql_expr(text: &str) -> Result<SqlExpr, String> {
    Parser::new(&GenericDialect {})
        .try_with_sql(text)
        .and_then(|mut p| p.parse_expr())
        .map_err(|e| format!("'{text}' is not a SQL expression: {e}"))
}

/// Checks the names an entry gives for who it applies to.
fn check_who(
    roles: &[String],
    users: &[String],
    known: &[crate::UserConfig],
) -> Result<(), (String, String)> {
    for role in roles {
        if !known.iter().any(|u| u.roles.contains(role)) {
            return Err((
                "roles".into(),
                format!("no [[user]] has the role '{role}'; check its spelling"),
            ));
        }
    }
    for user in users {
        if !known.iter().any(|u| &u.name == user) {
            return Err((
                "users".into(),
                format!("there is no [[user]] named '{user}'"),
            ));
        }
    }
    Ok(())
}

impl Grant {
    /// Resolves a grant.
    ///
    /// # Errors
    /// The field at fault and why.
    pub fn resolve(
        raw: GrantConfig,
        users: &[crate::UserConfig],
        at: Located,
        index: usize,
    ) -> Result<Self, (String, String)> {
        check_who(&raw.roles, &raw.users, users)?;
        if raw.roles.is_empty() && raw.users.is_empty() {
            return Err((
                "roles".into(),
                "a grant must name `roles` or `users` (or both); a grant for everyone is not allowed".into(),
            ));
        }
        if raw.tables.is_empty() {
            return Err((
                "tables".into(),
                "the grant covers nothing: list `source.table` or `source.*` entries".into(),
            ));
        }
        if !raw.read && !raw.write {
            return Err((
                "read".into(),
                "the grant allows nothing: it has `read = false` and no `write = true`".into(),
            ));
        }
        let tables = raw
            .tables
            .iter()
            .enumerate()
            .map(|(i, t)| TablePattern::parse(t).map_err(|m| (format!("tables[{i}]"), m)))
            .collect::<Result<Vec<_>, _>>()?;
        let hide = raw
            .hide
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let column = ColumnRef::parse(c).map_err(|m| (format!("hide[{i}]"), m))?;
                if tables
                    .iter()
                    .any(|t| t.covers(&column.source, &column.table))
                {
                    Ok(column)
                } else {
                    Err((
                        format!("hide[{i}]"),
                        format!("'{c}' is not in a table this grant covers"),
                    ))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            name: raw.name.unwrap_or_else(|| format!("grant[{index}]")),
            who: Who {
                roles: raw.roles,
                users: raw.users,
            },
            tables,
            read: raw.read,
            write: raw.write,
            hide,
            require_purpose: raw.require_purpose,
            at,
        })
    }

    pub(super) fn covers(&self, source: &str, table: &str) -> bool {
        self.tables.iter().any(|t| t.covers(source, table))
    }
}

impl RowFilter {
    /// Resolves a row filter.
    ///
    /// # Errors
    /// The field at fault and why.
    pub fn resolve(
        raw: RowFilterConfig,
        users: &[crate::UserConfig],
        at: Located,
        index: usize,
    ) -> Result<Self, (String, String)> {
        check_who(&raw.roles, &raw.users, users)?;
        let table = TablePattern::parse(&raw.table).map_err(|m| ("table".to_string(), m))?;
        let Some(table_name) = table.table else {
            return Err((
                "table".into(),
                "a row filter is for one table: write `source.table`".into(),
            ));
        };
        let filter = parse_sql_expr(&raw.filter).map_err(|m| ("filter".to_string(), m))?;
        // Substituting a principal with every attribute checks the calls.
        crate::policy::principal_sql::substitute(&filter, &Principal::bare("", ""))
            .map_err(|m| ("filter".to_string(), m))?;
        Ok(Self {
            name: raw.name.unwrap_or_else(|| format!("row_filter[{index}]")),
            who: Who {
                roles: raw.roles,
                users: raw.users,
            },
            source: table.source,
            table: table_name,
            filter,
            at,
        })
    }
}

impl Mask {
    /// Resolves a mask.
    ///
    /// # Errors
    /// The field at fault and why.
    pub fn resolve(
        raw: MaskConfig,
        users: &[crate::UserConfig],
        at: Located,
        index: usize,
    ) -> Result<Self, (String, String)> {
        check_who(&raw.roles, &raw.users, users)?;
        if raw.columns.is_empty() {
            return Err((
                "columns".into(),
                "the mask covers nothing: list `source.table.column` entries".into(),
            ));
        }
        let columns = raw
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| ColumnRef::parse(c).map_err(|m| (format!("columns[{i}]"), m)))
            .collect::<Result<Vec<_>, _>>()?;
        let kind = match raw.mask.as_str() {
            "null" => MaskKind::Null,
            "redact" => MaskKind::Redact,
            "hash" => MaskKind::Hash,
            "year" => MaskKind::Year,
            "keep_last" => match raw.keep {
                Some(n) if n > 0 => MaskKind::KeepLast(n),
                _ => {
                    return Err((
                        "keep".into(),
                        "`keep_last` needs `keep = N` (characters kept, at least 1)".into(),
                    ));
                }
            },
            "sql" => {
                let Some(expr) = raw.expr.clone() else {
                    return Err((
                        "expr".into(),
                        "`mask = \"sql\"` needs `expr = \"...\"`, an expression over the table's columns".into(),
                    ));
                };
                let parsed = parse_sql_expr(&expr).map_err(|m| ("expr".to_string(), m))?;
                crate::policy::principal_sql::substitute(&parsed, &Principal::bare("", ""))
                    .map_err(|m| ("expr".to_string(), m))?;
                MaskKind::Sql(expr)
            }
            other => {
                return Err((
                    "mask".into(),
                    format!(
                        "unknown mask '{other}': use null, redact, hash, keep_last, year or sql"
                    ),
                ));
            }
        };
        if raw.keep.is_some() && !matches!(kind, MaskKind::KeepLast(_)) {
            return Err((
                "keep".into(),
                "`keep` goes with `mask = \"keep_last\"`".into(),
            ));
        }
        if raw.expr.is_some() && !matches!(kind, MaskKind::Sql(_)) {
            return Err(("expr".into(), "`expr` goes with `mask = \"sql\"`".into()));
        }
        if let MaskKind::Sql(_) = kind
            && columns
                .windows(2)
                .any(|w| w[0].source != w[1].source || w[0].table != w[1].table)
        {
            return Err((
                "columns".into(),
                "an `sql` mask is an expression over one table's columns: list columns of one table".into(),
            ));
        }
        Ok(Self {
            name: raw.name.unwrap_or_else(|| format!("mask[{index}]")),
            who: Who {
                roles: raw.roles,
                users: raw.users,
            },
            columns,
            kind,
            at,
        })
    }
}
