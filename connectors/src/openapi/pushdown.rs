//! Which SQL filters become query or path parameters, and whether the API's
//! answer is then exactly what SQL asked for (exact) or a superset DataFusion
//! must filter again (inexact). A filter is never pushed where the API could
//! return fewer rows than SQL asked for.

use std::collections::BTreeMap;

use arrow::datatypes::{DataType, TimeUnit};
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};

use super::discovery::{FilterOp, TableSpec};

/// Where a pushed value goes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    /// A query parameter (index into the table's filters).
    Query(usize),
    /// A path parameter, by the column that carries it.
    Path(String),
}

/// One filter, as parameters.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// Where the values go.
    pub target: Target,
    /// Allowed values (more than one for `IN`).
    pub values: Vec<String>,
    /// Whether the API applies the filter exactly.
    pub exact: bool,
}

/// Matches one filter expression against the table's parameters.
pub fn classify(spec: &TableSpec, expr: &Expr) -> Option<Pushed> {
    match expr {
        // DataFusion rewrites short IN lists as `c = a OR c = b`.
        Expr::BinaryExpr(BinaryExpr {
            op: Operator::Or, ..
        }) => {
            let (column, values) = equalities(expr)?;
            let in_list = Expr::InList(datafusion::logical_expr::expr::InList {
                expr: Box::new(Expr::Column(column)),
                list: values.into_iter().map(|v| Expr::Literal(v, None)).collect(),
                negated: false,
            });
            classify(spec, &in_list)
        }
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (column, literal, op) = match (left.as_ref(), right.as_ref()) {
                (Expr::Column(c), Expr::Literal(v, _)) => (c.name.as_str(), v, *op),
                (Expr::Literal(v, _), Expr::Column(c)) => (c.name.as_str(), v, op.swap()?),
                _ => return None,
            };
            let value = format_value(literal)?;
            if op == Operator::Eq && spec.path_param(column).is_some() {
                return Some(Pushed {
                    target: Target::Path(column.to_string()),
                    values: vec![value],
                    exact: true,
                });
            }
            // The API's answer must contain every row SQL wants.
            let candidates = spec
                .filters
                .iter()
                .enumerate()
                .filter(|(_, f)| f.column == column);
            for (index, filter) in candidates {
                let exact = match (op, filter.op) {
                    (Operator::Eq, FilterOp::Eq)
                    | (Operator::GtEq, FilterOp::Ge)
                    | (Operator::Gt, FilterOp::Gt)
                    | (Operator::LtEq, FilterOp::Le)
                    | (Operator::Lt, FilterOp::Lt) => true,
                    (Operator::Gt, FilterOp::Ge) | (Operator::Lt, FilterOp::Le) => false,
                    _ => continue,
                };
                return Some(Pushed {
                    target: Target::Query(index),
                    values: vec![value],
                    exact,
                });
            }
            None
        }
        Expr::InList(in_list) if !in_list.negated => {
            let Expr::Column(c) = in_list.expr.as_ref() else {
                return None;
            };
            let values: Option<Vec<String>> = in_list
                .list
                .iter()
                .map(|e| match e {
                    Expr::Literal(v, _) => format_value(v),
                    _ => None,
                })
                .collect();
            let values = values?;
            if spec.path_param(&c.name).is_some() {
                return Some(Pushed {
                    target: Target::Path(c.name.clone()),
                    values,
                    exact: true,
                });
            }
            spec.filters
                .iter()
                .position(|f| f.column == c.name && f.op == FilterOp::Eq)
                .map(|index| Pushed {
                    target: Target::Query(index),
                    values,
                    exact: true,
                })
        }
        _ => None,
    }
}

/// `c = a OR c = b OR ...` as the column and its values.
fn equalities(expr: &Expr) -> Option<(datafusion::common::Column, Vec<ScalarValue>)> {
    match expr {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Or,
            right,
        }) => {
            let (lc, mut lv) = equalities(left)?;
            let (rc, rv) = equalities(right)?;
            (lc == rc).then(|| {
                lv.extend(rv);
                (lc, lv)
            })
        }
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Eq,
            right,
        }) => match (left.as_ref(), right.as_ref()) {
            (Expr::Column(c), Expr::Literal(v, _)) | (Expr::Literal(v, _), Expr::Column(c)) => {
                Some((c.clone(), vec![v.clone()]))
            }
            _ => None,
        },
        _ => None,
    }
}

/// Matches every filter of a scan. A range parameter carries one value, so
/// only the first filter on it is pushed; later ones stay with DataFusion.
pub fn plan(spec: &TableSpec, filters: &[&Expr]) -> Vec<Option<Pushed>> {
    let mut ranges_used: Vec<Target> = Vec::new();
    filters
        .iter()
        .map(|expr| {
            let pushed = classify(spec, expr)?;
            let is_range =
                matches!(&pushed.target, Target::Query(i) if spec.filters[*i].op != FilterOp::Eq);
            if is_range {
                if ranges_used.contains(&pushed.target) {
                    return None;
                }
                ranges_used.push(pushed.target.clone());
            }
            Some(pushed)
        })
        .collect()
}

/// DataFusion's view of each filter, consistent with [`plan`].
pub fn support(spec: &TableSpec, filters: &[&Expr]) -> Vec<TableProviderFilterPushDown> {
    plan(spec, filters)
        .into_iter()
        .map(|p| match p {
            Some(p) if p.exact => TableProviderFilterPushDown::Exact,
            Some(_) => TableProviderFilterPushDown::Inexact,
            None => TableProviderFilterPushDown::Unsupported,
        })
        .collect()
}

/// The value as the API expects it in a URL.
pub fn format_scalar(value: &ScalarValue) -> Option<String> {
    format_value(value)
}

fn format_value(value: &ScalarValue) -> Option<String> {
    if value.is_null() {
        return None;
    }
    Some(match value {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => s.clone(),
        ScalarValue::Boolean(Some(b)) => b.to_string(),
        ScalarValue::Int8(Some(v)) => v.to_string(),
        ScalarValue::Int16(Some(v)) => v.to_string(),
        ScalarValue::Int32(Some(v)) => v.to_string(),
        ScalarValue::Int64(Some(v)) => v.to_string(),
        ScalarValue::UInt8(Some(v)) => v.to_string(),
        ScalarValue::UInt16(Some(v)) => v.to_string(),
        ScalarValue::UInt32(Some(v)) => v.to_string(),
        ScalarValue::UInt64(Some(v)) => v.to_string(),
        ScalarValue::Float64(Some(v)) => v.to_string(),
        ScalarValue::Date32(Some(days)) => {
            let epoch = NaiveDate::from_ymd_opt(1970, 1, 1)?;
            epoch
                .checked_add_signed(chrono::Duration::days(i64::from(*days)))?
                .to_string()
        }
        ScalarValue::TimestampSecond(Some(v), _) => timestamp(*v, TimeUnit::Second)?,
        ScalarValue::TimestampMillisecond(Some(v), _) => timestamp(*v, TimeUnit::Millisecond)?,
        ScalarValue::TimestampMicrosecond(Some(v), _) => timestamp(*v, TimeUnit::Microsecond)?,
        ScalarValue::TimestampNanosecond(Some(v), _) => timestamp(*v, TimeUnit::Nanosecond)?,
        _ => return None,
    })
}

fn timestamp(value: i64, unit: TimeUnit) -> Option<String> {
    let nanos = match unit {
        TimeUnit::Second => value.checked_mul(1_000_000_000)?,
        TimeUnit::Millisecond => value.checked_mul(1_000_000)?,
        TimeUnit::Microsecond => value.checked_mul(1_000)?,
        TimeUnit::Nanosecond => value,
    };
    let t: DateTime<Utc> = DateTime::from_timestamp_nanos(nanos);
    // Whole seconds read best; keep sub-seconds only when present.
    let format = if nanos % 1_000_000_000 == 0 {
        SecondsFormat::Secs
    } else {
        SecondsFormat::AutoSi
    };
    Some(t.to_rfc3339_opts(format, true))
}

/// Combines pushed filters into parameter values: for each target, the values
/// every filter on it allows (equalities and `IN` lists intersect). `None` means
/// the filters contradict each other, so no request can match.
pub fn combine<'a>(
    pushed: impl IntoIterator<Item = &'a Pushed>,
) -> Option<BTreeMap<Target, Vec<String>>> {
    let mut out: BTreeMap<Target, Vec<String>> = BTreeMap::new();
    for p in pushed {
        match out.get_mut(&p.target) {
            Some(existing) => {
                existing.retain(|v| p.values.contains(v));
                if existing.is_empty() {
                    return None;
                }
            }
            None => {
                let mut values = p.values.clone();
                values.sort();
                values.dedup();
                out.insert(p.target.clone(), values);
            }
        }
    }
    Some(out)
}

/// Whether a column type can be compared with pushed text at all.
pub fn comparable(t: &DataType) -> bool {
    !matches!(
        t,
        DataType::Struct(_) | DataType::List(_) | DataType::Map(..)
    )
}
