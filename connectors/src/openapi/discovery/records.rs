//! Where a GET operation's records are: its success response and JSON
//! schema, and whether the body is a list of records (at its root or in one
//! of its properties), one record, or nothing that makes a table.

use serde_json::Value;

use crate::openapi::spec::Document;

use super::naming::path_template_params;
use super::table::RecordsAt;

const RECORD_FIELDS: &[&str] = &[
    "data", "items", "results", "records", "content", "value", "entries", "entry", "hits", "rows",
];

pub(super) fn success_response(doc: &Document, operation: &Value) -> Option<Value> {
    let responses = operation.get("responses")?.as_object()?;
    let response = ["200", "2XX", "default"]
        .iter()
        .find_map(|code| responses.get(*code))?;
    doc.resolve(response).ok().map(|(r, _)| r.clone())
}

pub(super) fn json_schema(response: &Value) -> Option<Value> {
    let content = response.get("content")?.as_object()?;
    content
        .iter()
        .find(|(media, _)| media.contains("json"))
        .and_then(|(_, media)| media.get("schema"))
        .cloned()
}

/// What a GET's response holds.
pub(super) enum Located {
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
pub(super) fn words(name: &str) -> Vec<String> {
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
    crate::openapi::schema::merge_object(
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

pub(super) fn locate_records(
    doc: &Document,
    body: &Value,
    path: &str,
    operation: &Value,
) -> Located {
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
