//! Text compared and sorted as DataFusion compares it: by its UTF-8 bytes.
//!
//! A database compares text by its columns' collations. MySQL's and
//! MariaDB's usual ones ignore case, accents and trailing spaces
//! (`station = 'central'` finds `Central `; `GROUP BY` merges `Zoë` with
//! `zoe`), and a SQLite column may be declared `COLLATE NOCASE`. The same
//! query would then answer differently depending on where the data lives.
//! So, in a federated sub-plan bound for MySQL or SQLite, each text
//! comparison and sort key is marked with [`mark`], and the SQL hook
//! ([`unmark`]) writes each mark as the database's own way of comparing
//! bytes: `CAST(CONVERT(x USING utf8mb4) AS BINARY)` for MySQL,
//! `x COLLATE BINARY` for SQLite. Equality and `IN` on MySQL keep the plain
//! comparison beside the exact one, so an index on the column still narrows
//! the read. What cannot be marked this way (MySQL's grouping, `DISTINCT`,
//! `min`/`max` of text, window keys, and aggregates or windows that compare
//! text, whose column names a mark would change; SQLite's `LIKE`, which
//! ignores ASCII case) runs in DataFusion instead (see [`super::functions`]).
//!
//! PostgreSQL is left as it is: its equality is by bytes, and a database
//! created with a linguistic collation (`en_US.UTF-8`) orders text its own
//! way (`a` before `B`) in `ORDER BY` and range filters sent to it.

use std::ops::ControlFlow;
use std::sync::{Arc, LazyLock};

use arrow::datatypes::DataType;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, DFSchemaRef};
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::logical_expr::expr::{InList, Like, ScalarFunction};
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{
    Between, BinaryExpr, ColumnarValue, Expr, ExprSchemable, LogicalPlan, Operator,
    ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::sql::sqlparser::ast::{self, Ident, ObjectName, VisitMut, VisitorMut};

use super::functions::Database;

/// The marker's name, as the unparser writes it.
const MARK: &str = "bluelamp_bytes";

/// A marker around a text expression: "compare this by its bytes". It only
/// ever reaches a database's SQL hook, which rewrites it; were DataFusion to
/// run it, it would return its argument unchanged, which is what it means.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Bytes {
    signature: Signature,
}

impl ScalarUDFImpl for Bytes {
    fn name(&self) -> &str {
        MARK
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> DFResult<DataType> {
        arg_types
            .first()
            .cloned()
            .ok_or_else(|| DataFusionError::Plan(format!("{MARK} takes one argument")))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DFResult<ColumnarValue> {
        args.args
            .into_iter()
            .next()
            .ok_or_else(|| DataFusionError::Plan(format!("{MARK} takes one argument")))
    }
}

static MARKER: LazyLock<Arc<ScalarUDF>> = LazyLock::new(|| {
    Arc::new(ScalarUDF::new_from_impl(Bytes {
        signature: Signature::any(1, Volatility::Immutable),
    }))
});

fn mark(expr: Expr) -> Expr {
    Expr::ScalarFunction(ScalarFunction::new_udf(Arc::clone(&MARKER), vec![expr]))
}

pub fn is_text(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    ) || matches!(data_type, DataType::Dictionary(_, v) if is_text(v))
}

/// Whether `expr` is text in `schema` (an expression whose type cannot be
/// worked out is taken as not text: the database then judges it as before).
pub fn text_in(expr: &Expr, schema: &DFSchema) -> bool {
    expr.get_type(schema).is_ok_and(|t| is_text(&t))
}

/// The federated sub-plan `plan`, bound for `database`, with its text
/// comparisons and sort keys marked (see the module notes).
pub fn compare_as_bytes(plan: LogicalPlan, database: &Database) -> DFResult<LogicalPlan> {
    if matches!(database, Database::Postgres | Database::FlightSql(_)) {
        return Ok(plan);
    }
    super::repair::transform_federated(plan, |node| mark_node(node, database))
}

/// The schema a node's own expressions are written against: its inputs'
/// columns together (a scan's filters: the whole table's).
fn input_schema(node: &LogicalPlan) -> DFResult<DFSchemaRef> {
    if let LogicalPlan::TableScan(scan) = node {
        return Ok(Arc::new(DFSchema::try_from_qualified_schema(
            scan.table_name.clone(),
            &scan.source.schema(),
        )?));
    }
    let mut inputs = node.inputs().into_iter();
    let Some(first) = inputs.next() else {
        return Ok(Arc::clone(node.schema()));
    };
    let mut schema = first.schema().as_ref().clone();
    for other in inputs {
        schema.merge(other.schema());
    }
    Ok(Arc::new(schema))
}

fn mark_node(node: LogicalPlan, database: &Database) -> DFResult<Transformed<LogicalPlan>> {
    let schema = input_schema(&node)?;
    match node {
        LogicalPlan::Sort(mut sort) => {
            let mut changed = false;
            for key in &mut sort.expr {
                if text_in(&key.expr, &schema) {
                    key.expr = mark(key.expr.clone());
                    changed = true;
                }
            }
            Ok(Transformed::new_transformed(
                LogicalPlan::Sort(sort),
                changed,
            ))
        }
        LogicalPlan::Join(mut join) => {
            let mut changed = false;
            for (left, right) in &mut join.on {
                if text_in(left, &schema) {
                    *left = mark(left.clone());
                    *right = mark(right.clone());
                    changed = true;
                }
            }
            let filter = join
                .filter
                .take()
                .map(|f| mark_comparisons(f, &schema, database))
                .transpose()?;
            changed |= filter.as_ref().is_some_and(|f| f.transformed);
            join.filter = filter.map(|f| f.data);
            Ok(Transformed::new_transformed(
                LogicalPlan::Join(join),
                changed,
            ))
        }
        LogicalPlan::TableScan(mut scan) => {
            let mut changed = false;
            for filter in &mut scan.filters {
                let marked = mark_comparisons(filter.clone(), &schema, database)?;
                changed |= marked.transformed;
                *filter = marked.data;
            }
            Ok(Transformed::new_transformed(
                LogicalPlan::TableScan(scan),
                changed,
            ))
        }
        // Aggregates and windows comparing text run in DataFusion instead
        // (see `functions`): marking would rename the columns they make.
        LogicalPlan::Projection(_) | LogicalPlan::Filter(_) => {
            // A marked expression would otherwise change the name of the
            // column it makes, which the plan above refers to.
            let names = NamePreserver::new(&node);
            node.map_expressions(|e| {
                let name = names.save(&e);
                Ok(mark_comparisons(e, &schema, database)?.update_data(|e| name.restore(e)))
            })
        }
        other => Ok(Transformed::no(other)),
    }
}

/// `expr` with each text comparison the database would judge by collation
/// marked.
fn mark_comparisons(
    expr: Expr,
    schema: &DFSchema,
    database: &Database,
) -> DFResult<Transformed<Expr>> {
    expr.transform_up(|e| {
        Ok(match e {
            Expr::BinaryExpr(BinaryExpr { left, op, right })
                if is_comparison(op) && text_in(&left, schema) =>
            {
                let plain = || Expr::BinaryExpr(BinaryExpr::new(left.clone(), op, right.clone()));
                let exact = || {
                    Expr::BinaryExpr(BinaryExpr::new(
                        Box::new(mark(*left.clone())),
                        op,
                        Box::new(mark(*right.clone())),
                    ))
                };
                match op {
                    Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq => {
                        Transformed::yes(exact())
                    }
                    // The plain comparison first: an index on the column can
                    // answer it, and it holds wherever the exact one does.
                    Operator::Eq if matches!(database, Database::MySql) => {
                        Transformed::yes(plain().and(exact()))
                    }
                    _ => Transformed::yes(exact()),
                }
            }
            Expr::Between(Between {
                expr,
                negated,
                low,
                high,
            }) if text_in(&expr, schema) => Transformed::yes(Expr::Between(Between::new(
                Box::new(mark(*expr)),
                negated,
                Box::new(mark(*low)),
                Box::new(mark(*high)),
            ))),
            Expr::InList(InList {
                expr,
                list,
                negated,
            }) if text_in(&expr, schema) => {
                let exact = Expr::InList(InList::new(
                    Box::new(mark(*expr.clone())),
                    list.iter().cloned().map(mark).collect(),
                    negated,
                ));
                if matches!(database, Database::MySql) && !negated {
                    Transformed::yes(Expr::InList(InList::new(expr, list, negated)).and(exact))
                } else {
                    Transformed::yes(exact)
                }
            }
            Expr::Like(like)
                if matches!(database, Database::MySql)
                    && !like.case_insensitive
                    && text_in(&like.expr, schema) =>
            {
                Transformed::yes(Expr::Like(Like::new(
                    like.negated,
                    Box::new(mark(*like.expr)),
                    Box::new(mark(*like.pattern)),
                    like.escape_char,
                    false,
                )))
            }
            other => Transformed::no(other),
        })
    })
}

/// The operators a collation judges when they compare text.
fn is_comparison(op: Operator) -> bool {
    matches!(
        op,
        Operator::Eq
            | Operator::NotEq
            | Operator::Lt
            | Operator::LtEq
            | Operator::Gt
            | Operator::GtEq
            | Operator::IsDistinctFrom
            | Operator::IsNotDistinctFrom
    )
}

/// Whether `expr` compares text (`=`, `<`, `IN`, `LIKE`, `BETWEEN`, ...)
/// anywhere, against `schema`.
pub fn compares_text(expr: &Expr, schema: &DFSchema) -> bool {
    expr.exists(|e| {
        Ok(match e {
            Expr::BinaryExpr(BinaryExpr { left, op, .. }) => {
                is_comparison(*op) && text_in(left, schema)
            }
            Expr::Between(between) => text_in(&between.expr, schema),
            Expr::InList(within) => text_in(&within.expr, schema),
            Expr::Like(like) => text_in(&like.expr, schema),
            _ => false,
        })
    })
    .unwrap_or(true)
}

/// The SQL hook's half: writes each mark as `database` compares bytes.
pub fn unmark(statement: &mut ast::Statement, database: &Database) {
    struct Unmark(Database);
    impl VisitorMut for Unmark {
        type Break = ();
        fn post_visit_expr(&mut self, expr: &mut ast::Expr) -> ControlFlow<()> {
            let ast::Expr::Function(function) = expr else {
                return ControlFlow::Continue(());
            };
            let named = function
                .name
                .0
                .last()
                .and_then(|p| p.as_ident())
                .is_some_and(|i| i.value.eq_ignore_ascii_case(MARK));
            let ast::FunctionArguments::List(list) = &function.args else {
                return ControlFlow::Continue(());
            };
            let [ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(inner))] =
                list.args.as_slice()
            else {
                return ControlFlow::Continue(());
            };
            if !named {
                return ControlFlow::Continue(());
            }
            let inner = Box::new(ast::Expr::Nested(Box::new(inner.clone())));
            *expr = match &self.0 {
                // Not marked (see the module notes); unchanged if it were.
                Database::Postgres | Database::FlightSql(_) => return ControlFlow::Continue(()),
                Database::MySql => ast::Expr::Cast {
                    kind: ast::CastKind::Cast,
                    expr: Box::new(ast::Expr::Convert {
                        is_try: false,
                        expr: inner,
                        data_type: None,
                        charset: Some(ObjectName::from(vec![Ident::new("utf8mb4")])),
                        target_before_value: false,
                        styles: Vec::new(),
                    }),
                    data_type: ast::DataType::Binary(None),
                    array: false,
                    format: None,
                },
                Database::Sqlite => ast::Expr::Nested(Box::new(ast::Expr::Collate {
                    expr: inner,
                    collation: ObjectName::from(vec![Ident::new("BINARY")]),
                })),
            };
            ControlFlow::Continue(())
        }
    }
    let _ = statement.visit(&mut Unmark(database.clone()));
}
