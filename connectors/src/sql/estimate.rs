//! Row estimates for the sub-plans Bluelamp sends to a database.
//!
//! DataFusion chooses join strategies from each input's statistics: which
//! side of a hash join to build and whether a small side is collected once
//! instead of both sides being repartitioned. A federated scan reports
//! nothing by default, so every join with a database table was planned
//! blind. [`remote_statement`] renders a federated sub-plan as the SQL the
//! database would receive, so the database's own planner can estimate it
//! (PostgreSQL: `EXPLAIN (FORMAT JSON)`, see [`postgres_explain`]).

use std::any::Any;
use std::collections::HashMap;
use std::ops::ControlFlow;

use datafusion::common::stats::Precision;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{Statistics, TableReference};
use datafusion::error::Result as DFResult;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::sqlparser::ast::{
    Ident, ObjectName, Statement, TableAlias, TableFactor, VisitMut, VisitorMut,
};
use datafusion::sql::unparser::Unparser;
use datafusion::sql::unparser::dialect::Dialect;
use datafusion_federation::get_table_source;
use datafusion_federation::sql::SQLTableSource;

/// `plan` (a federated sub-plan, which names tables as Bluelamp knows them)
/// as a statement naming the database's own tables. Each renamed table keeps
/// its local name as an alias, so column qualifiers still resolve.
pub fn remote_statement(plan: &LogicalPlan, dialect: &dyn Dialect) -> DFResult<Statement> {
    let mut renames: HashMap<Vec<String>, TableReference> = HashMap::new();
    plan.apply(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && let Some(source) = get_table_source(&scan.source)?
            && let Some(sql) = (source.as_ref() as &dyn Any).downcast_ref::<SQLTableSource>()
        {
            renames.insert(scan.table_name.to_vec(), sql.table_reference());
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    let mut statement = Unparser::new(dialect).plan_to_sql(plan)?;
    let _ = statement.visit(&mut RenameTables { renames: &renames });
    Ok(statement)
}

struct RenameTables<'a> {
    renames: &'a HashMap<Vec<String>, TableReference>,
}

impl VisitorMut for RenameTables<'_> {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        let TableFactor::Table { name, alias, .. } = factor else {
            return ControlFlow::Continue(());
        };
        let parts: Vec<String> = name
            .0
            .iter()
            .filter_map(|part| part.as_ident().map(|ident| ident.value.clone()))
            .collect();
        if let Some(remote) = self.renames.get(&parts) {
            let local = parts.last().cloned().unwrap_or_default();
            *name = ObjectName::from(
                remote
                    .to_vec()
                    .into_iter()
                    .map(|part| Ident::with_quote('"', part))
                    .collect::<Vec<_>>(),
            );
            if alias.is_none() {
                *alias = Some(TableAlias {
                    explicit: true,
                    name: Ident::with_quote('"', local),
                    columns: Vec::new(),
                    at: None,
                });
            }
        }
        ControlFlow::Continue(())
    }
}

/// Statistics from PostgreSQL's `EXPLAIN (FORMAT JSON)` output: the top
/// plan node's estimated rows and row width, both inexact. `None` when the
/// output does not have them.
pub fn postgres_explain(
    explain: &serde_json::Value,
    schema: &arrow::datatypes::Schema,
) -> Option<Statistics> {
    let plan = explain.get(0)?.get("Plan")?;
    let rows = plan.get("Plan Rows")?.as_f64()?;
    let width = plan.get("Plan Width")?.as_f64()?;
    if !(rows.is_finite() && width.is_finite()) || rows < 0.0 || width < 0.0 {
        return None;
    }
    let mut statistics = Statistics::new_unknown(schema);
    statistics.num_rows = Precision::Inexact(rows.round() as usize);
    statistics.total_byte_size = Precision::Inexact((rows * width).round() as usize);
    Some(statistics)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{DataType, Field, Schema};

    fn schema() -> Schema {
        Schema::new(vec![Field::new("a", DataType::Int64, true)])
    }

    #[test]
    fn reads_rows_and_width_from_the_top_plan_node() {
        let explain = serde_json::json!([{"Plan": {
            "Node Type": "Seq Scan", "Plan Rows": 150000, "Plan Width": 12,
            "Plans": [{"Plan Rows": 5}]
        }}]);
        let statistics = postgres_explain(&explain, &schema()).expect("statistics");
        assert_eq!(statistics.num_rows, Precision::Inexact(150_000));
        assert_eq!(statistics.total_byte_size, Precision::Inexact(1_800_000));
        assert_eq!(statistics.column_statistics.len(), 1);
    }

    #[test]
    fn output_without_estimates_gives_nothing() {
        for explain in [
            serde_json::json!([]),
            serde_json::json!({"Plan": {"Plan Rows": 1}}),
            serde_json::json!([{"Plan": {"Plan Rows": "many", "Plan Width": 4}}]),
            serde_json::json!([{"Plan": {"Plan Rows": -1.0, "Plan Width": 4}}]),
        ] {
            assert!(postgres_explain(&explain, &schema()).is_none(), "{explain}");
        }
    }
}
