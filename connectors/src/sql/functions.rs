//! Which functions each database is sent, and keeping the rest in DataFusion.
//!
//! Federation sends a database every sub-plan made only of its tables, and
//! DataFusion's unparser writes each function call by its DataFusion name. A
//! database may lack the function (`arrow_typeof`, `nvl`, `median`; MySQL's
//! `date_trunc`) and refuse the query, or, worse, have a function of that
//! name that means something else: PostgreSQL's `to_char` takes `YYYY`-style
//! patterns and answers `to_char(t, '%Y')` with `%6`; SQLite's `upper` leaves
//! `ë` alone; MySQL's `concat` is NULL when any argument is. So each database
//! is sent only the functions on its list below, each checked to mean what
//! DataFusion means (for the argument types a query can give it), and
//! [`keep_local`] splits a federated sub-plan so that any node calling
//! another function runs in DataFusion over the database's result. A filter
//! the scan was to apply is lifted above it the same way. Unlisted functions
//! therefore cost speed, never correctness.

use std::sync::Arc;

use datafusion::common::DFSchema;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::logical_expr::ExprSchemable;
use datafusion::logical_expr::expr::WindowFunction;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{
    Expr, Extension, LogicalPlan, LogicalPlanBuilder, Projection, SubqueryAlias, TableScan,
    TableScanBuilder, WindowFunctionDefinition,
};
use datafusion_federation::{FederatedPlanNode, FederationPlanner};

use super::bytes::{compares_text, is_text, text_in};

/// The kind of database a federated sub-plan goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    Postgres,
    MySql,
    Sqlite,
    /// A Flight SQL server, sent only what it declares
    /// ([`crate::flightsql::capabilities`]). It compares text by bytes and
    /// casts as standard SQL does; what it runs differently from DataFusion
    /// is on the server's word.
    FlightSql(Arc<crate::flightsql::capabilities::Declared>),
}

/// Scalar functions every database here runs as DataFusion does.
const SCALAR_EVERYWHERE: &[&str] = &[
    "abs",
    "character_length",
    "coalesce",
    "date_part",
    "nullif",
    "replace",
];

/// Aggregate functions every database here runs as DataFusion does.
const AGGREGATE_EVERYWHERE: &[&str] = &["avg", "count", "max", "min", "sum"];

/// Window functions every database here runs as DataFusion does (SQLite has
/// them from 3.25; the bundled one is newer), besides the aggregates over a
/// window. Only as window functions: DataFusion's aggregate `first_value` is
/// not PostgreSQL's.
const WINDOW_EVERYWHERE: &[&str] = &[
    "dense_rank",
    "first_value",
    "lag",
    "last_value",
    "lead",
    "rank",
    "row_number",
];

const SCALAR_POSTGRES: &[&str] = &[
    "btrim",
    "ceil",
    "concat",
    "date_trunc",
    "exp",
    "floor",
    "greatest",
    "least",
    "left",
    "ln",
    "log10",
    "lower",
    "lpad",
    "ltrim",
    "md5",
    "power",
    "repeat",
    "reverse",
    "right",
    "round",
    "rpad",
    "rtrim",
    "split_part",
    "sqrt",
    "starts_with",
    "strpos",
    "substr",
    "upper",
];

const AGGREGATE_POSTGRES: &[&str] = &[
    "bool_and",
    "bool_or",
    "stddev",
    "stddev_pop",
    "string_agg",
    "var_pop",
];

/// Not sent to MySQL although it has them: `left`/`right` (a negative length
/// means something else), `lpad`/`rpad` and `ltrim`/`rtrim` (other
/// arguments), `sqrt`/`ln`/`log10` (NULL where DataFusion answers NaN or
/// infinity), `round` (halves to even for floating point).
const SCALAR_MYSQL: &[&str] = &[
    "ceil", "exp", "floor", "lower", "md5", "power", "repeat", "reverse", "upper",
];

/// MySQL's `stddev` and `variance` are the population figures; these are not.
const AGGREGATE_MYSQL: &[&str] = &["stddev_pop", "var_pop"];

/// SQLite's own `upper` and `lower` change ASCII letters only, its `round`
/// ignores negative places, and its math functions are optional, so none of
/// them is sent.
const SCALAR_SQLITE: &[&str] = &["date_trunc", "ltrim", "rtrim"];

const AGGREGATE_SQLITE: &[&str] = &[];

/// What DataFusion's unparser and the SQLite provider write for SQLite in
/// place of DataFusion's functions: `strftime` for `date_part` and
/// `date_trunc`, `length` for `character_length`, `date` and `datetime` for
/// interval arithmetic.
const WRITTEN_FOR_SQLITE: &[&str] = &["date", "datetime", "length", "strftime"];

impl Database {
    /// Whether the database runs the scalar function `name` as DataFusion does.
    pub fn runs_scalar(&self, name: &str) -> bool {
        let own = match self {
            Database::Postgres => SCALAR_POSTGRES,
            Database::MySql => SCALAR_MYSQL,
            Database::Sqlite => SCALAR_SQLITE,
            Database::FlightSql(declared) => return declared.runs_scalar(name),
        };
        SCALAR_EVERYWHERE.contains(&name) || own.contains(&name)
    }

    /// Whether the database runs the aggregate function `name` as DataFusion
    /// does.
    pub fn runs_aggregate(&self, name: &str) -> bool {
        let own = match self {
            Database::Postgres => AGGREGATE_POSTGRES,
            Database::MySql => AGGREGATE_MYSQL,
            Database::Sqlite => AGGREGATE_SQLITE,
            Database::FlightSql(declared) => return declared.runs_aggregate(name),
        };
        AGGREGATE_EVERYWHERE.contains(&name) || own.contains(&name)
    }

    /// Whether a query written for the database may call `name`: a function
    /// on its lists, or one the unparser writes in place of one. What a
    /// query that crosses to a cluster's executor may call
    /// ([`super::portable`]).
    pub(super) fn may_call(&self, name: &str) -> bool {
        self.runs_scalar(name)
            || self.runs_aggregate(name)
            || WINDOW_EVERYWHERE.contains(&name)
            || (*self == Database::Sqlite && WRITTEN_FOR_SQLITE.contains(&name))
    }

    /// Whether every function `expr` calls, in any subquery too, runs here.
    fn runs_expr(&self, expr: &Expr) -> bool {
        let mut runs = true;
        // The closure never fails.
        let _ = expr.apply(|e| {
            if let Database::FlightSql(declared) = self
                && !declared.runs_expr_kind(e)
            {
                runs = false;
                return Ok(TreeNodeRecursion::Stop);
            }
            runs = match e {
                Expr::ScalarFunction(f) => self.runs_scalar(f.func.name()),
                Expr::AggregateFunction(f) => self.runs_aggregate(f.func.name()),
                Expr::WindowFunction(w) => self.runs_window(w),
                // SQLite's LIKE ignores ASCII case; neither it nor MySQL has
                // DataFusion's Unicode-aware ILIKE.
                Expr::Like(like) => {
                    matches!(self, Database::Postgres | Database::FlightSql(_))
                        || (matches!(self, Database::MySql) && !like.case_insensitive)
                }
                Expr::ScalarSubquery(subquery) => self.runs_plan(&subquery.subquery),
                Expr::Exists(exists) => self.runs_plan(&exists.subquery.subquery),
                Expr::InSubquery(within) => self.runs_plan(&within.subquery.subquery),
                _ => true,
            };
            Ok(if runs {
                TreeNodeRecursion::Continue
            } else {
                TreeNodeRecursion::Stop
            })
        });
        runs
    }

    fn runs_window(&self, window: &WindowFunction) -> bool {
        // MySQL cannot be told where NULLs sort (see `repair::order_nulls_as_datafusion`).
        if matches!(self, Database::MySql)
            && window
                .params
                .order_by
                .iter()
                .any(super::repair::mysql_places_nulls_otherwise)
        {
            return false;
        }
        if matches!(self, Database::FlightSql(_)) {
            return false;
        }
        match &window.fun {
            WindowFunctionDefinition::AggregateUDF(f) => self.runs_aggregate(f.name()),
            WindowFunctionDefinition::WindowUDF(f) => WINDOW_EVERYWHERE.contains(&f.name()),
        }
    }

    /// Whether one node's own expressions (a scan's filters included) run here.
    fn runs_node(&self, plan: &LogicalPlan) -> bool {
        // The unparser would write such a join wrongly: it runs here. And a
        // node of an extension (a part already federated by an earlier
        // split, seen again when federation runs its rule a second time)
        // cannot be written as SQL at all.
        if super::upstream::loses_aggregate(plan) || matches!(plan, LogicalPlan::Extension(_)) {
            return false;
        }
        let filters = match plan {
            LogicalPlan::TableScan(scan) => scan.filters.as_slice(),
            _ => &[],
        };
        if let Database::FlightSql(declared) = self
            && !declared.runs_node_kind(plan)
        {
            return false;
        }
        let schema = node_schema(plan);
        plan.expressions()
            .iter()
            .chain(filters)
            .all(|e| self.runs_expr(e) && self.casts_as_datafusion(e, schema.as_ref()))
            && self.groups_text_by_bytes(plan)
    }

    /// Whether the database evaluates `expr` (a filter over a table of
    /// `schema`) as DataFusion does: its functions and its casts.
    pub(super) fn evaluates_as_datafusion(&self, expr: &Expr, schema: Option<&DFSchema>) -> bool {
        self.runs_expr(expr) && self.casts_as_datafusion(expr, schema)
    }

    /// Whether every cast in `expr` gives what DataFusion's would. A number
    /// other than a whole one, a date or a time written as text is spelt
    /// each database's own way (`1e+15`, `2026-01-31 08:00:00+00`), so such
    /// casts stay in DataFusion everywhere; SQLite has no date or time type,
    /// and its `CAST(x AS DATE)` makes a number of `x`, so no cast to one is
    /// sent to it. A cast whose operand's type cannot be worked out stays
    /// in DataFusion.
    fn casts_as_datafusion(&self, expr: &Expr, schema: Option<&DFSchema>) -> bool {
        use datafusion::arrow::datatypes::DataType;
        !expr
            .exists(|e| {
                let (inner, to) = match e {
                    Expr::Cast(c) => (c.expr.as_ref(), c.field.data_type()),
                    Expr::TryCast(c) => (c.expr.as_ref(), c.field.data_type()),
                    _ => return Ok(false),
                };
                let from = schema.and_then(|s| inner.get_type(s).ok());
                let temporal = matches!(
                    to,
                    DataType::Date32
                        | DataType::Date64
                        | DataType::Timestamp(_, _)
                        | DataType::Time32(_)
                        | DataType::Time64(_)
                );
                Ok(match from {
                    None => true,
                    Some(from) if is_text(to) => !(is_text(&from) || from.is_integer()),
                    Some(_) => temporal && matches!(self, Database::Sqlite),
                })
            })
            .unwrap_or(true)
    }

    /// Whether the node groups, deduplicates, windows, compares (in an
    /// aggregate or window) or takes the least or greatest of text only where
    /// the database does so by bytes, as DataFusion does. MySQL's collations
    /// merge `Zoë` with `zoe` and `Central` with `central `, and these cannot
    /// be marked to compare bytes without changing the columns they return
    /// (see [`super::bytes`]).
    fn groups_text_by_bytes(&self, plan: &LogicalPlan) -> bool {
        if !matches!(self, Database::MySql) {
            return true;
        }
        let over_text =
            |schema: &DFSchema, exprs: &[Expr]| exprs.iter().any(|e| text_in(e, schema));
        match plan {
            LogicalPlan::Aggregate(aggregate) => {
                let schema = aggregate.input.schema();
                !over_text(schema, &aggregate.group_expr)
                    && !aggregate
                        .group_expr
                        .iter()
                        .chain(&aggregate.aggr_expr)
                        .any(|e| compares_text(e, schema))
                    && !aggregate.aggr_expr.iter().any(|e| {
                        e.exists(|e| {
                            Ok(matches!(e, Expr::AggregateFunction(f)
                                if (f.params.distinct || matches!(f.func.name(), "min" | "max"))
                                    && over_text(schema, &f.params.args)))
                        })
                        .unwrap_or(true)
                    })
            }
            LogicalPlan::Distinct(_) => plan.inputs().iter().all(|input| {
                !input
                    .schema()
                    .fields()
                    .iter()
                    .any(|f| is_text(f.data_type()))
            }),
            LogicalPlan::Window(window) => {
                let schema = window.input.schema();
                let keyed_by_text = |e: &Expr| {
                    matches!(e, Expr::WindowFunction(w)
                        if over_text(schema, &w.params.partition_by)
                            || w.params.order_by.iter().any(|k| text_in(&k.expr, schema)))
                };
                !window.window_expr.iter().any(|e| {
                    compares_text(e, schema) || e.exists(|e| Ok(keyed_by_text(e))).unwrap_or(true)
                })
            }
            _ => true,
        }
    }

    /// Whether every node of `plan` runs here.
    fn runs_plan(&self, plan: &LogicalPlan) -> bool {
        let mut runs = true;
        let _ = plan.apply(|node| {
            runs = self.runs_node(node);
            Ok(if runs {
                TreeNodeRecursion::Continue
            } else {
                TreeNodeRecursion::Stop
            })
        });
        runs
    }
}

/// The columns a node's own expressions are written over: a scan's table,
/// else its inputs' (a join's both sides).
fn node_schema(plan: &LogicalPlan) -> Option<DFSchema> {
    if let LogicalPlan::TableScan(scan) = plan {
        return DFSchema::try_from_qualified_schema(scan.table_name.clone(), &scan.source.schema())
            .ok();
    }
    let mut inputs = plan.inputs().into_iter();
    let first = inputs.next()?.schema().as_ref().clone();
    inputs.try_fold(first, |mut schema, input| {
        schema.merge(input.schema());
        Some(schema)
    })
}

/// A federated sub-plan (`plan`, as the federation rule hands it to a
/// source's plan hook) with every node that calls a function `database`
/// does not run taken out of it: such nodes run in DataFusion, and each
/// largest part below them that does run in the database becomes a
/// federated sub-plan of its own, passed through `finish` (the hook's other
/// repairs). A plan that needs no split is only passed through `finish`.
pub fn keep_local(
    plan: LogicalPlan,
    database: Database,
    finish: impl Fn(LogicalPlan) -> DFResult<LogicalPlan>,
) -> DFResult<LogicalPlan> {
    let Some(federated) = super::repair::federated(&plan) else {
        return finish(plan);
    };
    if database.runs_plan(federated.plan()) {
        return finish(plan);
    }
    let splitter = Splitter {
        database,
        planner: Arc::clone(&federated.planner),
        finish: &finish,
    };
    let (local, runs) = splitter.split(federated.plan().clone())?;
    if runs {
        // Only reached if the check above and the split disagree.
        return finish(plan);
    }
    Ok(local)
}

struct Splitter<'a> {
    database: Database,
    planner: Arc<dyn FederationPlanner>,
    finish: &'a dyn Fn(LogicalPlan) -> DFResult<LogicalPlan>,
}

impl Splitter<'_> {
    /// `plan` rewritten so that what the database cannot run is outside any
    /// federated part, and whether all of it runs in the database (then it is
    /// returned unchanged, for the caller to federate with its neighbours).
    fn split(&self, plan: LogicalPlan) -> DFResult<(LogicalPlan, bool)> {
        if let LogicalPlan::TableScan(scan) = &plan
            && !scan.filters.iter().all(|f| self.database.runs_expr(f))
        {
            return Ok((self.lift_filters(scan)?, false));
        }
        let own = self.database.runs_node(&plan);
        let inputs = plan
            .inputs()
            .into_iter()
            .map(|input| self.split(input.clone()))
            .collect::<DFResult<Vec<_>>>()?;
        if own && inputs.iter().all(|(_, runs)| *runs) {
            return Ok((plan, true));
        }
        let inputs = inputs
            .into_iter()
            .map(|(input, runs)| {
                if runs {
                    self.federate(input)
                } else {
                    Ok(input)
                }
            })
            .collect::<DFResult<Vec<_>>>()?;
        let plan = plan.with_new_exprs(plan.expressions(), inputs)?;
        // Subqueries in this node's expressions run where their own parts can.
        let plan = plan
            .map_subqueries(|subquery| {
                let (subquery, runs) = self.split(subquery)?;
                let subquery = if runs {
                    self.federate(subquery)?
                } else {
                    subquery
                };
                Ok(Transformed::yes(subquery))
            })?
            .data;
        Ok((plan, false))
    }

    /// A scan whose filters include some the database cannot run: the scan
    /// keeps the others (and reads the columns the lifted ones need), and the
    /// lifted ones, its row limit and its original columns follow it here.
    fn lift_filters(&self, scan: &TableScan) -> DFResult<LogicalPlan> {
        let (kept, lifted): (Vec<Expr>, Vec<Expr>) = scan
            .filters
            .iter()
            .cloned()
            .partition(|f| self.database.runs_expr(f));
        let table = scan.source.schema();
        let mut projection = scan
            .projection
            .clone()
            .unwrap_or_else(|| (0..table.fields().len()).collect());
        for filter in &lifted {
            for column in filter.column_refs() {
                let index = table.index_of(&column.name)?;
                if !projection.contains(&index) {
                    projection.push(index);
                }
            }
        }
        let read = TableScanBuilder::new(scan.table_name.clone(), Arc::clone(&scan.source))
            .with_projection(Some(projection))
            .with_filters(kept)
            .build()?;
        let condition = conjunction(lifted).ok_or_else(|| {
            DataFusionError::Internal("a scan's lifted filters were empty".into())
        })?;
        let columns = scan
            .projected_schema
            .columns()
            .into_iter()
            .map(Expr::Column)
            .collect::<Vec<_>>();
        let mut local = LogicalPlanBuilder::from(self.federate(LogicalPlan::TableScan(read))?)
            .filter(condition)?;
        if scan.fetch.is_some() {
            local = local.limit(0, scan.fetch)?;
        }
        local.project(columns)?.build()
    }

    /// `plan` as a federated sub-plan of its own (if it reads any table).
    fn federate(&self, plan: LogicalPlan) -> DFResult<LogicalPlan> {
        if !plan.exists(|node| Ok(matches!(node, LogicalPlan::TableScan(_))))? {
            return Ok(plan);
        }
        // An alias stays here, over its input sent on its own: a projection
        // over the alias would name the input's computed columns by the
        // names the tables have here, which federation's renaming of the
        // tables for the database leaves behind (a decorrelated scalar
        // subquery's `__scalar_sq_1."sum(pg.t.x)"`).
        if let LogicalPlan::SubqueryAlias(alias) = plan {
            let input = self.federate(Arc::unwrap_or_clone(alias.input))?;
            return Ok(LogicalPlan::SubqueryAlias(SubqueryAlias::try_new(
                Arc::new(input),
                alias.alias,
            )?));
        }
        // The unparser writes a projection's columns out; other roots would be
        // sent as `SELECT *`.
        let plan = match plan {
            LogicalPlan::Projection(_) => plan,
            other => {
                let columns = other
                    .schema()
                    .columns()
                    .into_iter()
                    .map(Expr::Column)
                    .collect();
                LogicalPlan::Projection(Projection::try_new(columns, Arc::new(other))?)
            }
        };
        (self.finish)(LogicalPlan::Extension(Extension {
            node: Arc::new(FederatedPlanNode::new(plan, Arc::clone(&self.planner))),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_per_database() {
        for db in [Database::Postgres, Database::MySql, Database::Sqlite] {
            assert!(db.runs_scalar("coalesce"));
            assert!(db.runs_aggregate("count"));
            assert!(!db.runs_scalar("arrow_typeof"));
            assert!(!db.runs_scalar("to_char"));
            assert!(!db.runs_aggregate("median"));
        }
        assert!(Database::Postgres.runs_scalar("date_trunc"));
        assert!(!Database::MySql.runs_scalar("date_trunc"));
        assert!(Database::Postgres.runs_scalar("upper"));
        assert!(!Database::Sqlite.runs_scalar("upper"));
        assert!(!Database::MySql.runs_scalar("concat"));
        assert!(!Database::MySql.runs_aggregate("stddev"));
        // A window function only.
        assert!(!Database::Postgres.runs_aggregate("first_value"));
    }
}
