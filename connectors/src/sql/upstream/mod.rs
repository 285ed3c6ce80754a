//! Workarounds for defects of upstream crates, one file each, so that each
//! can be deleted on its own once upstream has fixed its defect. What is our
//! own choice about the SQL a database is sent (the source hooks, MySQL's
//! NULL ordering, empty select lists for MySQL) is in [`super::repair`].
//!
//! Four mend the database crates (`datafusion-table-providers` 0.15.1):
//!
//! | file | the crate's defect | upstream issue | remove when |
//! | --- | --- | --- | --- |
//! | `mysql_reader.rs` | the MySQL connection deletes every `"` from the SQL it sends, string literals included | none found as of 2026-12 | `query_arrow` sends SQL unchanged |
//! | `sqlite_declared_types.rs` | a SQLite table's columns inferred from a row: an empty table has none, `BOOLEAN` reads as an integer | none found as of 2026-12 | the schema follows the table's declaration |
//! | `sqlite_reader.rs` | the SQLite reader ends a result quietly at a step that fails (`while let Ok(Some(row))`): a short answer with no error | none found as of 2026-12 | `rows_to_arrow` returns the step's error |
//! | `views.rs` | PostgreSQL and SQLite sources list tables only, so views (and PostgreSQL's materialized views and foreign tables) are not exposed | none found as of 2026-12 | `get_tables` lists views |
//!
//! Every other workaround here mends DataFusion's SQL unparser
//! (`datafusion::sql::unparser`, crate `datafusion-sql 55.2`), which
//! datafusion-federation 0.5.8's `VirtualExecutionPlan` uses to write each
//! federated sub-plan as the SQL its database runs. Five mend the unparsed
//! statement ([`repair`], run by [`super::repair::sql_hook`]); three mend the
//! plan before it is unparsed ([`prepare_plan`], run by
//! [`super::repair::plan_hook`]). DataFusion's scalar-subquery decorrelation
//! (TPC-H Q2) produces the first two shapes.
//!
//! | file | the unparser's defect | upstream issue | remove when |
//! | --- | --- | --- | --- |
//! | `constant_group_keys.rs` | a constant grouping key (decorrelation's `__always_true`) written as `GROUP BY k, true`, which PostgreSQL refuses | none found as of 2026-12 | the unparser no longer writes a bare constant key beside others |
//! | `unnamed_aggregates.rs` | a derived table's aggregate written without an alias (`SELECT min("q"."cost") ...`) while the query around it reads `"sq"."min(q.cost)"` | apache/datafusion PR #25521 (open) | a release names derived tables' computed items as the plan does |
//! | `requalify.rs` | an outer query over a derived table the unparser made (`... AS "derived_sort"`) still qualifying columns with the inner tables' names | apache/datafusion#13027, fixed by PR #24808 (after 55.2) | Bluelamp runs on a DataFusion release with #24808 |
//! | `aliased_table_filters.rs` | a filter of a table read under an alias naming the table (`FROM "a" AS "t" WHERE "a"."tag" = ...`) | apache/datafusion#25545 (fix: PR #25547) | Bluelamp runs on a DataFusion release with that fix |
//! | `derived_column_names.rs` | a derived table's aggregate written without qualifiers (`min("cost")`) while the query around it asks for `"sq"."min(q.cost)"` | none found as of 2026-12 (PR #25521 is related) | a release names derived tables' computed items as the plan does |
//! | `double_alias.rs` | a table under two aliases (a view read under another name) written under the inner one only, leaving the outer alias's references without a table | none found as of 2026-12 | the unparser writes the outer alias |
//! | `semi_join_subquery.rs` | a semi or anti join whose subquery side is a bare table scan written as `EXISTS (SELECT 1 FROM t AS alias WHERE ...)` without the scan's own filters | none found as of 2026-12 | the unparser keeps the scan's filters in the subquery |
//! | `aggregate_under_join.rs` | an aggregate that is a join's direct input (a decorrelated `HAVING ... > (SELECT ...)`, TPC-H Q11 on a cluster) written into the join's `SELECT` without its `GROUP BY`; such joins run in DataFusion ([`loses_aggregate`], checked by [`super::functions`]) | none found as of 2026-12 | the unparser writes the aggregate |
//! | `not_in.rs` | a null-aware anti join (`x NOT IN (SELECT y ...)`) written as a plain `NOT EXISTS (... WHERE x = y)`, which keeps rows NOT IN drops when NULLs meet | none found as of 2026-12 | the unparser writes NOT IN's meaning |
//!
//! `qualifiers.rs` is no workaround: it holds what `requalify.rs`,
//! `aliased_table_filters.rs` and `derived_column_names.rs` share, and goes
//! with the last of them.
//!
//! Each workaround's file has a test that builds the defective shape, has
//! DataFusion's own unparser write it (without any of our repairs) and
//! asserts that the defect is still there. When such a test fails with
//! "upstream fixed this", delete that file, its `mod` line and its call in
//! [`repair`] or [`prepare_plan`] (keeping the `Transformed` flags right
//! there), and its row above.

mod aggregate_under_join;
mod aliased_table_filters;
mod constant_group_keys;
mod derived_column_names;
mod double_alias;
pub(super) mod mysql_reader;
mod not_in;
mod qualifiers;
mod requalify;
mod semi_join_subquery;
pub(super) mod sqlite_declared_types;
pub(super) mod sqlite_reader;
mod unnamed_aggregates;
pub(super) mod views;

use std::ops::ControlFlow;

use datafusion::common::tree_node::Transformed;
use datafusion::error::Result as DFResult;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::sqlparser::ast::{Query, Select, SetExpr, Statement, VisitMut, VisitorMut};

use super::repair::transform_federated;

pub(crate) use aggregate_under_join::loses_aggregate;

/// The statement mends, in the order they run on each query (outermost
/// first, then the queries inside it).
struct Repair;

impl VisitorMut for Repair {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<Self::Break> {
        each_select(&mut query.body, &mut |select: &mut Select| {
            constant_group_keys::drop_constant_keys(select);
            unnamed_aggregates::name_unnamed_functions(select);
        });
        requalify::requalify(query);
        aliased_table_filters::unhide_aliased_tables(&mut query.body);
        ControlFlow::Continue(())
    }

    /// After the derived tables inside have had their items named.
    fn post_visit_query(&mut self, query: &mut Query) -> ControlFlow<Self::Break> {
        if let SetExpr::Select(select) = query.body.as_mut() {
            derived_column_names::name_derived_columns_as_asked(select);
        }
        ControlFlow::Continue(())
    }
}

/// Applies `f` to each SELECT of a query body, through set operations and
/// parenthesized queries (other nested queries are visited on their own).
fn each_select(body: &mut SetExpr, f: &mut dyn FnMut(&mut Select)) {
    match body {
        SetExpr::Select(select) => f(select.as_mut()),
        SetExpr::SetOperation { left, right, .. } => {
            each_select(left, f);
            each_select(right, f);
        }
        SetExpr::Query(query) => each_select(&mut query.body, f),
        _ => {}
    }
}

/// Applies the statement mends to one statement.
pub(super) fn repair(mut statement: Statement) -> Statement {
    let _ = statement.visit(&mut Repair);
    statement
}

/// Rewrites a federated sub-plan into shapes the SQL unparser renders
/// correctly (see the module notes); applied before the plan is unparsed.
/// Each mend's node is reported as transformed, or the sub-plan is kept as
/// it was (see [`transform_federated`]).
pub(super) fn prepare_plan(plan: LogicalPlan) -> DFResult<LogicalPlan> {
    transform_federated(plan, |node| {
        let mut join = match node {
            LogicalPlan::Join(join) => join,
            LogicalPlan::SubqueryAlias(outer) => return double_alias::collapse_aliases(outer),
            other => return Ok(Transformed::no(other)),
        };
        if join.null_aware {
            join = not_in::not_in_as_exists(join);
        }
        semi_join_subquery::project_subquery_side(join)
    })
}

/// What the workarounds' tests share: our statement mends applied to SQL
/// text, and DataFusion's own unparser applied to plans of a session with a
/// few empty tables.
#[cfg(test)]
mod test_support {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::sync::Arc;

    use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
    use async_trait::async_trait;
    use datafusion::catalog::Session;
    use datafusion::datasource::{MemTable, TableProvider};
    use datafusion::error::Result as DFResult;
    use datafusion::logical_expr::{Expr, LogicalPlan, TableProviderFilterPushDown, TableType};
    use datafusion::physical_plan::ExecutionPlan;
    use datafusion::prelude::SessionContext;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;
    use datafusion::sql::unparser::Unparser;
    use datafusion::sql::unparser::dialect::PostgreSqlDialect as UnparserPostgreSqlDialect;

    /// `sql` (PostgreSQL's dialect) with our statement mends applied.
    pub(super) fn fixed(sql: &str) -> String {
        let statement = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .remove(0);
        super::repair(statement).to_string()
    }

    /// The SQL DataFusion's own unparser writes for `plan` in PostgreSQL's
    /// dialect, as federation would have it written, before any of our
    /// mends.
    pub(super) fn unparsed(plan: &LogicalPlan) -> String {
        Unparser::new(&UnparserPostgreSqlDialect {})
            .plan_to_sql(plan)
            .unwrap()
            .to_string()
    }

    /// The plan DataFusion's default optimizer makes of `sql` in [`context`].
    pub(super) async fn optimized(sql: &str) -> LogicalPlan {
        let ctx = context().await;
        ctx.sql(sql).await.unwrap().into_optimized_plan().unwrap()
    }

    /// A session with empty tables, every column nullable: `offers(part,
    /// cost)`, `quotes(part, cost)`, `nation(n_nationkey, n_name)`, `a(x,
    /// tag)`, `recs(station, seq)` and `b(y, keep)` (whose filters stay in
    /// its scans, see [`ExactFilters`]), and the view `nview` over `nation`.
    pub(super) async fn context() -> SessionContext {
        let ctx = SessionContext::new();
        for (name, columns) in [
            (
                "offers",
                [("part", DataType::Int32), ("cost", DataType::Float64)],
            ),
            (
                "quotes",
                [("part", DataType::Int32), ("cost", DataType::Float64)],
            ),
            (
                "nation",
                [("n_nationkey", DataType::Int32), ("n_name", DataType::Utf8)],
            ),
            ("a", [("x", DataType::Int32), ("tag", DataType::Utf8)]),
            (
                "recs",
                [("station", DataType::Utf8), ("seq", DataType::Int32)],
            ),
        ] {
            ctx.register_table(name, Arc::new(empty(&columns))).unwrap();
        }
        let b = empty(&[("y", DataType::Int32), ("keep", DataType::Boolean)]);
        ctx.register_table("b", Arc::new(ExactFilters(b))).unwrap();
        ctx.sql("CREATE VIEW nview AS SELECT n_nationkey, n_name FROM nation")
            .await
            .unwrap();
        ctx
    }

    fn empty(columns: &[(&str, DataType)]) -> MemTable {
        let fields: Vec<Field> = columns
            .iter()
            .map(|(name, data_type)| Field::new(*name, data_type.clone(), true))
            .collect();
        MemTable::try_new(Arc::new(Schema::new(fields)), vec![vec![]]).unwrap()
    }

    /// A table that takes every filter on it as exact, as the SQL sources'
    /// federated tables do for the filters their database runs: the
    /// optimizer leaves such filters in the scan (`TableScan ...
    /// full_filters=[...]`), with no `Filter` above.
    #[derive(Debug)]
    struct ExactFilters(MemTable);

    #[async_trait]
    impl TableProvider for ExactFilters {
        fn schema(&self) -> SchemaRef {
            self.0.schema()
        }

        fn table_type(&self) -> TableType {
            TableType::Base
        }

        async fn scan(
            &self,
            state: &dyn Session,
            projection: Option<&Vec<usize>>,
            filters: &[Expr],
            limit: Option<usize>,
        ) -> DFResult<Arc<dyn ExecutionPlan>> {
            self.0.scan(state, projection, filters, limit).await
        }

        fn supports_filters_pushdown(
            &self,
            filters: &[&Expr],
        ) -> DFResult<Vec<TableProviderFilterPushDown>> {
            Ok(vec![TableProviderFilterPushDown::Exact; filters.len()])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::fixed;

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

/// A pool over the SQLite file at `path`, as the SQLite source opens it, for
/// the tests that ask the crate itself.
#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
async fn sqlite_pool(
    path: &std::path::Path,
) -> datafusion_table_providers::sql::db_connection_pool::sqlitepool::SqliteConnectionPool {
    use datafusion_table_providers::sql::db_connection_pool::Mode;
    use datafusion_table_providers::sql::db_connection_pool::sqlitepool::SqliteConnectionPoolFactory;
    SqliteConnectionPoolFactory::new(
        &path.display().to_string(),
        Mode::File,
        std::time::Duration::from_secs(5),
    )
    .build()
    .await
    .unwrap()
}
