//! Which query parameters carry a filter on a column, and what comparison
//! each implements: from an `x-filter` extension, a name matching a column
//! (read with its description), or a bound suffix (`_from`, `_before`, ...).

use arrow::datatypes::{DataType, Field};
use serde_json::Value;

use crate::openapi::schema::Shape;

use super::pagination::pagination_params;
use super::params::Param;
use super::records::words;
use super::table::{FilterOp, FilterParam, Pagination};

pub(super) fn detect_filters(
    params: &[Param],
    columns: &[(Field, Shape)],
    pagination: &Pagination,
) -> Vec<FilterParam> {
    let reserved = pagination_params(pagination);
    let column = |name: &str| {
        columns
            .iter()
            .find(|(f, s)| f.name() == name && *s == Shape::Plain && is_scalar(f.data_type()))
    };
    let mut out = Vec::new();
    for p in params
        .iter()
        .filter(|p| p.location == "query" && !reserved.contains(&p.name.as_str()))
    {
        let list = p.schema.get("type").and_then(Value::as_str) == Some("array");
        let max_items = p
            .schema
            .get("maxItems")
            .and_then(Value::as_u64)
            .map(|n| n as usize);
        if let Some(ext) = &p.extension {
            let field = ext.get("field").and_then(Value::as_str).unwrap_or_default();
            let op = match ext.get("op").and_then(Value::as_str).unwrap_or("=") {
                ">=" => Some(FilterOp::Ge),
                ">" => Some(FilterOp::Gt),
                "<=" => Some(FilterOp::Le),
                "<" => Some(FilterOp::Lt),
                "=" | "==" => Some(FilterOp::Eq),
                _ => None,
            };
            if let (Some(op), Some(_)) = (op, column(field)) {
                out.push(FilterParam {
                    column: field.into(),
                    param: p.name.clone(),
                    op,
                    list,
                    max_items,
                });
            }
            continue;
        }
        if let Some((field, _)) = column(&p.name) {
            // Named like a column, but not necessarily an equality: a time or
            // a bound is pushed only as what its description says it is.
            if let Some(op) = named_param_op(p, field.data_type()) {
                out.push(FilterParam {
                    column: p.name.clone(),
                    param: p.name.clone(),
                    op,
                    list: list && op == FilterOp::Eq,
                    max_items,
                });
            }
            continue;
        }
        for (suffix, op) in [
            ("_from", FilterOp::Ge),
            ("_after", FilterOp::Gt),
            ("_to", FilterOp::Lt),
            ("_before", FilterOp::Lt),
            ("_since", FilterOp::Ge),
            ("_until", FilterOp::Lt),
        ] {
            let Some(stem) = p.name.strip_suffix(suffix) else {
                continue;
            };
            let target = [
                stem.to_string(),
                format!("{stem}_at"),
                format!("{stem}_date"),
                format!("{stem}_time"),
            ]
            .into_iter()
            .find(|c| column(c).is_some_and(|(f, _)| is_ordered(f.data_type())));
            if let Some(target) = target {
                out.push(FilterParam {
                    column: target,
                    param: p.name.clone(),
                    op,
                    list: false,
                    max_items: None,
                });
            }
        }
    }
    out
}

/// What a query parameter named exactly like a column compares. A text or a
/// flag is an equality; a date, a time, or a number whose name or
/// description reads as a bound (`start_time`, "at least") is whatever its
/// description says, and not pushed at all when it says nothing clear.
fn named_param_op(param: &Param, column_type: &DataType) -> Option<FilterOp> {
    let description = param
        .description
        .as_deref()
        .unwrap_or_default()
        .to_ascii_lowercase();
    const PHRASES: &[(&str, FilterOp)] = &[
        ("on or after", FilterOp::Ge),
        ("at or after", FilterOp::Ge),
        ("greater than or equal", FilterOp::Ge),
        ("on or before", FilterOp::Le),
        ("at or before", FilterOp::Le),
        ("less than or equal", FilterOp::Le),
        ("equal to", FilterOp::Eq),
        ("equals", FilterOp::Eq),
        ("exactly", FilterOp::Eq),
        ("since", FilterOp::Ge),
        ("from", FilterOp::Ge),
        ("earliest", FilterOp::Ge),
        ("minimum", FilterOp::Ge),
        ("until", FilterOp::Le),
        ("latest", FilterOp::Le),
        ("maximum", FilterOp::Le),
        ("after", FilterOp::Gt),
        ("later than", FilterOp::Gt),
        ("greater than", FilterOp::Gt),
        ("before", FilterOp::Lt),
        ("earlier than", FilterOp::Lt),
        ("less than", FilterOp::Lt),
    ];
    // The phrase that comes first in the description says what the
    // parameter is ("after this time; at most 90 days back" is "after");
    // at one place, the longer phrase wins ("on or after" over "after").
    let said = PHRASES
        .iter()
        .enumerate()
        .filter_map(|(rank, (phrase, op))| description.find(phrase).map(|at| (at, rank, *op)))
        .min_by_key(|(at, rank, _)| (*at, *rank))
        .map(|(_, _, op)| op);
    let temporal = matches!(column_type, DataType::Timestamp(..) | DataType::Date32);
    let bound_like = words(&param.name).iter().any(|w| {
        [
            "start", "end", "from", "to", "since", "until", "after", "before", "min", "max",
            "begin", "earliest", "latest",
        ]
        .contains(&w.as_str())
    });
    let said_bound = said.is_some_and(|op| op != FilterOp::Eq);
    if temporal || (is_ordered(column_type) && (bound_like || said_bound)) {
        return said;
    }
    // Text and flags compare for equality: words such as "from" in their
    // descriptions ("crimes raised from these incidents") are not bounds.
    Some(FilterOp::Eq)
}

fn is_scalar(t: &DataType) -> bool {
    !matches!(t, DataType::Struct(_) | DataType::List(_))
}

fn is_ordered(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Timestamp(..)
            | DataType::Date32
            | DataType::Int32
            | DataType::Int64
            | DataType::Float64
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parameter_is_what_its_description_says_first() {
        let param = |description: &str| Param {
            name: "updated".into(),
            location: "query".into(),
            schema: Value::Null,
            extension: None,
            description: Some(description.into()),
            required: false,
        };
        let time = DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None);
        let op = |d: &str| named_param_op(&param(d), &time);
        assert_eq!(
            op("Items updated after this time; maximum 90 days back"),
            Some(FilterOp::Gt)
        );
        assert_eq!(
            op("Only items updated on or after this time"),
            Some(FilterOp::Ge)
        );
        assert_eq!(op("Up to the latest, before this time"), Some(FilterOp::Le));
        assert_eq!(op("The update time"), None);
        assert_eq!(
            named_param_op(&param("Items from this team"), &DataType::Utf8),
            Some(FilterOp::Eq)
        );
    }
}
