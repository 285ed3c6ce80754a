//! Enforcement: every governed table in a plan becomes the source's table
//! under the principal's row filters and masks, before optimisation.
//!
//! A scan of a [`GovernedTable`] is replaced by
//!
//! ```text
//! Projection: visible columns, masked ones as their mask, under the table's name
//!   Filter: row filter AND row filter ... (principal attributes as constants)
//!     TableScan: the source's table, every column
//! ```
//!
//! whose output is exactly the governed table's columns, so the rest of the
//! plan (joins, subqueries, CTEs, unions, views, aggregates) is unchanged and
//! sees only permitted rows and masked values. A predicate of the user's on a
//! masked column is a predicate on the mask's output, so it cannot probe the
//! real value. DataFusion then pushes the row filter down to the source like
//! any other predicate (into the remote SQL, or the REST parameters).
//!
//! Pushing down puts the user's predicates beside the row filter, and
//! DataFusion and databases evaluate a conjunction in any order. A predicate
//! that can fail on a value (a cast, arithmetic, most functions) would then
//! run on hidden rows and could echo a hidden value in its error, or reveal
//! by failing that such a row exists. [`GuardUserPredicates`] therefore
//! rewrites each such conjunct `p` as `CASE WHEN <the conjuncts that cannot
//! fail> THEN p ELSE false END`, which evaluates `p` only on rows the row
//! filter (which cannot fail; see [`super::validate`]) has let through.
//!
//! Deposits: an `INSERT` into a governed table needs a grant with `write =
//! true`, checked here before any row is validated or sent.

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchema};
use datafusion::datasource::{provider_as_source, source_as_provider};
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::logical_expr::expr::Case;
use datafusion::logical_expr::utils::{conjunction, split_conjunction};
use datafusion::logical_expr::{
    DmlStatement, Expr, Filter, LogicalPlan, LogicalPlanBuilder, Operator, TableScan, WriteOp,
    cast, lit,
};
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};
use datafusion_federation::get_table_source;

use super::governed::GovernedTable;
use super::masks::mask_expr;
use crate::error::{ErrorKind, QueryError};
use crate::principal::Principal;

/// What applying policy to one plan needs to know.
pub struct Context<'a> {
    /// Who is asking.
    pub principal: &'a Principal,
    /// The key `hash` masks use.
    pub mask_key: Option<&'a [u8]>,
}

/// The governed table behind `source`, if it is one.
fn governed(
    source: &Arc<dyn datafusion::logical_expr::TableSource>,
) -> Option<Arc<dyn datafusion::catalog::TableProvider>> {
    source_as_provider(source)
        .ok()
        .filter(|p| p.is::<GovernedTable>())
}

/// `plan` with every governed table replaced as described above, and the
/// names of the policies that applied (for the audit trail).
///
/// # Errors
/// [`ErrorKind::PermissionDenied`] for a read without a read grant, or a
/// deposit without a write grant (a required purpose is checked by the
/// session, on everything a statement reads);
/// [`ErrorKind::InvalidQuery`] for a policy that no longer plans against the
/// source's table (it changed since start-up).
pub fn apply(plan: LogicalPlan, context: &Context<'_>) -> Result<Applied, QueryError> {
    let mut applied: Vec<String> = Vec::new();
    let mut refused: Option<QueryError> = None;
    let result = plan.transform_up_with_subqueries(|node| {
        let outcome = match &node {
            LogicalPlan::TableScan(scan) => {
                let provider = governed(&scan.source);
                match provider
                    .as_ref()
                    .and_then(|p| p.downcast_ref::<GovernedTable>())
                {
                    Some(table) => read(scan, table, context).map(Some),
                    None => Ok(None),
                }
            }
            LogicalPlan::Dml(dml) => {
                let provider = governed(&dml.target);
                match provider
                    .as_ref()
                    .and_then(|p| p.downcast_ref::<GovernedTable>())
                {
                    Some(table) => deposit(dml, table).map(Some),
                    None => Ok(None),
                }
            }
            _ => Ok(None),
        };
        match outcome {
            Ok(Some((plan, names))) => {
                for name in names {
                    if !applied.contains(&name) {
                        applied.push(name);
                    }
                }
                Ok(Transformed::yes(plan))
            }
            Ok(None) => Ok(Transformed::no(node)),
            Err(e) => {
                refused = Some(e);
                Err(DataFusionError::Plan("refused by policy".into()))
            }
        }
    });
    match (result, refused) {
        (_, Some(error)) => Err(error),
        (Ok(plan), None) => Ok(Applied {
            plan: plan.data,
            policies: applied,
        }),
        (Err(e), None) => Err(QueryError::from(e)),
    }
}

/// A plan with policy applied.
pub struct Applied {
    /// The rewritten plan.
    pub plan: LogicalPlan,
    /// Names of the grants, filters and masks applied.
    pub policies: Vec<String>,
}

fn denied(message: String) -> QueryError {
    QueryError::new(ErrorKind::PermissionDenied, message)
}

fn broken(table: &GovernedTable, what: &str, message: impl std::fmt::Display) -> QueryError {
    QueryError::new(
        ErrorKind::InvalidQuery,
        format!(
            "the access policy {what} on {}.{} no longer applies to the source's table ({message}); nothing was read — ask the administrator to correct it",
            table.source, table.table
        ),
    )
}

/// The plan that reads `table` for `scan` under the principal's policy.
fn read(
    scan: &TableScan,
    table: &GovernedTable,
    context: &Context<'_>,
) -> Result<(LogicalPlan, Vec<String>), QueryError> {
    let access = &table.access;
    let name = format!("{}.{}", table.source, table.table);
    if !access.read {
        return Err(denied(format!(
            "you may deposit into {name} but not read it: no grant with `read` covers it for you"
        )));
    }
    let qualifier = scan.table_name.clone();
    let mut builder = LogicalPlanBuilder::scan(
        qualifier.clone(),
        provider_as_source(Arc::clone(&table.inner)),
        None,
    )
    .map_err(QueryError::from)?;
    let full: DFSchema = builder.schema().as_ref().clone();
    let mut predicates = Vec::new();
    for filter in &access.filters {
        let text = super::principal_sql::substitute(&filter.filter, context.principal)
            .map_err(|m| broken(table, &filter.name, m))?
            .to_string();
        predicates
            .push(super::plan_expr(&text, &full).map_err(|m| broken(table, &filter.name, m))?);
    }
    if let Some(predicate) = conjunction(predicates) {
        builder = builder.filter(predicate).map_err(QueryError::from)?;
    }
    let mut shown = Vec::new();
    for field in datafusion::catalog::TableProvider::schema(table).fields() {
        let column = Expr::Column(Column::new(Some(qualifier.clone()), field.name()));
        let expr = match access.mask(field.name()) {
            None => column,
            Some(mask) => {
                let data_type = full
                    .field_with_unqualified_name(field.name())
                    .map_err(|e| broken(table, &mask.name, e))?
                    .data_type()
                    .clone();
                mask_expr(
                    &mask.kind,
                    column,
                    &data_type,
                    &full,
                    context.mask_key,
                    context.principal,
                )
                .map_err(|m| broken(table, &mask.name, m))?
                .alias_qualified(Some(qualifier.clone()), field.name())
            }
        };
        shown.push(expr);
    }
    builder = builder.project(shown).map_err(QueryError::from)?;
    if let Some(projection) = &scan.projection {
        let schema = builder.schema().clone();
        let columns = projection
            .iter()
            .map(|i| Expr::Column(Column::from(schema.qualified_field(*i))))
            .collect::<Vec<_>>();
        builder = builder.project(columns).map_err(QueryError::from)?;
    }
    if let Some(predicate) = conjunction(scan.filters.clone()) {
        builder = builder.filter(predicate).map_err(QueryError::from)?;
    }
    if scan.fetch.is_some() {
        builder = builder.limit(0, scan.fetch).map_err(QueryError::from)?;
    }
    let plan = builder.build().map_err(QueryError::from)?;
    let same =
        plan.schema().fields().len() == scan.projected_schema.fields().len()
            && plan.schema().iter().zip(scan.projected_schema.iter()).all(
                |((q1, f1), (q2, f2))| {
                    q1 == q2 && f1.name() == f2.name() && f1.data_type() == f2.data_type()
                },
            );
    if !same {
        return Err(QueryError::new(
            ErrorKind::Execution,
            format!(
                "applying the access policy to {name} changed its columns; refusing the statement"
            ),
        ));
    }
    Ok((plan, access.applied.clone()))
}

/// The deposit into `table` for `dml`, if the principal may write to it.
fn deposit(
    dml: &DmlStatement,
    table: &GovernedTable,
) -> Result<(LogicalPlan, Vec<String>), QueryError> {
    let name = format!("{}.{}", table.source, table.table);
    if !table.access.write {
        return Err(denied(format!(
            "you may not deposit into {name}: no grant with `write = true` covers it for you"
        )));
    }
    let target = provider_as_source(Arc::clone(&table.inner));
    let full = table.inner.schema();
    let input = match dml.op {
        WriteOp::Insert(datafusion::logical_expr::dml::InsertOp::Append) => {
            // The rows carry the columns the principal sees; the table's
            // hidden columns are left empty and masked ones take the value
            // given (a principal may write what they cannot read back).
            let given = dml.input.schema();
            let columns = full
                .fields()
                .iter()
                .map(|field| {
                    let expr = match given.qualified_field_with_unqualified_name(field.name()) {
                        Ok((q, f)) => {
                            let column = Expr::Column(Column::new(q.cloned(), f.name()));
                            if f.data_type() == field.data_type() {
                                column
                            } else {
                                cast(column, field.data_type().clone())
                            }
                        }
                        Err(_) => Expr::Literal(
                            datafusion::common::ScalarValue::try_from(field.data_type())
                                .unwrap_or(datafusion::common::ScalarValue::Null),
                            None,
                        ),
                    };
                    expr.alias(field.name())
                })
                .collect::<Vec<_>>();
            LogicalPlanBuilder::from(dml.input.as_ref().clone())
                .project(columns)
                .and_then(LogicalPlanBuilder::build)
                .map_err(QueryError::from)?
        }
        // Overwriting, replacing, updating or deleting would change rows the
        // principal may not see (INSERT OVERWRITE empties the table first).
        _ => {
            return Err(denied(format!(
                "only INSERT INTO {name} (appending rows) is allowed under access policy; `{}` would change or remove rows that policy may hide from you",
                dml.op
            )));
        }
    };
    let plan = LogicalPlan::Dml(DmlStatement::new(
        dml.table_name.clone(),
        target,
        dml.op.clone(),
        Arc::new(input),
    ));
    Ok((plan, table.access.applied.clone()))
}

/// Functions that cannot fail whatever value they are given.
const INFALLIBLE: &[&str] = &[
    "lower",
    "upper",
    "btrim",
    "ltrim",
    "rtrim",
    "trim",
    "coalesce",
    "nullif",
    "character_length",
    "length",
    "octet_length",
    "starts_with",
    "ends_with",
    "strpos",
    "isnan",
    "iszero",
];

/// Whether evaluating `expr` on some row could fail (and so, evaluated on a
/// hidden row, report or reveal it). Conservative: anything not known to be
/// safe may fail. An expression of constants only reads no row.
pub(crate) fn may_fail(expr: &Expr) -> bool {
    if expr.column_refs().is_empty() {
        return false;
    }
    expr.exists(|e| {
        Ok(match e {
            Expr::Column(_)
            | Expr::Literal(..)
            | Expr::Alias(_)
            | Expr::Not(_)
            | Expr::IsNull(_)
            | Expr::IsNotNull(_)
            | Expr::IsTrue(_)
            | Expr::IsFalse(_)
            | Expr::IsUnknown(_)
            | Expr::IsNotTrue(_)
            | Expr::IsNotFalse(_)
            | Expr::IsNotUnknown(_)
            | Expr::Between(_)
            | Expr::InList(_)
            | Expr::TryCast(_) => false,
            // A pattern made from row values may not compile, and the error
            // would quote it.
            Expr::Like(like) => !matches!(*like.pattern, Expr::Literal(..)),
            Expr::SimilarTo(_) => true,
            Expr::Cast(c) => !c.expr.column_refs().is_empty(),
            // Only comparisons and logic are known not to fail; arithmetic
            // can overflow or divide by zero, regular expressions can fail
            // to compile, and anything else is assumed to fail.
            Expr::BinaryExpr(b) => !matches!(
                b.op,
                Operator::Eq
                    | Operator::NotEq
                    | Operator::Lt
                    | Operator::LtEq
                    | Operator::Gt
                    | Operator::GtEq
                    | Operator::And
                    | Operator::Or
                    | Operator::IsDistinctFrom
                    | Operator::IsNotDistinctFrom
            ),
            Expr::ScalarFunction(f) => !INFALLIBLE.contains(&f.name()),
            _ => true,
        })
    })
    .unwrap_or(true)
}

/// `CASE WHEN guard THEN p ELSE false END`.
fn guarded(guard: Expr, predicate: Expr) -> Expr {
    Expr::Case(Case::new(
        None,
        vec![(Box::new(guard), Box::new(predicate))],
        Some(Box::new(lit(false))),
    ))
}

/// Whether `expr` is already `guarded(g, _)` with `g` made of `safe` conjuncts.
fn is_guarded(expr: &Expr, safe: &[&Expr]) -> bool {
    let Expr::Case(case) = expr else {
        return false;
    };
    let [(when, _)] = case.when_then_expr.as_slice() else {
        return false;
    };
    case.expr.is_none()
        && matches!(case.else_expr.as_deref(), Some(Expr::Literal(v, _)) if *v == datafusion::common::ScalarValue::Boolean(Some(false)))
        && split_conjunction(when).iter().all(|w| safe.contains(w))
}

/// Conjuncts of `predicates` with those that may fail guarded by the rest.
fn guard_conjuncts(predicates: &[&Expr]) -> Option<Vec<Expr>> {
    let safe: Vec<&Expr> = predicates
        .iter()
        .copied()
        .filter(|p| !may_fail(p))
        .collect();
    let unsafe_: Vec<&Expr> = predicates
        .iter()
        .copied()
        .filter(|p| may_fail(p) && !is_guarded(p, &safe))
        .collect();
    if safe.is_empty() || unsafe_.is_empty() {
        return None;
    }
    let guard = conjunction(safe.iter().map(|e| (*e).clone()))?;
    Some(
        predicates
            .iter()
            .map(|p| {
                if unsafe_.contains(p) {
                    guarded(guard.clone(), (*p).clone())
                } else {
                    (*p).clone()
                }
            })
            .collect(),
    )
}

/// The optimizer rule described in the module's overview; it runs right
/// after `push_down_filter`, in governed sessions only.
#[derive(Debug, Default)]
pub struct GuardUserPredicates;

impl OptimizerRule for GuardUserPredicates {
    fn name(&self) -> &str {
        "bluelamp_guard_user_predicates"
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> DFResult<Transformed<LogicalPlan>> {
        plan.transform_up_with_subqueries(|node| match node {
            LogicalPlan::Filter(filter) => {
                let conjuncts = split_conjunction(&filter.predicate);
                match guard_conjuncts(&conjuncts).and_then(conjunction) {
                    Some(predicate) => Ok(Transformed::yes(LogicalPlan::Filter(Filter::try_new(
                        predicate,
                        filter.input,
                    )?))),
                    None => Ok(Transformed::no(LogicalPlan::Filter(filter))),
                }
            }
            LogicalPlan::TableScan(mut scan)
                if matches!(get_table_source(&scan.source), Ok(Some(_))) =>
            {
                let conjuncts: Vec<&Expr> = scan.filters.iter().collect();
                match guard_conjuncts(&conjuncts) {
                    Some(filters) => {
                        scan.filters = filters;
                        Ok(Transformed::yes(LogicalPlan::TableScan(scan)))
                    }
                    None => Ok(Transformed::no(LogicalPlan::TableScan(scan))),
                }
            }
            other => Ok(Transformed::no(other)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::DataType;
    use datafusion::logical_expr::col;

    #[test]
    fn only_fallible_conjuncts_are_guarded_once() {
        let safe = col("restricted").eq(lit(false));
        let risky = cast(col("description"), DataType::Int32).eq(lit(1));
        assert!(!may_fail(&safe));
        assert!(may_fail(&risky));
        assert!(!may_fail(&cast(lit("2024-01-01"), DataType::Date32)));
        let once = guard_conjuncts(&[&risky, &safe]).expect("guards");
        assert!(matches!(once[0], Expr::Case(_)), "{once:?}");
        assert_eq!(once[1], safe);
        // A second pass leaves the guarded conjunct alone.
        let refs: Vec<&Expr> = once.iter().collect();
        assert!(guard_conjuncts(&refs).is_none());
        // Nothing to guard with, or nothing to guard.
        assert!(guard_conjuncts(&[&risky]).is_none());
        assert!(guard_conjuncts(&[&safe]).is_none());
    }
}

/// DataFusion's physical `ProjectionPushdown`, kept from moving a projection
/// that computes something below a filter.
///
/// That rule swaps a projection under a `FilterExec` when the projection
/// keeps the filter's columns, so a user's `SELECT CAST(x AS INT) ...` would
/// be evaluated on rows the row filter was to drop, and its error could
/// quote them. Governed sessions run the rule through this wrapper: where
/// its result has more computing projections directly under filters than
/// the plan it was given, the plan is kept as it was.
#[derive(Debug)]
pub struct GuardedProjectionPushdown {
    inner: Arc<dyn datafusion::physical_optimizer::PhysicalOptimizerRule + Send + Sync>,
}

impl GuardedProjectionPushdown {
    /// Wraps `inner` (DataFusion's `ProjectionPushdown`).
    pub fn new(
        inner: Arc<dyn datafusion::physical_optimizer::PhysicalOptimizerRule + Send + Sync>,
    ) -> Self {
        Self { inner }
    }
}

/// How many filters sit directly on a projection computing anything but
/// plain columns.
fn computing_projections_under_filters(
    plan: &Arc<dyn datafusion::physical_plan::ExecutionPlan>,
) -> usize {
    use datafusion::physical_expr::expressions::Column as PhysicalColumn;
    use datafusion::physical_plan::filter::FilterExec;
    use datafusion::physical_plan::projection::ProjectionExec;
    let here = plan.downcast_ref::<FilterExec>().is_some_and(|filter| {
        filter
            .input()
            .downcast_ref::<ProjectionExec>()
            .is_some_and(|projection| {
                projection
                    .expr()
                    .iter()
                    .any(|e| e.expr.downcast_ref::<PhysicalColumn>().is_none())
            })
    });
    usize::from(here)
        + plan
            .children()
            .iter()
            .map(|child| computing_projections_under_filters(child))
            .sum::<usize>()
}

impl datafusion::physical_optimizer::PhysicalOptimizerRule for GuardedProjectionPushdown {
    fn optimize(
        &self,
        plan: Arc<dyn datafusion::physical_plan::ExecutionPlan>,
        config: &datafusion::common::config::ConfigOptions,
    ) -> DFResult<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        let before = computing_projections_under_filters(&plan);
        let optimized = self.inner.optimize(Arc::clone(&plan), config)?;
        if computing_projections_under_filters(&optimized) > before {
            Ok(plan)
        } else {
            Ok(optimized)
        }
    }

    fn name(&self) -> &str {
        "bluelamp_guarded_projection_pushdown"
    }

    fn schema_check(&self) -> bool {
        self.inner.schema_check()
    }
}
