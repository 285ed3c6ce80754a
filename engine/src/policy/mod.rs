//! Access policy: who may read, see and deposit what, and what else a
//! session may do.
//!
//! Policies come from the configuration and are resolved when it is loaded,
//! then checked against the connected sources at start ([`validate`]), so a
//! wrong one is a `file:line` error at start-up rather than a door that
//! silently stays open. They are enforced in [`Session`](crate::Session) —
//! the one entry point — on the logical plan of every statement from every
//! front end, before anything runs.
//!
//! - [`rules`]: `[[policy.grant]]`, `[[policy.row_filter]]`,
//!   `[[policy.mask]]`, and what they add up to for one principal on one
//!   table. Once any is configured, access is denied by default.
//! - [`governed`]: the catalog a governed principal sees — only what they
//!   may, so listings and planning never reveal the rest.
//! - [`rewrite`]: row filters and masks applied to every plan, deposits
//!   checked against write grants, and user predicates kept off hidden rows.
//! - [`principal_sql`]: `principal('force')`, `x = ANY(principal_teams())`.
//! - [`provenance`]: what a session's own tables were made from, so copies
//!   keep their sources' marking, audit trail and required purpose.
//! - [`masks`]: mask kinds as expressions.
//! - [`marking`]: security markings on results, and on the files `COPY` writes.
//! - [`files`]: `COPY ... TO` and `CREATE EXTERNAL TABLE` reach the server's
//!   file system and object stores, so they are refused unless a grant names
//!   the principal and the location lies inside a folder or prefix it lists.
//! - [`guard`]: the statement checks (file access, DDL only in the session's
//!   scratch schema, `SET` only on settings that cannot open the server).

pub mod files;
pub mod governed;
pub mod guard;
pub mod marking;
pub mod masks;
pub mod principal_sql;
pub mod provenance;
pub mod rewrite;
pub mod rules;

use std::sync::{Arc, LazyLock};

use arrow::datatypes::DataType;
use datafusion::common::DFSchema;
use datafusion::logical_expr::{Expr, ExprSchemable};
use datafusion::prelude::SessionContext;

pub use files::{FileGrant, FileGrantConfig, Location};
pub use rules::{ReadPolicy, TableAccess};

use crate::catalog::SourceSchema;
use crate::config::ConfigError;
use datafusion::catalog::SchemaProvider;

/// Every policy in force, resolved from the configuration.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Grants to write files (`COPY ... TO`) or read them as tables
    /// (`CREATE EXTERNAL TABLE`), in file order.
    pub files: Vec<FileGrant>,
    /// Grants, row filters and masks on the sources' tables.
    pub read: Arc<ReadPolicy>,
    /// The key of `hash` masks (`[policy] mask_key`).
    pub mask_key: Option<Arc<[u8]>>,
}

/// Plans policy SQL (already free of `principal(...)` calls) against a
/// table's schema. Policy SQL may use DataFusion's built-in functions only.
pub(crate) fn plan_expr(text: &str, schema: &DFSchema) -> Result<Expr, String> {
    static PLANNER: LazyLock<SessionContext> = LazyLock::new(SessionContext::new);
    PLANNER
        .parse_sql_expr(text, schema)
        .map_err(|e| format!("`{text}`: {}", crate::QueryError::from(e).message))
}

/// Checks the read policy against the sources that are up: tables and
/// columns exist, row filters plan as booleans that cannot fail, masks fit
/// their columns. Returns a warning for each source that is down (its
/// policies are checked by the first query that reads it).
///
/// # Errors
/// The first entry at fault, with its `file:line`.
pub async fn validate(
    policy: &Policy,
    sources: &[Arc<SourceSchema>],
    users: &[crate::UserConfig],
) -> Result<Vec<String>, ConfigError> {
    let read = &policy.read;
    let mut warnings = Vec::new();
    for source in sources {
        let name = source.name();
        let mentioned = read
            .grants
            .iter()
            .any(|g| g.tables.iter().any(|t| t.source == name))
            || read.row_filters.iter().any(|f| f.source == name)
            || read
                .masks
                .iter()
                .any(|m| m.columns.iter().any(|c| c.source == name))
            || read.markings.iter().any(|m| {
                m.tables.iter().any(|t| t.source == name)
                    || m.columns.iter().any(|c| c.source == name)
            });
        if !mentioned {
            continue;
        }
        if source.status().state != crate::SourceState::Up {
            warnings.push(format!(
                "source '{name}' is down, so the policies on its tables are checked when it connects"
            ));
            continue;
        }
        let tables = source.table_names();
        let schema_of = |table: &str| {
            let source = Arc::clone(source);
            let table = table.to_string();
            async move {
                match source.table(&table).await {
                    Ok(Some(provider)) => Some(provider.schema()),
                    _ => None,
                }
            }
        };
        let unknown_table = |table: &str| {
            format!(
                "source '{name}' has no table '{table}'; its tables are: {}",
                tables.join(", ")
            )
        };
        for grant in &read.grants {
            for (i, pattern) in grant.tables.iter().enumerate() {
                if pattern.source != name {
                    continue;
                }
                if let Some(table) = &pattern.table
                    && !tables.contains(table)
                {
                    return Err(grant
                        .at
                        .error(&format!("tables[{i}]"), unknown_table(table)));
                }
            }
            for (i, column) in grant.hide.iter().enumerate() {
                if column.source != name {
                    continue;
                }
                let Some(schema) = schema_of(&column.table).await else {
                    return Err(grant
                        .at
                        .error(&format!("hide[{i}]"), unknown_table(&column.table)));
                };
                if schema.field_with_name(&column.column).is_err() {
                    return Err(grant.at.error(
                        &format!("hide[{i}]"),
                        format!(
                            "table '{name}.{}' has no column '{}'",
                            column.table, column.column
                        ),
                    ));
                }
            }
        }
        for filter in read.row_filters.iter().filter(|f| f.source == name) {
            let Some(schema) = schema_of(&filter.table).await else {
                return Err(filter.at.error("table", unknown_table(&filter.table)));
            };
            let qualified = DFSchema::try_from_qualified_schema(filter.table.as_str(), &schema)
                .map_err(|e| filter.at.error("table", e.to_string()))?;
            let expr = plan_filter(filter, &qualified).map_err(|m| filter.at.error("filter", m))?;
            // A filter over a column some of its principals cannot see would
            // name that column in their EXPLAIN output.
            for column in expr.column_refs() {
                if let Some(why) =
                    hidden_from(read, users, &filter.who, name, &filter.table, &column.name)
                {
                    return Err(filter.at.error(
                        "filter",
                        format!(
                            "it uses column '{}', which {why} (they would see it named in EXPLAIN); filter on a column they can see",
                            column.name
                        ),
                    ));
                }
            }
        }
        for marking in &read.markings {
            for (i, pattern) in marking.tables.iter().enumerate() {
                if let Some(table) = &pattern.table
                    && pattern.source == name
                    && !tables.contains(table)
                {
                    return Err(marking
                        .at
                        .error(&format!("tables[{i}]"), unknown_table(table)));
                }
            }
            for (i, column) in marking.columns.iter().enumerate() {
                if column.source != name {
                    continue;
                }
                let Some(schema) = schema_of(&column.table).await else {
                    return Err(marking
                        .at
                        .error(&format!("columns[{i}]"), unknown_table(&column.table)));
                };
                if schema.field_with_name(&column.column).is_err() {
                    return Err(marking.at.error(
                        &format!("columns[{i}]"),
                        format!(
                            "table '{name}.{}' has no column '{}'",
                            column.table, column.column
                        ),
                    ));
                }
            }
        }
        for mask in &read.masks {
            for (i, column) in mask.columns.iter().enumerate() {
                if column.source != name {
                    continue;
                }
                let Some(schema) = schema_of(&column.table).await else {
                    return Err(mask
                        .at
                        .error(&format!("columns[{i}]"), unknown_table(&column.table)));
                };
                let Ok(field) = schema.field_with_name(&column.column) else {
                    return Err(mask.at.error(
                        &format!("columns[{i}]"),
                        format!(
                            "table '{name}.{}' has no column '{}'",
                            column.table, column.column
                        ),
                    ));
                };
                let qualified = DFSchema::try_from_qualified_schema(column.table.as_str(), &schema)
                    .map_err(|e| mask.at.error("columns", e.to_string()))?;
                let expr = masks::mask_expr(
                    &mask.kind,
                    datafusion::logical_expr::col(format!("\"{}\"", column.column)),
                    field.data_type(),
                    &qualified,
                    policy.mask_key.as_deref(),
                    &crate::Principal::bare("", ""),
                )
                .map_err(|m| mask.at.error(&format!("columns[{i}]"), m))?;
                check_plans(&expr, &qualified).map_err(|m| mask.at.error("expr", m))?;
                for used in expr.column_refs() {
                    if used.name == column.column {
                        continue;
                    }
                    if let Some(why) =
                        hidden_from(read, users, &mask.who, name, &column.table, &used.name)
                    {
                        return Err(mask.at.error(
                            "expr",
                            format!(
                                "it uses column '{}', which {why}; a mask may use only columns its principals can see",
                                used.name
                            ),
                        ));
                    }
                }
            }
        }
    }
    Ok(warnings)
}

/// Why `source.table.column` is hidden from some principal `who` names,
/// if it is: a grant for them hides it, or it is marked above the clearance
/// of a user they include.
fn hidden_from(
    read: &ReadPolicy,
    users: &[crate::UserConfig],
    who: &rules::Who,
    source: &str,
    table: &str,
    column: &str,
) -> Option<String> {
    if let Some(grant) = read.grants.iter().find(|g| {
        g.who.overlaps(who)
            && g.hide
                .iter()
                .any(|h| h.source == source && h.table == table && h.column == column)
    }) {
        return Some(format!(
            "{} hides from some of the principals it applies to",
            grant.name
        ));
    }
    if read.markings.is_empty() {
        return None;
    }
    let marking = read.marking_of(source, table, Some(column));
    users
        .iter()
        .find(|user| {
            let named = who.is_everyone()
                || who.users.contains(&user.name)
                || who.roles.iter().any(|r| user.roles.contains(r));
            named
                && user
                    .clearance
                    .unwrap_or(crate::principal::Clearance::Official)
                    < marking.classification
        })
        .map(|user| {
            format!(
                "is marked {marking}, above the clearance of user '{}'",
                user.name
            )
        })
}

/// Plans a row filter for a principal with no attributes, as a boolean
/// that cannot fail.
fn plan_filter(filter: &rules::RowFilter, schema: &DFSchema) -> Result<Expr, String> {
    let text =
        principal_sql::substitute(&filter.filter, &crate::Principal::bare("", ""))?.to_string();
    let expr = plan_expr(&text, schema)?;
    let data_type = check_plans(&expr, schema)?;
    if data_type != DataType::Boolean && data_type != DataType::Null {
        return Err(format!(
            "`{}` is a {data_type}, not a condition",
            filter.filter
        ));
    }
    if rewrite::may_fail(&expr) {
        return Err(format!(
            "`{}` could fail on some row (a cast, arithmetic or a function that can fail); a row filter may use columns, constants, comparisons, AND/OR/NOT, IN, LIKE, BETWEEN, IS NULL and principal(...)",
            filter.filter
        ));
    }
    Ok(expr)
}

/// Type-checks `expr` as DataFusion would run it; its type.
fn check_plans(expr: &Expr, schema: &DFSchema) -> Result<DataType, String> {
    let context = SessionContext::new();
    context
        .create_physical_expr(expr.clone(), schema)
        .map_err(|e| {
            format!(
                "does not type-check: {}",
                crate::QueryError::from(e).message
            )
        })?;
    expr.get_type(schema)
        .map_err(|e| format!("does not type-check: {e}"))
}
