//! Repairs to the SQL that `datafusion-federation` unparses before a database
//! sees it. DataFusion's scalar-subquery decorrelation produces two shapes
//! PostgreSQL rejects or misreads (TPC-H Q2 meets both):
//!
//! - `GROUP BY key, true`: a constant grouping key (`__always_true`).
//!   PostgreSQL refuses non-integer constants in GROUP BY. Grouping by a
//!   constant beside another key changes nothing, so it is dropped.
//! - an unaliased aggregate in a derived table (`SELECT min(x) ...`) that
//!   the outer query references by DataFusion's column name
//!   (`"sq"."min(t.x)"`); the database names the column `min`. Such items are
//!   given DataFusion's name as an alias.
//! - an outer query over one derived table (`... FROM (...) AS
//!   "derived_projection" ORDER BY "o"."part"`) that still qualifies columns
//!   with the inner tables' names, which are not in scope there; they are
//!   requalified with the derived table's alias.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, GroupByExpr, Ident, OrderBy, OrderByKind, Query, SelectItem, SetExpr, Statement,
    TableFactor, Value, VisitMut, VisitorMut, visit_expressions_mut,
};

struct Repair;

impl VisitorMut for Repair {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<Self::Break> {
        repair_set_expr(&mut query.body);
        requalify(query);
        ControlFlow::Continue(())
    }
}

/// Points `inner_table.column` at the one derived table the query reads.
fn requalify(query: &mut Query) {
    let SetExpr::Select(select) = query.body.as_mut() else {
        return;
    };
    let [from] = select.from.as_slice() else {
        return;
    };
    let TableFactor::Derived {
        alias: Some(alias), ..
    } = &from.relation
    else {
        return;
    };
    // Only the wrapper DataFusion's unparser adds; other derived tables are
    // referenced correctly.
    if !from.joins.is_empty() || alias.name.value != "derived_projection" {
        return;
    }
    let name = alias.name.clone();
    let fix = |expr: &mut Expr| {
        let _ = visit_expressions_mut(expr, |e| {
            if let Expr::CompoundIdentifier(parts) = e
                && parts.len() == 2
                && parts[0].value != name.value
            {
                parts[0] = name.clone();
            }
            ControlFlow::<()>::Continue(())
        });
    };
    for item in &mut select.projection {
        match item {
            SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } => fix(expr),
            _ => {}
        }
    }
    if let Some(OrderBy {
        kind: OrderByKind::Expressions(items),
        ..
    }) = &mut query.order_by
    {
        for item in items {
            fix(&mut item.expr);
        }
    }
}

fn repair_set_expr(body: &mut SetExpr) {
    match body {
        SetExpr::Select(select) => {
            if let GroupByExpr::Expressions(keys, _) = &mut select.group_by {
                let constant = |e: &Expr| matches!(e, Expr::Value(v) if !matches!(v.value, Value::Placeholder(_)));
                if keys.iter().any(|k| !constant(k)) {
                    keys.retain(|k| !constant(k));
                }
            }
            for item in &mut select.projection {
                if let SelectItem::UnnamedExpr(expr @ Expr::Function(_)) = item {
                    let name = expr.to_string().replace('"', "");
                    *item = SelectItem::ExprWithAlias {
                        expr: expr.clone(),
                        alias: Ident::with_quote('"', name),
                    };
                }
            }
        }
        SetExpr::SetOperation { left, right, .. } => {
            repair_set_expr(left);
            repair_set_expr(right);
        }
        SetExpr::Query(query) => repair_set_expr(&mut query.body),
        _ => {}
    }
}

/// Applies the repairs to one statement.
pub fn repair(mut statement: Statement) -> Statement {
    let _ = statement.visit(&mut Repair);
    statement
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn fixed(sql: &str) -> String {
        let statement = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .remove(0);
        repair(statement).to_string()
    }

    #[test]
    fn constant_group_keys_and_unnamed_aggregates() {
        assert_eq!(
            fixed(
                r#"SELECT * FROM t JOIN (SELECT min("s"."c"), "s"."k", true AS "__always_true" FROM s GROUP BY "s"."k", true) AS "q" ON t.k = "q"."k""#
            ),
            r#"SELECT * FROM t JOIN (SELECT min("s"."c") AS "min(s.c)", "s"."k", true AS "__always_true" FROM s GROUP BY "s"."k") AS "q" ON t.k = "q"."k""#
        );
        // A constant that is the only key is left alone (dropping it would
        // turn an empty result into one row).
        assert_eq!(
            fixed("SELECT count(x) FROM t GROUP BY true"),
            r#"SELECT count(x) AS "count(x)" FROM t GROUP BY true"#
        );
    }
}
