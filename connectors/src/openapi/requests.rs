//! Request sets: the product of path-parameter values and chunks of list
//! parameters that one scan must issue, each then paged through.

use std::collections::BTreeMap;

use super::discovery::TableSpec;
use super::pushdown::Target;

/// Most request series one scan may fan out to, so a careless join cannot
/// flood a supplier.
pub const MAX_REQUEST_SETS: usize = 5_000;
/// Values per request for list parameters that document no `maxItems`.
const DEFAULT_LIST_CHUNK: usize = 100;

/// One request series: a path with its parameters filled in, plus fixed query
/// parameters; pagination adds its own.
#[derive(Debug, Clone)]
pub struct RequestSet {
    /// The path with path parameters substituted.
    pub path: String,
    /// Query parameters.
    pub query: Vec<(String, String)>,
    /// Path parameter values by column, to fill those columns.
    pub path_values: Vec<(String, String)>,
}

/// The request sets for these parameter values.
///
/// # Errors
/// A path parameter without a value, or too many request series; the message
/// says what to add to the query.
pub fn build(
    source: &str,
    spec: &TableSpec,
    values: &BTreeMap<Target, Vec<String>>,
) -> Result<Vec<RequestSet>, String> {
    let mut sets = vec![RequestSet {
        path: spec.path.clone(),
        query: Vec::new(),
        path_values: Vec::new(),
    }];
    for param in &spec.path_params {
        let column = &param.column;
        let Some(options) = values.get(&Target::Path(column.clone())) else {
            let shadowed = if column == &param.param {
                String::new()
            } else {
                format!(
                    " ('{}' is the records' own field; the path's {{{}}} is the column {column})",
                    param.param, param.param
                )
            };
            let quoted = crate::names::quote_ident(column);
            return Err(format!(
                "table '{source}.{}' is read through {}, which needs a value for '{column}'{shadowed}: add WHERE {quoted} = '...' (or {quoted} IN (...)), or join on {quoted}",
                spec.name,
                spec.endpoint()
            ));
        };
        sets = product(sets, options, |set, value| {
            set.path = set
                .path
                .replace(&format!("{{{}}}", param.param), &percent_encode(value));
            set.path_values.push((column.clone(), value.clone()));
        });
        check_size(spec, sets.len())?;
    }
    for (target, options) in values {
        let Target::Query(index) = target else {
            continue;
        };
        let filter = &spec.filters[*index];
        let groups: Vec<String> = if filter.list {
            options
                .chunks(filter.max_items.unwrap_or(DEFAULT_LIST_CHUNK).max(1))
                .map(|chunk| chunk.join(","))
                .collect()
        } else {
            options.clone()
        };
        sets = product(sets, &groups, |set, value| {
            set.query.push((filter.param.clone(), value.clone()))
        });
        check_size(spec, sets.len())?;
    }
    Ok(sets)
}

fn check_size(spec: &TableSpec, n: usize) -> Result<(), String> {
    if n > MAX_REQUEST_SETS {
        return Err(format!(
            "{}: the filters would need {n} separate request series (more than {MAX_REQUEST_SETS}); narrow the query",
            spec.endpoint()
        ));
    }
    Ok(())
}

fn product(
    sets: Vec<RequestSet>,
    options: &[String],
    apply: impl Fn(&mut RequestSet, &String),
) -> Vec<RequestSet> {
    let mut out = Vec::with_capacity(sets.len() * options.len());
    for set in sets {
        for option in options {
            let mut next = set.clone();
            apply(&mut next, option);
            out.push(next);
        }
    }
    out
}

fn percent_encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}
