//! Workaround for DataFusion's SQL unparser (`datafusion-sql 55.2`, which
//! datafusion-federation 0.5.8's `VirtualExecutionPlan` uses to write a
//! federated sub-plan as SQL): a derived table's aggregate is written without
//! the qualifiers of the name the query around it asks for.
//!
//! Where the aggregate's input is itself a derived table (the scalar
//! subquery of TPC-H Q2 joins several tables), the unparser writes the
//! aggregate's argument unqualified, while the query around it still reads
//! the column by DataFusion's qualified name:
//!
//! ```sql
//! ... EXISTS (SELECT 1 FROM (SELECT min("cost"), "part" FROM (SELECT "q"."part", "q"."cost"
//!   FROM "quotes" AS "q" INNER JOIN ...) AS "derived_projection" GROUP BY "part")
//!   AS "__scalar_sq_1" WHERE ... ("o"."cost" = "__scalar_sq_1"."min(q.cost)"))
//! ```
//!
//! Once `unnamed_aggregates.rs` has named the item `"min(cost)"`, it still is
//! not the `"min(q.cost)"` asked for; the item takes the name asked for
//! ([`name_derived_columns_as_asked`]).
//!
//! Upstream issue: no upstream issue found as of 2026-12; one should be filed
//! against apache/datafusion (the unparser could alias each computed item of a
//! derived table with the name its plan gives it).
//! <https://github.com/apache/datafusion/pull/25521> ("fix: preserve computed
//! names in derived SQL projections", open when last checked) is related and
//! may fix this too.
//!
//! Remove when: the unparser names such items as the plan does, which the
//! test `upstream_still_drops_the_qualifiers_of_derived_aggregates` notices
//! by failing.

use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;
use std::sync::LazyLock;

use datafusion::sql::sqlparser::ast::{
    Expr, Ident, JoinConstraint, Select, SelectItem, SetExpr, TableFactor,
};
use regex::Regex;

use super::qualifiers::join_constraint;

/// `min(partsupp.ps_supplycost)` -> `min(ps_supplycost)`.
fn without_qualifiers(name: &str) -> String {
    static QUALIFIER: LazyLock<Option<Regex>> =
        LazyLock::new(|| Regex::new(r"[A-Za-z_][A-Za-z0-9_]*\.").ok());
    match QUALIFIER.as_ref() {
        Some(re) => re.replace_all(name, "").into_owned(),
        None => name.to_string(),
    }
}

/// Renames a derived table's item to the name the enclosing SELECT uses for
/// it, where the two differ only by qualifiers inside the name.
pub(super) fn name_derived_columns_as_asked(select: &mut Select) {
    // Names the enclosing SELECT asks of each derived table.
    let mut asked: HashMap<String, HashSet<String>> = HashMap::new();
    let mut collect = |expr: &Expr| {
        let _ = datafusion::sql::sqlparser::ast::visit_expressions(expr, |e| {
            if let Expr::CompoundIdentifier(parts) = e
                && parts.len() == 2
            {
                asked
                    .entry(parts[0].value.clone())
                    .or_default()
                    .insert(parts[1].value.clone());
            }
            ControlFlow::<()>::Continue(())
        });
    };
    for item in &select.projection {
        if let SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } = item {
            collect(expr);
        }
    }
    if let Some(selection) = &select.selection {
        collect(selection);
    }
    for table in &mut select.from {
        for join in &mut table.joins {
            if let Some(JoinConstraint::On(on)) = join_constraint(&mut join.join_operator) {
                collect(on);
            }
        }
    }
    let relations = select.from.iter_mut().flat_map(|t| {
        std::iter::once(&mut t.relation).chain(t.joins.iter_mut().map(|j| &mut j.relation))
    });
    for relation in relations {
        let TableFactor::Derived {
            subquery,
            alias: Some(alias),
            ..
        } = relation
        else {
            continue;
        };
        let Some(names) = asked.get(&alias.name.value) else {
            continue;
        };
        let SetExpr::Select(inner) = subquery.body.as_mut() else {
            continue;
        };
        let offered: HashSet<String> = inner
            .projection
            .iter()
            .filter_map(|item| match item {
                SelectItem::ExprWithAlias { alias, .. } => Some(alias.value.clone()),
                _ => None,
            })
            .collect();
        for name in names.iter().filter(|n| !offered.contains(*n)) {
            let wanted = without_qualifiers(name);
            let mut matches = inner.projection.iter_mut().filter_map(|item| match item {
                SelectItem::ExprWithAlias { alias, .. }
                    if without_qualifiers(&alias.value) == wanted =>
                {
                    Some(alias)
                }
                _ => None,
            });
            if let (Some(alias), None) = (matches.next(), matches.next()) {
                *alias = Ident::with_quote('"', name.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::sql::upstream::test_support::{fixed, optimized, unparsed};

    /// A correlated scalar subquery over a join (TPC-H Q2's shape, cut
    /// down), as DataFusion's optimizer decorrelates it, unparsed by
    /// DataFusion alone.
    #[tokio::test]
    async fn upstream_still_drops_the_qualifiers_of_derived_aggregates() {
        let sql = unparsed(
            &optimized(
                "SELECT o.part FROM offers o WHERE o.cost = (SELECT min(q.cost) FROM quotes q \
                 JOIN nation n ON n.n_nationkey = q.part WHERE q.part = o.part AND n.n_name = 'X')",
            )
            .await,
        );
        assert!(
            sql.contains(r#""__scalar_sq_1"."min(q.cost)""#),
            "the query around no longer asks for the qualified name; see whether this workaround is still needed: {sql}"
        );
        assert!(
            sql.contains(r#"(SELECT min("cost"), "part" FROM (SELECT "#)
                && !sql.contains(r#"AS "min(q.cost)""#),
            "upstream fixed this: delete this workaround (see file doc): {sql}"
        );
        let repaired = fixed(&sql);
        assert!(
            repaired.contains(r#"(SELECT min("cost") AS "min(q.cost)", "part" FROM (SELECT "#),
            "{repaired}"
        );
    }

    #[test]
    fn derived_items_take_the_qualified_name_asked_for() {
        assert_eq!(
            fixed(
                r#"SELECT 1 FROM p JOIN (SELECT min("c") AS "min(c)", "k" FROM (SELECT ps.c, ps.k FROM ps) AS "derived_projection" GROUP BY "k") AS "sq" ON p.k = "sq"."k" AND p.c = "sq"."min(ps.c)""#
            ),
            r#"SELECT 1 FROM p JOIN (SELECT min("c") AS "min(ps.c)", "k" FROM (SELECT ps.c, ps.k FROM ps) AS "derived_projection" GROUP BY "k") AS "sq" ON p.k = "sq"."k" AND p.c = "sq"."min(ps.c)""#
        );
    }
}
