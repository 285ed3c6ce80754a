//! Which SQL filters become query or path parameters, and whether the API's
//! answer is then exactly what SQL asked for (exact) or a superset DataFusion
//! must filter again (inexact). A filter is never pushed where the API could
//! return fewer rows than SQL asked for.

use std::collections::BTreeMap;

use arrow::datatypes::{DataType, TimeUnit};
use chrono::{DateTime, Datelike, NaiveDate, SecondsFormat, Utc};
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

/// Writes a point of a range's number line back as a parameter value.
type Writes = dyn Fn(i128) -> Option<String>;

/// The bounds of `count` windows that split the range from `from` to `to`
/// of a column of type `column` (values as [`format_scalar`] writes them),
/// `from` and `to` first and last as they are: cut at whole seconds for
/// timestamps, whole days for dates, whole numbers for integers. `None` for
/// a column of another type (text orders otherwise than numbers), values
/// that are not of the column's kind, `from` not below `to`, or a range
/// too narrow for two windows.
pub fn split_range(from: &str, to: &str, column: &DataType, count: usize) -> Option<Vec<String>> {
    // Each kind as whole units on a number line, and back.
    let (low, high, unit, write): (i128, i128, i128, Box<Writes>) =
        if let (DataType::Timestamp(..), Ok(a), Ok(b)) = (
            column,
            DateTime::parse_from_rfc3339(from),
            DateTime::parse_from_rfc3339(to),
        ) {
            let nanos = |t: DateTime<chrono::FixedOffset>| {
                i128::from(t.timestamp()) * 1_000_000_000 + i128::from(t.timestamp_subsec_nanos())
            };
            let write = |n: i128| timestamp(i64::try_from(n).ok()?, TimeUnit::Nanosecond);
            (nanos(a), nanos(b), 1_000_000_000, Box::new(write))
        } else if let (DataType::Date32 | DataType::Date64, Ok(a), Ok(b)) = (
            column,
            NaiveDate::parse_from_str(from, "%Y-%m-%d"),
            NaiveDate::parse_from_str(to, "%Y-%m-%d"),
        ) {
            let days = |d: NaiveDate| i128::from(d.num_days_from_ce());
            let write = |n: i128| {
                NaiveDate::from_num_days_from_ce_opt(i32::try_from(n).ok()?).map(|d| d.to_string())
            };
            (days(a), days(b), 1, Box::new(write))
        } else if let (true, Ok(a), Ok(b)) =
            (column.is_integer(), from.parse::<i64>(), to.parse::<i64>())
        {
            let write = |n: i128| i64::try_from(n).ok().map(|n| n.to_string());
            (i128::from(a), i128::from(b), 1, Box::new(write))
        } else {
            return None;
        };
    let count = i128::try_from(count).ok()?;
    if count < 2 || low >= high {
        return None;
    }
    let mut bounds = vec![from.to_string()];
    let mut last = low;
    for k in 1..count {
        // Down to a whole unit, and past the previous bound.
        let cut = (low + (high - low) * k / count).div_euclid(unit) * unit;
        if cut > last && cut < high {
            bounds.push(write(cut)?);
            last = cut;
        }
    }
    bounds.push(to.to_string());
    (bounds.len() >= 3).then_some(bounds)
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

#[cfg(test)]
mod window_tests {
    use super::*;

    #[test]
    fn ranges_split_at_whole_units_of_the_columns_kind() {
        let time = DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
        assert_eq!(
            split_range("2026-10-01T00:00:00Z", "2026-10-01T00:00:03Z", &time, 3).unwrap(),
            [
                "2026-10-01T00:00:00Z",
                "2026-10-01T00:00:01Z",
                "2026-10-01T00:00:02Z",
                "2026-10-01T00:00:03Z"
            ]
        );
        // Cut at whole seconds only: two seconds hold two windows, not four.
        assert_eq!(
            split_range("2026-10-01T00:00:00.5Z", "2026-10-01T00:00:02Z", &time, 4).unwrap(),
            [
                "2026-10-01T00:00:00.5Z",
                "2026-10-01T00:00:01Z",
                "2026-10-01T00:00:02Z"
            ]
        );
        assert_eq!(
            split_range("2026-10-01", "2026-10-11", &DataType::Date32, 2).unwrap(),
            ["2026-10-01", "2026-10-06", "2026-10-11"]
        );
        assert_eq!(
            split_range("-5", "4", &DataType::Int64, 3).unwrap(),
            ["-5", "-2", "1", "4"]
        );
        // Too narrow, backwards, or not the column's kind: not split.
        assert_eq!(split_range("1", "2", &DataType::Int32, 4), None);
        assert_eq!(split_range("9", "1", &DataType::Int32, 2), None);
        assert_eq!(split_range("5", "20", &DataType::Utf8, 2), None);
        assert_eq!(split_range("2026-10-01", "2026-10-11", &time, 2), None);
        assert_eq!(split_range("a", "b", &DataType::Int64, 2), None);
    }
}
