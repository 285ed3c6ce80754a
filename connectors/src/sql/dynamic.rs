//! A join's keys, sent to the database with the query.
//!
//! When DataFusion joins a database table with something smaller — a
//! filtered dimension, a handful of nations, a day's incidents — the hash
//! join builds its table from the small side first and publishes what it
//! saw as a *dynamic filter* (`key IN (…)`, or `key BETWEEN lo AND hi`) on
//! the other side's scan. `datafusion-federation` hands those filters to the
//! executor with the query; the upstream executors ignore them, so the
//! database returned every row and DataFusion threw most away.
//!
//! [`narrow`] adds the filters to the query's `WHERE` clause when it can do
//! so without changing what the query means: the statement is a plain
//! `SELECT` (no `LIMIT`, window functions or `DISTINCT ON`), the filtered
//! output column is a plain column of it, and under `GROUP BY` that column
//! is one of the grouping keys. The predicate added is always implied by the
//! join (parts it cannot render are left out, never guessed), and DataFusion
//! still joins every row it receives, so the answer is unchanged; only fewer
//! rows cross the wire.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::arrow::array::Array;
use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{Expr as LogicalExpr, Operator};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::ScalarFunctionExpr;
use datafusion::physical_expr::expressions::{
    BinaryExpr, CaseExpr, CastExpr, Column, DynamicFilterPhysicalExpr, InListExpr, Literal,
};
use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Distinct, Expr, GroupByExpr, SelectItem, SetExpr, Statement, Value,
    visit_expressions,
};
use datafusion::sql::sqlparser::dialect::Dialect as ParserDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::unparser::Unparser;
use datafusion::sql::unparser::dialect::Dialect;
use futures::FutureExt;
use std::ops::ControlFlow;

/// Most key values sent in one `IN` list; a longer list is left to the join.
pub const MAX_KEYS: usize = 20_000;

/// A condition on the query's output columns (by position) that every row
/// the join can use satisfies.
#[derive(Debug, Clone, PartialEq)]
enum Keys {
    /// `column <op> value`.
    Compare(usize, Operator, ScalarValue),
    /// `column IN (values)` (never empty; an empty list is [`Keys::Nothing`]).
    In(usize, Vec<ScalarValue>),
    And(Vec<Keys>),
    Or(Vec<Keys>),
    /// No row can match (the join's other side was empty).
    Nothing,
}

/// `query` with the finished dynamic `filters` added to its `WHERE` clause,
/// or `None` when none of them can be added (see the module docs). `schema`
/// is the query's output schema, which the filters' columns index.
pub fn narrow(
    query: &str,
    parser: &dyn ParserDialect,
    dialect: &dyn Dialect,
    schema: &Schema,
    filters: &[Arc<dyn PhysicalExpr>],
) -> Option<String> {
    let keys: Vec<Keys> = filters
        .iter()
        .filter_map(|filter| {
            let dynamic = filter.downcast_ref::<DynamicFilterPhysicalExpr>()?;
            // Only a finished filter is complete; one still being built (a
            // TopK's, which needs this scan's rows) would drop rows.
            dynamic.wait_complete().now_or_never()?;
            keys(&dynamic.current().ok()?, schema)
        })
        .collect();
    if keys.is_empty() {
        return None;
    }
    let mut statements = Parser::parse_sql(parser, query).ok()?;
    let [Statement::Query(query)] = statements.as_mut_slice() else {
        return None;
    };
    if query.limit_clause.is_some() || query.fetch.is_some() || !query.locks.is_empty() {
        return None;
    }
    let SetExpr::Select(select) = query.body.as_mut() else {
        return None;
    };
    if matches!(select.distinct, Some(Distinct::On(_)))
        || select.top.is_some()
        || select.qualify.is_some()
        || !select.named_window.is_empty()
        || select.projection.len() != schema.fields().len()
        || has_window_function(&select.projection)
    {
        return None;
    }
    let grouping: Option<&Vec<Expr>> = match &select.group_by {
        GroupByExpr::Expressions(exprs, modifiers) if modifiers.is_empty() => {
            (!exprs.is_empty()).then_some(exprs)
        }
        _ => return None,
    };
    // The output columns a condition may name: plain columns, and under
    // GROUP BY only the grouping keys.
    let columns: Vec<Option<Expr>> = select
        .projection
        .iter()
        .map(|item| {
            let expr = match item {
                SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e,
                _ => return None,
            };
            let plain = matches!(expr, Expr::Identifier(_) | Expr::CompoundIdentifier(_));
            let grouped = grouping.is_none_or(|keys| keys.contains(expr));
            (plain && grouped).then(|| expr.clone())
        })
        .collect();
    let unparser = Unparser::new(dialect);
    let render = |keys: &Keys| to_sql(keys, &columns, &unparser);
    let added = keys.iter().filter_map(render).reduce(and)?;
    select.selection = Some(match select.selection.take() {
        Some(existing) => and(Expr::Nested(Box::new(existing)), added),
        None => added,
    });
    Some(statements[0].to_string())
}

fn and(left: Expr, right: Expr) -> Expr {
    Expr::BinaryOp {
        left: Box::new(left),
        op: BinaryOperator::And,
        right: Box::new(right),
    }
}

#[allow(clippy::ptr_arg, reason = "sqlparser visits Vec, not slices")]
fn has_window_function(projection: &Vec<SelectItem>) -> bool {
    visit_expressions(projection, |expr| match expr {
        Expr::Function(f) if f.over.is_some() => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    })
    .is_break()
}

/// What `expr` (a dynamic filter's current expression) says about the output
/// columns, as a condition implied by it: `AND` keeps the parts it can read,
/// `OR` and a partitioned join's `CASE` need every branch, and anything else
/// (hash lookups, expressions over several columns) says nothing.
fn keys(expr: &Arc<dyn PhysicalExpr>, schema: &Schema) -> Option<Keys> {
    if let Some(dynamic) = expr.downcast_ref::<DynamicFilterPhysicalExpr>() {
        return keys(&dynamic.current().ok()?, schema);
    }
    let column = |e: &Arc<dyn PhysicalExpr>| output_column(e, schema);
    let literal = |e: &Arc<dyn PhysicalExpr>| {
        e.downcast_ref::<Literal>()
            .map(|l| l.value().clone())
            .filter(|v| !v.is_null())
    };
    if let Some(list) = expr.downcast_ref::<InListExpr>() {
        if list.negated() {
            return None;
        }
        let items = list
            .list()
            .iter()
            .map(|item| item.downcast_ref::<Literal>().map(Literal::value))
            .collect::<Option<Vec<&ScalarValue>>>()?;
        // A join on several columns lists its keys as structs: each column
        // is then among the values it has in those keys.
        if let Some(function) = list.expr().downcast_ref::<ScalarFunctionExpr>()
            && function.name() == "struct"
        {
            let parts = function
                .args()
                .iter()
                .enumerate()
                .filter_map(|(field, arg)| {
                    let index = column(arg)?;
                    let values = items.iter().map(|item| match item {
                        ScalarValue::Struct(keys)
                            if keys.is_valid(0) && field < keys.num_columns() =>
                        {
                            ScalarValue::try_from_array(keys.column(field), 0).ok()
                        }
                        _ => Some(ScalarValue::Null), // matches nothing
                    });
                    in_list(index, values.collect::<Option<Vec<_>>>()?)
                })
                .collect::<Vec<_>>();
            return match parts.len() {
                0 => None,
                1 => parts.into_iter().next(),
                _ => Some(Keys::And(parts)),
            };
        }
        return in_list(column(list.expr())?, items.into_iter().cloned().collect());
    }
    if let Some(value) = expr.downcast_ref::<Literal>() {
        return match value.value() {
            ScalarValue::Boolean(Some(false) | None) => Some(Keys::Nothing),
            _ => None,
        };
    }
    if let Some(binary) = expr.downcast_ref::<BinaryExpr>() {
        let (left, right) = (binary.left(), binary.right());
        return match binary.op() {
            Operator::And => match (keys(left, schema), keys(right, schema)) {
                (Some(l), Some(r)) => Some(Keys::And(vec![l, r])),
                (one, other) => one.or(other),
            },
            Operator::Or => Some(Keys::Or(vec![keys(left, schema)?, keys(right, schema)?])),
            op @ (Operator::Eq | Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq) => {
                if let (Some(index), Some(value)) = (column(left), literal(right)) {
                    Some(Keys::Compare(index, *op, value))
                } else if let (Some(value), Some(index)) = (literal(left), column(right)) {
                    Some(Keys::Compare(index, op.swap()?, value))
                } else {
                    None
                }
            }
            _ => None,
        };
    }
    if let Some(case) = expr.downcast_ref::<CaseExpr>() {
        let mut branches = case
            .when_then_expr()
            .iter()
            .map(|(_, then)| keys(then, schema))
            .collect::<Option<Vec<_>>>()?;
        if let Some(otherwise) = case.else_expr() {
            branches.push(keys(otherwise, schema)?);
        }
        return Some(Keys::Or(branches));
    }
    None
}

/// `column IN (values)`, without repeats or nulls (a null key matches
/// nothing in a join); nothing left means no row can match, and more than
/// [`MAX_KEYS`] distinct values are left to the join.
fn in_list(column: usize, values: Vec<ScalarValue>) -> Option<Keys> {
    let mut seen = HashSet::with_capacity(values.len());
    let mut distinct = Vec::with_capacity(values.len());
    for value in values {
        if !value.is_null() && seen.insert(value.clone()) {
            if distinct.len() == MAX_KEYS {
                return None;
            }
            distinct.push(value);
        }
    }
    Some(if distinct.is_empty() {
        Keys::Nothing
    } else {
        Keys::In(column, distinct)
    })
}

/// The output column `expr` reads: the column itself, or the column cast to
/// a type that compares its values the same way (a wider integer, another
/// string layout — how joins between differently typed keys appear).
fn output_column(expr: &Arc<dyn PhysicalExpr>, schema: &Schema) -> Option<usize> {
    if let Some(cast) = expr.downcast_ref::<CastExpr>() {
        let index = output_column(cast.expr(), schema)?;
        let from = schema.field(index).data_type();
        let to = cast.cast_type();
        let string =
            |t: &DataType| matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
        let widens = from.is_integer()
            && to.is_integer()
            && (from.is_signed_integer() || to.is_unsigned_integer())
            && to.primitive_width() >= from.primitive_width();
        return (widens || (string(from) && string(to))).then_some(index);
    }
    expr.downcast_ref::<Column>()
        .map(Column::index)
        .filter(|i| *i < schema.fields().len())
}

/// `keys` as SQL over the select list's expressions; `None` where it names a
/// column that cannot be filtered on or a value the dialect cannot write.
fn to_sql(keys: &Keys, columns: &[Option<Expr>], unparser: &Unparser) -> Option<Expr> {
    let literal = |value: &ScalarValue| {
        unparser
            .expr_to_sql(&LogicalExpr::Literal(value.clone(), None))
            .ok()
    };
    let column = |index: usize| columns.get(index).cloned().flatten();
    match keys {
        Keys::Nothing => Some(Expr::Value(Value::Boolean(false).into())),
        Keys::Compare(index, op, value) => {
            let op = match op {
                Operator::Eq => BinaryOperator::Eq,
                Operator::Lt => BinaryOperator::Lt,
                Operator::LtEq => BinaryOperator::LtEq,
                Operator::Gt => BinaryOperator::Gt,
                Operator::GtEq => BinaryOperator::GtEq,
                _ => return None,
            };
            Some(Expr::BinaryOp {
                left: Box::new(column(*index)?),
                op,
                right: Box::new(literal(value)?),
            })
        }
        Keys::In(index, values) => Some(Expr::InList {
            expr: Box::new(column(*index)?),
            list: values.iter().map(literal).collect::<Option<Vec<_>>>()?,
            negated: false,
        }),
        Keys::And(parts) => parts
            .iter()
            .filter_map(|k| to_sql(k, columns, unparser))
            .reduce(and),
        Keys::Or(parts) => parts
            .iter()
            .map(|k| to_sql(k, columns, unparser).map(|e| Expr::Nested(Box::new(e))))
            .collect::<Option<Vec<_>>>()?
            .into_iter()
            .reduce(|a, b| Expr::BinaryOp {
                left: Box::new(a),
                op: BinaryOperator::Or,
                right: Box::new(b),
            }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::Field;
    use datafusion::physical_expr::expressions::{binary, col, in_list, lit};
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect as Parse;
    use datafusion::sql::unparser::dialect::PostgreSqlDialect;

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("s_suppkey", DataType::Int64, true),
            Field::new("s_nationkey", DataType::Int32, true),
            Field::new("s_name", DataType::Utf8, true),
        ])
    }

    /// A finished dynamic filter whose current expression is `expr`.
    fn finished(expr: Arc<dyn PhysicalExpr>) -> Arc<dyn PhysicalExpr> {
        let columns = vec![col("s_suppkey", &schema()).unwrap()];
        let filter = Arc::new(DynamicFilterPhysicalExpr::new(columns, lit(true)));
        filter.update(expr).unwrap();
        filter.mark_complete();
        filter
    }

    fn narrowed(query: &str, filter: Arc<dyn PhysicalExpr>) -> Option<String> {
        narrow(
            query,
            &Parse {},
            &PostgreSqlDialect {},
            &schema(),
            &[filter],
        )
    }

    fn nation_in(values: &[i32]) -> Arc<dyn PhysicalExpr> {
        let list = values.iter().map(|v| lit(*v)).collect();
        in_list(
            col("s_nationkey", &schema()).unwrap(),
            list,
            &false,
            &schema(),
        )
        .unwrap()
    }

    const QUERY: &str = r#"SELECT "supplier"."s_suppkey", "supplier"."s_nationkey", "supplier"."s_name" FROM "public"."supplier" AS "supplier""#;

    #[test]
    fn a_join_key_list_becomes_an_in_list() {
        let sql = narrowed(QUERY, finished(nation_in(&[6, 7, 6]))).unwrap();
        assert!(
            sql.ends_with(r#"WHERE "supplier"."s_nationkey" IN (6, 7)"#),
            "{sql}"
        );
    }

    #[test]
    fn a_key_list_over_two_columns_lists_each_column() {
        use datafusion::arrow::array::{ArrayRef, Int64Array, StructArray};
        use datafusion::common::config::ConfigOptions;
        let schema = schema();
        let fields = [
            Arc::new(Field::new("c0", DataType::Int64, true)),
            Arc::new(Field::new("c1", DataType::Int64, true)),
        ];
        let pair = Arc::new(ScalarFunctionExpr::new(
            "struct",
            datafusion::functions::core::r#struct(),
            vec![
                col("s_suppkey", &schema).unwrap(),
                col("s_nationkey", &schema).unwrap(),
            ],
            Arc::new(Field::new(
                "struct",
                DataType::Struct(fields.to_vec().into()),
                true,
            )),
            Arc::new(ConfigOptions::default()),
        ));
        // (1, 6), (2, 7), (3, 6), and (null, 9), which matches nothing.
        let keys = StructArray::from(vec![
            (
                Arc::clone(&fields[0]),
                Arc::new(Int64Array::from(vec![Some(1), Some(2), Some(3), None])) as ArrayRef,
            ),
            (
                Arc::clone(&fields[1]),
                Arc::new(Int64Array::from(vec![6, 7, 6, 9])) as ArrayRef,
            ),
        ]);
        let list = InListExpr::try_new_from_array(pair, Arc::new(keys), false, &schema).unwrap();
        let sql = narrowed(QUERY, finished(Arc::new(list))).unwrap();
        assert!(
            sql.ends_with(r#"WHERE "supplier"."s_suppkey" IN (1, 2, 3) AND "supplier"."s_nationkey" IN (6, 7, 9)"#),
            "{sql}"
        );
    }

    #[test]
    fn more_distinct_keys_than_the_limit_are_left_to_the_join() {
        let schema = schema();
        let many = |n: i64, distinct: i64| {
            in_list(
                col("s_suppkey", &schema).unwrap(),
                (0..n).map(|i| lit(i % distinct)).collect(),
                &false,
                &schema,
            )
            .unwrap()
        };
        let limit = MAX_KEYS as i64;
        // Repeats count once: MAX_KEYS distinct values among twice as many.
        let at_limit = narrowed(QUERY, finished(many(2 * limit, limit)));
        assert!(at_limit.is_some_and(|sql| sql.contains("IN (0, 1, 2")));
        assert_eq!(narrowed(QUERY, finished(many(2 * limit, limit + 1))), None);
    }

    #[test]
    fn bounds_and_existing_conditions_are_kept_together() {
        let schema = schema();
        let key = col("s_suppkey", &schema).unwrap();
        let bounds = binary(
            binary(Arc::clone(&key), Operator::GtEq, lit(10_i64), &schema).unwrap(),
            Operator::And,
            binary(key, Operator::LtEq, lit(20_i64), &schema).unwrap(),
            &schema,
        )
        .unwrap();
        let query = format!(
            r#"{QUERY} WHERE "supplier"."s_name" LIKE 'A%' OR "supplier"."s_name" IS NULL"#
        );
        let sql = narrowed(&query, finished(bounds)).unwrap();
        assert!(
            sql.ends_with(r#"WHERE ("supplier"."s_name" LIKE 'A%' OR "supplier"."s_name" IS NULL) AND "supplier"."s_suppkey" >= 10 AND "supplier"."s_suppkey" <= 20"#),
            "{sql}"
        );
    }

    #[test]
    fn an_empty_build_side_reads_nothing() {
        let sql = narrowed(QUERY, finished(lit(false))).unwrap();
        assert!(sql.ends_with("WHERE false"), "{sql}");
    }

    #[test]
    fn unfinished_or_unreadable_filters_are_left_out() {
        let columns = vec![col("s_nationkey", &schema()).unwrap()];
        let open = Arc::new(DynamicFilterPhysicalExpr::new(columns, nation_in(&[1])));
        assert_eq!(narrowed(QUERY, open), None);
        // `OR` with a branch that says nothing about the columns says nothing.
        let schema = schema();
        let either = binary(
            nation_in(&[1]),
            Operator::Or,
            binary(
                col("s_suppkey", &schema).unwrap(),
                Operator::Plus,
                lit(1_i64),
                &schema,
            )
            .and_then(|e| binary(e, Operator::Eq, lit(3_i64), &schema))
            .unwrap(),
            &schema,
        )
        .unwrap();
        assert_eq!(narrowed(QUERY, finished(either)), None);
    }

    #[test]
    fn queries_whose_meaning_would_change_are_left_alone() {
        let filter = || finished(nation_in(&[1, 2]));
        for query in [
            format!("{QUERY} LIMIT 5"),
            r#"SELECT "s"."s_suppkey", "s"."s_nationkey", row_number() OVER () FROM "supplier" AS "s""#.to_string(),
            r#"SELECT "s"."s_suppkey", "s"."s_nationkey" + 0, "s"."s_name" FROM "supplier" AS "s""#.to_string(),
            r#"SELECT "s"."s_suppkey", max("s"."s_nationkey"), "s"."s_name" FROM "supplier" AS "s" GROUP BY "s"."s_suppkey", "s"."s_name""#.to_string(),
            r#"SELECT "a"."x" FROM "a" UNION SELECT "b"."x" FROM "b""#.to_string(),
        ] {
            assert_eq!(narrowed(&query, filter()), None, "{query}");
        }
        // A grouping key can be filtered before grouping.
        let grouped = r#"SELECT max("s"."s_suppkey"), "s"."s_nationkey", "s"."s_name" FROM "supplier" AS "s" GROUP BY "s"."s_nationkey", "s"."s_name""#;
        let sql = narrowed(grouped, filter()).unwrap();
        assert!(
            sql.contains(r#"WHERE "s"."s_nationkey" IN (1, 2) GROUP BY"#),
            "{sql}"
        );
    }

    #[test]
    fn strings_and_dates_are_written_as_sql_literals() {
        let schema = schema();
        let names = in_list(
            col("s_name", &schema).unwrap(),
            vec![lit("O'Brien"), lit("Smith")],
            &false,
            &schema,
        )
        .unwrap();
        let sql = narrowed(QUERY, finished(names)).unwrap();
        assert!(
            sql.ends_with(r#"WHERE "supplier"."s_name" IN ('O''Brien', 'Smith')"#),
            "{sql}"
        );
    }
}
