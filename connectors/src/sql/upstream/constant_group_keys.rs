//! Workaround for DataFusion's SQL unparser (`datafusion-sql 55.2`, which
//! datafusion-federation 0.5.8's `VirtualExecutionPlan` uses to write a
//! federated sub-plan as SQL): a constant grouping key is written as a bare
//! literal.
//!
//! DataFusion's scalar-subquery decorrelation (TPC-H Q2, or any correlated
//! `count` subquery) groups by `true AS __always_true` beside the correlated
//! key. Bluelamp federates right after `push_down_filter`
//! (`engine/src/session.rs`), before DataFusion's `eliminate_group_by_constant`
//! rule would drop that key, and the unparser writes
//!
//! ```sql
//! SELECT count("q"."cost"), "q"."part", true AS "__always_true"
//! FROM "quotes" AS "q" GROUP BY "q"."part", true
//! ```
//!
//! which PostgreSQL refuses (`non-integer constant in GROUP BY`). Grouping by
//! a constant beside another key changes nothing, so such keys are dropped;
//! a constant that is the only key is kept, since dropping it would turn an
//! empty result into one row ([`drop_constant_keys`]).
//!
//! Upstream issue: no upstream issue found as of 2026-12; one should be filed
//! against apache/datafusion (the unparser could leave out a constant grouping
//! key where other keys remain, as `eliminate_group_by_constant` does).
//!
//! Remove when: the unparser no longer writes such a key, which the test
//! `upstream_still_groups_by_a_bare_constant` notices by failing.

use datafusion::sql::sqlparser::ast::{Expr, GroupByExpr, Select, Value};

/// Drops the constant keys of `select`'s GROUP BY where a key that is not
/// constant remains.
pub(super) fn drop_constant_keys(select: &mut Select) {
    if let GroupByExpr::Expressions(keys, _) = &mut select.group_by {
        let constant =
            |e: &Expr| matches!(e, Expr::Value(v) if !matches!(v.value, Value::Placeholder(_)));
        if keys.iter().any(|k| !constant(k)) {
            keys.retain(|k| !constant(k));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use datafusion::functions_aggregate::expr_fn::count;
    use datafusion::prelude::{col, lit};

    use crate::sql::upstream::test_support::{context, fixed, unparsed};

    /// The aggregate DataFusion's decorrelation builds for a correlated
    /// `count` subquery (`Aggregate: groupBy=[[quotes.part, Boolean(true) AS
    /// __always_true]]`), built directly (`LogicalPlanBuilder::aggregate`,
    /// as the decorrelation does): DataFusion's own optimizer would drop the
    /// constant key before its result could be unparsed here.
    #[tokio::test]
    async fn upstream_still_groups_by_a_bare_constant() {
        let ctx = context().await;
        let plan = ctx
            .table("quotes")
            .await
            .unwrap()
            .aggregate(
                vec![col("part"), lit(true).alias("__always_true")],
                vec![count(col("cost"))],
            )
            .unwrap()
            .into_unoptimized_plan();
        let sql = unparsed(&plan);
        assert!(
            sql.ends_with(r#"GROUP BY "quotes"."part", true"#),
            "upstream fixed this: delete this workaround (see file doc): {sql}"
        );
        let repaired = fixed(&sql);
        assert!(
            repaired.ends_with(r#"FROM "quotes" GROUP BY "quotes"."part""#),
            "{repaired}"
        );
    }
}
