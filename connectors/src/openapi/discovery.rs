//! From an OpenAPI document to table definitions: which GET operations return
//! lists, where the records sit in the response, how pages are walked, which
//! query parameters can carry a filter, and which path parameters a query must
//! supply; and which `POST` operations make tables insertable (see
//! [`super::write`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field};
use serde_json::Value;

use super::config::{PaginationConfig, TableConfig};
use super::schema::{Mapper, Shape};
use super::spec::Document;
use super::write::{WriteSpec, write_spec};

/// Where a response keeps its records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordsAt {
    /// The body is the array.
    Root,
    /// The body is an object and this property holds the array.
    Field(String),
}

/// How a table's pages are walked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pagination {
    /// One request returns everything.
    None,
    /// Offset and limit parameters; `total` names a count in the body, if any.
    Offset {
        /// Offset parameter.
        offset: String,
        /// Limit parameter.
        limit: String,
        /// Largest documented limit.
        max: Option<u64>,
    },
    /// Page numbers from 1.
    Page {
        /// Page parameter.
        page: String,
        /// Page-size parameter.
        size: Option<String>,
    },
    /// A cursor from the body passed back as a parameter.
    Cursor {
        /// Parameter that takes it.
        param: String,
        /// Property of the body holding the next cursor.
        field: String,
        /// Page-size parameter, if any.
        size: Option<String>,
        /// Largest documented page size.
        max: Option<u64>,
    },
    /// The next page's URL in the body.
    NextLink {
        /// Property holding it.
        field: String,
    },
    /// The next page in a `Link` header.
    LinkHeader,
}

impl Pagination {
    /// A short description for `EXPLAIN`.
    pub fn describe(&self) -> String {
        match self {
            Pagination::None => "none".into(),
            Pagination::Offset { .. } => "offset".into(),
            Pagination::Page { .. } => "page".into(),
            Pagination::Cursor { .. } => "cursor".into(),
            Pagination::NextLink { .. } => "next-link".into(),
            Pagination::LinkHeader => "link-header".into(),
        }
    }

    /// Whether pages can be fetched concurrently (their addresses are known in advance).
    pub fn concurrent(&self) -> bool {
        matches!(self, Pagination::Offset { .. } | Pagination::Page { .. })
    }
}

/// A comparison a query parameter implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterOp {
    /// `=` (or `IN` for list parameters).
    Eq,
    /// `>=`.
    Ge,
    /// `>`.
    Gt,
    /// `<=`.
    Le,
    /// `<`.
    Lt,
}

/// A query parameter that filters on a column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterParam {
    /// The column.
    pub column: String,
    /// The parameter.
    pub param: String,
    /// What it compares.
    pub op: FilterOp,
    /// Whether it takes a comma-separated list (so `IN` can be pushed).
    pub list: bool,
    /// Most values per request, where documented.
    pub max_items: Option<usize>,
}

/// One table of an OpenAPI source.
#[derive(Debug, Clone)]
pub struct TableSpec {
    /// SQL table name.
    pub name: String,
    /// The path template, e.g. `/incidents/{urn}/log`.
    pub path: String,
    /// Path parameters; each is a column a query must supply.
    pub path_params: Vec<String>,
    /// Where the records are in the body.
    pub records: RecordsAt,
    /// Columns and how to prepare their values.
    pub columns: Vec<(Field, Shape)>,
    /// Parameters that carry filters.
    pub filters: Vec<FilterParam>,
    /// How pages are walked.
    pub pagination: Pagination,
    /// Columns identifying a record.
    pub primary_key: Vec<String>,
    /// Whether rows can be read (false for insert-only tables).
    pub readable: bool,
    /// The create operation, for `INSERT`.
    pub write: Option<Arc<WriteSpec>>,
}

impl TableSpec {
    /// `GET /path`, for messages.
    pub fn endpoint(&self) -> String {
        format!("GET {}", self.path)
    }
}

const RECORD_FIELDS: &[&str] = &[
    "data", "items", "results", "records", "content", "value", "entries", "hits", "rows",
];
const CURSOR_PARAMS: &[&str] = &[
    "cursor",
    "page_token",
    "pageToken",
    "next_token",
    "nextToken",
    "after",
    "continuation",
    "starting_after",
];
const CURSOR_FIELDS: &[&str] = &[
    "next_cursor",
    "nextCursor",
    "next_page_token",
    "nextPageToken",
    "next_token",
    "nextToken",
    "cursor",
];
const NEXT_LINK_FIELDS: &[&str] = &[
    "next",
    "next_url",
    "nextUrl",
    "next_link",
    "nextLink",
    "next_page",
    "nextPage",
];
const SIZE_PARAMS: &[&str] = &[
    "limit",
    "page_size",
    "pageSize",
    "per_page",
    "perPage",
    "size",
    "count",
    "top",
];

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
        let Some(operation) = item.get("get") else {
            continue;
        };
        let at = format!("GET {path}");
        let Some(response) = success_response(doc, operation) else {
            continue;
        };
        let Some(body) = json_schema(&response) else {
            continue;
        };
        let Ok((body, _)) = doc.resolve(&body) else {
            mapper
                .warnings
                .push(format!("{at}: response schema has a broken $ref; skipped"));
            continue;
        };
        let Some((records, item_schema)) = locate_records(doc, body) else {
            continue; // a single object, not a list
        };
        let mut columns = mapper.object_fields(&item_schema, &at);
        if columns.is_empty() {
            mapper.warnings.push(format!(
                "{at}: list items have no documented properties; skipped"
            ));
            continue;
        }
        let params = parameters(doc, item, operation);
        let path_params: Vec<String> = params
            .iter()
            .filter(|p| p.location == "path")
            .map(|p| p.name.clone())
            .collect();
        for name in &path_params {
            if !columns.iter().any(|(f, _)| f.name() == name) {
                columns.push((Field::new(name, DataType::Utf8, false), Shape::Plain));
            }
        }
        let raw_name = operation
            .get("operationId")
            .and_then(Value::as_str)
            .map(table_name_from_operation)
            .unwrap_or_else(|| table_name_from_path(path));
        let overrides_for = overrides.get(&raw_name).cloned().unwrap_or_default();
        if overrides_for.exclude {
            continue;
        }
        let pagination = match &overrides_for.pagination {
            Some(configured) => from_config(configured),
            None => detect_pagination(&params, body, &response, &records),
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
                    "{at}: tables.{raw_name}.filters names unknown column '{column}'"
                ));
            }
        }
        let mut name = overrides_for.rename.clone().unwrap_or(raw_name);
        while tables.iter().any(|t| t.name == name) {
            name.push('_');
        }
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
        });
    }
    discover_writes(doc, overrides, &mut tables, &mut mapper);
    for name in overrides.keys() {
        if !tables.iter().any(|t| &t.name == name)
            && !overrides.get(name).is_some_and(|o| o.exclude)
        {
            mapper.warnings.push(format!(
                "tables.{name}: no list operation of that name was found"
            ));
        }
    }
    (tables, collapse_repeats(mapper.warnings))
}

/// Attaches each `POST` with a JSON body to the list table on the same path,
/// or makes it an insert-only table named after its operation.
fn discover_writes(
    doc: &Document,
    overrides: &BTreeMap<String, TableConfig>,
    tables: &mut Vec<TableSpec>,
    mapper: &mut Mapper<'_>,
) {
    let Some(paths) = doc.root.get("paths").and_then(Value::as_object) else {
        return;
    };
    // Create operations mapped onto tables in the config.
    for (name, table_config) in overrides {
        let Some(mapping) = &table_config.insert else {
            continue;
        };
        let at = format!("tables.{name}.insert");
        let Some(path) = mapping
            .strip_prefix("POST ")
            .or_else(|| mapping.strip_prefix("post "))
            .map(str::trim)
        else {
            mapper.warnings.push(format!(
                "{at}: write it as \"POST /path\" (got \"{mapping}\")"
            ));
            continue;
        };
        let Some((item, operation)) = paths
            .get(path)
            .and_then(|item| item.get("post").map(|op| (item, op)))
        else {
            mapper
                .warnings
                .push(format!("{at}: the document has no POST {path}"));
            continue;
        };
        let Some(spec) = write_spec(doc, path, item, operation, &mut mapper.warnings) else {
            continue;
        };
        let target = table_config.rename.as_deref().unwrap_or(name);
        match tables.iter_mut().find(|t| t.name == target) {
            Some(table) => table.write = Some(Arc::new(spec)),
            None => mapper
                .warnings
                .push(format!("{at}: no table named {target}")),
        }
    }
    for (path, item) in paths {
        let Some(operation) = item.get("post") else {
            continue;
        };
        let Some(spec) = write_spec(doc, path, item, operation, &mut mapper.warnings) else {
            continue;
        };
        if let Some(table) = tables
            .iter_mut()
            .find(|t| &t.path == path && t.write.is_none())
        {
            table.write = Some(Arc::new(spec));
            continue;
        }
        let raw_name = operation
            .get("operationId")
            .and_then(Value::as_str)
            .map(table_name_from_operation)
            .unwrap_or_else(|| format!("{}_post", table_name_from_path(path)));
        let overrides_for = overrides.get(&raw_name).cloned().unwrap_or_default();
        if overrides_for.exclude {
            continue;
        }
        let body_schema = operation
            .get("requestBody")
            .and_then(|b| doc.resolve(b).ok().map(|(b, _)| b.clone()))
            .and_then(|b| {
                b.get("content")?
                    .as_object()?
                    .iter()
                    .find(|(media, _)| media.contains("json"))
                    .and_then(|(_, c)| c.get("schema").cloned())
            })
            .unwrap_or(Value::Null);
        let mut columns: Vec<(Field, Shape)> = spec
            .path_params
            .iter()
            .map(|p| (Field::new(p, DataType::Utf8, false), Shape::Plain))
            .collect();
        for (field, shape) in mapper.object_fields(&body_schema, &format!("POST {path}")) {
            if !columns.iter().any(|(f, _)| f.name() == field.name()) {
                columns.push((field, shape));
            }
        }
        let mut name = overrides_for.rename.clone().unwrap_or(raw_name);
        while tables.iter().any(|t| t.name == name) {
            name.push('_');
        }
        tables.push(TableSpec {
            name,
            path: path.clone(),
            path_params: spec.path_params.clone(),
            records: RecordsAt::Root,
            columns,
            filters: Vec::new(),
            pagination: Pagination::None,
            primary_key: Vec::new(),
            readable: false,
            write: Some(Arc::new(spec)),
        });
    }
}

/// One warning per problem: a shared component that cannot be mapped would
/// otherwise be reported once for every operation that uses it. Warnings that
/// differ only in their `GET /path` prefix are reported once, with a count.
fn collapse_repeats(warnings: Vec<String>) -> Vec<String> {
    let mut seen: Vec<(String, String, usize)> = Vec::new();
    for warning in warnings {
        // "GET /path.property: message": the part after the path is the problem.
        let key = warning
            .strip_prefix("GET ")
            .and_then(|rest| rest.find(['.', ':']).map(|i| rest[i..].to_string()))
            .unwrap_or_else(|| warning.clone());
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

fn success_response(doc: &Document, operation: &Value) -> Option<Value> {
    let responses = operation.get("responses")?.as_object()?;
    let response = ["200", "2XX", "default"]
        .iter()
        .find_map(|code| responses.get(*code))?;
    doc.resolve(response).ok().map(|(r, _)| r.clone())
}

fn json_schema(response: &Value) -> Option<Value> {
    let content = response.get("content")?.as_object()?;
    content
        .iter()
        .find(|(media, _)| media.contains("json"))
        .and_then(|(_, media)| media.get("schema"))
        .cloned()
}

fn locate_records(doc: &Document, body: &Value) -> Option<(RecordsAt, Value)> {
    let is_array = |s: &Value| {
        s.get("type").and_then(Value::as_str) == Some("array")
            || s.get("type")
                .and_then(Value::as_array)
                .is_some_and(|t| t.iter().any(|x| x == "array"))
    };
    if is_array(body) {
        return Some((RecordsAt::Root, body.get("items").cloned()?));
    }
    let properties = body.get("properties")?.as_object()?;
    let arrays: Vec<(&String, &Value)> = properties
        .iter()
        .filter(|(_, p)| doc.resolve(p).is_ok_and(|(p, _)| is_array(p)))
        .collect();
    let chosen = RECORD_FIELDS
        .iter()
        .find_map(|name| arrays.iter().find(|(n, _)| n.as_str() == *name))
        .or(if arrays.len() == 1 {
            arrays.first()
        } else {
            None
        })?;
    let (array, _) = doc.resolve(chosen.1).ok()?;
    Some((
        RecordsAt::Field(chosen.0.clone()),
        array.get("items").cloned()?,
    ))
}

#[derive(Debug, Clone)]
struct Param {
    name: String,
    location: String,
    schema: Value,
    extension: Option<Value>,
}

fn parameters(doc: &Document, item: &Value, operation: &Value) -> Vec<Param> {
    let mut out: Vec<Param> = Vec::new();
    for source in [item.get("parameters"), operation.get("parameters")] {
        for raw in source.and_then(Value::as_array).into_iter().flatten() {
            let Ok((p, _)) = doc.resolve(raw) else {
                continue;
            };
            let (Some(name), Some(location)) = (
                p.get("name").and_then(Value::as_str),
                p.get("in").and_then(Value::as_str),
            ) else {
                continue;
            };
            let schema = p
                .get("schema")
                .map(|s| {
                    doc.resolve(s)
                        .map(|(s, _)| s.clone())
                        .unwrap_or(Value::Null)
                })
                .unwrap_or(Value::Null);
            out.retain(|existing| !(existing.name == name && existing.location == location));
            out.push(Param {
                name: name.to_string(),
                location: location.to_string(),
                schema,
                extension: p.get("x-filter").cloned(),
            });
        }
    }
    out
}

fn query<'a>(params: &'a [Param], names: &[&str]) -> Option<&'a Param> {
    names.iter().find_map(|n| {
        params
            .iter()
            .find(|p| p.location == "query" && p.name == *n)
    })
}

fn maximum(param: Option<&Param>) -> Option<u64> {
    param
        .and_then(|p| p.schema.get("maximum"))
        .and_then(Value::as_u64)
}

fn detect_pagination(
    params: &[Param],
    body: &Value,
    response: &Value,
    records: &RecordsAt,
) -> Pagination {
    let has_link_header = response
        .get("headers")
        .and_then(Value::as_object)
        .is_some_and(|h| h.keys().any(|k| k.eq_ignore_ascii_case("link")));
    if has_link_header {
        return Pagination::LinkHeader;
    }
    let body_fields: Vec<&String> = match records {
        RecordsAt::Root => Vec::new(),
        RecordsAt::Field(_) => body
            .get("properties")
            .and_then(Value::as_object)
            .map(|p| p.keys().collect())
            .unwrap_or_default(),
    };
    let size = query(params, SIZE_PARAMS);
    if let Some(cursor) = query(params, CURSOR_PARAMS)
        && let Some(field) = CURSOR_FIELDS
            .iter()
            .find(|f| body_fields.iter().any(|b| b == *f))
    {
        return Pagination::Cursor {
            param: cursor.name.clone(),
            field: (*field).to_string(),
            size: size.map(|p| p.name.clone()),
            max: maximum(size),
        };
    }
    if let Some(field) = NEXT_LINK_FIELDS
        .iter()
        .find(|f| body_fields.iter().any(|b| b == *f))
    {
        return Pagination::NextLink {
            field: (*field).to_string(),
        };
    }
    if let (Some(offset), Some(limit)) = (
        query(params, &["offset", "skip", "start"]),
        query(params, &["limit", "top", "take", "count"]),
    ) {
        return Pagination::Offset {
            offset: offset.name.clone(),
            limit: limit.name.clone(),
            max: maximum(Some(limit)),
        };
    }
    if let Some(page) = query(params, &["page", "page_number", "pageNumber"]) {
        return Pagination::Page {
            page: page.name.clone(),
            size: query(
                params,
                &[
                    "page_size",
                    "pageSize",
                    "per_page",
                    "perPage",
                    "size",
                    "limit",
                ],
            )
            .map(|p| p.name.clone()),
        };
    }
    Pagination::None
}

fn from_config(config: &PaginationConfig) -> Pagination {
    match config {
        PaginationConfig::None => Pagination::None,
        PaginationConfig::Offset {
            offset_param,
            limit_param,
        } => Pagination::Offset {
            offset: offset_param.clone(),
            limit: limit_param.clone(),
            max: None,
        },
        PaginationConfig::Page {
            page_param,
            size_param,
        } => Pagination::Page {
            page: page_param.clone(),
            size: size_param.clone(),
        },
        PaginationConfig::Cursor { param, field } => Pagination::Cursor {
            param: param.clone(),
            field: field.clone(),
            size: None,
            max: None,
        },
        PaginationConfig::NextLink { field } => Pagination::NextLink {
            field: field.clone(),
        },
        PaginationConfig::LinkHeader => Pagination::LinkHeader,
    }
}

fn pagination_params(p: &Pagination) -> Vec<&str> {
    match p {
        Pagination::None | Pagination::NextLink { .. } | Pagination::LinkHeader => vec![],
        Pagination::Offset { offset, limit, .. } => vec![offset, limit],
        Pagination::Page { page, size } => std::iter::once(page.as_str())
            .chain(size.as_deref())
            .collect(),
        Pagination::Cursor { param, size, .. } => std::iter::once(param.as_str())
            .chain(size.as_deref())
            .collect(),
    }
}

fn detect_filters(
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
        if column(&p.name).is_some() {
            out.push(FilterParam {
                column: p.name.clone(),
                param: p.name.clone(),
                op: FilterOp::Eq,
                list,
                max_items,
            });
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

/// `listIncidentLog` → `incident_log`: snake case, without a leading verb.
pub fn table_name_from_operation(operation_id: &str) -> String {
    let mut snake = String::new();
    for (i, c) in operation_id.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            snake.push('_');
        }
        snake.push(if c.is_ascii_alphanumeric() {
            c.to_ascii_lowercase()
        } else {
            '_'
        });
    }
    let trimmed = [
        "list_", "get_", "search_", "find_", "fetch_", "query_", "read_",
    ]
    .iter()
    .find_map(|verb| snake.strip_prefix(verb))
    .filter(|rest| !rest.is_empty())
    .unwrap_or(&snake);
    crate::names::sql_name(trimmed)
}

/// `/incidents/{urn}/log` → `incidents_log`.
pub fn table_name_from_path(path: &str) -> String {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|s| !s.is_empty() && !s.starts_with('{'))
        .collect();
    crate::names::sql_name(&parts.join("_"))
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
        assert_eq!(note.path_params, ["key"]);
        let columns: Vec<&String> = note.columns.iter().map(|(f, _)| f.name()).collect();
        assert_eq!(columns, ["key", "text"]);
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("tables.missing.insert: the document has no POST /nowhere")),
            "{warnings:?}"
        );
    }

    #[test]
    fn names() {
        assert_eq!(table_name_from_operation("listIncidentLog"), "incident_log");
        assert_eq!(table_name_from_operation("listCrimes"), "crimes");
        assert_eq!(table_name_from_operation("stopsStreet"), "stops_street");
        assert_eq!(table_name_from_operation("get"), "get");
        assert_eq!(
            table_name_from_path("/api/v2/incidents/{urn}/log"),
            "api_v2_incidents_log"
        );
    }
}
