//! Our own rules for the SQL a database is sent, and the hooks that apply
//! them with the workarounds for upstream defects ([`super::upstream`], each
//! in its own file, to be deleted when upstream is fixed).
//!
//! - [`plan_hook`]: each federated part of a plan loses what its database
//!   cannot run ([`super::functions`]), gets the plan-side workarounds
//!   ([`super::upstream`]'s `prepare_plan`), has its sort keys place NULLs as
//!   DataFusion does where the database is MySQL
//!   ([`order_nulls_as_datafusion`]) and compares text by its bytes
//!   ([`super::bytes`]).
//! - [`sql_hook`]: the unparsed statement gets the statement-side
//!   workarounds ([`super::upstream`]'s `repair`), byte comparisons written
//!   in the database's terms, and for MySQL a select list that is never
//!   empty ([`fill_empty_select_lists`]).
//! - [`federated`] and [`transform_federated`]: the federated sub-plan node
//!   a plan hook is given, read and rewritten.

use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::Result as DFResult;
use datafusion::logical_expr::{ExprSchemable, Extension, LogicalPlan, SortExpr};
use datafusion_federation::FederatedPlanNode;
use datafusion_federation::sql::{AstAnalyzer, LogicalOptimizer};

use super::bytes::{compare_as_bytes, unmark};
use super::functions::{Database, keep_local};
use super::upstream::{prepare_plan, repair};

use datafusion::sql::sqlparser::ast::{
    Expr, Query, SelectItem, SetExpr, Statement, Value, VisitMut, VisitorMut,
};

/// A source's plan hook: the crate's own (if any), then what `database`
/// cannot run taken out (see [`super::functions`]), then [`prepare_plan`] on
/// each federated part.
pub fn plan_hook(
    mut inner: Option<LogicalOptimizer>,
    database: Database,
) -> Option<LogicalOptimizer> {
    Some(Box::new(move |plan| {
        let plan = match inner.as_mut() {
            Some(optimize) => optimize(plan)?,
            None => plan,
        };
        keep_local(plan, database.clone(), |part| {
            let part = prepare_plan(part)?;
            let part = match &database {
                Database::MySql => order_nulls_as_datafusion(part)?,
                Database::Postgres | Database::Sqlite | Database::FlightSql(_) => part,
            };
            compare_as_bytes(part, &database)
        })
    }))
}

/// Whether MySQL, sorting by `key` its own way (NULLs first going up, last
/// going down), would place NULLs elsewhere than `key` asks.
pub fn mysql_places_nulls_otherwise(key: &SortExpr) -> bool {
    key.nulls_first != key.asc
}

/// MySQL and MariaDB sort NULLs first going up and last going down, and
/// have no `NULLS FIRST`/`NULLS LAST` to say otherwise, so the unparser
/// leaves it out; DataFusion's default is the opposite. Each sort key of a
/// federated sub-plan whose NULLs MySQL would place otherwise (and that can
/// be NULL) gets `key IS NULL` before it, ascending for NULLs last and
/// descending for NULLs first: `ORDER BY station LIMIT 1` then returns the
/// first name, not a NULL. (Window functions' own orderings are kept out of
/// MySQL instead; see [`super::functions`].)
pub fn order_nulls_as_datafusion(plan: LogicalPlan) -> DFResult<LogicalPlan> {
    transform_federated(plan, |node| {
        let LogicalPlan::Sort(mut sort) = node else {
            return Ok(Transformed::no(node));
        };
        let schema = Arc::clone(sort.input.schema());
        let mut keys = Vec::with_capacity(sort.expr.len());
        let mut changed = false;
        for key in sort.expr {
            if mysql_places_nulls_otherwise(&key) && key.expr.nullable(&schema)? {
                keys.push(SortExpr::new(
                    key.expr.clone().is_null(),
                    !key.nulls_first,
                    false,
                ));
                changed = true;
            }
            keys.push(key);
        }
        sort.expr = keys;
        Ok(Transformed::new_transformed(
            LogicalPlan::Sort(sort),
            changed,
        ))
    })
}

/// A source's SQL hook: the crate's own (if any), then [`repair`], then each
/// byte-comparison mark written in `database`'s terms (see
/// [`super::bytes`]), then what only MySQL needs (a select list is never
/// empty), then `finish` (a source's own last step).
pub fn sql_hook(
    mut inner: Option<AstAnalyzer>,
    database: Database,
    mut finish: impl FnMut(&mut Statement) + 'static,
) -> Option<AstAnalyzer> {
    Some(Box::new(move |statement| {
        let statement = match inner.as_mut() {
            Some(analyze) => analyze(statement)?,
            None => statement,
        };
        let mut statement = repair(statement);
        unmark(&mut statement, &database);
        if database == Database::MySql {
            // MySQL has no empty select list (`SELECT FROM t`, which the
            // unparser writes for a derived table whose columns go unused).
            fill_empty_select_lists(&mut statement);
        }
        finish(&mut statement);
        Ok(statement)
    }))
}

/// The federated sub-plan node `plan` is, as a source's plan hook gets it.
pub fn federated(plan: &LogicalPlan) -> Option<&FederatedPlanNode> {
    let LogicalPlan::Extension(Extension { node }) = plan else {
        return None;
    };
    node.as_any().downcast_ref::<FederatedPlanNode>()
}

/// Applies `rewrite` bottom-up to every node of a federated sub-plan (`plan`
/// as a source's plan hook gets it: an extension node holding the sub-plan),
/// keeping the node's planner. Any other plan is returned as it is.
pub fn transform_federated(
    plan: LogicalPlan,
    rewrite: impl FnMut(LogicalPlan) -> DFResult<Transformed<LogicalPlan>>,
) -> DFResult<LogicalPlan> {
    let Some(federated) = federated(&plan) else {
        return Ok(plan);
    };
    let inner = federated.plan().clone().transform_up(rewrite)?;
    if !inner.transformed {
        return Ok(plan);
    }
    let planner = Arc::clone(&federated.planner);
    Ok(LogicalPlan::Extension(Extension {
        node: Arc::new(FederatedPlanNode::new(inner.data, planner)),
    }))
}

/// Gives every empty select list (`SELECT FROM t`, valid in PostgreSQL, a
/// syntax error in MySQL) the constant `1`.
pub fn fill_empty_select_lists(statement: &mut Statement) {
    struct Fill;
    impl VisitorMut for Fill {
        type Break = ();
        fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
            if let SetExpr::Select(select) = query.body.as_mut()
                && select.projection.is_empty()
            {
                select
                    .projection
                    .push(SelectItem::UnnamedExpr(Expr::value(Value::Number(
                        "1".into(),
                        false,
                    ))));
            }
            ControlFlow::Continue(())
        }
    }
    let _ = statement.visit(&mut Fill);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    #[test]
    fn empty_select_lists_select_a_constant() {
        let mut statement = Parser::parse_sql(
            &PostgreSqlDialect {},
            "SELECT count(1) FROM (SELECT FROM t WHERE a = 1) AS d",
        )
        .unwrap()
        .remove(0);
        fill_empty_select_lists(&mut statement);
        assert_eq!(
            statement.to_string(),
            "SELECT count(1) FROM (SELECT 1 FROM t WHERE a = 1) AS d"
        );
    }
}
