//! Workaround for DataFusion's SQL unparser (`datafusion-sql 55.2`, which
//! datafusion-federation 0.5.8's `VirtualExecutionPlan` uses to write a
//! federated sub-plan as SQL): an aggregate that is a join's direct input
//! loses its `GROUP BY`.
//!
//! Where scalar subqueries are decorrelated into joins (a cluster's plans:
//! `enable_physical_uncorrelated_scalar_subquery` is off there, see
//! `cluster_settings` in the engine), TPC-H Q11's `GROUP BY ps_partkey
//! HAVING sum(v) > (SELECT sum(v) * 0.0001 ...)` becomes a join of the
//! grouped aggregate with the subquery's one row. The unparser writes the
//! aggregate into the join's own `SELECT`, without its `GROUP BY` or its
//! `sum`, and reads its result by name:
//!
//! ```sql
//! SELECT "partsupp"."ps_partkey", "sum(public.partsupp.ps_supplycost * ...)" AS "value"
//! FROM (SELECT ... FROM "public"."partsupp" ...) AS "derived_projection"
//! INNER JOIN (SELECT ...) AS "__scalar_sq_1" ON ...
//! ```
//!
//! which PostgreSQL refuses (`column "sum(...)" does not exist`). Such a
//! join ([`loses_aggregate`]) is not sent: it runs in DataFusion over its
//! two sides, each sent on its own (an aggregate alone is written right).
//!
//! Upstream issue: none found as of 2026-12; one should be filed against
//! apache/datafusion (the unparser could write an aggregate input of a join
//! as a derived table, as it does a projection).
//!
//! Remove when: the unparser writes the aggregate, which the test
//! `upstream_still_loses_an_aggregate_under_a_join` notices by failing.

use datafusion::logical_expr::LogicalPlan;

/// Whether `plan` is a join with an aggregate (under filters only) as one
/// of its inputs, which the unparser would write without its grouping.
pub(crate) fn loses_aggregate(plan: &LogicalPlan) -> bool {
    fn aggregate(plan: &LogicalPlan) -> bool {
        match plan {
            LogicalPlan::Aggregate(_) => true,
            LogicalPlan::Filter(filter) => aggregate(&filter.input),
            _ => false,
        }
    }
    matches!(plan, LogicalPlan::Join(join) if aggregate(&join.left) || aggregate(&join.right))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use datafusion::common::tree_node::TreeNode;

    use super::*;
    use crate::sql::upstream::test_support::{context, unparsed};

    /// A `HAVING` over a scalar subquery, decorrelated into a join as a
    /// cluster plans it.
    #[tokio::test]
    async fn upstream_still_loses_an_aggregate_under_a_join() {
        let ctx = context().await;
        ctx.sql("SET datafusion.optimizer.enable_physical_uncorrelated_scalar_subquery = false")
            .await
            .unwrap();
        let plan = ctx
            .sql(
                "SELECT part, sum(cost) AS total FROM quotes GROUP BY part \
                 HAVING sum(cost) > (SELECT sum(cost) * 0.1 FROM offers)",
            )
            .await
            .unwrap()
            .into_optimized_plan()
            .unwrap();
        assert!(
            plan.exists(|node| Ok(loses_aggregate(node))).unwrap(),
            "the join over the aggregate: {plan}"
        );
        let sql = unparsed(&plan);
        assert!(
            !sql.contains("GROUP BY"),
            "upstream fixed this: delete this workaround (see file doc): {sql}"
        );
    }
}
