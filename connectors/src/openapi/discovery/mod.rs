//! From an OpenAPI document to table definitions: which GET operations return
//! lists, where the records sit in the response, how pages are walked, which
//! query parameters can carry a filter, and which path parameters a query must
//! supply; and which `POST` operations make tables insertable (see
//! [`super::write`]).
//!
//! The entry points are here: [`discover`] and [`required_headers`]. What
//! they produce is in `table`; the reading is split by question: `records`
//! (where a response keeps its records), `params` (an operation's
//! parameters), `pagination`, `filters`, `naming` (table and path-column
//! names) and `inserts` (`POST` operations as insert targets).

mod filters;
mod inserts;
mod naming;
mod pagination;
mod params;
mod records;
mod table;

use std::collections::BTreeMap;

use arrow::datatypes::{DataType, Field};
use serde_json::Value;

use super::config::TableConfig;
use super::schema::{Mapper, Shape};
use super::spec::Document;

pub use naming::{lookup_name_from_path, table_name_from_operation, table_name_from_path};
pub(crate) use pagination::{CURSOR_FIELDS, CURSOR_HEADERS, NEXT_LINK_FIELDS};
pub(crate) use records::merged_properties;
pub use table::{
    CursorAt, FilterOp, FilterParam, NOTE_KEY, Pagination, PathParam, RecordsAt, TableSpec,
};

use filters::detect_filters;
use inserts::discover_writes;
use naming::{path_column, path_template_params};
use pagination::{detect_pagination, from_config};
use params::parameters;
use records::{Located, json_schema, locate_records, success_response};

/// The tables of a document, plus warnings about what could not be mapped.
pub fn discover(
    doc: &Document,
    overrides: &BTreeMap<String, TableConfig>,
) -> (Vec<TableSpec>, Vec<String>) {
    let mut mapper = Mapper::new(doc);
    let mut tables: Vec<TableSpec> = Vec::new();
    let Some(paths) = doc.root.get("paths").and_then(Value::as_object) else {
        mapper.warnings.push("the document has no paths".into());
        return (tables, mapper.warnings);
    };
    for (path, item) in paths {
        let at = format!("GET {path}");
        let item = match doc.resolve(item) {
            Ok((item, _)) => item,
            Err(e) => {
                mapper
                    .warnings
                    .push(format!("{at}: the path item: {e}; skipped"));
                continue;
            }
        };
        let Some(operation) = item.get("get") else {
            continue;
        };
        let operation = match doc.resolve(operation) {
            Ok((operation, _)) => operation,
            Err(e) => {
                mapper
                    .warnings
                    .push(format!("{at}: the operation: {e}; skipped"));
                continue;
            }
        };
        let Some(response) = success_response(doc, operation) else {
            continue;
        };
        let Some(body) = json_schema(&response) else {
            continue;
        };
        let body = match doc.resolve(&body) {
            Ok((body, _)) => body,
            Err(e) => {
                mapper
                    .warnings
                    .push(format!("{at}: the response schema: {e}; skipped"));
                continue;
            }
        };
        let params = parameters(doc, item, operation);
        let template_params: Vec<&str> = path_template_params(path);
        let (records, item_schema) = match locate_records(doc, body, path, operation) {
            Located::List(records, item_schema) => (records, item_schema),
            Located::Single if !template_params.is_empty() => (RecordsAt::Object, body.clone()),
            Located::Nothing
                if !template_params.is_empty()
                    && (body.get("type").and_then(Value::as_str) == Some("object")
                        || body.get("additionalProperties").is_some()) =>
            {
                mapper.warnings.push(format!(
                    "{at}: the record has no documented properties (a map or a free-form object); skipped"
                ));
                continue;
            }
            // A single object without a key (`GET /status`) is not a table.
            Located::Single | Located::Nothing => continue,
            Located::Skipped(reason) => {
                mapper.warnings.push(format!("{at}: {reason}; skipped"));
                continue;
            }
        };
        let mut columns = mapper.object_fields(&item_schema, &at);
        if columns.is_empty() {
            let what = if records == RecordsAt::Object {
                "the record"
            } else {
                "list items"
            };
            mapper.warnings.push(format!(
                "{at}: {what} have no documented properties; skipped"
            ));
            continue;
        }
        let mut path_params = Vec::new();
        for name in &template_params {
            let column = path_column(path, name, &columns);
            let mut note = format!("the {{{name}}} of GET {path}: a query must give it");
            if column != *name {
                note.push_str(&format!(" ({name} is the records' own field)"));
            }
            let field = Field::new(&column, DataType::Utf8, false).with_metadata(
                std::collections::HashMap::from([(NOTE_KEY.to_string(), note)]),
            );
            columns.push((field, Shape::Plain));
            path_params.push(PathParam {
                param: (*name).to_string(),
                column,
            });
        }
        let raw_name = match operation.get("operationId").and_then(Value::as_str) {
            Some(id) => table_name_from_operation(id),
            None if records == RecordsAt::Object => lookup_name_from_path(path),
            None => table_name_from_path(path),
        };
        let (key, overrides_for) = table_overrides(overrides, &raw_name, &at);
        if overrides_for.exclude {
            continue;
        }
        let pagination = match &overrides_for.pagination {
            Some(configured) => from_config(configured),
            None if records == RecordsAt::Object => Pagination::None,
            None => match detect_pagination(doc, &params, body, &response, &records, &columns) {
                Ok(pagination) => pagination,
                Err(reason) => {
                    mapper.warnings.push(format!(
                        "{at}: {reason}; skipped (set [source.tables.{raw_name}] pagination to read it)"
                    ));
                    continue;
                }
            },
        };
        let mut filters = detect_filters(&params, &columns, &pagination);
        for (column, param) in &overrides_for.filters {
            if columns.iter().any(|(f, _)| f.name() == column) {
                filters.push(FilterParam {
                    column: column.clone(),
                    param: param.clone(),
                    op: FilterOp::Eq,
                    list: false,
                    max_items: None,
                });
            } else {
                mapper.warnings.push(format!(
                    "{at}: tables.{key}.filters names unknown column '{column}'"
                ));
            }
        }
        let name = overrides_for.rename.clone().unwrap_or(raw_name);
        let name = unique_name(&tables, name, &at, &mut mapper.warnings);
        let missing_is_empty = records == RecordsAt::Object
            && operation
                .get("responses")
                .and_then(|r| r.get("404"))
                .is_some();
        tables.push(TableSpec {
            name,
            path: path.clone(),
            path_params,
            records,
            columns,
            filters,
            pagination,
            primary_key: overrides_for.primary_key.clone(),
            readable: true,
            write: None,
            missing_is_empty,
        });
    }
    discover_writes(doc, overrides, &mut tables, &mut mapper);
    for key in overrides.keys() {
        let found = tables.iter().any(|t| &t.name == key)
            || (key.starts_with("GET ") || key.starts_with("POST "))
                && paths.contains_key(key.split_once(' ').map_or("", |(_, p)| p.trim()));
        if !found && !overrides.get(key).is_some_and(|o| o.exclude) {
            mapper
                .warnings
                .push(format!("tables.{key}: no operation of that name was found"));
        }
    }
    if tables.is_empty() {
        mapper.warnings.push(
            "no table could be made from this document: no GET operation returns a list of records or one record by key, and no POST takes a JSON record".into(),
        );
    }
    (tables, collapse_repeats(mapper.warnings))
}

/// Every header parameter an operation requires: `(operation, header)`,
/// operations as `GET /path`.
pub fn required_headers(doc: &Document) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for op in doc.operations(&["get", "post"]) {
        for param in parameters(doc, &op.item, &op.operation) {
            if param.location == "header" && param.required {
                out.push((op.name(), param.name));
            }
        }
    }
    out
}

/// The overrides for a table: those keyed by its operation (`"GET /path"`)
/// win over those keyed by its name. Returns the key used, for messages.
fn table_overrides(
    overrides: &BTreeMap<String, TableConfig>,
    name: &str,
    operation: &str,
) -> (String, TableConfig) {
    match overrides.get(operation) {
        Some(o) => (format!("\"{operation}\""), o.clone()),
        None => (
            name.to_string(),
            overrides.get(name).cloned().unwrap_or_default(),
        ),
    }
}

/// `name`, or `name_2`, `name_3`, ... where another table has it already;
/// a clash is a warning naming both operations and how to tell them apart.
fn unique_name(tables: &[TableSpec], name: String, at: &str, warnings: &mut Vec<String>) -> String {
    let Some(first) = tables.iter().find(|t| t.name == name) else {
        return name;
    };
    let mut n = 2;
    let mut candidate = format!("{name}_{n}");
    while tables.iter().any(|t| t.name == candidate) {
        n += 1;
        candidate = format!("{name}_{n}");
    }
    let first_op = if first.readable {
        first.endpoint()
    } else {
        format!("POST {}", first.path)
    };
    warnings.push(format!(
        "{first_op} and {at} both make a table named '{name}': the second is '{candidate}'; to choose, set [source.tables.\"{at}\"] rename = \"...\""
    ));
    candidate
}

/// One warning per problem: a shared component that cannot be mapped would
/// otherwise be reported once for every operation that uses it. Warnings that
/// differ only in their `GET /path` prefix are reported once, with a count.
fn collapse_repeats(warnings: Vec<String>) -> Vec<String> {
    let mut seen: Vec<(String, String, usize)> = Vec::new();
    for warning in warnings {
        // "GET /path.property: message": the part after the path is the problem.
        // An operation left out is reported on its own line.
        let key = if warning.ends_with("skipped") || warning.contains("; skipped (") {
            warning.clone()
        } else {
            warning
                .strip_prefix("GET ")
                .and_then(|rest| rest.find(['.', ':']).map(|i| rest[i..].to_string()))
                .unwrap_or_else(|| warning.clone())
        };
        match seen.iter_mut().find(|(k, _, _)| *k == key) {
            Some((_, _, more)) => *more += 1,
            None => seen.push((key, warning, 0)),
        }
    }
    seen.into_iter()
        .map(|(_, warning, more)| match more {
            0 => warning,
            1 => format!("{warning} (and in 1 other operation)"),
            n => format!("{warning} (and in {n} other operations)"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn create_operations_become_insert_targets() {
        let list = serde_json::json!({"get": {"operationId": "listThings", "responses": {"200": {"description": "ok",
            "content": {"application/json": {"schema": {"type": "array", "items": {"type": "object", "properties": {"id": {"type": "string"}, "name": {"type": "string"}}}}}}}}}});
        let body = |required: &str| {
            serde_json::json!({"requestBody": {"content": {"application/json": {"schema": {
            "type": "object", "required": [required], "properties": {"name": {"type": "string", "maxLength": 5}}}}}},
            "parameters": [{"name": "Idempotency-Key", "in": "header", "schema": {"type": "string"}}],
            "responses": {"201": {"description": "made", "content": {"application/json": {"schema": {"type": "object", "properties": {"id": {"type": "string"}, "name": {"type": "string"}}}}}}}})
        };
        let doc = serde_json::json!({"openapi": "3.1.0", "paths": {
            "/things": list,
            "/things/new": {"post": body("name")},
            "/other/{key}/notes": {"post": {"operationId": "addNote", "parameters": [{"name": "key", "in": "path", "required": true, "schema": {"type": "string"}}],
                "requestBody": {"content": {"application/json": {"schema": {"type": "object", "properties": {"text": {"type": "string"}}}}}}}}
        }});
        let doc = Document::parse(&doc.to_string()).unwrap();
        let mut overrides = BTreeMap::new();
        overrides.insert(
            "things".to_string(),
            TableConfig {
                insert: Some("POST /things/new".into()),
                ..TableConfig::default()
            },
        );
        overrides.insert(
            "missing".to_string(),
            TableConfig {
                insert: Some("POST /nowhere".into()),
                ..TableConfig::default()
            },
        );
        let (tables, warnings) = discover(&doc, &overrides);
        let things = tables.iter().find(|t| t.name == "things").unwrap();
        let write = things.write.as_ref().unwrap();
        assert_eq!(write.path, "/things/new");
        assert_eq!(write.idempotency_header.as_deref(), Some("Idempotency-Key"));
        assert_eq!(write.identifier.as_deref(), Some("id"));
        let mut row = serde_json::Map::new();
        row.insert("name".into(), serde_json::json!("toolong"));
        assert_eq!(write.check(&row), ["name: longer than 5 characters"]);
        assert_eq!(write.check(&serde_json::Map::new()), ["name: is required"]);
        // A POST elsewhere is an insert-only table keyed by its path parameter.
        let note = tables.iter().find(|t| t.name == "add_note").unwrap();
        assert!(!note.readable);
        assert_eq!(
            note.path_params,
            [PathParam {
                param: "key".into(),
                column: "key".into()
            }]
        );
        let columns: Vec<&String> = note.columns.iter().map(|(f, _)| f.name()).collect();
        assert_eq!(columns, ["key", "text"]);
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("tables.missing.insert: the document has no POST /nowhere")),
            "{warnings:?}"
        );
    }
}
