//! Join keys applied to file rows before an aggregate reads them.
//!
//! When a hash join has built its table, it publishes the keys it saw as a
//! *dynamic filter* on the scan feeding its other side, through any
//! aggregate in between (TPC-H Q17: `avg(l_quantity)` per part, joined with
//! a couple of hundred parts). A file scan uses that filter only to skip
//! whole row groups unless row-level filtering (`pushdown_filters`) is on,
//! which DataFusion 55 applies to every filter, static ones included, and
//! which makes ordinary date and quantity filters slower. So the aggregate
//! still grouped all six million rows to keep two hundred groups.
//!
//! [`PrefilterAggregates`] puts a filter with just the scan's dynamic
//! filters between a file scan and the aggregate that reads it. The filter
//! is the scan's own (DataFusion pushed it there because dropping those rows
//! cannot change the answer); until the join has finished building, it lets
//! every row through.
//!
//! A scan feeding a join directly gets such a filter only for a *semi*
//! join's keys from higher up (`x IN (subquery)`, TPC-H Q18), see
//! [`prefilter_join`]: the join's own keys are tested by its probe anyway,
//! and an inner join's key set is often a whole table, too large to pay for
//! testing every row against it.

use std::sync::Arc;

use datafusion::common::JoinType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::Result as DFResult;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::DynamicFilterPhysicalExpr;
use datafusion::physical_expr::utils::{
    collect_columns, conjunction_opt, reassign_expr_columns, split_conjunction,
};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::execution_plan::{ChildrenPropertiesMode, ReplaceChildrenOptions};
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::joins::HashJoinExec;
use datafusion::physical_plan::repartition::RepartitionExec;

/// Physical optimizer rule: see the module docs. Runs after DataFusion's own
/// rules, once join filters have been pushed to the scans.
#[derive(Debug, Default)]
pub struct PrefilterAggregates;

impl PhysicalOptimizerRule for PrefilterAggregates {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        if config.execution.parquet.pushdown_filters {
            return Ok(plan); // scans already filter every row
        }
        let semi_keys = semi_join_keys(&plan)?;
        plan.transform_down(|node| {
            if let Some(join) = node.downcast_ref::<HashJoinExec>()
                && !semi_keys.is_empty()
            {
                return prefilter_join(&node, join, &semi_keys);
            }
            let Some(aggregate) = node.downcast_ref::<AggregateExec>() else {
                return Ok(Transformed::no(node));
            };
            if !matches!(
                aggregate.mode(),
                AggregateMode::Partial | AggregateMode::Single | AggregateMode::SinglePartitioned
            ) {
                return Ok(Transformed::no(node));
            }
            match prefilter(aggregate.input(), &|_| true)? {
                Some(input) => {
                    let rewritten = replace_input(&node, input)?;
                    Ok(Transformed::new(rewritten, true, TreeNodeRecursion::Jump))
                }
                None => Ok(Transformed::no(node)),
            }
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "bluelamp_prefilter_aggregates"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// The probe-side key columns (by name) of the plan's semi joins — `x IN
/// (subquery)` — whose key sets are typically few and so worth applying
/// early.
fn semi_join_keys(plan: &Arc<dyn ExecutionPlan>) -> DFResult<Vec<String>> {
    let mut names = Vec::new();
    plan.apply(|node| {
        if let Some(join) = node.downcast_ref::<HashJoinExec>()
            && matches!(join.join_type(), JoinType::LeftSemi | JoinType::RightSemi)
        {
            names.extend(probe_key_names(join));
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(names)
}

fn probe_key_names(join: &HashJoinExec) -> Vec<String> {
    join.on()
        .iter()
        .flat_map(|(_, probe)| collect_columns(probe))
        .map(|column| column.name().to_string())
        .collect()
}

/// A hash join whose inputs read file scans carrying a semi join's dynamic
/// filter from higher up gets that filter applied right above the scans.
/// TPC-H Q18's `o_orderkey IN (57 keys)` reaches `orders` below the
/// customer join; there it would only skip row groups, and 1.5 million
/// orders would be joined with customers and line items before the 57
/// were picked. Only semi joins' filters are applied: an inner join's key
/// set is often the whole other table (Q8's 10,000 suppliers), and testing
/// six million rows against it costs more than it removes. The join's own
/// filter (on its probe side) is left to its probe, which does the same
/// work.
fn prefilter_join(
    node: &Arc<dyn ExecutionPlan>,
    join: &HashJoinExec,
    semi_keys: &[String],
) -> DFResult<Transformed<Arc<dyn ExecutionPlan>>> {
    let own = probe_key_names(join);
    let from_semi_join = |columns: &[String]| columns.iter().all(|c| semi_keys.contains(c));
    let not_own =
        |columns: &[String]| from_semi_join(columns) && !columns.iter().all(|c| own.contains(c));
    let build = prefilter(join.left(), &from_semi_join)?;
    let probe = prefilter(join.right(), &not_own)?;
    if build.is_none() && probe.is_none() {
        return Ok(Transformed::no(Arc::clone(node)));
    }
    let children = vec![
        build.unwrap_or_else(|| Arc::clone(join.left())),
        probe.unwrap_or_else(|| Arc::clone(join.right())),
    ];
    let rewritten = Arc::clone(node).replace_children(
        children,
        ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
    )?;
    Ok(Transformed::yes(rewritten))
}

/// `input` with a filter of its file scan's dynamic filters above the scan,
/// looking through repartitioning and coalescing (which keep rows and
/// columns as they are); `None` when there is no such scan or filter.
/// Only the dynamic filters whose columns (by name) `wanted` accepts.
fn prefilter(
    input: &Arc<dyn ExecutionPlan>,
    wanted: &dyn Fn(&[String]) -> bool,
) -> DFResult<Option<Arc<dyn ExecutionPlan>>> {
    if (input.downcast_ref::<RepartitionExec>().is_some()
        || input.downcast_ref::<CoalescePartitionsExec>().is_some())
        && let [child] = input.children()[..]
    {
        return match prefilter(child, wanted)? {
            Some(child) => Ok(Some(replace_input(input, child)?)),
            None => Ok(None),
        };
    }
    let Some(scan) = input.downcast_ref::<DataSourceExec>() else {
        return Ok(None);
    };
    let Some(config) = scan.data_source().downcast_ref::<FileScanConfig>() else {
        return Ok(None);
    };
    let Some(filter) = config.file_source().filter() else {
        return Ok(None);
    };
    let schema = input.schema();
    // The scan's filter names the table's columns; the new filter reads the
    // scan's output, so every column it needs must be projected.
    let dynamic: Vec<Arc<dyn PhysicalExpr>> = split_conjunction(&filter)
        .into_iter()
        .filter(|part| is_dynamic(part))
        .filter(|part| {
            let columns: Vec<String> = collect_columns(part)
                .iter()
                .map(|column| column.name().to_string())
                .collect();
            wanted(&columns)
        })
        .filter_map(|part| reassign_expr_columns(Arc::clone(part), &schema).ok())
        .collect();
    let Some(predicate) = conjunction_opt(dynamic) else {
        return Ok(None);
    };
    Ok(Some(Arc::new(FilterExec::try_new(
        predicate,
        Arc::clone(input),
    )?)))
}

/// `node` reading from `input` instead of its one child.
fn replace_input(
    node: &Arc<dyn ExecutionPlan>,
    input: Arc<dyn ExecutionPlan>,
) -> DFResult<Arc<dyn ExecutionPlan>> {
    Arc::clone(node).replace_children(
        vec![input],
        ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
    )
}

/// Whether `expr` holds a join's dynamic filter anywhere inside it.
fn is_dynamic(expr: &Arc<dyn PhysicalExpr>) -> bool {
    expr.exists(|e| Ok(e.downcast_ref::<DynamicFilterPhysicalExpr>().is_some()))
        .unwrap_or(false)
}
