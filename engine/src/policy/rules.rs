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

use std::collections::BTreeSet;

use datafusion::sql::sqlparser::ast::Expr as SqlExpr;
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;
use serde::Deserialize;

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

/// A `[[policy.marking]]` entry as written: a security classification and
/// handling caveats for sources, tables or columns.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarkingConfig {
    /// `source.table` or `source.*`.
    #[serde(default)]
    pub tables: Vec<String>,
    /// `source.table.column`.
    #[serde(default)]
    pub columns: Vec<String>,
    /// OFFICIAL, OFFICIAL-SENSITIVE or SECRET.
    pub classification: crate::principal::Clearance,
    /// Handling caveats or descriptors, e.g. `PERSONAL`.
    #[serde(default)]
    pub caveats: Vec<String>,
}

/// A resolved marking entry.
#[derive(Debug, Clone)]
pub struct MarkingRule {
    /// Tables it marks (every column of them).
    pub tables: Vec<TablePattern>,
    /// Columns it marks.
    pub columns: Vec<ColumnRef>,
    /// The classification.
    pub classification: crate::principal::Clearance,
    /// Caveats, upper case.
    pub caveats: Vec<String>,
    /// Where it was written.
    pub at: Located,
}

impl MarkingRule {
    /// Resolves a marking entry.
    ///
    /// # Errors
    /// The field at fault and why.
    pub fn resolve(raw: MarkingConfig, at: Located) -> Result<Self, (String, String)> {
        if raw.tables.is_empty() && raw.columns.is_empty() {
            return Err((
                "tables".into(),
                "the marking covers nothing: list `tables` and/or `columns`".into(),
            ));
        }
        let tables = raw
            .tables
            .iter()
            .enumerate()
            .map(|(i, t)| TablePattern::parse(t).map_err(|m| (format!("tables[{i}]"), m)))
            .collect::<Result<Vec<_>, _>>()?;
        let columns = raw
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| ColumnRef::parse(c).map_err(|m| (format!("columns[{i}]"), m)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut caveats = Vec::new();
        for (i, caveat) in raw.caveats.iter().enumerate() {
            let caveat = caveat.trim().to_ascii_uppercase();
            if caveat.is_empty() || caveat.contains(['[', ']']) {
                return Err((
                    format!("caveats[{i}]"),
                    "a caveat is a non-empty name without brackets, e.g. PERSONAL".into(),
                ));
            }
            caveats.push(caveat);
        }
        Ok(Self {
            tables,
            columns,
            classification: raw.classification,
            caveats,
            at,
        })
    }
}

/// The marking of some data: the highest classification and every caveat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marking {
    /// The classification.
    pub classification: crate::principal::Clearance,
    /// Caveats, sorted.
    pub caveats: std::collections::BTreeSet<String>,
}

impl Default for Marking {
    fn default() -> Self {
        Self {
            classification: crate::principal::Clearance::Official,
            caveats: std::collections::BTreeSet::new(),
        }
    }
}

impl Marking {
    /// Raises this marking to cover `other` too.
    pub fn join(&mut self, other: &Marking) {
        self.classification = self.classification.max(other.classification);
        self.caveats.extend(other.caveats.iter().cloned());
    }

    /// Whether the data may go where a marking cannot follow it (plain
    /// OFFICIAL, no caveats).
    pub fn is_baseline(&self) -> bool {
        self.classification == crate::principal::Clearance::Official && self.caveats.is_empty()
    }
}

impl std::fmt::Display for Marking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.classification)?;
        for caveat in &self.caveats {
            write!(f, " [{caveat}]")?;
        }
        Ok(())
    }
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

    fn covers(&self, source: &str, table: &str) -> bool {
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
        super::principal_sql::substitute(&filter, &Principal::bare("", ""))
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
                super::principal_sql::substitute(&parsed, &Principal::bare("", ""))
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

/// What the policy allows one principal on one table.
#[derive(Debug, Clone, Default)]
pub struct TableAccess {
    /// Some grant lets the principal read it.
    pub read: bool,
    /// Some grant lets the principal deposit into it.
    pub write: bool,
    /// Every grant that lets the principal read it needs a stated purpose.
    pub require_purpose: bool,
    /// Columns no reading grant shows.
    pub hidden: BTreeSet<String>,
    /// Masks on visible columns: column name and mask, first match in file order.
    pub masks: Vec<(String, Mask)>,
    /// Row filters, all of which a row must pass.
    pub filters: Vec<RowFilter>,
    /// Names of the grants, filters and masks that apply, for the audit trail.
    pub applied: Vec<String>,
}

impl TableAccess {
    /// Whether the principal may know the table exists.
    pub fn visible(&self) -> bool {
        self.read || self.write
    }

    /// The mask on `column`, if any.
    pub fn mask(&self, column: &str) -> Option<&Mask> {
        self.masks
            .iter()
            .find(|(c, _)| c == column)
            .map(|(_, mask)| mask)
    }
}

/// The read and write policy: grants, row filters and masks.
#[derive(Debug, Clone, Default)]
pub struct ReadPolicy {
    /// `[[policy.grant]]`, in file order.
    pub grants: Vec<Grant>,
    /// `[[policy.row_filter]]`, in file order.
    pub row_filters: Vec<RowFilter>,
    /// `[[policy.mask]]`, in file order.
    pub masks: Vec<Mask>,
    /// `[[policy.marking]]`, in file order.
    pub markings: Vec<MarkingRule>,
}

impl ReadPolicy {
    /// Whether any read policy is configured; then access is denied by default.
    pub fn is_active(&self) -> bool {
        !(self.grants.is_empty()
            && self.row_filters.is_empty()
            && self.masks.is_empty()
            && self.markings.is_empty())
    }

    /// The marking of `source.table` (its column `column`, or the table as
    /// a whole): every entry covering it joined; OFFICIAL where none does.
    pub fn marking_of(&self, source: &str, table: &str, column: Option<&str>) -> Marking {
        let mut marking = Marking::default();
        for rule in &self.markings {
            let covers = rule.tables.iter().any(|t| t.covers(source, table))
                || column.is_some_and(|column| {
                    rule.columns
                        .iter()
                        .any(|c| c.is(source, table) && c.column == column)
                });
            if covers {
                marking.join(&Marking {
                    classification: rule.classification,
                    caveats: rule.caveats.iter().cloned().collect(),
                });
            }
        }
        marking
    }

    /// Whether a principal's clearance (OFFICIAL where none is configured)
    /// reaches `marking`.
    fn cleared(principal: &Principal, marking: &Marking) -> bool {
        principal
            .clearance
            .unwrap_or(crate::principal::Clearance::Official)
            >= marking.classification
    }

    /// Whether `principal` may know that `source` exists: some grant of
    /// theirs covers one of its tables.
    pub fn sees_source(&self, principal: &Principal, source: &str) -> bool {
        self.grants
            .iter()
            .any(|g| g.who.applies_to(principal) && g.tables.iter().any(|t| t.source == source))
    }

    /// What `principal` may do with `source.table`, whose columns are `columns`.
    pub fn access(
        &self,
        principal: &Principal,
        source: &str,
        table: &str,
        columns: &[String],
    ) -> TableAccess {
        let mut access = TableAccess::default();
        let grants: Vec<&Grant> = self
            .grants
            .iter()
            .filter(|g| g.who.applies_to(principal) && g.covers(source, table))
            .collect();
        let readers: Vec<&&Grant> = grants.iter().filter(|g| g.read).collect();
        access.read = !readers.is_empty();
        access.write = grants.iter().any(|g| g.write);
        access.require_purpose = access.read && readers.iter().all(|g| g.require_purpose);
        for column in columns {
            let shown = readers.iter().any(|g| {
                !g.hide
                    .iter()
                    .any(|h| h.is(source, table) && &h.column == column)
            });
            if !shown {
                access.hidden.insert(column.clone());
            }
        }
        access.applied = grants.iter().map(|g| g.name.clone()).collect();
        if !self.markings.is_empty() {
            // Above the principal's clearance, a table is as good as absent
            // and a column hidden.
            if !Self::cleared(principal, &self.marking_of(source, table, None)) {
                return TableAccess::default();
            }
            for column in columns {
                if !Self::cleared(principal, &self.marking_of(source, table, Some(column))) {
                    access.hidden.insert(column.clone());
                }
            }
        }
        if !access.read {
            return access;
        }
        for mask in self.masks.iter().filter(|m| m.who.applies_to(principal)) {
            for column in &mask.columns {
                if column.is(source, table)
                    && !access.hidden.contains(&column.column)
                    && access.mask(&column.column).is_none()
                {
                    access.masks.push((column.column.clone(), mask.clone()));
                    if !access.applied.contains(&mask.name) {
                        access.applied.push(mask.name.clone());
                    }
                }
            }
        }
        for filter in &self.row_filters {
            if filter.who.applies_to(principal) && filter.source == source && filter.table == table
            {
                access.filters.push(filter.clone());
                access.applied.push(filter.name.clone());
            }
        }
        access
    }
}
