//! Not a workaround itself: what the workarounds that point column
//! qualifiers elsewhere share (`requalify.rs`, `aliased_table_filters.rs`,
//! `derived_column_names.rs`). Delete it with the last of them.

use std::collections::HashMap;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, GroupByExpr, Ident, JoinConstraint, JoinOperator, Query, Select, SelectItem, VisitMut,
    VisitorMut,
};

/// Applies `fix` to every expression of `select` that names its tables: the
/// items, WHERE, HAVING, GROUP BY and the joins' ON conditions.
pub(super) fn rename_in_select(select: &mut Select, fix: &mut Unhide<'_>) {
    for item in &mut select.projection {
        match item {
            SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } => {
                let _ = expr.visit(fix);
            }
            _ => {}
        }
    }
    if let Some(selection) = &mut select.selection {
        let _ = selection.visit(fix);
    }
    if let Some(having) = &mut select.having {
        let _ = having.visit(fix);
    }
    if let GroupByExpr::Expressions(keys, _) = &mut select.group_by {
        for key in keys {
            let _ = key.visit(fix);
        }
    }
    for table in &mut select.from {
        for join in &mut table.joins {
            if let Some(JoinConstraint::On(on)) = join_constraint(&mut join.join_operator) {
                let _ = on.visit(fix);
            }
        }
    }
}

pub(super) fn join_constraint(operator: &mut JoinOperator) -> Option<&mut JoinConstraint> {
    match operator {
        JoinOperator::Join(c)
        | JoinOperator::Inner(c)
        | JoinOperator::Left(c)
        | JoinOperator::LeftOuter(c)
        | JoinOperator::Right(c)
        | JoinOperator::RightOuter(c)
        | JoinOperator::FullOuter(c)
        | JoinOperator::LeftSemi(c)
        | JoinOperator::RightSemi(c)
        | JoinOperator::LeftAnti(c)
        | JoinOperator::RightAnti(c)
        | JoinOperator::Semi(c)
        | JoinOperator::Anti(c) => Some(c),
        _ => None,
    }
}

/// Requalifies two-part column references outside nested queries.
pub(super) struct Unhide<'a> {
    pub(super) renames: &'a HashMap<String, Ident>,
    pub(super) depth: usize,
}

impl VisitorMut for Unhide<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, _: &mut Query) -> ControlFlow<()> {
        self.depth += 1;
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _: &mut Query) -> ControlFlow<()> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if self.depth == 0
            && let Expr::CompoundIdentifier(parts) = expr
            && parts.len() == 2
            && let Some(alias) = self.renames.get(&parts[0].value)
        {
            parts[0] = alias.clone();
        }
        ControlFlow::Continue(())
    }
}
