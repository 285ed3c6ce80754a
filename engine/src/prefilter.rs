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
//! every row through. Scans feeding a join directly are left alone: the
//! join's probe does the same work.

use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::Result as DFResult;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::DynamicFilterPhysicalExpr;
use datafusion::physical_expr::utils::{conjunction_opt, reassign_expr_columns, split_conjunction};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::execution_plan::{ChildrenPropertiesMode, ReplaceChildrenOptions};
use datafusion::physical_plan::filter::FilterExec;
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
        plan.transform_down(|node| {
            let Some(aggregate) = node.downcast_ref::<AggregateExec>() else {
                return Ok(Transformed::no(node));
            };
            if !matches!(
                aggregate.mode(),
                AggregateMode::Partial | AggregateMode::Single | AggregateMode::SinglePartitioned
            ) {
                return Ok(Transformed::no(node));
            }
            match prefilter(aggregate.input())? {
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

/// `input` with a filter of its file scan's dynamic filters above the scan,
/// looking through repartitioning (which keeps rows and columns as they
/// are); `None` when there is no such scan or filter.
fn prefilter(input: &Arc<dyn ExecutionPlan>) -> DFResult<Option<Arc<dyn ExecutionPlan>>> {
    if input.downcast_ref::<RepartitionExec>().is_some()
        && let [child] = input.children()[..]
    {
        return match prefilter(child)? {
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
