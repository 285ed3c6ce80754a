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
    /// The body is one record: a lookup table, one row per key.
    Object,
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
    /// A cursor from the body (or a response header) passed back as a parameter.
    Cursor {
        /// Parameter that takes it.
        param: String,
        /// Where the next cursor is: a property of the body, or a header.
        field: CursorAt,
        /// Page-size parameter, if any.
        size: Option<String>,
        /// Largest documented page size.
        max: Option<u64>,
    },
    /// `has_more` in the body, and the last record's key passed back as a
    /// parameter (`starting_after`, `after`).
    AfterLast {
        /// Parameter that takes the key.
        param: String,
        /// The record field whose value is passed.
        key: String,
        /// The body's boolean saying more records follow.
        more: String,
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
            Pagination::AfterLast { .. } => "after-last".into(),
            Pagination::NextLink { .. } => "next-link".into(),
            Pagination::LinkHeader => "link-header".into(),
        }
    }

    /// Whether pages can be fetched concurrently (their addresses are known in advance).
    pub fn concurrent(&self) -> bool {
        matches!(self, Pagination::Offset { .. } | Pagination::Page { .. })
    }
}

/// Where a cursor style finds the next cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CursorAt {
    /// A property of the body.
    Body(String),
    /// A response header.
    Header(String),
}

/// A path parameter and the column that carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathParam {
    /// The name in the path template (`id` in `/artists/{id}/top-tracks`).
    pub param: String,
    /// The column a query fills it through: the parameter's own name, or,
    /// where the records have a field of that name, a distinct one taken from
    /// the path (`artist_id`), so a record's field and the path are never
    /// confused.
    pub column: String,
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
    pub path_params: Vec<PathParam>,
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
    /// For a lookup table: whether the operation documents `404` for a key
    /// that does not exist (then it is no row, not an error).
    pub missing_is_empty: bool,
}

impl TableSpec {
    /// `GET /path`, for messages.
    pub fn endpoint(&self) -> String {
        format!("GET {}", self.path)
    }

    /// The path parameter a column carries, if it carries one.
    pub fn path_param(&self, column: &str) -> Option<&PathParam> {
        self.path_params.iter().find(|p| p.column == column)
    }
}

/// Field metadata that `\\d` shows beside a column (what a path column is).
pub const NOTE_KEY: &str = "bluelamp.note";

const RECORD_FIELDS: &[&str] = &[
    "data", "items", "results", "records", "content", "value", "entries", "entry", "hits", "rows",
];
const CURSOR_PARAMS: &[&str] = &[
    "cursor",
    "page_token",
    "pageToken",
    "next_token",
    "nextToken",
    "after",
    "continuation",
    "continuationToken",
    "starting_after",
    "next_page",
    "nextPage",
];
pub(crate) const CURSOR_FIELDS: &[&str] = &[
    "next_cursor",
    "nextCursor",
    "continuation",
    "continuationToken",
    "next_page_token",
    "nextPageToken",
    "next_token",
    "nextToken",
    "cursor",
];
pub(crate) const NEXT_LINK_FIELDS: &[&str] = &[
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

/// The names in a path template, in order: `/a/{x}/b/{y}` → `x`, `y`.
fn path_template_params(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
        .collect()
}

/// The column for path parameter `name`: its own name unless the records have
/// a field of that name; then the static segment before it, in the singular,
/// joined to it (`/artists/{id}/top-tracks` → `artist_id`).
fn path_column(path: &str, name: &str, columns: &[(Field, Shape)]) -> String {
    let taken = |c: &str| columns.iter().any(|(f, _)| f.name() == c);
    let plain = crate::names::sql_name(name);
    let plain = if name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        name.to_string()
    } else {
        plain
    };
    if !taken(&plain) {
        return plain;
    }
    let before = path
        .split('/')
        .take_while(|segment| *segment != format!("{{{name}}}"))
        .filter(|segment| !segment.is_empty() && !segment.starts_with('{'))
        .last()
        .map(|segment| singular(&crate::names::sql_name(segment)));
    // `/merchants/{merchantId}/stores` with records holding `merchantId`:
    // `merchant_merchantId` would read badly.
    let mut candidate = match before {
        Some(owner) if !plain.to_ascii_lowercase().starts_with(&owner) => {
            format!("{owner}_{plain}")
        }
        _ => format!("path_{plain}"),
    };
    while taken(&candidate) {
        candidate.push('_');
    }
    candidate
}

/// A plural English noun in the singular, for names only (`incidents` →
/// `incident`, `categories` → `category`, `addresses` → `address`).
fn singular(word: &str) -> String {
    if ["us", "ss", "is"].iter().any(|e| word.ends_with(e)) {
        return word.to_string();
    }
    if let Some(stem) = word.strip_suffix("ies") {
        return format!("{stem}y");
    }
    for ending in ["sses", "shes", "ches", "xes", "uses"] {
        if word.ends_with(ending) {
            return word[..word.len() - 2].to_string();
        }
    }
    match word.strip_suffix('s') {
        Some(stem) if !stem.ends_with('s') && !stem.is_empty() => stem.to_string(),
        _ => word.to_string(),
    }
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
        let Some(item) = doc.resolve(item).ok().map(|(item, _)| item) else {
            continue;
        };
        let Some(operation) = item
            .get("post")
            .and_then(|op| doc.resolve(op).ok().map(|(op, _)| op))
        else {
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
        let at = format!("POST {path}");
        let (_, overrides_for) = table_overrides(overrides, &raw_name, &at);
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
        for (field, shape) in mapper.object_fields(&body_schema, &at) {
            if !columns.iter().any(|(f, _)| f.name() == field.name()) {
                columns.push((field, shape));
            }
        }
        let name = overrides_for.rename.clone().unwrap_or(raw_name);
        let name = unique_name(tables, name, &at, &mut mapper.warnings);
        tables.push(TableSpec {
            name,
            path: path.clone(),
            path_params: spec
                .path_params
                .iter()
                .map(|p| PathParam {
                    param: p.clone(),
                    column: p.clone(),
                })
                .collect(),
            records: RecordsAt::Root,
            columns,
            filters: Vec::new(),
            pagination: Pagination::None,
            primary_key: Vec::new(),
            readable: false,
            write: Some(Arc::new(spec)),
            missing_is_empty: false,
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

/// What a GET's response holds.
enum Located {
    /// A list of records, where they sit, and the item schema.
    List(RecordsAt, Value),
    /// One record.
    Single,
    /// Nothing that makes a table (a string, an empty object).
    Nothing,
    /// A list that cannot be read, and why.
    Skipped(String),
}

/// Property names that describe a page rather than the thing a path names.
fn is_page_metadata(name: &str) -> bool {
    const WORDS: &[&str] = &[
        "total",
        "count",
        "next",
        "prev",
        "previous",
        "page",
        "pages",
        "cursor",
        "offset",
        "limit",
        "more",
        "has",
        "link",
        "links",
        "meta",
        "metadata",
        "size",
        "token",
        "continuation",
        "paging",
        "pagination",
        "self",
        "first",
        "last",
        "took",
        "timed",
        "status",
        "success",
        "warning",
        "warnings",
        "error",
        "errors",
        "message",
        "query",
    ];
    words(name).iter().any(|w| WORDS.contains(&w.as_str()))
}

/// `hasMore`, `has_more`, `_links` → their lower-case words.
fn words(name: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut current = String::new();
    for c in name.chars() {
        let boundary = !c.is_ascii_alphanumeric() || c.is_ascii_uppercase();
        if boundary && !current.is_empty() {
            out.push(std::mem::take(&mut current));
        }
        if c.is_ascii_alphanumeric() {
            current.push(c.to_ascii_lowercase());
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Whether a schema is an array type.
fn is_array(schema: &Value) -> bool {
    schema.get("type").and_then(Value::as_str) == Some("array")
        || schema
            .get("type")
            .and_then(Value::as_array)
            .is_some_and(|t| t.iter().any(|x| x == "array"))
        || (schema.get("type").is_none() && schema.get("items").is_some())
}

/// The properties of an object schema, `$ref`s followed and `allOf` (and
/// object alternatives) merged at every depth, in document order.
pub(crate) fn merged_properties(doc: &Document, schema: &Value) -> Vec<(String, Value)> {
    let mut properties = Vec::new();
    super::schema::merge_object(
        doc,
        schema,
        "",
        0,
        true,
        &mut properties,
        &mut Vec::new(),
        &mut Vec::new(),
    );
    properties
}

/// Whether a path ends in a parameter (`/playlists/{id}`): it names one thing.
fn names_one_thing(path: &str) -> bool {
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .is_some_and(|last| last.starts_with('{'))
}

fn locate_records(doc: &Document, body: &Value, path: &str, operation: &Value) -> Located {
    if is_array(body) {
        return match body.get("items") {
            Some(items) => Located::List(RecordsAt::Root, items.clone()),
            None => {
                Located::Skipped("the response is an array whose items are not described".into())
            }
        };
    }
    let properties = merged_properties(doc, body);
    if properties.is_empty() {
        return Located::Nothing;
    }
    let arrays: Vec<(&String, Value)> = properties
        .iter()
        .filter_map(|(name, p)| {
            let (p, _) = doc.resolve(p).ok()?;
            is_array(p).then(|| (name, p.clone()))
        })
        .collect();
    let chosen = RECORD_FIELDS
        .iter()
        .find_map(|wanted| arrays.iter().find(|(n, _)| n.as_str() == *wanted))
        .or(if arrays.len() == 1 {
            arrays.first()
        } else {
            None
        });
    let Some((name, array)) = chosen else {
        return Located::Single;
    };
    // The other properties describe the page, or repeat the key it was read
    // by (`{payment_id, events: [...]}` from `/payments/{paymentId}/events`).
    let keys: Vec<String> = path_template_params(path)
        .iter()
        .map(|p| words(p).concat())
        .collect();
    let others_describe_the_page = properties
        .iter()
        .filter(|(n, _)| n != *name)
        .all(|(n, _)| is_page_metadata(n) || keys.contains(&words(n).concat()));
    let listed_by_name = operation
        .get("operationId")
        .and_then(Value::as_str)
        .is_some_and(|id| {
            let id = id.to_ascii_lowercase();
            ["list", "search", "find", "query"]
                .iter()
                .any(|verb| id.starts_with(verb))
        });
    // `GET /payments/{id}/events` answering `{payment_id, events: [...]}`.
    let named_by_path = path
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .is_some_and(|last| crate::names::sql_name(last) == crate::names::sql_name(name));
    // Named after the collection the path names, and the path has no key
    // whose record the object could be (`GET /me/player/queue`).
    let named_by_path = named_by_path && path_template_params(path).is_empty();
    let is_list = others_describe_the_page
        || (!names_one_thing(path)
            && (RECORD_FIELDS.contains(&name.as_str()) || listed_by_name || named_by_path));
    if !is_list {
        return Located::Single;
    }
    match array.get("items") {
        Some(items) => Located::List(RecordsAt::Field((*name).clone()), items.clone()),
        None => Located::Skipped(format!(
            "'{name}' is an array whose items are not described"
        )),
    }
}

#[derive(Debug, Clone)]
struct Param {
    name: String,
    location: String,
    schema: Value,
    extension: Option<Value>,
    description: Option<String>,
    required: bool,
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
                description: p
                    .get("description")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                required: p.get("required").and_then(Value::as_bool).unwrap_or(false),
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

/// Response headers that carry the next page's token.
pub(crate) const CURSOR_HEADERS: &[&str] = &[
    "x-next-page-token",
    "x-next-cursor",
    "x-next-token",
    "x-continuation-token",
    "x-ms-continuation",
    "next-page-token",
    "x-next-page-cursor",
];

/// How a list operation pages, read from its parameters, its response body
/// and its response headers; an error where the document shows more pages
/// exist but not how to ask for them.
fn detect_pagination(
    doc: &Document,
    params: &[Param],
    body: &Value,
    response: &Value,
    records: &RecordsAt,
    columns: &[(Field, Shape)],
) -> Result<Pagination, String> {
    let headers: Vec<String> = response
        .get("headers")
        .and_then(Value::as_object)
        .map(|h| h.keys().map(|k| k.to_ascii_lowercase()).collect())
        .unwrap_or_default();
    if headers.iter().any(|k| k == "link") {
        return Ok(Pagination::LinkHeader);
    }
    let body_fields: Vec<(String, Value)> = match records {
        RecordsAt::Root | RecordsAt::Object => Vec::new(),
        RecordsAt::Field(_) => merged_properties(doc, body)
            .into_iter()
            .map(|(name, schema)| {
                let schema = doc
                    .resolve(&schema)
                    .map(|(s, _)| s.clone())
                    .unwrap_or(Value::Null);
                (name, schema)
            })
            .collect(),
    };
    let field = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| body_fields.iter().find(|(b, _)| b == n))
    };
    let size = query(params, SIZE_PARAMS);
    let cursor = query(params, CURSOR_PARAMS);
    if let Some(cursor) = cursor {
        if let Some(header) = CURSOR_HEADERS
            .iter()
            .find(|h| headers.iter().any(|k| k == *h))
        {
            return Ok(Pagination::Cursor {
                param: cursor.name.clone(),
                field: CursorAt::Header((*header).to_string()),
                size: size.map(|p| p.name.clone()),
                max: maximum(size),
            });
        }
        if let Some((name, _)) = field(CURSOR_FIELDS) {
            return Ok(Pagination::Cursor {
                param: cursor.name.clone(),
                field: CursorAt::Body(name.clone()),
                size: size.map(|p| p.name.clone()),
                max: maximum(size),
            });
        }
        // `next_page` may be a token to pass back rather than a URL: it is a
        // URL only when the document says so.
        if let Some((name, schema)) = field(NEXT_LINK_FIELDS)
            && !is_uri(schema)
        {
            return Ok(Pagination::Cursor {
                param: cursor.name.clone(),
                field: CursorAt::Body(name.clone()),
                size: size.map(|p| p.name.clone()),
                max: maximum(size),
            });
        }
    }
    if let Some((name, _)) = field(NEXT_LINK_FIELDS) {
        return Ok(Pagination::NextLink {
            field: name.clone(),
        });
    }
    if let Some((more, _)) = field(&["has_more", "hasMore", "more"]) {
        let after = query(params, &["starting_after", "after", "after_id", "since_id"]);
        let key = ["id", "uuid", "key"]
            .into_iter()
            .find(|k| columns.iter().any(|(f, _)| f.name() == *k));
        return match (after, key) {
            (Some(after), Some(key)) => Ok(Pagination::AfterLast {
                param: after.name.clone(),
                key: key.to_string(),
                more: more.clone(),
                size: size.map(|p| p.name.clone()),
                max: maximum(size),
            }),
            _ => Err(format!(
                "the answer says whether there are more records ('{more}') but the document names no parameter to ask for them"
            )),
        };
    }
    if let (Some(offset), Some(limit)) = (
        query(params, &["offset", "skip", "start"]),
        query(params, &["limit", "top", "take", "count"]),
    ) {
        return Ok(Pagination::Offset {
            offset: offset.name.clone(),
            limit: limit.name.clone(),
            max: maximum(Some(limit)),
        });
    }
    if let Some(page) = query(params, &["page", "page_number", "pageNumber"]) {
        return Ok(Pagination::Page {
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
        });
    }
    if let Some((name, _)) = field(CURSOR_FIELDS) {
        return Err(format!(
            "the answer carries a next-page cursor ('{name}') but the document names no parameter to pass it back"
        ));
    }
    Ok(Pagination::None)
}

/// Whether a schema says its string is a URL.
fn is_uri(schema: &Value) -> bool {
    matches!(
        schema.get("format").and_then(Value::as_str),
        Some("uri" | "url" | "uri-reference" | "iri" | "iri-reference")
    ) || schema
        .get("description")
        .and_then(Value::as_str)
        .is_some_and(|d| {
            let d = d.to_ascii_lowercase();
            d.contains("url") || d.contains("uri") || d.contains("link")
        })
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
            field: CursorAt::Body(field.clone()),
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
        Pagination::Cursor { param, size, .. } | Pagination::AfterLast { param, size, .. } => {
            std::iter::once(param.as_str())
                .chain(size.as_deref())
                .collect()
        }
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
    // `getAnArtist` names an artist, not "an artist".
    let trimmed = ["a_", "an_", "the_"]
        .iter()
        .find_map(|article| trimmed.strip_prefix(article))
        .filter(|rest| !rest.is_empty())
        .unwrap_or(trimmed);
    crate::names::sql_name(trimmed)
}

/// `/playlists/{id}` → `playlist`: a lookup table is named for one thing.
pub fn lookup_name_from_path(path: &str) -> String {
    let mut parts: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty() && !s.starts_with('{'))
        .map(crate::names::sql_name)
        .collect();
    if let Some(last) = parts.last_mut() {
        *last = singular(last);
    }
    crate::names::sql_name(&parts.join("_"))
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

    #[test]
    fn names() {
        assert_eq!(table_name_from_operation("listIncidentLog"), "incident_log");
        assert_eq!(table_name_from_operation("listCrimes"), "crimes");
        assert_eq!(table_name_from_operation("stopsStreet"), "stops_street");
        assert_eq!(table_name_from_operation("get"), "get");
        assert_eq!(table_name_from_operation("getAnArtist"), "artist");
        assert_eq!(table_name_from_operation("get-the-weather"), "weather");
        assert_eq!(lookup_name_from_path("/v1/playlists/{id}"), "v1_playlist");
        assert_eq!(singular("categories"), "category");
        assert_eq!(singular("addresses"), "address");
        assert_eq!(singular("status"), "status");
        assert_eq!(
            table_name_from_path("/api/v2/incidents/{urn}/log"),
            "api_v2_incidents_log"
        );
    }
}
