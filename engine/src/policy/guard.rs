//! The statement guard: checks a statement's logical plan before it runs.
//!
//! DataFusion will happily create external tables over `/etc`, copy results
//! to any path the server may write, register schemas and functions, and let
//! `SET` move the spill folder. A session is for reading and depositing
//! through the configured sources, so the guard refuses:
//!
//! - `COPY ... TO` and `CREATE EXTERNAL TABLE` unless a `[[policy.files]]`
//!   grant names the principal and covers the location ([`super::files`]);
//! - DDL anywhere but the session's scratch schema (`public`): no tables or
//!   views created in, or dropped from, a source's schema or `bluelamp`, and
//!   no `CREATE SCHEMA`/`CATALOG`/`FUNCTION`/`INDEX`;
//! - `SET`/`RESET` of `datafusion.runtime.*` (memory limit, spill folder) and
//!   `datafusion.catalog.*` (where the default catalog is loaded from).
//!
//! The whole plan is walked, subqueries and `EXPLAIN`/`PREPARE` inputs
//! included, so `EXPLAIN ANALYZE COPY ...` or `PREPARE p AS ...` cannot carry
//! a refused statement past it. (DataFusion's `SQLOptions::verify_plan` can
//! only refuse all DDL or none; these rules need the principal and the
//! target, so they are ours.)

use datafusion::common::TableReference;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::logical_expr::{DdlStatement, LogicalPlan, Statement as PlanStatement};

use super::Policy;
use super::files::{FileAccess, Location};
use crate::error::{ErrorKind, QueryError};
use crate::principal::Principal;

/// Settings no session may change: they reach the server's memory and disk.
const LOCKED_SETTINGS: &[&str] = &["datafusion.runtime.", "datafusion.catalog."];

/// Settings a governed session may not change either: they decide which
/// optimizer rules run and how filters are evaluated, and policy relies on
/// its own rule running (user predicates kept off hidden rows).
const GOVERNED_SETTINGS: &[&str] = &[
    "datafusion.optimizer.",
    "datafusion.execution.parquet.pushdown_filters",
    "datafusion.execution.parquet.reorder_filters",
];

/// Checks every node of `plan` against `policy` for `principal`.
///
/// `catalog` and `scratch` name the session's catalog and scratch schema,
/// the only place DDL may act. `audited` says whether an audit trail is
/// kept (then SQL `PREPARE`/`EXECUTE`, whose `EXECUTE` names no table, are
/// refused, as they are under read policy).
///
/// # Errors
/// [`ErrorKind::PermissionDenied`] naming the statement, the target and what
/// would allow it.
pub fn check_plan(
    plan: &LogicalPlan,
    principal: &Principal,
    policy: &Policy,
    catalog: &str,
    scratch: &str,
    audited: bool,
) -> Result<(), QueryError> {
    let mut refused = None;
    let walk = plan.apply_with_subqueries(|node| {
        match check_node(node, principal, policy, catalog, scratch, audited) {
            Ok(()) => Ok(TreeNodeRecursion::Continue),
            Err(e) => {
                refused = Some(e);
                Ok(TreeNodeRecursion::Stop)
            }
        }
    });
    if let Some(error) = refused {
        return Err(error);
    }
    walk.map(|_| ()).map_err(QueryError::from)
}

fn check_node(
    node: &LogicalPlan,
    principal: &Principal,
    policy: &Policy,
    catalog: &str,
    scratch: &str,
    audited: bool,
) -> Result<(), QueryError> {
    let governed = policy.read.is_active();
    let in_scratch = |name: &TableReference, what: &str| -> Result<(), QueryError> {
        let ok = match name {
            TableReference::Bare { .. } => true,
            TableReference::Partial { schema, .. } => schema.as_ref() == scratch,
            TableReference::Full {
                catalog: c, schema, ..
            } => c.as_ref() == catalog && schema.as_ref() == scratch,
        };
        if ok {
            Ok(())
        } else {
            Err(denied(format!(
                "{what} '{name}' is refused: tables and views can only be created or dropped in the session's own schema `{scratch}` (write `{scratch}.{}` or a bare name); sources' schemas and `bluelamp` are not changed by DDL",
                name.table()
            )))
        }
    };
    match node {
        LogicalPlan::Copy(copy) => check_location(
            principal,
            policy,
            FileAccess::CopyTo,
            &copy.output_url,
            "COPY ... TO",
        ),
        LogicalPlan::Ddl(ddl) => match ddl {
            DdlStatement::CreateExternalTable(create) => {
                in_scratch(&create.name, "CREATE EXTERNAL TABLE")?;
                for location in &create.locations {
                    check_location(
                        principal,
                        policy,
                        FileAccess::ExternalTable,
                        location,
                        "CREATE EXTERNAL TABLE",
                    )?;
                }
                Ok(())
            }
            DdlStatement::CreateMemoryTable(create) => in_scratch(&create.name, "CREATE TABLE"),
            DdlStatement::CreateView(create) => in_scratch(&create.name, "CREATE VIEW"),
            DdlStatement::DropTable(drop) => in_scratch(&drop.name, "DROP TABLE"),
            DdlStatement::DropView(drop) => in_scratch(&drop.name, "DROP VIEW"),
            DdlStatement::CreateCatalogSchema(_)
            | DdlStatement::CreateCatalog(_)
            | DdlStatement::DropCatalogSchema(_) => Err(denied(format!(
                "creating or dropping schemas and catalogs is refused: each source is a schema set by the configuration, and each session has its own schema `{scratch}` for tables and views"
            ))),
            DdlStatement::CreateIndex(_) => Err(denied(
                "CREATE INDEX is refused: Bluelamp keeps no indexes of its own",
            )),
            DdlStatement::CreateFunction(_) | DdlStatement::DropFunction(_) => Err(denied(
                "CREATE FUNCTION and DROP FUNCTION are refused: functions come with the engine",
            )),
        },
        LogicalPlan::Statement(PlanStatement::SetVariable(set)) => {
            check_setting(&set.variable, governed)
        }
        LogicalPlan::Statement(PlanStatement::ResetVariable(reset)) => {
            check_setting(&reset.variable, governed)
        }
        LogicalPlan::Statement(PlanStatement::Prepare(_) | PlanStatement::Execute(_))
            if governed || audited =>
        {
            Err(denied(
                "SQL PREPARE and EXECUTE are refused where access policy or an audit trail applies: EXECUTE would run a plan checked and recorded when it was prepared; run the statement itself (Flight SQL prepared statements are checked and recorded at every execution)",
            ))
        }
        _ => Ok(()),
    }
}

fn check_setting(variable: &str, governed: bool) -> Result<(), QueryError> {
    let name = variable.to_ascii_lowercase();
    if let Some(prefix) = LOCKED_SETTINGS.iter().find(|p| name.starts_with(**p)) {
        return Err(denied(format!(
            "SET {variable} is refused: `{prefix}*` settings reach the server's memory and disk and are fixed by the server's configuration"
        )));
    }
    if governed && let Some(prefix) = GOVERNED_SETTINGS.iter().find(|p| name.starts_with(**p)) {
        return Err(denied(format!(
            "SET {variable} is refused: `{prefix}*` settings decide how access policy is applied and are fixed while policies are configured"
        )));
    }
    Ok(())
}

fn check_location(
    principal: &Principal,
    policy: &Policy,
    access: FileAccess,
    target: &str,
    statement: &str,
) -> Result<(), QueryError> {
    let target_location = Location::target(target).map_err(|m| {
        QueryError::new(
            ErrorKind::InvalidQuery,
            format!("{statement} '{target}': {m}"),
        )
    })?;
    let grants: Vec<&Location> = policy
        .files
        .iter()
        .filter(|g| g.applies_to(principal))
        .flat_map(|g| g.locations(access))
        .collect();
    if grants.iter().any(|root| root.contains(&target_location)) {
        return Ok(());
    }
    let key = access.key();
    if grants.is_empty() {
        return Err(denied(format!(
            "{statement} '{target}' is refused: it reaches the server's files, and user '{}' has no grant for it (a [[policy.files]] entry naming the user or one of their roles, with `{key}` listing the folders allowed)",
            principal.user
        )));
    }
    let allowed: Vec<String> = grants.iter().map(|l| l.to_string()).collect();
    Err(denied(format!(
        "{statement} '{target}' is refused: it is outside the folders granted to user '{}' for `{key}` ({})",
        principal.user,
        allowed.join(", ")
    )))
}

fn denied(message: impl Into<String>) -> QueryError {
    QueryError::new(ErrorKind::PermissionDenied, message)
}
